"""The ``moeopt`` command line. User mistakes print one ``error:`` line and exit 2."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from moeopt.errors import InfeasibleError, InputError, report_input_errors
from moeopt.jsonout import dumps
from moeopt.native_io import discard_highs_banner, native_stdout_to_stderr
from moeopt.popularity.cli import note_popularity, trace_options

_Cli = report_input_errors(click.Group)




@click.group(cls=_Cli)
@click.version_option(package_name="moeopt")
def cli() -> None:
    """Find, prove and run the cheapest serverless deployment of an MoE model."""
    discard_highs_banner()  # HiGHS's licence banner: no command shows it


def echo_table(*parts: Any) -> None:
    """Print headers and rich tables sized to the terminal (whole lines into a file or pipe)."""
    from moeopt.tables import output_width, render

    click.echo(render(*parts, width=output_width()))


def progress_bar(total: int, **kw: Any) -> Any:
    """A tqdm bar on stderr, drawn only when stderr is a terminal (no frames in a log file)."""
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, disable=not sys.stderr.isatty(), **kw)


problem_option = click.option(
    "--problem", "problem_name", default="minilm-moe-8", show_default=True,
    help="Built-in problem name or a problem file (.json/.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
profile_option = click.option(
    "--profile", "profile", default=None, metavar="NAME|FILE",
    help="Cost-model constants: a built-in profile (paper-lambda) or a profile file from "
    "`moeopt calibrate` (docs/cost-model.md).",
)
trace_option = trace_options  # --trace FILE [--field NAME=FIELD ...] [--fields FILE] [--incomplete]


@cli.group()
def problems() -> None:
    """Built-in problems and problem files."""


@problems.command("list")
@json_option
def problems_list(as_json: bool) -> None:
    """List the built-in problems."""
    from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_problem

    rows = []
    for name in BUILTIN_PROBLEMS:
        p = builtin_problem(name)
        rows.append({
            "name": name,
            "moe_layers": p.layers,
            "experts_per_layer": p.experts,
            "top_k": p.model.top_k,
            "tokens_per_batch": p.workload.tokens_per_batch,
            "time_limit_s": p.slo.time_limit_s,
            "description": p.description,
        })
    if as_json:
        click.echo(dumps(rows))
        return
    from moeopt.tables import table

    columns = ("name", "layers", "experts", "top_k", "tokens", "limit s")
    echo_table(table(columns, [
        (r["name"], r["moe_layers"], r["experts_per_layer"], r["top_k"], f"{r['tokens_per_batch']:,}",
         f"{r['time_limit_s']:.1f}") for r in rows
    ], right=columns[1:]))


@problems.command("show")
@click.argument("name")
@trace_option
@profile_option
@json_option
@click.option("--spec", is_flag=True, help="Print the problem-file form (JSON) to copy and edit.")
def problems_show(name: str, trace: str | None, as_json: bool, spec: bool,
                  profile: str | None = None) -> None:
    """Show one problem (built-in name or file)."""
    from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_spec
    from moeopt.problem import load_problem

    problem = load_problem(name, trace, profile)
    note_popularity(problem)
    if spec:
        click.echo(dumps(builtin_spec(name) if name in BUILTIN_PROBLEMS and not trace else problem.spec))
        return
    summary = problem.summary()
    if as_json:
        click.echo(dumps(summary))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


def _evaluation_text(ev: Any) -> str:
    broken = ", ".join(f"{k}=+{v:.3g}" for k, v in ev.violations.items() if v > 0)
    return (
        f"cost ${ev.cost_usd:.6f} ({ev.cost_gb_s:.1f} GB-s) per batch, latency {ev.latency_s:.2f} s, "
        f"throughput {ev.throughput_tokens_per_s:.1f} tokens/s, "
        + ("feasible" if ev.feasible else f"INFEASIBLE ({broken})")
    )


@cli.command("evaluate")
@click.argument("plan_path", metavar="PLAN.json")
@click.option("--problem", "problem_name", default=None, help="Problem name or file (default: the plan's).")
@trace_option
@profile_option
@json_option
def evaluate_cmd(plan_path: str, problem_name: str | None, trace: str | None, as_json: bool,
                 profile: str | None = None) -> None:
    """Price a plan on a problem: cost, latency, throughput and constraint violations."""
    from moeopt.evaluate import evaluate
    from moeopt.plan import check_plan, load_plan, traced_problem_name
    from moeopt.problem import load_problem

    plan = load_plan(plan_path)
    problem = load_problem(problem_name or traced_problem_name(plan, plan_path, trace), trace,
                           profile)
    note_popularity(problem)
    check_plan(plan, problem, plan_path)
    ev = evaluate(problem, plan)
    if as_json:
        click.echo(dumps({"problem": problem.name, "plan": plan_path, **ev.to_dict(),
                          "popularity_notes": list(problem.popularity.notes)}))
        return
    from moeopt.tables import table

    layers = table(("layer", "method", "functions", "latency s"), [
        (i, plan.layers[i].method, len(plan.layers[i].functions), f"{lat:.3f}")
        for i, lat in enumerate(ev.layer_latency_s)
    ], right=("layer", "functions", "latency s"))
    echo_table(f"{problem.name}: {_evaluation_text(ev)}", layers)


@cli.command("baselines")
@problem_option
@trace_option
@profile_option
@json_option
def baselines_cmd(problem_name: str, as_json: bool, trace: str | None = None,
                  profile: str | None = None) -> None:
    """Price the baseline deployments of a problem (LambdaML-style, uniform, CPU cluster)."""
    from moeopt.baselines import baseline_rows
    from moeopt.problem import load_problem

    problem = load_problem(problem_name, trace, profile)
    note_popularity(problem)
    rows = baseline_rows(problem)
    if as_json:
        out = []
        for r in rows:
            if r.evaluation is not None:
                out.append({"baseline": r.name, **r.evaluation.to_dict()})
            else:
                assert r.cluster is not None
                out.append({
                    "baseline": r.name, "instance": r.cluster.instance,
                    "cost_usd": r.cluster.cost_usd, "busy_cost_usd": r.cluster.busy_cost_usd, "latency_s": r.cluster.wall_time_s,
                    "throughput_tokens_per_s": r.cluster.throughput_tokens_per_s, "feasible": True,
                    "assumption": r.cluster.assumption,
                })
        click.echo(dumps([{**row, "popularity_notes": list(problem.popularity.notes)} for row in out]))
        return
    from moeopt.tables import table

    out_rows = []
    for r in rows:
        if r.evaluation is not None:
            out_rows.append((r.name, _evaluation_text(r.evaluation)))
        else:
            assert r.cluster is not None
            out_rows.append((r.name,
                f"cost ${r.cluster.cost_usd:.6f} per batch, {r.cluster.assumption} "
                f"(${r.cluster.busy_cost_usd:.6f} for its {r.cluster.wall_time_s:.2f} s busy), throughput "
                f"{r.cluster.throughput_tokens_per_s:.1f} tokens/s"))
    echo_table(
        f"{problem.name}: {problem.description}\n"
        f"time limit {problem.slo.time_limit_s:.1f} s per {problem.workload.tokens_per_batch} tokens",
        table(("baseline", "result"), out_rows),
    )


@cli.command("demo")
@click.option("--problem", "problem_name", default=None,
              help="Built-in problem name or file (default: the built-in default problem).")
@click.option("--requests", type=click.IntRange(min=1), default=3, show_default=True,
              help="Measured requests on the local backend.")
@click.option("--plan-out", type=click.Path(dir_okay=False), default="moeopt-demo-plan.json",
              show_default=True, help="Where the winning plan is written.")
@click.option("--no-run", is_flag=True, help="Solve and compare only; do not run the plan.")
@click.option("--profile", default=None, metavar="NAME|FILE",
              help="Cost-model profile (default: a calibration of this machine, measured once "
              "and cached; with --no-run: the built-in constants).")
@click.option("--recalibrate", is_flag=True, help="Measure this machine again (refresh the cache).")
@click.pass_context
def demo_cmd(ctx: click.Context, problem_name: str | None, requests: int, plan_out: str,
             no_run: bool, profile: str | None, recalibrate: bool) -> None:
    """The main job: calibrate this machine (once), compare solvers on the default problem,
    prove the cheapest plan, run it on the local Lambda backend and print measured against
    predicted."""
    from moeopt.builtin_problems import DEFAULT_PROBLEM
    from moeopt.problem import load_problem
    from moeopt.registry import make_solver

    name = problem_name or DEFAULT_PROBLEM
    problem = load_problem(name, profile=profile)
    click.echo(f"== {problem.name}: {problem.description}")
    run = cli.commands.get("run")
    if profile is None and not no_run and run is not None:
        import importlib

        calibration = importlib.import_module(RUNTIME_CALIBRATION)  # by name: see OPTIONAL_COMMANDS
        describe, machine_profile = calibration.describe, calibration.machine_profile

        click.echo("\n== 0. The cost model's constants for this machine (moeopt calibrate)")
        path, reused = machine_profile(problem, refresh=recalibrate, echo=click.echo)
        profile = str(path)
        problem = load_problem(name, profile=profile)
        if reused:
            click.echo(f"reusing the calibration of this machine in {path} (--recalibrate to redo)")
        else:
            import json

            for line in describe(json.loads(path.read_text())):
                click.echo(line)
    click.echo(f"\n== 1. Solvers and baselines (moeopt compare{' --profile ' + profile if profile else ''})")
    solvers = [s for s in ("ilp", "greedy", "bayes-egreedy", "lambdaml", "eplb", "cpu-cluster")
               if s in {e.name for e in _available()}]
    ctx.invoke(compare_cmd, problem_name=name, solver_list=",".join(solvers), seeds=1,
               budget_evals=None, budget_seconds=30.0, objective="cheapest", weight=0.5,
               plot=None, as_json=False, trace=None, profile=profile)
    click.echo("\n== 2. The cheapest plan (moeopt solve --solver ilp)")
    with native_stdout_to_stderr():
        result = make_solver("ilp" if "ilp" in solvers else "greedy").solve(problem)
    if result.plan is None:
        raise InfeasibleError(",".join(result.binding_constraints) or "unknown", result.message)
    result.plan.save(plan_out)
    click.echo(f"{result.solver}: {result.solution_status}, {_evaluation_text(result.evaluation)}")
    click.echo(f"plan written to {plan_out}")
    if no_run:
        return
    if run is None:
        click.echo("(the runtime is not installed: skipping the run)")
        return
    click.echo(f"\n== 3. Run it on the local Lambda backend (moeopt run {plan_out} --profile ...)")
    ctx.invoke(run, plan_path=plan_out, problem_name=name, requests=requests, profile=profile)


def _available() -> list[Any]:
    from moeopt.registry import list_solvers

    return [e for e in list_solvers() if e.available]


@cli.group()
def solvers() -> None:
    """Registered solvers (built-in and plugins)."""


@solvers.command("list")
@json_option
def solvers_list(as_json: bool) -> None:
    """List registered solvers, with why any is unavailable."""
    from moeopt.registry import list_solvers

    entries = list_solvers()
    if as_json:
        click.echo(dumps([e.to_dict() for e in entries]))
        return
    from moeopt.tables import table

    echo_table(table(("name", "origin", "tags", "state"),
                     [(e.name, e.origin, ",".join(e.tags), e.state) for e in entries]))


def _budget(evals: int | None, seconds: float | None) -> Any:
    from moeopt.solver import Budget

    if evals is None and seconds is None:
        return None
    return Budget(evaluations=evals, seconds=seconds)


budget_options = [
    click.option("--budget-evals", type=click.IntRange(min=1), default=None, help="Evaluation budget."),
    click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Time budget in seconds."),
    click.option("--objective", type=click.Choice(["cheapest", "fastest", "balanced"]),
                 default="cheapest", show_default=True,
                 help="Power-Tuning-style strategy; balanced weighs cost against latency."),
    click.option("--weight", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                 help="Cost weight for --objective balanced."),
]


def with_budget(f: Any) -> Any:
    for opt in reversed(budget_options):
        f = opt(f)
    return f


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is taken as JSON, else as a string."""

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InputError("--option", pair, "need KEY=VALUE, e.g. mode=ods")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def _objective_options(objective: str, weight: float) -> dict[str, Any]:
    return {} if objective == "cheapest" else {"objective": objective, "weight": weight}


