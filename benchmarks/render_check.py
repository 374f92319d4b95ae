"""Render a leaderboard HTML report in headless Chromium and check that it shows, with its plots.

    python benchmarks/render_check.py leaderboard.html [--png shot.png]

Two checks, each in a fresh headless browser opened on the file (no server):
1. ``--dump-dom``: the page's DOM after load has the report's title and every plot is an
   ``<img>`` whose ``data:image/png`` source decodes to a real PNG;
2. ``--screenshot``: the picture is not blank (many distinct colours, not one background).
Needs Debian's ``chromium`` (``apt-get install -y chromium``). Exit status 0 = rendered.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


@dataclass(frozen=True)
class RenderReport:
    images: int
    png_images: int
    distinct_colours: int
    screenshot: Path
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def _browser(args: list[str], profile: Path, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


def check(report: Path, screenshot: Path | None = None, min_plots: int = 1) -> RenderReport:
    """Open ``report`` from disk in Chromium; return what was found and any problem."""
    report = report.resolve()
    url = report.as_uri()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="render-check-") as tmp:
        dom = _browser(["--dump-dom", url], Path(tmp) / "dom").stdout
        shot = screenshot or Path(tmp) / "shot.png"
        _browser([f"--screenshot={shot}", "--window-size=1280,2000", url], Path(tmp) / "shot")
        if "Benchmark leaderboard" not in dom:
            problems.append("the page's DOM has no 'Benchmark leaderboard' heading")
        sources = re.findall(r'<img[^>]*src="([^"]+)"', dom)
        png = 0
        for src in sources:
            if src.startswith("data:image/png;base64,"):
                raw = base64.b64decode(src.split(",", 1)[1])
                png += raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 1000
        if png < min_plots:
            problems.append(f"{png} inline PNG plots in the rendered DOM, expected >= {min_plots}")
        colours = _distinct_colours(shot) if shot.exists() else 0
        if not shot.exists():
            problems.append("chromium wrote no screenshot")
        elif colours < 50:
            problems.append(f"the screenshot looks blank ({colours} distinct colours)")
        if screenshot is None:
            shot = Path("(temporary)")
    return RenderReport(len(sources), png, colours, shot, tuple(problems))


def _distinct_colours(png: Path) -> int:
    import matplotlib.image as mpimg
    import numpy as np

    pixels = (mpimg.imread(str(png))[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--png", type=Path, default=None, help="keep the screenshot here")
    ap.add_argument("--min-plots", type=int, default=5)
    args = ap.parse_args()
    if chromium() is None:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    r = check(args.report, args.png, args.min_plots)
    print(f"{args.report}: {r.images} <img>, {r.png_images} inline PNG plots, "
          f"{r.distinct_colours} distinct colours in the screenshot ({r.screenshot})")
    for p in r.problems:
        print(f"problem: {p}", file=sys.stderr)
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
