"""Run the experiments in order, time them, read the claims, write results.json, plots, REPORT.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moeopt.jsonout import strict
from reproduce import algorithms, beyond, cluster, designs, minilm, overall, plots, regime, report
from reproduce.claims import build_claims
from reproduce.config import Config
from reproduce.context import Context

SCHEMA = "moeopt.reproduce/1"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    run: Callable[[Context], dict[str, Any]]
    measured: bool = False  # needs the local backend


def _acquisition(ctx: Context) -> dict[str, Any]:
    labels = tuple(ctx.profiles) if not ctx.cfg.quick else (ctx.ours,)
    return minilm.acquisition(ctx, labels)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("calibration", "the calibration point (Fig. 2)", regime.calibration_point),
    Experiment("regime", "the paper's regime against LambdaML", regime.regime),
    Experiment("cluster", "the CPU cluster and the break-even rate", cluster.cluster),
    Experiment("designs", "scatter-gather designs (Figs. 4, 11), predicted", designs.designs),
    Experiment("algorithms", "deployment algorithms (Fig. 12)", algorithms.algorithms),
    Experiment("predictors", "popularity predictors (Fig. 10)", minilm.predictors),
    Experiment("acquisition", "Alg. 2 and its acquisitions (Fig. 13)", _acquisition),
    Experiment("overall", "the overall comparison (Fig. 14)", overall.overall),
    Experiment("beyond", "beyond the paper", beyond.beyond),
    Experiment("measured_designs", "scatter-gather designs, measured", designs.measured_designs, True),
    Experiment("measured_algorithms", "deployment algorithms' plans, measured",
               algorithms.measured_algorithms, True),
    Experiment("measured_overall", "ours against LambdaML, measured", overall.measured_overall, True),
)
NAMES = tuple(e.name for e in EXPERIMENTS)




def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
            "commit": commit or None}


def _machine(ctx: Context) -> dict[str, Any]:
    """This machine's calibration (what the measured predictions used)."""
    out: dict[str, Any] = {}
    for path in (ctx.lab.calibrations.values() if ctx.lab else ()):
        data = json.loads(Path(path).read_text())
        out = {"profile": path, "constants": data.get("constants", {}),
               "cold_start_s": data.get("constants", {}).get("cold_start_s")}
    return out


def run(cfg: Config, out: Path, command: str = "", echo: Callable[[str], None] | None = None,
        bar: bool = False) -> dict[str, Any]:
    """Run the configured experiments; write ``out``/results.json, the plots and REPORT.md."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg, out)
    chosen = [e for e in EXPERIMENTS if cfg.wants(e.name) and (cfg.measure or not e.measured)]
    figures: dict[str, Any] = {}
    timing: dict[str, float] = {}
    progress = tqdm(chosen, desc="reproduce", unit="experiment", file=sys.stderr, disable=not bar)
    lab = None
    try:
        for exp in progress:
            progress.set_postfix_str(exp.name)
            if exp.measured and lab is None:
                from reproduce.measure import LocalLab

                lab = LocalLab(cfg.recalibrate)
                ctx.lab = lab
            t0 = time.perf_counter()
            load = os.getloadavg()[0]
            figures[exp.name] = exp.run(ctx)
            timing[exp.name] = time.perf_counter() - t0
            if exp.measured:  # contention inflates measured durations: say how busy it was
                figures[exp.name]["load_average"] = [load, os.getloadavg()[0]]
            if echo and not bar:
                echo(f"  {exp.name}: {exp.title} ({timing[exp.name]:.1f} s)")
        if lab is not None:
            figures["machine"] = _machine(ctx)
    finally:
        if lab is not None:
            lab.__exit__(None, None, None)
        progress.close()
    labels = list(ctx.profiles)
    claims = [c.to_dict(ctx.ours) for c in build_claims(figures, labels)]
    results = strict({
        "schema": SCHEMA,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": cfg.quick,
        "profiles": ctx.profiles,
        "ours": ctx.ours,
        "config": cfg.to_dict(),
        "claims": claims,
        "breakeven": figures.get("cluster"),
        "figures": figures,
        "timing_s": {**timing, "total": time.perf_counter() - ctx.started},
        "skipped": [e.name for e in EXPERIMENTS if e not in chosen],
        "environment": environment(),
    })
    results["plots"] = plots.write_all(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    (out / "REPORT.md").write_text(report.render(results))
    return results


def render(out: Path) -> dict[str, Any]:
    """Read ``out``/results.json, read the claims again from its figures, and rewrite the plots
    and REPORT.md (nothing is re-run)."""
    results = json.loads((out / "results.json").read_text())
    claims = build_claims(results["figures"], list(results["profiles"]))
    results["claims"] = strict([c.to_dict(results["ours"]) for c in claims])
    results["plots"] = plots.write_all(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    (out / "REPORT.md").write_text(report.render(results))
    return results
