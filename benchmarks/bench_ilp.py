"""The exact solvers' benchmark: time to a proven optimum, monolithic against ODS, and what every
solver reaches against the MILP bound in a fixed time.

    python benchmarks/bench_ilp.py [--budget 20] [--quick]
    python benchmarks/bench_ilp.py --vs-gurobi [--problems a,b] [--ilp-seconds 60] [--repeat 3]

``--vs-gurobi`` (needs the optional extra ``pip install '.[gurobi]'``): per problem, ilp end to
end (proven gap and seconds), then the final program the ilp of 9e39597 built (its curve
program over Lagrangian-pruned exact layer curves, rebuilt here with the same functions),
written to an MPS file with PuLP and solved from that file by Gurobi and by HiGHS in the same
run; Gurobi's pip licence is size-limited (about 2,000 variables and rows): larger programs are
skipped and said so. Each side's CPU seconds (this process's CPU time over all its threads)
are printed too: on a loaded machine they are the fair comparison. ``--repeat N``: each side
runs N times (ilp a fresh solver each time, Gurobi a fresh environment and model from the file)
and its fastest run is reported, wall and CPU separately: single runs of a 0.1-0.5 s solve vary
by 10-30 % on this machine, and the first run in a process pays one-off costs. The sides take
turns (an ilp run, then a Gurobi run), so a burst of load slows both alike, and the median of
each pair's ratio is printed beside the ratio of the fastest runs.

Figures are printed with ratios against baselines measured in the same run: seconds also as a
multiple of one vectorized pricing of 1,000 plans (the machine's speed), costs against the MILP
bound and against random search.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from moeopt.builtin_problems import PAPER_PROBLEMS, builtin_problem
from moeopt.evaluate import evaluate_batch
from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget
from moeopt.space import PlanSpace

PAPER_ODS_SECONDS = 2.27  # the paper's ODS with Gurobi (three MIQCP solves), on bert-moe-4
TRACE_PROBLEM = "trace-minilm-e8-top2-32x8"
VS_GUROBI = (*PAPER_PROBLEMS, "switch-base-128", "mixtral-8x7b", "deepseek-v3", TRACE_PROBLEM)


def trace_problem(layers: int = 32, tokens: int = 41_000, batches: int = 4, seed: int = 0):  # type: ignore[no-untyped-def]
    """A 32-layer x 8-expert top-2 problem from a real per-token routing trace: profile the
    converted all-MiniLM-L6-v2 with 8 experts, top-2 (``moeopt popularity profile``, bundled
    corpus), then give MoE layer l the trace's layer l mod 6, its tokens rotated by (l div 6)
    sixths of the trace (so the 32 layers are not 6 repeated), cut into batches of 10,240
    consecutive tokens; the model and deployment are mixtral-8x7b's (full memory range)."""
    from moeopt.builtin_problems import builtin_spec
    from moeopt.popularity.cli import build_trace
    from moeopt.popularity.traces import batch_loads
    from moeopt.problem import problem_from_dict

    trace = build_trace(8, 2, None, tokens, 8_000, seed, progress=False)
    e = trace.experts  # (tokens, 6, 2)
    n, depth = e.shape[0], e.shape[1]
    cycles = -(-layers // depth)
    routed = np.stack([np.roll(e[:, li % depth], (li // depth) * (n // cycles), axis=0)
                       for li in range(layers)], axis=1)
    loads = batch_loads(routed, trace.num_experts, 10_240)[:batches]
    spec = builtin_spec("mixtral-8x7b")
    spec["name"] = TRACE_PROBLEM
    spec["description"] = trace_problem.__doc__.split("\n\n")[0]
    spec["popularity"] = {"source": "loads", "loads": loads.tolist()}
    return problem_from_dict(spec, "bench_ilp")


def problem_named(name: str):  # type: ignore[no-untyped-def]
    return trace_problem() if name == TRACE_PROBLEM else builtin_problem(name)
GUROBI_SIZE_LIMIT = 2000  # pip licence: variables and rows


def machine_unit() -> float:
    """Seconds to price 1,000 random plans of bert-moe-4 (best of 3)."""
    problem = builtin_problem("bert-moe-4")
    space = PlanSpace.of(problem)
    plans = space.decode(space.sample(np.random.default_rng(0), 1000))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        evaluate_batch(problem, plans)
        times.append(time.perf_counter() - t)
    return min(times)


def run(name: str, problem, seconds: float, **options):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    result = make_solver(name, **options).solve(problem, Budget(evaluations=10**9, seconds=seconds))
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per solver on the scale problems")
    ap.add_argument("--ilp-seconds", type=float, default=90.0, help="seconds for ilp per problem")
    ap.add_argument("--quick", action="store_true", help="bert-moe-4 only")
    ap.add_argument("--parts", default="123", help="which parts to run, e.g. 13")
    ap.add_argument("--solvers", default="", help="part 3: comma-separated solvers (default: all)")
    ap.add_argument("--vs-gurobi", action="store_true", help="ilp against Gurobi on the final program")
    ap.add_argument("--problems", default=",".join(VS_GUROBI), help="--vs-gurobi: problems")
    ap.add_argument("--out", default="", help="--vs-gurobi: folder for the .mps files (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=1, help="--vs-gurobi: runs per side, the fastest reported")
    args = ap.parse_args()
    unit = machine_unit()
    print(f"machine unit: {unit * 1000:.1f} ms to price 1,000 plans of bert-moe-4\n")
    if args.vs_gurobi:
        return vs_gurobi(args)

    if "1" not in args.parts:
        return section_rest(args)
    print("1. bert-moe-4: time to a proven optimum")
    problem = builtin_problem("bert-moe-4")
    mono, t_mono = run("ilp", problem, args.ilp_seconds)
    ods, t_ods = run("ilp", problem, args.ilp_seconds, mode="ods")
    print(f"  ilp (monolithic): {mono.solution_status}, {mono.cost_usd:.9g} USD in {t_mono:.2f} s "
          f"({t_mono / unit:.0f} units; paper's ODS {PAPER_ODS_SECONDS} s, ratio "
          f"{t_mono / PAPER_ODS_SECONDS:.2f})")
    print(f"  ilp mode=ods:     {ods.solution_status}, {ods.cost_usd:.9g} USD in {t_ods:.2f} s "
          f"(cost / proven optimum {ods.cost_usd / mono.cost_usd:.6f})")
    if args.quick:
        return
    section_rest(args)


def section_rest(args: argparse.Namespace) -> None:
    if "2" in args.parts:
        paper_problems(args)
    if "3" in args.parts:
        scale_problems(args)


def paper_problems(args: argparse.Namespace) -> None:
    print("\n2. monolithic against ODS on the paper's problems")
    print(f"  {'problem':18} {'mono USD':>12} {'status':>15} {'gap':>9} {'s':>6} | "
          f"{'ODS USD':>12} {'s':>6} {'ODS/mono':>9}")
    for name in PAPER_PROBLEMS:
        problem = builtin_problem(name)
        mono, t_mono = run("ilp", problem, args.ilp_seconds)
        ods, t_ods = run("ilp", problem, args.ilp_seconds, mode="ods")
        gap = "n/a" if mono.gap is None else f"{mono.gap:.2e}"
        print(f"  {name:18} {mono.cost_usd:12.9f} {mono.solution_status!s:>15} {gap:>9} "
              f"{t_mono:6.1f} | {ods.cost_usd:12.9f} {t_ods:6.1f} {ods.cost_usd / mono.cost_usd:9.5f}")


def scale_problems(args: argparse.Namespace) -> None:
    print(f"\n3. every available solver after {args.budget:g} s, against the MILP bound")
    names = [e.name for e in list_solvers() if e.available]
    if args.solvers:
        names = [n for n in names if n in args.solvers.split(",")]
    for name in ("switch-base-128", "deepseek-v3"):
        problem = builtin_problem(name)
        options = {} if name == "switch-base-128" else {"pipeline_degrees": (64, 256, 1024)}
        ilp, t_ilp = run("ilp", problem, args.ilp_seconds, **options)
        bound = ilp.lower_bound_usd
        rand, _ = run("random", problem, args.budget)
        print(f"  {name}: ilp {ilp.solver_status}/{ilp.solution_status} {ilp.cost_usd:.9g} USD in "
              f"{t_ilp:.1f} s, bound {bound}, gap {ilp.gap}")
        print(f"    {'solver':22} {'USD':>12} {'feasible':>8} {'/bound':>8} {'/random':>8} {'s':>6}")
        for solver in names:
            if solver in ("exhaustive", "oracle", "cpu-cluster"):
                continue  # refuses large spaces / not a plan
            try:
                res, t = run(solver, problem, args.budget, **(options if solver.startswith("ilp") else {}))
            except Exception as exc:  # a solver that refuses is a row, not a crash
                print(f"    {solver:22} {type(exc).__name__}: {exc}")
                continue
            feasible = res.solution_status != "none"
            cost = res.cost_usd
            ratio_b = cost / bound if bound and np.isfinite(cost) else float("nan")
            ratio_r = cost / rand.cost_usd if np.isfinite(rand.cost_usd) and np.isfinite(cost) else float("nan")
            print(f"    {solver:22} {cost:12.9f} {feasible!s:>8} {ratio_b:8.4f} {ratio_r:8.4f} {t:6.1f}")


def legacy_final_program(problem, seconds: float):  # type: ignore[no-untyped-def]
    """The curve program the ilp of 9e39597 ended with: heuristic cap curves, their program
    (HiGHS, 1e-3 gap) for an incumbent, the time rows' LP duals as multipliers, the exact layer
    curves pruned by them, and the program over those. None when its exact curves do not
    finish in ``seconds`` (that ilp then fell back to the x-program)."""
    from moeopt.space import PIPELINE_DEGREES
    from solvers._ilp_model import (
        Lagrangian,
        curve_program,
        exact_curve,
        lagrangian_prunes,
        layer_curve,
        quick_incumbent,
        solve_curves,
        time_multipliers,
    )
    from solvers._ilp_tables import build_tables, variants_of
    from solvers.ilp import milp_cost

    deadline = time.perf_counter() + seconds
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    incumbent = quick_incumbent(tables)
    curves = []
    for li in range(problem.layers):
        curve = layer_curve(tables, li, deadline=deadline)
        if curve is None:
            return None
        curves.append(curve)
    _, better = solve_curves(tables, curves, time_limit_s=seconds / 3, mip_gap=1e-3)
    if better is not None and (incumbent is None or milp_cost(tables, better) < milp_cost(tables, incumbent)):
        incumbent = better
    if incumbent is None:
        return None
    upper = milp_cost(tables, incumbent)
    mu = time_multipliers(tables, curves)
    prunes = lagrangian_prunes(tables, upper, mu, curves, deadline)
    if prunes is None:
        # each expert at its cheapest option (9e39597's _cheapest_sum, which review c000fea folded away)
        mins = [min(float(t.least_cost.sum()) for t in layer) for layer in tables.layers]
        rest = sum(mins) + tables.cost_const_usd
        prunes = [Lagrangian(np.zeros(len(tables.fixed_s)), upper - (rest - m)) for m in mins]
    exact = []
    for li in range(problem.layers):
        curve = exact_curve(tables, li, deadline, prune=prunes[li])
        if curve is None:
            return None
        exact.append(curve)
    prob, _ = curve_program(tables, exact)
    return tables, prob


FILE_SECONDS = 300.0  # a file solve that has not proven its optimum by then is reported as such


def solve_file(path: str, solver: str) -> tuple[float, float | None, bool]:
    """(seconds from reading the file to the proven optimum, objective, proven) for gurobi or
    highs, relative gap 1e-6 as ilp's default, at most FILE_SECONDS."""
    t = time.perf_counter()
    solve_file.cpu_s = time.process_time()  # type: ignore[attr-defined]  # read back by the caller
    if solver == "gurobi":
        import gurobipy as gp

        env = gp.Env(params={"OutputFlag": 0})
        model = gp.read(path, env)
        model.Params.MIPGap = 1e-6
        model.Params.TimeLimit = FILE_SECONDS
        model.optimize()
        obj = model.ObjVal if model.SolCount else None
        return time.perf_counter() - t, obj, model.Status == gp.GRB.OPTIMAL
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-6)
    h.setOptionValue("time_limit", FILE_SECONDS)
    h.readModel(path)
    h.run()
    proven = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return time.perf_counter() - t, h.getInfo().objective_function_value, proven


def vs_gurobi(args: argparse.Namespace) -> None:
    import importlib.util
    import os
    import tempfile

    from moeopt.registry import make_solver as _make

    have_gurobi = importlib.util.find_spec("gurobipy") is not None
    out = args.out or tempfile.mkdtemp(prefix="bench-ilp-")
    os.makedirs(out, exist_ok=True)
    _make("ilp")  # import every solver module once: not part of any timing below
    print(f"ilp end to end (seconds budget {args.ilp_seconds:g}, fastest of {max(args.repeat, 1)} runs "
          "per side) against Gurobi "
          f"{'(not installed: pip install gurobipy)' if not have_gurobi else ''} and HiGHS on the "
          f"final program of 9e39597's ilp, read from .mps files in {out}")
    print("CPU s: this process's CPU time (all its threads), which the machine's load does not inflate")
    print("ilp / Gurobi: fastest run over fastest run; paired: the median over the runs of ilp's time over "
          "the Gurobi run right after it")
    print("| problem | ilp | ilp gap | ilp s | ilp CPU s | final program (9e39597) | Gurobi s | Gurobi CPU s "
          "| HiGHS s | ilp / Gurobi | ilp / Gurobi, paired | ilp / Gurobi, CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        problem = problem_named(name)
        options = {"pipeline_degrees": (64, 256, 1024)} if name == "deepseek-v3" else {}
        legacy = legacy_final_program(problem, args.ilp_seconds)
        path, size = None, None
        if legacy is not None:
            tables, prob = legacy
            size = (len(prob.variables()), len(prob.constraints))
            path = os.path.join(out, f"{name}-9e39597-final.mps")
            prob.writeMPS(path)
        with_gurobi = have_gurobi and size is not None and max(size) <= GUROBI_SIZE_LIMIT
        # The two sides take turns, so a burst of load on the machine slows both alike.
        ilp_runs, gurobi_runs = [], []  # (wall s, CPU s) per run
        obj_g, g_done = None, False
        for _ in range(max(args.repeat, 1)):
            solver = make_solver("ilp", **options)
            t, cpu = time.perf_counter(), time.process_time()
            result = solver.solve(problem, Budget(evaluations=10**9, seconds=args.ilp_seconds))
            ilp_runs.append((time.perf_counter() - t, time.process_time() - cpu))
            if with_gurobi:
                t_run, obj_g, g_done = solve_file(path, "gurobi")
                gurobi_runs.append((t_run, time.process_time() - solve_file.cpu_s))  # type: ignore[attr-defined]
        t_ilp, cpu_ilp = min(r[0] for r in ilp_runs), min(r[1] for r in ilp_runs)
        gap = "n/a" if result.gap is None else f"{100 * result.gap:.3f} %"
        status = {"proven_optimal": "proven optimal"}.get(str(result.solution_status), str(result.solution_status))
        cells = [name, status, gap, f"{t_ilp:.2f}", f"{cpu_ilp:.2f}"]
        if legacy is None:
            cells += ["exact curves did not finish", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
        else:
            cells.append(f"{size[0]} binaries, {size[1]} rows")
            t_h, _, h_done = solve_file(path, "highs")
            highs = f"{t_h:.2f}" if h_done else f"> {FILE_SECONDS:g} (not proven)"
            if not have_gurobi:
                cells += ["not installed", "n/a", highs, "n/a", "n/a", "n/a"]
            elif not with_gurobi:
                cells += ["skipped (size-limited licence)", "n/a", highs, "n/a", "n/a", "n/a"]
            else:
                t_g, cpu_g = min(r[0] for r in gurobi_runs), min(r[1] for r in gurobi_runs)
                paired = statistics.median(i[0] / g[0] for i, g in zip(ilp_runs, gurobi_runs, strict=True))
                scale = max(tables.lower_bound_usd, 1e-12)
                agree = obj_g is not None and abs(obj_g * scale + tables.cost_const_usd - result.cost_usd) <= 1e-6 * result.cost_usd
                gurobi = f"{t_g:.2f}{'' if agree else ' (optimum differs!)'}" if g_done else f"> {FILE_SECONDS:g}"
                cells += [gurobi, f"{cpu_g:.2f}", highs, f"{t_ilp / t_g:.2f}" if g_done else "< 1",
                          f"{paired:.2f}" if g_done else "< 1", f"{cpu_ilp / cpu_g:.2f}" if g_done else "< 1"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
