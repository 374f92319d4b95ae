"""Hand-made mutants: one realistic bug each, applied, tested and reverted (never committed).

    python benchmarks/mutants.py              # every mutant
    python benchmarks/mutants.py E1 T2        # some of them
    python benchmarks/mutants.py --list

Each mutant replaces exact text in one or more files (the text must occur exactly once, so a
mutant that no longer applies after a refactor says so instead of testing nothing), runs the
test files named with it (``pytest -x``), and restores the files whatever happens. A mutant is
*caught* when pytest fails; the first failing test is printed. Not run in CI: it takes
minutes, and its job is to judge the tests, not the code.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GUARDS = "tests/test_core_mutant_guards.py"
BILLING = "tests/runtime/test_billing_guards.py"
EVAL = ["tests/test_core_evaluate.py", "tests/test_core_formulas.py", GUARDS]
API = ["tests/test_core_solver_api.py", GUARDS]


@dataclass(frozen=True)
class Mutant:
    key: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, old text, new text)
    tests: tuple[str, ...]


def m(key: str, what: str, edits: list[tuple[str, str, str]], tests: list[str]) -> Mutant:
    return Mutant(key, what, tuple(edits), tuple(tests))


MUTANTS = [
    # -- issue 16's four survivors --
    m("I1", "expert_breaks: payload `>` -> `>=` (breaks at exactly 6 MiB)",
      [("moeopt/evaluate.py", "(pay > c.lambda_payload_limit_bytes)", "(pay >= c.lambda_payload_limit_bytes)")],
      [GUARDS, "tests/test_core_evaluate.py", "tests/solvers/test_bayes.py"]),
    m("I2", "ODS lower bound x1.01",
      [("solvers/ilp.py", "lower_bound_usd=tables.lower_bound_usd,  # cheapest options",
        "lower_bound_usd=tables.lower_bound_usd * 1.01,  # cheapest options")],
      ["tests/solvers/test_ilp.py"]),
    m("I3", "bayes-egreedy ignores its seed (its RNG reset to seed 0)",
      [("solvers/bayes.py", "        o = self.options\n        space = PlanSpace.of(problem)",
        "        o = self.options\n        self.rng = np.random.default_rng(0)\n        space = PlanSpace.of(problem)")],
      ["tests/solvers/test_bayes.py"]),
    m("I4", "greedy prices its fallback grid around the tracker",
      [("solvers/greedy.py", "        batch, _, _ = tracker.evaluate(self._arrays(problem, variants, states))",
        "        from moeopt.evaluate import evaluate_batch\n"
        "        batch = evaluate_batch(problem, self._arrays(problem, variants, states))")],
      ["tests/test_core_solvers.py"]),
    # -- evaluator --
    m("E1", "tokens per replica: floor instead of ceil",
      [("moeopt/evaluate.py", "r = np.ceil(tokens / rep)", "r = np.floor(tokens / rep)")], EVAL),
    m("E2", "cost: worst batch instead of the mean over batches",
      [("moeopt/evaluate.py", "cost_usd=total.mean(axis=1),", "cost_usd=total.max(axis=1),")], EVAL),
    m("E3", "time limit checked on the mean batch, not the worst",
      [("moeopt/evaluate.py", '"time_limit": e2e.max(axis=1) - problem.slo.time_limit_s',
        '"time_limit": e2e.mean(axis=1) - problem.slo.time_limit_s')], EVAL),
    m("E4", "memory/payload checked on the mean batch's tokens per replica",
      [("moeopt/evaluate.py", "r_max = r.max(axis=1)  # (P, L, S)", "r_max = r.mean(axis=1)  # (P, L, S)")],
      EVAL),
    m("E5", "layer latency: the mean replica's finish, not the slowest",
      [("moeopt/evaluate.py", "layer_lat = finish.max(axis=3)", "layer_lat = finish.mean(axis=3)")], EVAL),
    m("E6", "idle replicas billed (every replica, not those with tokens)",
      [("moeopt/evaluate.py", "billed = lm.billed_seconds(t, c) * active",
        "billed = lm.billed_seconds(t, c) * rep")], EVAL),
    m("E7", "memory of cold (token-less) experts' functions not checked",
      [("moeopt/evaluate.py", "deployed = experts_in_slot > 0", "deployed = used")], EVAL),
    # -- tracker and solver base --
    m("T1", "tracker prices the whole batch past the budget",
      [("moeopt/solver.py", "            plans = _take(plans, left)", "            pass")], API),
    m("T2", "tracker counts calls, not plans",
      [("moeopt/solver.py", "self.evaluations += plans.size", "self.evaluations += 1")], API),
    m("T3", "tracker ranks infeasible plans without their violation",
      [("moeopt/solver.py", "keys = np.where(feasible, 0.0, 1.0 + np.nan_to_num(violation, nan=np.inf))",
        "keys = np.where(feasible, 0.0, 1.0)")], API),
    m("T4", "solve() does not re-seed the RNG (only __init__ does)",
      [("moeopt/solver.py", "        self.rng = np.random.default_rng(self.seed)  # same seed, same plan, on every call\n",
        "")], API),
    # -- solvers --
    m("S1", "ilp claims a proof when its plan is within 1e-3 of the bound",
      [("solvers/ilp.py", 'gap_ok = float(self.options["mip_gap"])', "gap_ok = 1e-3")],
      ["tests/solvers/test_ilp.py", GUARDS]),
    m("S2", "exhaustive claims a proof after the budget cut its enumeration",
      [("solvers/exhaustive.py", "        if tracker.evaluations < total:  # the budget cut the last chunk: no proof either way\n"
        "            return None\n", "")], ["tests/solvers/test_exhaustive.py"]),
    m("S3", "ODS takes each layer's dearest method",
      [("solvers/ilp.py", "pick = cost.argmin(axis=0)", "pick = cost.argmax(axis=0)")],
      ["tests/solvers/test_ilp.py", GUARDS]),
    m("S4", "greedy spends slack on infeasible proposals too",
      [("solvers/greedy.py", "saving = np.where(feasible, state_eval[0].cost_usd[0] - cost, -np.inf)",
        "saving = state_eval[0].cost_usd[0] - cost")], ["tests/test_core_solvers.py", GUARDS]),
    m("S5", "eplb gives redundant replicas to the coldest expert",
      [("solvers/baselines.py", "replicas[int(np.argmax(per))] += 1", "replicas[int(np.argmin(per))] += 1")],
      ["tests/test_core_solvers.py", GUARDS]),
    # -- runtime --
    m("R1", "local backend bills rounded, not rounded-up, milliseconds",
      [("lambda_runtime/local/service.py", "billed = math.ceil(outcome.duration_ms)",
        "billed = round(outcome.duration_ms)")], [BILLING, "tests/runtime/test_local_api.py"]),
    m("R2", "REPORT GB-s with 1000 MB per GB",
      [("lambda_runtime/coordinator.py", "return self.billed_ms / 1000.0 * self.memory_mb / 1024.0",
        "return self.billed_ms / 1000.0 * self.memory_mb / 1000.0")], [BILLING, "tests/runtime/"]),
    m("R3", "run summary: GB-s summed over requests, not per request",
      [("lambda_runtime/run.py", "gb_s = sum(r.billed_gb_s for r in results) / n",
        "gb_s = sum(r.billed_gb_s for r in results)")], [BILLING, "tests/runtime/"]),
    m("R4", "local backend refuses a response of exactly 6 MiB",
      [("lambda_runtime/local/service.py", "len(outcome.payload) > SYNC_PAYLOAD_LIMIT",
        "len(outcome.payload) >= SYNC_PAYLOAD_LIMIT")], ["tests/runtime/test_local_api.py", BILLING]),
    m("R5", "cost model bills rounded, not rounded-up, milliseconds",
      [("cost_models/lambda_model.py", "np.ceil(np.asarray(duration_s) / step - 1e-9) * step",
        "np.round(np.asarray(duration_s) / step) * step")], [*EVAL, "tests/solvers/test_ilp.py"]),
    # -- scoring --
    m("C1", "scores below the best known not clipped at 0",
      [("moeopt/bench/scoring.py", "value, clipped = min(max(raw, 0.0), CLIP), raw > CLIP",
        "value, clipped = min(raw, CLIP), raw > CLIP")], ["tests/bench/test_scoring.py", GUARDS]),
    m("C2", "score baseline: random's best seed instead of its mean",
      [("moeopt/bench/scoring.py", 'base, source = float(np.mean(rand)), "random"',
        'base, source = float(np.min(rand)), "random"')], ["tests/bench/test_scoring.py"]),
    m("C3", "win rate: ties count as wins",
      [("moeopt/bench/scoring.py", "wins[i, j] += 1.0 if d < -1e-12 else 0.5 if abs(d) <= 1e-12 else 0.0",
        "wins[i, j] += 1.0 if d <= 1e-12 else 0.0")], ["tests/bench/test_scoring.py"]),
    m("C4", "references: a bound within 1% counts as a proof",
      [("moeopt/bench/references.py", "bound >= best.cost_usd * (1 - PROOF_TOLERANCE)",
        "bound >= best.cost_usd * 0.99")], ["tests/bench/test_scoring.py", "tests/bench/"]),
]


def run(mutant: Mutant, timeout: float) -> tuple[str, str, float]:
    """(verdict, first failing test or note, seconds); the files are restored on every path."""
    saved: dict[Path, str] = {}
    try:
        for file, old, new in mutant.edits:
            path = ROOT / file
            text = saved.get(path, path.read_text())
            saved.setdefault(path, text)
            current = path.read_text()
            if current.count(old) != 1:
                return "stale", f"{file}: the text to mutate occurs {current.count(old)} times", 0.0
            mutated = current.replace(old, new)
            try:  # a mutant that does not compile would be "caught" by any test: say so instead
                compile(mutated, str(path), "exec")
            except SyntaxError as e:
                return "BROKEN", f"{file}: the mutant does not compile ({e.msg}, line {e.lineno})", 0.0
            path.write_text(mutated)
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf",
                 *mutant.tests], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return "caught", "(timed out)", time.perf_counter() - start
        seconds = time.perf_counter() - start
        if done.returncode == 0:
            return "SURVIVED", "", seconds
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.M)
        return "caught", failed[0] if failed else done.stdout.strip().splitlines()[-1], seconds
    finally:
        for path, text in saved.items():
            path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keys", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args()
    chosen = [x for x in MUTANTS if not args.keys or x.key in args.keys]
    if args.list:
        for x in chosen:
            print(f"{x.key:3} {x.what}")
        return
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    touched = {f for x in chosen for f, _, _ in x.edits}
    if any(line[3:] in touched for line in dirty.splitlines()):
        sys.exit("refusing: a file a mutant edits has uncommitted changes")
    print("| mutant | bug | verdict | caught by | s |")
    print("|---|---|---|---|---|")
    for x in chosen:
        verdict, by, seconds = run(x, args.timeout)
        print(f"| {x.key} | {x.what} | {verdict} | {by} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
