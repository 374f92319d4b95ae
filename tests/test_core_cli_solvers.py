"""`moeopt solvers|solve|compare` driven as a user would, and a plugin from a separate package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from moeopt.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_solve_writes_a_plan_that_evaluates_the_same(tmp_path):
    plan = tmp_path / "plan.json"
    code, out, err = run("solve", "--solver", "greedy", "-o", str(plan), "--json")
    assert code == 0, err
    solved = json.loads(out)
    assert solved["solution_status"] == "feasible" and solved["plan_file"] == str(plan)
    code, out, _ = run("evaluate", str(plan), "--json")
    assert code == 0
    assert json.loads(out)["cost_usd"] == solved["cost_usd"]


def test_solve_passes_solver_options_and_refuses_bad_ones():
    code, out, err = run("solve", "--problem", "bert-moe-4", "--solver", "ilp", "-O", "mode=ods",
                         "-O", "pipeline_degrees=[64, 256]", "--json")
    assert code == 0, err
    assert json.loads(out)["message"].startswith("ODS")
    for option, says in [
        ("mode=fast", "mode: 'fast'; allowed: monolithic, ods"),
        ("mip_gap=abc", "mip_gap: 'abc'; allowed: a number"),
        ("pipeline_degrees=64", "pipeline_degrees: 64; allowed: a list"),
        ("colour=red", "colour: unknown option; allowed: backend, mip_gap, mode"),
        ("no-equals-sign", "--option: no-equals-sign: need KEY=VALUE"),
    ]:
        code, out, err = run("solve", "--problem", "bert-moe-4", "--solver", "ilp", "-O", option)
        assert code == 2 and says in err and "Traceback" not in err, (option, err)


def test_compare_json_rows_and_plot(tmp_path):
    png = tmp_path / "c.png"
    code, out, err = run("compare", "--solvers", "greedy,random,lambdaml", "--seeds", "2",
                         "--budget-evals", "3000", "--json", "--plot", str(png))
    assert code == 0, err
    rows = json.loads(out)
    assert [r["solver"] for r in rows] == ["greedy", "random", "lambdaml"]
    for r in rows:
        for key in ("solver", "cost_usd", "feasible", "solver_status", "solution_status",
                    "latency_s", "throughput_tokens_per_s", "solve_seconds"):
            assert key in r
    assert rows[0]["feasible"] and rows[0]["gap_to_best"] == 0.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_compare_table_text():
    code, out, _ = run("compare", "--solvers", "greedy,lambdaml", "--budget-evals", "3000")
    assert code == 0
    assert "greedy" in out and "lambdaml" in out and "feasible" in out


def test_unknown_solver_is_a_clear_error():
    code, _, err = run("solve", "--solver", "simulated-annealing")
    assert code == 2 and "unknown solver" in err and "greedy" in err


def test_solvers_list_json():
    code, out, _ = run("solvers", "list", "--json")
    names = {e["name"]: e for e in json.loads(out)}
    assert names["greedy"]["available"] and "tags" in names["greedy"]


def test_plugin_package_installs_and_solves(tmp_path):
    """The README's worked example: a solver in its own package, found by entry point."""
    import shutil

    target = tmp_path / "site"
    source = shutil.copytree(ROOT / "examples" / "moeopt-solver-example", tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]))
    listed = subprocess.run([sys.executable, "-m", "moeopt.cli", "solvers", "list", "--json"],
                            env=env, capture_output=True, text=True, check=True)
    entry = {e["name"]: e for e in json.loads(listed.stdout)}["coordinate-descent"]
    assert entry["available"] and entry["origin"] == "moeopt-solver-example"
    solved = subprocess.run(
        [sys.executable, "-m", "moeopt.cli", "solve", "--solver", "coordinate-descent",
         "--budget-evals", "500", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert json.loads(solved.stdout)["evaluations"] == 500
    # The plugin passes the shipped conformance kit too.
    kit = tmp_path / "test_plugin_conformance.py"
    kit.write_text(
        "import pytest\nfrom moeopt.testing import SolverConformance\n\n"
        "class TestPlugin(SolverConformance):\n"
        "    @pytest.fixture\n    def solver_name(self):\n        return 'coordinate-descent'\n"
    )
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(kit)],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]


def test_demo_solves_and_proves_without_running(tmp_path):
    plan = tmp_path / "demo.json"
    code, out, err = run("demo", "--no-run", "--plan-out", str(plan))
    assert code == 0, err
    assert "minilm-moe-8" in out and "proven_optimal" in out and "lambdaml" in out
    assert json.loads(plan.read_text())["problem"]["name"] == "minilm-moe-8"
