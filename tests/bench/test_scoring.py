"""Scores, references and suites, in process: the formulas on records made by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from moeopt.bench.references import read_references, update_references
from moeopt.bench.results import SCHEMA, run_key, validate
from moeopt.bench.runner import derive_seeds, environment, make_record, plan_runs
from moeopt.bench.scoring import CLIP, bootstrap_ci, score
from moeopt.bench.suite import load_suite
from moeopt.registry import make_solver
from moeopt.solver import Budget
from tests.bench.conftest import INSTANCE

FP = "sha256:00000000000000aa"


def rec(solver: str, cost: float | None, seed_index: int = 0, status: str = "ok", **extra) -> dict:
    budget = {"evaluations": 100, "seconds": None}
    return {
        "schema": SCHEMA, "run_id": run_key(FP, solver, seed_index, budget), "suite": "t",
        "instance": {"name": "i", "fingerprint": FP, "file": "i.json"},
        "solver": {"name": solver, "version": "1", "origin": "built-in", "tags": [], "options": {}},
        "seed": seed_index, "seed_index": seed_index, "master_seed": 0, "budget": budget,
        "timeout_s": 10.0, "status": status, "exit_code": 0, "solver_status": "completed",
        "solution_status": "feasible" if cost is not None else "none", "feasible": cost is not None,
        "cost_usd": cost, "reported_cost_usd": cost, "reported_feasible": cost is not None,
        "verified": None, "lower_bound_usd": None, "gap": None, "evaluations": 100,
        "solve_seconds": 1.0, "wall_seconds": 1.5,
        "trajectory": [] if cost is None else [{"evaluations": 10, "seconds": 0.1, "cost_usd": cost * 1.1},
                                               {"evaluations": 50, "seconds": 0.5, "cost_usd": cost}],
        "plan": None, "message": "", "environment": environment(),
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00", **extra,
    }


def test_zero_is_best_known_and_one_is_random_search():
    records = [rec("a", 1.0), rec("b", 1.5), rec("random", 2.0, 0), rec("random", 4.0, 1), rec("a", 1.0, 1)]
    board = score(records)
    (scale,) = board.scales
    assert scale.best_usd == 1.0 and scale.baseline_usd == 3.0 and scale.baseline_source == "random"
    runs = {(r.solver, r.seed_index): r.score for r in board.runs}
    assert runs[("a", 0)] == 0.0 and runs[("b", 0)] == 0.25
    assert runs[("random", 0)] == 0.5 and runs[("random", 1)] == 1.5
    assert board.rows[0].solver == "a" and board.rows[0].mean == 0.0


def test_failures_and_infeasible_runs_are_clipped_and_counted():
    records = [rec("a", 1.0), rec("random", 2.0), rec("far", 100.0), rec("none", None),
               rec("dead", None, status="crashed"), rec("slow", None, status="timeout")]
    board = score(records)
    rows = {r.solver: r for r in board.rows}
    for name in ("far", "none", "dead", "slow"):
        assert rows[name].mean == CLIP and rows[name].clipped == 1
    assert rows["dead"].failures == {"crashed": 1} and rows["slow"].failures == {"timeout": 1}
    assert rows["none"].feasible_rate == 0.0 and rows["far"].feasible_rate == 1.0


def test_without_a_feasible_random_run_the_worst_feasible_cost_is_the_one():
    board = score([rec("a", 1.0), rec("b", 3.0), rec("random", None)])
    (scale,) = board.scales
    assert scale.baseline_source == "worst-feasible" and scale.baseline_usd == 3.0
    assert {r.solver: r.score for r in board.runs} == {"a": 0.0, "b": 1.0, "random": CLIP}


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).random(40)
    lo, hi = bootstrap_ci(values)
    assert (lo, hi) == bootstrap_ci(values) and lo < values.mean() < hi


def test_win_rates_pair_runs_and_ties_count_half():
    records = [rec("a", 1.0, 0), rec("b", 2.0, 0), rec("a", 2.0, 1), rec("b", 2.0, 1), rec("random", 3.0, 0)]
    board = score(records)
    i, j = board.solvers.index("a"), board.solvers.index("b")
    assert board.win_rate[i, j] == 0.75 and board.win_rate[j, i] == 0.25
    assert math.isnan(board.win_rate[i, i])


def test_a_deterministic_run_stands_for_every_seed_in_win_rates():
    d = rec("d", 2.0, 0)
    d["solver"]["tags"] = ["deterministic"]
    records = [rec("a", 1.0, 0), rec("a", 3.0, 1), d, rec("random", 3.0, 0)]
    board = score(records)
    i, j = board.solvers.index("a"), board.solvers.index("d")
    assert board.win_rate[i, j] == 0.5 and board.win_rate[j, i] == 0.5


def test_time_to_target_reads_the_trajectory():
    board = score([rec("a", 1.0), rec("b", 1.03), rec("random", 2.0)])
    hits = {r.solver: r for r in board.runs}
    assert hits["a"].hit_seconds[0.01] == 0.5 and hits["a"].hit_evaluations[0.01] == 50
    assert math.isinf(hits["b"].hit_seconds[0.01]) and hits["b"].hit_seconds[0.05] == 0.5


def test_records_made_by_hand_fit_the_schema():
    validate([rec("a", 1.0), rec("dead", None, status="crashed")])
    with pytest.raises(ValueError, match="status"):
        validate([rec("a", 1.0, status="exploded")])


@pytest.fixture(scope="module")
def solved():
    from moeopt.problem import read_problem_file

    problem = read_problem_file(INSTANCE)
    result = make_solver("greedy").solve(problem, Budget(evaluations=5000))
    assert result.plan is not None
    return problem, result


def _child_output(result, **overrides) -> dict:
    return {"status": "ok", "wall_seconds": 1.0, "exit_code": 0,
            "result": {**result.to_dict(), **overrides}, "plan": result.plan.to_dict()}


def test_reported_numbers_are_never_trusted(solved, tmp_path):
    problem, result = solved
    suite = load_suite(INSTANCE.parent)
    spec = next(s for s in plan_runs(suite, ["greedy"], 1, Budget(evaluations=10)) if s.instance == INSTANCE.stem)
    lie = make_record(spec, _child_output(result, cost_usd=result.cost_usd / 2), tmp_path, "now")
    assert lie["reported_cost_usd"] == result.cost_usd / 2
    assert lie["cost_usd"] == pytest.approx(result.cost_usd) and lie["verified"]["feasible"]
    lie["cost_usd"] = result.cost_usd / 2  # even a tampered results file cannot set a reference
    refs = update_references(tmp_path / "best.json", [lie], tmp_path)
    assert refs[problem.fingerprint].cost_usd == pytest.approx(result.cost_usd)
    assert refs[problem.fingerprint].status == "best_found"
    validate([lie])


def test_a_bound_that_meets_the_repriced_cost_proves_optimality(solved, tmp_path):
    problem, result = solved
    suite = load_suite(INSTANCE.parent)
    spec = next(s for s in plan_runs(suite, ["greedy"], 1, Budget(evaluations=10)) if s.instance == INSTANCE.stem)
    for below in (0.9, 0.999, 1 - 1e-5):  # a bound 0.1 % (or 0.001 %) under the cost proves nothing
        loose = make_record(spec, _child_output(result, lower_bound_usd=result.cost_usd * below), tmp_path, "now")
        update_references(tmp_path / "best.json", [loose], tmp_path)
        assert read_references(tmp_path / "best.json")[problem.fingerprint].status == "best_found", below
    tight = make_record(spec, _child_output(result, lower_bound_usd=result.cost_usd), tmp_path, "now")
    update_references(tmp_path / "best.json", [tight], tmp_path)
    ref = read_references(tmp_path / "best.json")[problem.fingerprint]
    assert ref.status == "proven_optimal" and ref.lower_bound_usd == pytest.approx(result.cost_usd)


def test_a_superseded_plan_file_is_removed_and_a_shared_one_kept(solved, tmp_path, monkeypatch):
    """Large plans live in plans/ beside the references file; when a cheaper plan replaces an
    entry's, the old file goes (no other entry points at it) and the new one is there."""
    import moeopt.bench.results as results

    monkeypatch.setattr(results, "INLINE_PLAN_BYTES", 0)  # every plan to a file
    problem, best = solved
    worse = make_solver("lambdaml").solve(problem, Budget(evaluations=10))  # 3,008 MB everywhere
    assert worse.cost_usd > best.cost_usd * (1 + 1e-9)
    suite = load_suite(INSTANCE.parent)
    spec = next(s for s in plan_runs(suite, ["greedy"], 1, Budget(evaluations=10)) if s.instance == INSTANCE.stem)
    refs_path = tmp_path / "refs" / "best.json"
    first = update_references(refs_path, [make_record(spec, _child_output(worse), tmp_path, "now")], tmp_path)
    old = refs_path.parent / first[problem.fingerprint].plan["file"]
    assert old.exists()
    stray = refs_path.parent / "plans" / "notes.txt"  # not a file the references wrote
    stray.write_text("kept")
    second = update_references(refs_path, [make_record(spec, _child_output(best), tmp_path, "now")], tmp_path)
    new = refs_path.parent / second[problem.fingerprint].plan["file"]
    assert second[problem.fingerprint].cost_usd == pytest.approx(best.cost_usd)
    assert new.exists() and new != old and not old.exists() and stray.exists()
    third = update_references(refs_path, [make_record(spec, _child_output(worse), tmp_path, "now")], tmp_path)
    assert third[problem.fingerprint].plan == second[problem.fingerprint].plan and new.exists()


