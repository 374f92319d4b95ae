"""``moeopt reproduce`` and ``moeopt breakeven`` (registered on the ``moeopt`` group by name)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from moeopt.errors import InputError
from moeopt.popularity.cli import note_popularity, trace_options


def _experiments(raw: str | None) -> tuple[str, ...]:
    from reproduce.runner import NAMES

    if not raw:
        return ()
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise InputError("--only", raw, f"unknown experiment {unknown[0] if unknown else raw!r}; "
                         f"allowed: {', '.join(NAMES)}")
    return names


@click.command("reproduce")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Directory for REPORT.md, results.json and the plots.")
@click.option("--quick", is_flag=True,
              help="About two minutes: small budgets, model only (the CI smoke run).")
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="Constants of the 'ours' column (default: the built-in ones); paper-lambda is "
              "always the other column.")
@click.option("--no-measure", is_flag=True, help="Skip the runs on the local backend.")
@click.option("--recalibrate", is_flag=True,
              help="Measure this machine again for the local predictions (refresh the cache).")
@click.option("--only", default=None, metavar="A,B", help="Run only these experiments.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--render-only", is_flag=True,
              help="Rewrite REPORT.md, the claims and the plots from OUT/results.json; run nothing.")
def reproduce_command(out: str, quick: bool, profile: str | None, no_measure: bool,
                      recalibrate: bool, only: str | None, seed: int, render_only: bool) -> None:
    """Regenerate the paper's evaluation: OUT/REPORT.md (the claims table first), its plots
    (PNG) and OUT/results.json; predicted by the model and, without --quick, measured on the
    local Lambda backend (docs/reproduce.md)."""
    from moeopt.profiles import read_profile
    from reproduce.config import Config
    from reproduce.runner import render, run

    if render_only:
        if not (Path(out) / "results.json").is_file():
            raise InputError(str(Path(out) / "results.json"), "file", "no results to render")
        render(Path(out))
        click.echo(f"rewritten {Path(out) / 'REPORT.md'}")
        return
    if profile is not None:
        read_profile(profile)  # a bad profile is a user error before any work
    changes = {"profile": profile, "recalibrate": recalibrate, "only": _experiments(only),
               "seed": seed}
    cfg = Config.quick_preset(**changes) if quick else Config.full(**changes)
    if no_measure:
        cfg = cfg.__class__(**{**cfg.__dict__, "measure": False})
    command = "moeopt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == [
        "reproduce"] else f"moeopt reproduce {'--quick ' if quick else ''}--out {out}"
    from moeopt.native_io import native_stdout_to_stderr

    with native_stdout_to_stderr():
        results = run(cfg, Path(out), command, echo=lambda s: click.echo(s, err=True),
                      bar=sys.stderr.isatty())
    held = sum(1 for c in results["claims"] if c["holds"] is True)
    judged = sum(1 for c in results["claims"] if c["holds"] is not None)
    click.echo(f"{held} of {judged} claims hold under the {results['ours']} profile; "
               f"{Path(out) / 'REPORT.md'} ({results['timing_s']['total']:.0f} s)")


@click.command("breakeven")
@click.option("--problem", "problem_name", default="minilm-moe-8", show_default=True,
              help="Built-in problem name or a problem file.")
@click.option("--profile", default=None, metavar="NAME|FILE", help="Cost-model constants.")
@trace_options
@click.option("--solver", "solver_name", default="ilp", show_default=True,
              help="Solver of the Lambda plan.")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True)
@click.option("--requests-per-hour", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The rate to state (default: the cluster baseline's, one batch a minute).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Cost per batch against the rate (PNG).")
@click.option("--json", "as_json", is_flag=True)
def breakeven_command(problem_name: str, profile: str | None, trace: Any, solver_name: str,
                      budget_seconds: float, requests_per_hour: float | None, plot: str | None,
                      as_json: bool) -> None:
    """Lambda or an always-on CPU cluster? The cheapest Lambda plan's cost per batch against
    the cluster's as the request rate sweeps from one batch a day to saturation: the
    break-even rate, and up to which rate the paper's 75.67 % saving holds."""
    from moeopt.baselines import DEFAULT_CLUSTER_REQUESTS_PER_HOUR
    from moeopt.breakeven import break_even
    from moeopt.errors import InfeasibleError
    from moeopt.native_io import native_stdout_to_stderr
    from moeopt.problem import load_problem
    from moeopt.registry import make_solver
    from moeopt.solver import Budget, SolutionStatus

    problem = load_problem(problem_name, trace, profile)
    note_popularity(problem)
    solver = make_solver(solver_name)
    with native_stdout_to_stderr():
        result = solver.solve(problem, Budget(seconds=budget_seconds))
    if result.solution_status == SolutionStatus.NONE:
        raise InfeasibleError(",".join(result.binding_constraints) or "unknown",
                              f"{solver_name} found no feasible Lambda plan: {result.message}")
    be = break_even(problem, result.cost_usd, f"{solver_name}, {result.solution_status}",
                    requests_per_hour or DEFAULT_CLUSTER_REQUESTS_PER_HOUR)
    if plot:
        from reproduce.plots import breakeven as draw

        draw({"profiles": {problem.constants.profile: {problem.name: be.to_dict()}}}, Path(plot))
    if as_json:
        from moeopt.jsonout import dumps

        click.echo(dumps(be.to_dict()))
        return
    for line in be.summary():
        click.echo(line)
    if plot:
        click.echo(f"plot written to {plot}")
