"""The CLI as a user drives it: listing, showing, evaluating, and bad input (one line, exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_problem
from moeopt.cli import cli
from moeopt.plan import DeploymentPlan
from tests.conftest import tiny_spec


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_console_script_lists_problems():
    out = subprocess.run(
        [sys.executable, "-m", "moeopt.cli", "problems", "list", "--json"],
        capture_output=True, text=True, check=True,
    )
    names = [row["name"] for row in json.loads(out.stdout)]
    assert names == list(BUILTIN_PROBLEMS)
    assert {"bert-moe-4", "bert-moe-8", "bert-moe-16", "gpt2-moe-4", "bert2bert-moe-4",
            "switch-base-128", "mixtral-8x7b", "deepseek-v3"} <= set(names)


@pytest.mark.parametrize("name", BUILTIN_PROBLEMS)
def test_show_every_builtin(name):
    code, out, _ = run("problems", "show", name, "--json")
    assert code == 0
    summary = json.loads(out)
    p = builtin_problem(name)
    assert summary["model"]["moe_layers"] == p.layers
    assert summary["fingerprint"] == p.fingerprint


def test_builtin_shapes_match_the_paper_and_scale_models():
    assert builtin_problem("bert2bert-moe-4").layers == 24
    assert builtin_problem("bert-moe-16").experts == 16
    mixtral, deepseek = builtin_problem("mixtral-8x7b"), builtin_problem("deepseek-v3")
    assert (mixtral.layers, mixtral.experts, mixtral.model.top_k) == (32, 8, 2)
    assert (deepseek.layers, deepseek.experts, deepseek.model.top_k) == (58, 256, 8)
    switch = builtin_problem("switch-base-128")
    assert switch.popularity.loads.sum(axis=2).tolist() == [[10_240] * 6] * 8
    for name in BUILTIN_PROBLEMS:
        p = builtin_problem(name)
        assert (p.popularity.loads.sum(axis=2) == p.workload.tokens_per_batch * p.model.top_k).all()


def test_evaluate_json_keys(tmp_path):
    problem = builtin_problem("bert-moe-4")
    plan_path = tmp_path / "plan.json"
    DeploymentPlan.uniform(problem, 3072, 2).save(plan_path)
    code, out, _ = run("evaluate", str(plan_path), "--problem", "bert-moe-4", "--json")
    assert code == 0, out
    data = json.loads(out)
    for key in ("cost_usd", "cost_gb_s", "feasible", "latency_s", "throughput_tokens_per_s", "violations"):
        assert key in data
    assert set(data["violations"]) == {"memory", "payload", "time_limit", "timeout", "concurrency"}
    code, text, _ = run("evaluate", str(plan_path))  # the plan names its problem
    assert code == 0 and "bert-moe-4" in text
    assert re.search(r"^\s*11\s+storage\s+4\s+\d+\.\d{3}$", text, re.M), text  # the per-layer table


def test_problem_files_json_and_toml(tmp_path):
    import tomli_w

    spec = tiny_spec()
    (tmp_path / "p.json").write_text(json.dumps(spec))
    (tmp_path / "p.toml").write_text(tomli_w.dumps(spec))
    for name in ("p.json", "p.toml"):
        code, out, err = run("problems", "show", str(tmp_path / name), "--json")
        assert code == 0, err
        assert json.loads(out)["model"]["experts_per_layer"] == 2


def test_baselines_default_problem():
    code, out, _ = run("baselines", "--json")
    assert code == 0
    rows = {r["baseline"]: r for r in json.loads(out)}
    assert {"lambdaml-storage", "lambdaml-direct", "cpu-cluster"} <= set(rows)
    assert rows["lambdaml-direct"]["violations"]["payload"] > 0  # 2,560 tokens of 4 KB each


# ---- bad input: one clear line naming file and field, exit 2, no traceback ------------------

def _bad_problem(tmp_path, mutate, suffix=".json"):
    spec = tiny_spec()
    mutate(spec)
    path = tmp_path / f"bad{suffix}"
    path.write_text(json.dumps(spec))
    return path


PROBLEM_CASES = {
    "wrong type": (lambda s: s["model"].__setitem__("moe_layers", "twelve"), "model.moe_layers"),
    "negative count": (lambda s: s["popularity"]["loads"][0][0].__setitem__(0, -5), "loads[0][0][0]"),
    "unknown field": (lambda s: s["model"].__setitem__("experts", 4), "model.experts"),
    "missing slo": (lambda s: s.pop("slo"), "slo"),
    "loads shape": (lambda s: s["popularity"].__setitem__("loads", [[[1, 2, 3]]]), "popularity"),
    "menu out of range": (lambda s: s["deployment"].__setitem__("memory_menu", [64]), "memory_menu[0]"),
    "unknown method": (lambda s: s["deployment"].__setitem__("methods", ["carrier-pigeon"]), "deployment.methods"),
    "top_k > experts": (lambda s: s["model"].__setitem__("top_k", 3), "model.top_k"),
    "unknown constant": (lambda s: s["cost_model"]["constants"].__setitem__("speed_of_light", 1), "constants.speed_of_light"),
    "negative constant": (lambda s: s["cost_model"]["constants"].__setitem__("storage_delay_s", -1), "constants.storage_delay_s"),
    "both slo forms": (lambda s: s["slo"].__setitem__("throughput_tokens_per_s", 5.0), "slo"),
    "bad cost scope": (lambda s: s["deployment"].__setitem__("cost_scope", "cheap"), "deployment.cost_scope"),
}


@pytest.mark.parametrize("case", sorted(PROBLEM_CASES))
def test_bad_problem_file(tmp_path, case):
    mutate, field = PROBLEM_CASES[case]
    path = _bad_problem(tmp_path, mutate)
    code, out, err = run("problems", "show", str(path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(path) in lines[0] and field in lines[0]
    assert "Traceback" not in err + out


def _plan_file(tmp_path, mutate):
    problem = builtin_problem("bert-moe-4")
    data = DeploymentPlan.uniform(problem, 1536, 1).to_dict()
    mutate(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return path


PLAN_CASES = {
    "memory out of range": (lambda d: d["layers"][0]["functions"][0].__setitem__("memory_mb", 20_000), "layers[0].functions[0].memory_mb"),
    "memory wrong type": (lambda d: d["layers"][1]["functions"][0].__setitem__("memory_mb", "big"), "layers[1].functions[0].memory_mb"),
    "unknown expert": (lambda d: d["layers"][2]["functions"][0].__setitem__("experts", [9]), "layers[2].functions[0].experts"),
    "expert twice": (lambda d: d["layers"][0]["functions"][1].__setitem__("experts", [0]), "layers[0].functions[1].experts"),
    "too many replicas": (lambda d: d["layers"][0]["functions"][0].__setitem__("replicas", 99), "replicas"),
    "zero replicas": (lambda d: d["layers"][0]["functions"][0].__setitem__("replicas", 0), "replicas"),
    "bad method": (lambda d: d["layers"][3].__setitem__("method", "fax"), "layers[3].method"),
    "bad beta": (lambda d: d["layers"][3].__setitem__("pipeline_degree", 0), "layers[3].pipeline_degree"),
    "missing layer": (lambda d: d["layers"].pop(), "layers"),
    "another problem": (lambda d: d["problem"].__setitem__("fingerprint", "sha256:0000"), "problem.fingerprint"),
    "bad architecture": (lambda d: d["layers"][0]["functions"][0].__setitem__("architecture", "sparc"), "architecture"),
}


@pytest.mark.parametrize("case", sorted(PLAN_CASES))
def test_bad_plan_file(tmp_path, case):
    mutate, field = PLAN_CASES[case]
    path = _plan_file(tmp_path, mutate)
    code, out, err = run("evaluate", str(path), "--problem", "bert-moe-4")
    assert code == 2, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and field in lines[0], err


def test_bad_json_and_missing_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run("evaluate", str(broken))
    assert code == 2 and "not valid JSON" in err
    code, _, err = run("problems", "show", "no-such-problem")
    assert code == 2 and "built-ins" in err


def test_bad_counts_trace_file(tmp_path):
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"counts": [[5, -1], [3, 3]]}))
    spec = tiny_spec()
    spec["popularity"] = {"source": "counts", "file": str(counts)}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(spec))
    code, _, err = run("problems", "show", str(path))
    assert code == 2 and str(counts) in err and "counts[0][1]" in err


def test_subprocess_error_has_no_traceback(tmp_path):
    path = _bad_problem(tmp_path, PROBLEM_CASES["wrong type"][0])
    out = subprocess.run(
        [sys.executable, "-m", "moeopt.cli", "problems", "show", str(path)],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("name", BUILTIN_PROBLEMS)
def test_builtin_slos_bind(name):
    """LambdaML misses each built-in SLO; the fastest uniform plan meets it (docs/problems.md)."""
    from moeopt.baselines import lambdaml_plan
    from moeopt.evaluate import evaluate

    p = builtin_problem(name)
    assert evaluate(p, lambdaml_plan(p)).violations["time_limit"] > 0
    top = max(p.memory_options)
    fastest = min(
        evaluate(p, DeploymentPlan.uniform(p, top, g, m)).latency_s
        for g in range(1, p.max_replicas + 1)
        for m in p.methods
    )
    assert fastest < p.slo.time_limit_s
