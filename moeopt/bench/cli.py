"""``moeopt bench`` and ``moeopt leaderboard``; also runnable alone as ``python -m moeopt.bench.cli``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from moeopt.errors import InputError, report_input_errors


def _command_line() -> str:
    argv = sys.argv[1:]
    return "moeopt " + " ".join(shlex.quote(a) for a in argv) if argv else "moeopt"


@click.command("bench")
@click.option("--suite", "suite_name", required=True, help="Suite name (benchmarks/suites/NAME) or folder.")
@click.option("--solvers", "solver_list", default=None,
              help="Comma-separated solver names, or 'all' (default: the main zoo available here "
                   "plus installed plugins). Random search is always added: it is the score's 1.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per solver (default: the suite's).")
@click.option("--budget-evals", type=click.IntRange(min=1), default=None, help="Evaluation budget per run.")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds budget per run.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Runs in parallel.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Folder of the results file (<suite>.jsonl) and its plans.")
@click.option("--executor", type=click.Choice(["local", "dask", "ray"]), default="local", show_default=True,
              help="Where runs execute; dask/ray need their package installed.")
@click.option("--scheduler", default=None, help="Address of an existing dask scheduler / ray cluster.")
@click.option("--master-seed", type=int, default=0, show_default=True, help="Every run's seed derives from it.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Hard wall limit per run in seconds; the process is killed after it "
                   "(default: the suite's, else 3x the seconds budget, at least +30 s).")
@click.option("--references", "references_path", type=click.Path(dir_okay=False), default=None,
              help="Best-known file to update (default: OUT/best_known.json).")
@click.option("--repeat-deterministic", is_flag=True,
              help="Run solvers tagged 'deterministic' on every seed (default: once, seed index 0).")
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="Cost-model profile for every instance (a copy of the suite under OUT names it, "
                   "so every run, re-pricing and reference uses it).")
def bench_command(suite_name: str, solver_list: str | None, seeds: int | None, budget_evals: int | None,
                  budget_seconds: float | None, jobs: int, out_dir: str, executor: str,
                  scheduler: str | None, master_seed: int, timeout_s: float | None,
                  references_path: str | None, repeat_deterministic: bool,
                  profile: str | None = None) -> None:
    """Run solvers on a benchmark suite, one process per run; resumes an interrupted sweep."""
    from tqdm import tqdm

    from moeopt.bench.references import update_references
    from moeopt.bench.results import read_results
    from moeopt.bench.runner import parse_solvers, pending, plan_runs, run_bench, with_baseline
    from moeopt.bench.suite import load_suite
    from moeopt.solver import Budget

    if executor == "dask":
        _require("dask.distributed", "dask", 'pip install "dask[distributed]"')
    elif executor == "ray":
        _require("ray", "ray", "pip install ray")
    suite = load_suite(suite_name)
    if profile is not None:
        from moeopt.bench.suite import with_profile

        suite = load_suite(with_profile(suite, profile, Path(out_dir)))
    names = with_baseline(parse_solvers(solver_list))
    budget = Budget(
        evaluations=budget_evals if budget_evals is not None else suite.budget.evaluations,
        seconds=budget_seconds if budget_seconds is not None else suite.budget.seconds,
    )
    specs = plan_runs(suite, names, seeds or suite.seeds, budget, master_seed, timeout_s,
                      repeat_deterministic)
    out = Path(out_dir)
    results = out / f"{suite.name}.jsonl"
    todo = pending(specs, results)
    click.echo(f"suite {suite.name}: {len(suite.instances)} instances x {len(names)} solvers x "
               f"{seeds or suite.seeds} seeds = {len(specs)} runs{'' if repeat_deterministic else ' (deterministic solvers once)'}; "
               f"{len(specs) - len(todo)} already in "
               f"{results}, {len(todo)} to run on {executor} with {jobs} job(s)", err=True)
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(todo), unit="run", file=sys.stderr, disable=not tty)
    done = [0]

    def progress(spec: Any, record: dict[str, Any]) -> None:
        done[0] += 1
        if tty:
            bar.set_postfix_str(f"{spec.instance} {spec.solver} {record['status']}")
            bar.update(1)
            return
        cost = record["cost_usd"]
        click.echo(f"[{done[0]}/{len(todo)}] {spec.instance} {spec.solver} seed#{spec.seed_index}: "
                   f"{record['status']}, {'cost ' + format(cost, '.6g') if cost is not None else 'no feasible plan'}, "
                   f"{record['wall_seconds']:.1f} s", err=True)

    run_bench(specs, results, jobs, executor, scheduler, progress)
    bar.close()
    records = read_results(results)
    refs_path = Path(references_path) if references_path else out / "best_known.json"
    refs = update_references(refs_path, records, results.parent)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    click.echo(f"{len(records)} runs in {results} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
               f"best known for {len(refs)} instances in {refs_path}")
    click.echo(f"next: moeopt leaderboard {results} --md LEADERBOARD.md --html leaderboard.html")


def _require(module: str, what: str, how: str) -> None:
    """Import the executor's package now: absent or broken, the user gets one clear line."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise InputError(
            "--executor", what, f"needs the {what} package: {how} ({type(exc).__name__}: {exc})"
        ) from None


