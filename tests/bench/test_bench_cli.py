"""``moeopt bench`` / ``leaderboard`` end to end, as a user runs them, in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from moeopt.bench.results import read_results, validate
from tests.bench.conftest import moeopt_bench


def _rows(results: Path, site: Path | None = None) -> dict[str, dict]:
    done = moeopt_bench("leaderboard", str(results), "--json", site=site)
    assert done.returncode == 0, done.stderr
    return {r["solver"]: r for r in json.loads(done.stdout)}


def test_plugin_crash_and_hang_are_recorded_and_the_run_completes(tiny_suite, plugin_site, tmp_path):
    out = tmp_path / "results"
    args = ("bench", "--suite", str(tiny_suite), "--solvers", "coordinate-descent,crasher,sleeper,greedy",
            "--jobs", "2", "--timeout", "4", "--out", str(out))
    done = moeopt_bench(*args, site=plugin_site)
    assert done.returncode == 0, done.stderr
    results = out / "tiny.jsonl"
    records = read_results(results)
    validate(records)  # the results file fits its JSON Schema
    by = {}
    for r in records:
        by.setdefault(r["solver"]["name"], []).append(r)
    assert sorted(by) == ["coordinate-descent", "crasher", "greedy", "random", "sleeper"]
    # 2 seeds each, none lost; greedy is deterministic: one run stands for both seeds.
    assert {k: len(v) for k, v in by.items()} == {
        "coordinate-descent": 2, "crasher": 2, "greedy": 1, "random": 2, "sleeper": 2}
    assert {r["status"] for r in by["crasher"]} == {"crashed"}
    assert all("exit code 3" in r["message"] for r in by["crasher"])
    assert {r["status"] for r in by["sleeper"]} == {"timeout"}
    assert all(4 <= r["wall_seconds"] < 30 for r in by["sleeper"])
    assert {r["status"] for r in by["greedy"]} == {"ok"}
    plugin = by["coordinate-descent"][0]
    assert plugin["solver"]["origin"] == "moeopt-solver-example" and plugin["solver"]["version"] == "0.1.0"
    assert plugin["status"] == "ok" and plugin["evaluations"] > 0 and plugin["plan"] is not None

    rows = _rows(results, plugin_site)
    assert rows["coordinate-descent"]["origin"] == "moeopt-solver-example"
    assert rows["coordinate-descent"]["runs"] == 2 and rows["coordinate-descent"]["failures"] == {}
    for bad, status in (("crasher", "crashed"), ("sleeper", "timeout")):
        assert rows[bad]["failures"] == {status: 2} and rows[bad]["clipped"] == 2
        assert rows[bad]["mean"] == 2.0 and rows[bad]["feasible_rate"] == 0.0

    # Resume: the same command again runs nothing and appends nothing.
    again = moeopt_bench(*args, site=plugin_site)
    assert again.returncode == 0 and "9 already in" in again.stderr and "0 to run" in again.stderr
    assert len(read_results(results)) == len(records)


def test_same_seeds_reproduce_the_scores_of_deterministic_solvers(tiny_suite, tmp_path):
    scores = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = moeopt_bench("bench", "--suite", str(tiny_suite), "--solvers", "greedy,lambdaml,eplb",
                            "--budget-evals", "800", "--jobs", "2", "--out", str(out))
        assert done.returncode == 0, done.stderr
        records = read_results(out / "tiny.jsonl")
        validate(records)
        scores.append({k: v for k, v in _rows(out / "tiny.jsonl").items()})
        costs = sorted((r["solver"]["name"], r["seed"], r["cost_usd"] or -1.0) for r in records)
        scores[-1]["costs"] = costs
    a, b = scores
    assert a["costs"] == b["costs"]  # random search is seeded too: same seeds, same costs
    for solver in ("greedy", "lambdaml", "eplb", "random"):
        assert a[solver]["mean"] == b[solver]["mean"]
        assert a[solver]["ci_low"] == b[solver]["ci_low"] and a[solver]["ci_high"] == b[solver]["ci_high"]


def test_reports_are_written(tiny_suite, tmp_path):
    out = tmp_path / "r"
    assert moeopt_bench("bench", "--suite", str(tiny_suite), "--solvers", "greedy,eplb", "--seeds", "1",
                        "--out", str(out)).returncode == 0
    md, page = tmp_path / "LB.md", tmp_path / "lb.html"
    done = moeopt_bench("leaderboard", str(out / "tiny.jsonl"), "--md", str(md), "--html", str(page))
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert text.startswith("# Benchmark leaderboard") and "| rank | solver |" in text
    assert (tmp_path / "LB-scores.png").read_bytes()[:4] == b"\x89PNG"
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert "<script" not in html and 'src="http' not in html  # opens from a file, no network
    refs = json.loads((out / "best_known.json").read_text())
    assert refs["schema"] == "moeopt.bench.references/1"
    (entry,) = refs["instances"].values()
    assert entry["status"] in ("best_found", "proven_optimal") and entry["plan"]["schema"] == "moeopt.plan/1"


def test_bad_input_is_one_clear_line(tmp_path):
    done = moeopt_bench("bench", "--suite", "no-such-suite")
    assert done.returncode == 2 and "no such suite" in done.stderr and "smoke" in done.stderr
    done = moeopt_bench("bench", "--suite", "smoke", "--solvers", "simulated-annealing")
    assert done.returncode == 2 and "unknown solver" in done.stderr
    done = moeopt_bench("leaderboard", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2 and "no such results file" in done.stderr


def test_bench_prices_every_instance_with_a_profile(tiny_suite, tmp_path):
    """``--profile`` runs a copy of the suite whose files name it: runs, re-pricing and
    references all see the same constants."""
    out = tmp_path / "results"
    done = moeopt_bench("bench", "--suite", str(tiny_suite), "--solvers", "greedy", "--seeds", "1",
                        "--budget-evals", "50", "--profile", "paper-lambda", "--out", str(out))
    assert done.returncode == 0, done.stderr
    copies = list(out.glob("suite-*-profile-*/*.json"))
    instances = [p for p in copies if p.name != "suite.json"]
    assert instances and all(
        json.loads(p.read_text())["cost_model"]["profile"] == "paper-lambda" for p in instances
    )
    records = read_results(next(out.glob("*paper-lambda.jsonl")))
    assert records and {r["solver"]["name"] for r in records} == {"greedy", "random"}
