"""The leaderboard as Markdown and as one self-contained HTML file (plots as data URIs).

Both come from the same sections (title, text, table, figures), so they never disagree. The
HTML needs no server and no network: every plot is a base64 PNG inside the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.bench.scoring import CLIP, TARGETS, Leaderboard, time_to_target


@dataclass(frozen=True)
class Section:
    title: str
    text: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    figures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Context:
    """Where the numbers came from, shown at the top of both reports."""

    results: str
    command: str
    records: list[dict[str, Any]] = field(default_factory=list)


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def sections(board: Leaderboard, ctx: Context) -> list[Section]:
    env = ctx.records[-1]["environment"] if ctx.records else {}
    instances = sorted({s.instance for s in board.scales})
    statuses = Counter(r.status for r in board.runs)
    pkgs = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    about = (
        f"Results: `{ctx.results}` - {len(board.runs)} runs, {len(instances)} instances, "
        f"{len(board.solvers)} solvers; run status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + f". Machine: {env.get('platform', '?')}, {env.get('cpu_count', '?')} CPUs, Python "
        f"{env.get('python', '?')}. Commit: `{(env.get('git_commit') or '?')[:12]}`"
        + (" (with uncommitted changes)" if env.get("git_dirty") else "") + f". Packages: {pkgs}."
    )
    score_text = (
        f"Score per run: 0 = best known cost of the instance, 1 = random search at the same budget "
        f"(Bayesmark's normalisation); lower is better. Runs with no feasible re-priced plan "
        f"(infeasible, error, crashed, timeout) score {CLIP:g}, and feasible scores are clipped "
        f"to {CLIP:g}: both are counted in *clipped*. Mean over all runs, with a 95% bootstrap "
        f"interval (2,000 resamples, seed 0). Definitions: docs/leaderboard.md."
    )
    out = [Section("About this run", about),
           Section("Leaderboard", score_text,
                   ("rank", "solver", "origin", "mean score", "95% CI", "feasible", "clipped",
                    "failures", "median wall s", "runs"),
                   tuple((str(i + 1), r.solver, r.origin, _fmt(r.mean), f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                          f"{r.feasible_rate:.0%}", str(r.clipped),
                          ", ".join(f"{k} {v}" for k, v in sorted(r.failures.items())) or "-",
                          _fmt(r.median_wall_seconds, ".2f"), str(r.runs))
                         for i, r in enumerate(board.rows)),
                   ("scores",))]
    per = board.instance_scores()
    out.append(Section(
        "Scores by instance", "Mean score over seeds (and budgets) per instance.",
        ("instance", *board.solvers),
        tuple((i, *(_fmt(per[i].get(s)) for s in board.solvers)) for i in instances),
        ("instances",),
    ))
    out.append(Section(
        "Best known per instance",
        "Costs in USD per batch, re-priced with moeopt.evaluate. The mark is MIPLIB's: "
        "proven_optimal needs a solver's lower bound to meet the re-priced cost. *1 =* names the "
        "baseline used for the score's 1 (random: random search's mean; worst-feasible: random "
        "search did not find a feasible plan in every seed, so the worst feasible cost of any run "
        "is used instead).",
        ("instance", "budget", "best known USD", "mark", "found by", "1 = (USD)", "1 ="),
        tuple((s.instance, s.budget, _fmt(s.best_usd, ".6g"), s.mark, s.best_solver or "-",
               _fmt(s.baseline_usd, ".6g"), s.baseline_source) for s in board.scales),
    ))
    out.append(Section(
        "Win rates",
        "Row solver against column solver: share of runs paired by (instance, budget, seed) in "
        "which the row scored lower; ties count half.",
        ("", *board.solvers),
        tuple((a, *("-" if i == j or math.isnan(board.win_rate[i, j]) else f"{board.win_rate[i, j]:.2f}"
                    for j in range(len(board.solvers))))
              for i, a in enumerate(board.solvers)),
        ("wins",),
    ))
    ttt_rows = []
    for s in board.solvers:
        runs = [r for r in board.runs if r.solver == s]
        cells = []
        for tau in TARGETS:
            hits = [r.hit_seconds[tau] for r in runs]
            done = [h for h in hits if math.isfinite(h)]
            cells += [f"{len(done) / len(runs):.0%}", _fmt(float(np.median(done)) if done else None, ".3f")]
        ttt_rows.append((s, *cells))
    out.append(Section(
        "Time to target",
        "Share of runs whose best-so-far cost came within 1% / 5% of the best known, and the "
        "median solver seconds to get there (solver clock, without process start-up). Curves: "
        "the same share against seconds and against evaluations.",
        ("solver", "within 1%", "median s to 1%", "within 5%", "median s to 5%"),
        tuple(ttt_rows),
        ("ttt_seconds", "ttt_evaluations"),
    ))
    gap_rows = tuple(
        (r.solver, str(r.proven_runs), _fmt(r.gap_to_proven, ".2%") if r.gap_to_proven is not None else "-",
         _fmt(r.own_gap, ".2%") if r.own_gap is not None else "-")
        for r in board.rows if r.proven_runs or r.own_gap is not None
    )
    proven = sum(s.mark == "proven_optimal" for s in board.scales)
    out.append(Section(
        "Gap to proven optimum",
        f"{proven} instance/budget cells have a proven optimum. Gap = (cost - optimum) / optimum, "
        "mean over a solver's feasible runs on those instances; *own gap* is the gap exact solvers "
        "proved themselves (cost against their lower bound)."
        + ("" if gap_rows else " No solver proved a bound in these results."),
        ("solver", "runs on proven instances", "gap to proven optimum", "own gap") if gap_rows else (),
        gap_rows,
    ))
    failed = [r for r in board.runs if r.status != "ok"]
    messages = {rec["run_id"]: rec.get("message", "") for rec in ctx.records}
    out.append(Section(
        "Failures",
        f"{len(failed)} runs did not end normally; each scored {CLIP:g}." if failed else "No run failed.",
        ("solver", "instance", "seed", "status", "message") if failed else (),
        tuple((r.solver, r.instance, str(r.seed_index), r.status,
               (messages.get(r.run_id) or "").splitlines()[0][:120] if messages.get(r.run_id) else "")
              for r in failed[:50]),
    ))
    return out


# ---- figures ---------------------------------------------------------------------------------


def figures(board: Leaderboard) -> dict[str, bytes]:
    """name -> PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    n = len(board.solvers)
    colors = {s: plt.cm.tab10(i % 10) for i, s in enumerate(board.solvers)}

    fig, ax = plt.subplots(figsize=(7, 0.45 * n + 1.4))
    rows = board.rows[::-1]
    y = np.arange(len(rows))
    means = np.array([r.mean for r in rows])
    err = np.array([[r.mean - r.ci_low for r in rows], [r.ci_high - r.mean for r in rows]])
    ax.barh(y, means, xerr=err, color=[colors[r.solver] for r in rows], capsize=3)
    ax.set_yticks(y, [r.solver for r in rows])
    ax.axvline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xlim(0, CLIP * 1.05)
    ax.set_xlabel("mean score (0 = best known, 1 = random search), 95% CI")
    ax.set_title("Leaderboard")
    figs["scores"] = _png(fig)

    for axis, label in (("seconds", "solver seconds"), ("evaluations", "evaluations")):
        hits = [h for r in board.runs for h in (r.hit_seconds if axis == "seconds" else r.hit_evaluations).values()
                if math.isfinite(h)]
        hi = max(max(hits, default=1.0) * 2, 10.0)
        lo = 1e-3 if axis == "seconds" else 1.0
        grid = np.geomspace(lo, hi, 200)
        fig, axes = plt.subplots(1, len(TARGETS), figsize=(11, 4), sharey=True)
        for ax, tau in zip(axes, TARGETS, strict=True):
            for s, frac in time_to_target(board, axis, tau, grid).items():
                ax.step(grid, frac, where="post", label=s, color=colors[s])
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(label)
            ax.set_title(f"within {tau:.0%} of best known")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("fraction of runs")
        axes[-1].legend(fontsize=8, loc="best")
        figs[f"ttt_{axis}"] = _png(fig)

    fig, ax = plt.subplots(figsize=(0.6 * n + 2.5, 0.5 * n + 1.8))
    im = ax.imshow(board.win_rate, vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(n), board.solvers, rotation=45, ha="right")
    ax.set_yticks(range(n), board.solvers)
    for i in range(n):
        for j in range(n):
            v = board.win_rate[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="row beats column")
    ax.set_title("Win rates")
    figs["wins"] = _png(fig)

    per = board.instance_scores()
    names = sorted(per)
    grid = np.array([[per[i].get(s, np.nan) for s in board.solvers] for i in names])
    fig, ax = plt.subplots(figsize=(0.6 * n + 4, 0.32 * len(names) + 1.8))
    im = ax.imshow(grid, vmin=0, vmax=CLIP, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(n), board.solvers, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    fig.colorbar(im, ax=ax, label="mean score")
    ax.set_title("Score by instance")
    figs["instances"] = _png(fig)
    return figs


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# ---- writers --------------------------------------------------------------------------------


def write_markdown(board: Leaderboard, ctx: Context, path: Path, with_figures: bool = True) -> None:
    """Markdown tables; figures as PNG files beside it (``<stem>-<figure>.png``)."""
    figs = figures(board) if with_figures else {}
    lines = ["# Benchmark leaderboard", "",
             "Regenerate with:", "", "```sh", ctx.command, "```", ""]
    for sec in sections(board, ctx):
        lines += [f"## {sec.title}", ""]
        if sec.text:
            lines += [sec.text, ""]
        if sec.headers:
            lines.append("| " + " | ".join(sec.headers) + " |")
            lines.append("|" + "|".join("---" for _ in sec.headers) + "|")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in sec.rows]
            lines.append("")
        for name in sec.figures:
            if name in figs:
                png = path.with_name(f"{path.stem}-{name}.png")
                png.write_bytes(figs[name])
                lines += [f"![{name}]({png.name})", ""]
    path.write_text("\n".join(lines))