def test_seeds_derive_from_one_master_seed():
    assert derive_seeds(0, 3) == derive_seeds(0, 3) and len(set(derive_seeds(0, 3))) == 3
    assert derive_seeds(0, 2) == derive_seeds(0, 3)[:2] and derive_seeds(1, 2) != derive_seeds(0, 2)


def test_committed_suites_load_and_fingerprints_are_distinct():
    smoke, full = load_suite("smoke"), load_suite("full")
    assert len(smoke.instances) == 3 and len(full.instances) >= 16
    fps = [i.fingerprint for i in full.instances]
    assert len(set(fps)) == len(fps)
    assert {i.fingerprint for i in smoke.instances} <= set(fps)  # the same files, the same runs
    names = {i.name for i in full.instances}
    assert {"switch-base-128", "mixtral-8x7b", "deepseek-v3", "bert-moe-4", "exact-1x3"} <= names
    assert any(n.startswith("synth-z1.6") for n in names) and any("-t0.9-" in n for n in names)


def test_a_torn_last_line_is_skipped_on_read_and_cut_before_the_next_append(tmp_path):
    from moeopt.bench.results import append_records, read_results

    path = tmp_path / "r.jsonl"
    append_records(path, [rec("a", 1.0)])
    with path.open("a") as f:
        f.write('{"schema": "moeopt.bench.res')  # the writer died here
    assert len(read_results(path)) == 1
    append_records(path, [rec("b", 2.0)])
    assert [r["solver"]["name"] for r in read_results(path)] == ["a", "b"]