@cli.command("solve")
@problem_option
@trace_option
@profile_option
@click.option("--solver", "solver_name", default="ilp", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@with_budget
@click.option("-O", "--option", "solver_options", multiple=True, metavar="KEY=VALUE",
              help="A solver option (repeatable); VALUE is read as JSON when it parses, e.g. "
              "-O mode=ods -O pipeline_degrees=[64,256].")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the plan here.")
@json_option
def solve_cmd(problem_name: str, trace: str | None, solver_name: str, seed: int, budget_evals: int | None,
              budget_seconds: float | None, objective: str, weight: float,
              solver_options: tuple[str, ...], output: str | None, as_json: bool,
              profile: str | None = None) -> None:
    """Solve a problem with one solver and write the plan."""
    from moeopt.problem import load_problem
    from moeopt.registry import make_solver

    problem = load_problem(problem_name, trace, profile)
    note_popularity(problem)
    options = {**_objective_options(objective, weight), **_parse_options(solver_options)}
    solver = make_solver(solver_name, seed=seed, **options)
    with native_stdout_to_stderr():
        result = solver.solve(problem, _budget(budget_evals, budget_seconds))
    if output and result.plan is not None:
        result.plan.save(output)
    if as_json:
        click.echo(dumps({**result.to_dict(), "plan_file": output if result.plan else None,
                          "popularity_notes": list(problem.popularity.notes)}))
    else:
        ev = result.evaluation
        from moeopt.solver import describe_budget

        budget = "" if result.budget is None else (
            f" (budget {describe_budget(result.budget)}"
            + (", the solver's default" if result.budget_source == "default" else "") + ")")
        click.echo(
            f"{solver_name} on {problem.name}: {result.solver_status}, solution {result.solution_status}, "
            f"{result.evaluations:,} evaluations{budget}, {result.wall_seconds:.2f} s"
        )
        if ev is not None:
            click.echo("  " + _evaluation_text(ev))
        if result.lower_bound_usd is not None:
            gap = result.gap
            click.echo(f"  lower bound ${result.lower_bound_usd:.6f}" + (f", gap {gap:.2%}" if gap is not None else ""))
        if result.message:
            click.echo("  " + result.message.splitlines()[0])
        if output and result.plan is not None:
            click.echo(f"  plan written to {output}")
    if result.solver_status == "error":
        ctx = click.get_current_context()
        ctx.exit(1)


@cli.command("compare")
@problem_option
@trace_option
@profile_option
@click.option("--solvers", "solver_list", default=None,
              help="Comma-separated solver names, or 'all' (every available solver). Default: "
              "the main zoo that is available here plus every installed plugin.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True)
@with_budget
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Best cost against time (PNG).")
@json_option
def compare_cmd(problem_name: str, trace: str | None, solver_list: str | None, seeds: int, budget_evals: int | None,
                budget_seconds: float | None, objective: str, weight: float, plot: str | None,
                as_json: bool, profile: str | None = None) -> None:
    """Run several solvers on one problem: cost, gap, feasibility, latency, time."""
    from moeopt.compare import DEFAULT_COMPARE, compare
    from moeopt.problem import load_problem
    from moeopt.registry import select_solvers

    problem = load_problem(problem_name, trace, profile)
    note_popularity(problem)
    names = select_solvers(solver_list, DEFAULT_COMPARE)  # unknown/unavailable: an error first
    bar = progress_bar(len(names) * seeds, desc="solving", unit="run")

    def progress(name: str, seed: int) -> None:
        bar.set_postfix_str(f"{name} seed {seed}")
        bar.update(1)

    with native_stdout_to_stderr():
        result = compare(problem, names, seeds, _budget(budget_evals, budget_seconds),
                         _objective_options(objective, weight), progress)
    bar.close()
    if plot:
        result.plot(plot)
    if as_json:
        click.echo(dumps([{**row, "popularity_notes": list(problem.popularity.notes)}
                          for row in result.to_dicts()]))
        return
    from moeopt.tables import output_width

    click.echo(result.render(width=output_width()))
    if plot:
        click.echo(f"plot written to {plot}")


# The runtime's calibration of this machine, which the demo runs first (reached by name).
RUNTIME_CALIBRATION = "lambda_runtime.commands.calibrate"
# Commands that live beside the core: module -> {attribute: command name}. Each must import:
# a module that fails leaves a placeholder for each of its commands that says why and exits 1.
OPTIONAL_COMMANDS: dict[str, dict[str, str]] = {
    "moeopt.popularity.cli": {"popularity": "popularity"},
    "lambda_runtime.cli": {"runtime": "runtime", "run_command": "run", "calibrate_command": "calibrate",
                           "validate_command": "validate"},
    "moeopt.bench.cli": {"bench_command": "bench", "leaderboard_command": "leaderboard"},
    "reproduce.cli": {"reproduce_command": "reproduce", "breakeven_command": "breakeven"},
}


def _broken_command(name: str, module: str, why: str) -> click.Command:
    @click.command(name, help=f"BROKEN: {module} does not load ({why}).",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def broken() -> None:
        click.echo(f"error: moeopt {name}: {module} does not load: {why}", err=True)
        sys.exit(1)

    return broken


def register_commands(group: click.Group, table: dict[str, dict[str, str]] = OPTIONAL_COMMANDS) -> list[str]:
    """Add each module's commands to ``group``; returns the names registered as broken."""
    import importlib

    broken = []
    for module, commands in table.items():
        try:
            mod = importlib.import_module(module)
            why = ""
        except Exception as exc:  # noqa: BLE001 - shown on the command, never swallowed
            mod, why = None, f"{type(exc).__name__}: {exc}"
        for attr, name in commands.items():
            cmd = getattr(mod, attr, None) if mod is not None else None
            if isinstance(cmd, click.Command):
                group.add_command(cmd, name)
                continue
            reason = why or f"it has no command {attr!r}"
            group.add_command(_broken_command(name, module, reason), name)
            broken.append(name)
    return broken


register_commands(cli)


def main() -> None:
    cli(prog_name="moeopt")


if __name__ == "__main__":
    sys.exit(main())
