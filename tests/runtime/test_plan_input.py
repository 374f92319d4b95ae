"""A plan file given to ``moeopt run`` is read and checked as every user file is: a device is
refused at once (it was read without end), every field of every layer is checked before a model
or a function is made from it, and layers are deployed for the layer they name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lambda_runtime.cli import run_command
from lambda_runtime.deploy import PlanError, parse_plan
from tests.runtime.conftest import fn, make_plan, one_layer


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(run_command, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_as_the_plan_is_refused_at_once():
    run = subprocess.run(
        [sys.executable, "-m", "moeopt.cli", "run", "/dev/zero", "--backend", "aws", "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 2 and "regular file" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_fields_moeopt_does_not_know_are_refused(tmp_path):
    """The plan rules of docs/plan-format.md hold for run as for evaluate: an unknown field (a
    typo) or a malformed problem reference is an error, not ignored."""
    for mutate, field in ((lambda p: p["layers"][0].update(bogus=1), "layers[0]"),
                          (lambda p: p.update(problem=5), "problem")):
        plan = make_plan([one_layer("direct", [fn([0]), fn([1])])])
        mutate(plan)
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(plan))
        code, out = _run([str(path), "--backend", "aws", "--dry-run"])
        assert code == 2 and field in out and out.count("error:") == 1, out


@pytest.mark.parametrize("text, field", [
    ('{"layers": [' * 5000 + "]" * 5000 + "}", "nested"),
    ('{"schema": "moeopt.plan/1", "layers": NaN}', "finite"),
    ("[1, 2]", "JSON object"),
], ids=["deep", "nan", "array"])
def test_malformed_plan_files_are_one_line_errors(tmp_path, text, field):
    path = tmp_path / "plan.json"
    path.write_text(text)
    code, out = _run([str(path), "--backend", "aws", "--dry-run"])
    assert code == 2 and field in out and out.count("error:") == 1, out


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p["layers"][0].update(layer=1), "layers[].layer"),  # duplicate
    (lambda p: p["layers"][0].update(layer="0"), "layers[].layer"),
    (lambda p: p["layers"][0].update(layer=True), "layers[].layer"),
    (lambda p: p["layers"][0]["functions"][0].update(experts=["0"]), "experts"),
    (lambda p: p["layers"][0]["functions"][0].update(experts=[True]), "experts"),
    (lambda p: p["layers"][0]["functions"][0].update(replicas=10**9), "replicas"),
    (lambda p: p["layers"][0].update(pipeline_degree=10**12), "pipeline_degree"),
    (lambda p: p["layers"][0].update(functions={"a": 1}), "functions"),
    (lambda p: p["layers"].__setitem__(1, 5), "object"),
])
def test_every_field_of_a_plan_is_checked(mutate, field):
    plan = make_plan([one_layer("direct", [fn([0]), fn([1])]),
                      one_layer("storage", [fn([0, 1], memory_mb=3008)])])
    mutate(plan)
    with pytest.raises(PlanError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_plan(plan, layers=2, experts=2)


def test_layers_are_deployed_for_the_layer_they_name():
    plan = make_plan([one_layer("direct", [fn([0]), fn([1])]),
                      one_layer("storage", [fn([0, 1], memory_mb=3008)])])
    plan["layers"].reverse()
    first, second = parse_plan(plan, layers=2, experts=2)
    assert (first.layer, first.method) == (0, "direct")
    assert (second.layer, second.method, second.functions[0].memory_mb) == (1, "storage", 3008)


def test_a_plan_without_its_problem_cannot_size_the_model_beyond_the_limits(tmp_path):
    """Without a loadable problem the model's shape comes from the plan: a huge expert id would
    have been a 10^9-expert model allocated before the plan was checked."""
    plan = make_plan([one_layer("direct", [fn([0]), fn([10**9])])])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    code, out = _run([str(path), "--backend", "local", "--requests", "1"])
    assert code == 2 and "experts[0]: must be an integer from 0 to 4,095" in out, out
    assert out.count("error:") == 1


def test_a_plan_run_against_a_problem_uses_only_its_options(tmp_path):
    """`run PLAN --problem P` holds the plan to P's options as `evaluate` does (the fuzzer's
    arm64 function on an x86_64-only problem was run)."""
    from moeopt.plan import DeploymentPlan
    from moeopt.problem import load_problem

    tiny = Path(__file__).parents[1] / "fuzz_corpus" / "tiny.json"
    plan = DeploymentPlan.uniform(load_problem(tiny), 1769, 1, "direct").to_dict()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    args = [str(path), "--problem", str(tiny), "--backend", "aws", "--dry-run"]
    assert _run(args)[0] == 0
    for field, value in (("architecture", "arm64"), ("memory_mb", 2000), ("replicas", 60)):
        bad = json.loads(json.dumps(plan))
        bad["layers"][0]["functions"][0][field] = value
        path.write_text(json.dumps(bad))
        code, out = _run(args)
        assert code == 2 and f"functions[0].{field}" in out and out.count("error:") == 1, out