def write_html(board: Leaderboard, ctx: Context, path: Path) -> None:
    """One file, no server: CSS inline, every plot an <img> with a base64 data URI."""
    figs = figures(board)
    e = html.escape
    body = [f"<h1>Benchmark leaderboard</h1><p>Regenerate with:</p><pre>{e(ctx.command)}</pre>"]
    for sec in sections(board, ctx):
        body.append(f"<h2>{e(sec.title)}</h2>")
        if sec.text:
            body.append(f"<p>{_inline_code(e(sec.text))}</p>")
        if sec.headers:
            head = "".join(f"<th>{e(h)}</th>" for h in sec.headers)
            rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in sec.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        for name in sec.figures:
            data = base64.b64encode(figs[name]).decode()
            body.append(f'<figure><img class="plot" alt="{e(name)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(name)}</figcaption></figure>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>moeopt benchmark leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #eef; }} td:first-child, th:first-child {{ text-align: left; }}
pre, code {{ background: #f4f4f4; padding: 2px 4px; }} pre {{ padding: 8px; white-space: pre-wrap; }}
img.plot {{ max-width: 100%; border: 1px solid #ddd; }}
</style></head><body>
{chr(10).join(body)}
</body></html>
"""
    path.write_text(page)


def _inline_code(text: str) -> str:
    """The two bits of Markdown the section texts use: `code` and *emphasis*."""
    parts = text.split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)