@click.command("leaderboard")
@click.argument("results_path", metavar="RESULTS.jsonl", type=click.Path(dir_okay=False))
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML report (plots inline).")
@click.option("--md", "md_out", type=click.Path(dir_okay=False), default=None,
              help="Write a Markdown report (plots as PNG files beside it).")
@click.option("--references", "references_path", type=click.Path(dir_okay=False), default=None,
              help="Best-known file (default: best_known.json beside the results, if any).")
@click.option("--command", "command", default=None, help="The command to print as 'regenerate with'.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-solver rows as JSON.")
def leaderboard_command(results_path: str, html_out: str | None, md_out: str | None,
                        references_path: str | None, command: str | None, as_json: bool) -> None:
    """Score a results file: normalized scores, CIs, feasibility, win rates, time to target."""
    from moeopt.bench.references import read_references
    from moeopt.bench.report import Context, write_html, write_markdown
    from moeopt.bench.results import read_results
    from moeopt.bench.scoring import score

    path = Path(results_path)
    records = read_results(path)
    if not records:
        raise InputError(results_path, "file", "no runs recorded yet")
    refs_path = Path(references_path) if references_path else path.with_name("best_known.json")
    refs = read_references(refs_path) if refs_path.exists() else {}
    board = score(records, refs)
    ctx = Context(str(path), command or _command_line(), records)
    if md_out:
        write_markdown(board, ctx, Path(md_out))
    if html_out:
        write_html(board, ctx, Path(html_out))
    if as_json:
        from dataclasses import asdict

        from moeopt.jsonout import dumps

        click.echo(dumps([asdict(r) for r in board.rows]))
        return
    click.echo(f"{'rank':>4} {'solver':22} {'score':>7} {'95% CI':>17} {'feasible':>8} {'clipped':>7} {'runs':>5}")
    for i, r in enumerate(board.rows):
        click.echo(f"{i + 1:>4} {r.solver:22} {r.mean:7.3f} [{r.ci_low:6.3f}, {r.ci_high:6.3f}] "
                   f"{r.feasible_rate:8.0%} {r.clipped:7d} {r.runs:5d}")
    for out in (md_out, html_out):
        if out:
            click.echo(f"written: {out}")


_Group = report_input_errors(click.Group)


@click.group(cls=_Group)
def main() -> None:
    """The benchmark commands alone (the same ones ``moeopt`` registers)."""


main.add_command(bench_command)
main.add_command(leaderboard_command)

if __name__ == "__main__":
    main(prog_name="moeopt")
