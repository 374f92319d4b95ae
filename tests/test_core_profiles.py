"""Profiles: built-in names and files apply to problems the same way, round-trip, and the
paper-lambda profile meets the paper's one absolute figure."""

from __future__ import annotations

import json

import pytest

from moeopt.errors import InputError
from moeopt.problem import load_problem, problem_from_dict
from moeopt.profiles import dumps_profile, profile_names, read_profile
from tests.conftest import tiny_spec


def test_paper_lambda_serves_the_papers_figure():
    """The LambdaML-style plan on GPT-2 MoE: 22.9 tokens/s (the paper's Fig. 2), within 5 %."""
    from moeopt.baselines import lambdaml_plan
    from moeopt.evaluate import evaluate

    problem = load_problem("gpt2-moe-4", profile="paper-lambda")
    tokens_per_s = evaluate(problem, lambdaml_plan(problem)).throughput_tokens_per_s
    assert tokens_per_s == pytest.approx(22.9, rel=0.05)
    assert "paper-lambda" in profile_names()
    data = read_profile("paper-lambda").data
    assert data["profile"]["assumption"] and data["profile"]["fitted_to"]


def test_a_calibration_profile_round_trips(tmp_path):
    profile = {
        "schema": "moeopt.profile/1",
        "constants": {"storage_delay_s": 0.041, "flops_per_second_per_vcpu": 3.1e10,
                      "multi_vcpu_efficiency": 0.6, "nonmoe_flops_per_second": 2e10},
        "fits": {"storage_delay_s": {"value": 0.041, "points": 9, "rms_relative_residual": 0.05,
                                     "max_relative_residual": 0.1}},
    }
    path = tmp_path / "profile.json"
    path.write_text(dumps_profile(profile))
    back = read_profile(path)
    assert back.constants == profile["constants"] and back.data == profile
    problem = load_problem("bert-moe-4", profile=str(path))
    c = problem.constants
    assert (c.storage_delay_s, c.flops_per_second_per_vcpu, c.multi_vcpu_efficiency) == (0.041, 3.1e10, 0.6)
    assert c.profile == str(path)
    # the same constants through a problem file's cost_model.profile
    spec = tiny_spec()
    spec["cost_model"] = {"profile": "profile.json"}
    from_file = problem_from_dict(spec, str(tmp_path / "p.json"), base_dir=tmp_path)
    assert from_file.constants.storage_delay_s == 0.041
    # a different profile, a different problem: plans solved with one do not load on the other
    assert load_problem("bert-moe-4").fingerprint != problem.fingerprint


def test_bad_profiles_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="built-ins: paper-lambda"):
        read_profile("no-such-profile")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"constants": {"storage_delay_s": "slow"}}))
    with pytest.raises(InputError, match="storage_delay_s"):
        load_problem("bert-moe-4", profile=str(bad))
    with pytest.raises(ValueError):
        dumps_profile({"constants": {"x": float("nan")}})


def test_cli_profile_option_changes_the_numbers():
    from click.testing import CliRunner

    from moeopt.cli import cli

    def lambdaml(*extra):
        out = CliRunner().invoke(cli, ["baselines", "--problem", "gpt2-moe-4", "--json", *extra])
        assert out.exit_code == 0, out.output
        rows = json.loads(out.stdout)
        return next(r for r in rows if r["baseline"] == "lambdaml-storage")["throughput_tokens_per_s"]

    assert lambdaml() > 200 and lambdaml("--profile", "paper-lambda") == pytest.approx(22.9, rel=0.05)