def test_full_suite_holds_profiled_trace_instances():
    """The suite's traces slot is filled: measured loads of the converted model, 3 shapes."""
    from moeopt.bench.suite import load_suite
    from moeopt.builtin_problems import builtin_problem

    traces = {i.name: i.problem for i in load_suite("full").instances if i.name.startswith("trace-")}
    shapes = {(p.experts, p.model.top_k) for p in traces.values()}
    assert shapes == {(4, 2), (8, 1), (16, 1)}
    for problem in traces.values():
        loads = problem.popularity.loads  # (batches, layers, experts), tokens routed
        assert loads.shape[0] == 4
        assert (loads.sum(axis=2) == 10_240 * problem.model.top_k).all()
    e8 = next(p for p in traces.values() if p.experts == 8)
    assert (e8.popularity.loads == builtin_problem("minilm-moe-8").popularity.loads).all()


def test_committed_suites_are_what_the_generator_writes_today(tmp_path):
    """Synthetic SLOs are set from the cost model's latency span: a cost-model change must
    regenerate benchmarks/suites (`python -m moeopt.bench.suite benchmarks/suites`), or the
    leaderboard scores instances the model no longer describes."""
    from moeopt.bench.suite import write_suites

    write_suites(tmp_path)
    committed = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
    for path in sorted(tmp_path.rglob("*.json")):
        rel = path.relative_to(tmp_path)
        assert (committed / rel).read_text() == path.read_text(), f"stale: benchmarks/suites/{rel}"


def test_leaderboard_refuses_a_device_and_utf16_with_one_error_line(tmp_path):
    """Results files go through the reading layer: /dev/zero once hung the command, a UTF-16
    file ended in a traceback."""
    import subprocess
    import sys

    utf16 = tmp_path / "results.jsonl"
    utf16.write_bytes('{"schema": "x"}\n'.encode("utf-16"))
    for path in ("/dev/zero", str(utf16)):
        done = subprocess.run([sys.executable, "-m", "moeopt.cli", "leaderboard", path],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in done.stderr


BENCH = Path(__file__).parents[2] / "benchmarks"


@pytest.mark.parametrize(("records", "folder"), [
    (("results/full.jsonl", "results/small-budget.jsonl"), "results"),
    (("references/best_known.json",), "references"),
])
def test_the_committed_plan_files_are_the_ones_pointed_at(records, folder):
    """Every plan file the committed results and references point at is there, is the plan its
    name says (sha256 of the plan's JSON), and no other file lies beside them (rows dropped to
    re-record a solver leave their files behind otherwise)."""
    import gzip
    import hashlib
    import json
    import re

    pointed = set()
    for name in records:
        pointed |= set(re.findall(r"plans/[0-9a-f]{20}\.json\.gz", (BENCH / name).read_text()))
    present = {f"plans/{p.name}" for p in (BENCH / folder / "plans").glob("*")}
    assert pointed == present
    for rel in pointed:
        with gzip.open(BENCH / folder / rel, "rt") as f:
            text = json.dumps(json.load(f), sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(text.encode()).hexdigest()[:20] == rel[len("plans/"):-len(".json.gz")]
