"""`moeopt reproduce --quick` end to end, as CI runs it: the report, the plots, strict JSON,
and numbers that come from the run (a profile that changes a constant changes the claims it
drives, and each equals what the library computes under that profile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from moeopt.baselines import cpu_cluster, lambdaml_plan
from moeopt.cli import cli
from moeopt.evaluate import evaluate
from moeopt.problem import load_problem
from tests.reproduce.test_claims import REQUIRED


def strict(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("quick")
    result = CliRunner().invoke(cli, ["reproduce", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "claims hold under the default profile" in result.stdout
    return out, strict(out / "results.json")


def test_quick_writes_the_report_its_plots_and_strict_results(quick):
    out, results = quick
    claims = {c["id"]: c for c in results["claims"]}
    assert claims.keys() >= REQUIRED
    for cid in REQUIRED:
        c = claims[cid]
        assert {"id", "paper", "ours", "unit", "holds", "reason"} <= c.keys()
        assert c["ours"] is not None and isinstance(c["holds"], bool), c
    assert {"claims", "breakeven", "figures"} <= results.keys()
    assert results["breakeven"]["profiles"]["default"]["bert-moe-4"]["sweep"]["rates_per_hour"]
    report = (out / "REPORT.md").read_text()
    table = report.split("## Claims", 1)[1]
    assert table.lstrip().startswith("| claim | paper | ours (default profile) | ours (paper-lambda) | holds? | why |")
    for name in results["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in report
    assert {"regime", "cluster", "designs", "algorithms", "acquisition", "overall", "beyond",
            "predictors"} <= results["plots"].keys()
    assert results["skipped"] == ["measured_designs", "measured_algorithms", "measured_overall"]
    assert "Not run here" in report


def test_quick_numbers_are_the_libraries(quick):
    _, results = quick
    claims = {c["id"]: c for c in results["claims"]}
    gpt2 = load_problem("gpt2-moe-4")
    assert claims["gpt2_lambdaml_tokens_per_s"]["ours"] == pytest.approx(
        evaluate(gpt2, lambdaml_plan(gpt2)).throughput_tokens_per_s)
    paper = claims["gpt2_lambdaml_tokens_per_s"]["by_profile"]["paper-lambda"]["ours"]
    assert paper == pytest.approx(22.9, rel=0.01)
    be = results["breakeven"]["profiles"]["default"]
    lowest = min(be.values(), key=lambda b: b["saving_at_rate"])
    cluster = cpu_cluster(load_problem(lowest["problem"]))
    assert lowest["cluster"]["cost_usd"] == pytest.approx(cluster.cost_usd)
    assert claims["cpu_cluster_saving"]["ours"] == pytest.approx(
        1 - lowest["lambda_cost_usd"] / cluster.cost_usd)


def test_a_profile_changes_the_claims_it_drives(quick, tmp_path):
    _, default = quick
    profile = tmp_path / "slow-cpu.json"
    constants = {"flops_per_second_per_vcpu": 5e9, "cpu_cluster_instance": "m6a.32xlarge"}
    profile.write_text(json.dumps({"constants": constants}))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["reproduce", "--quick", "--profile", str(profile), "--only",
                                      "calibration,regime,cluster", "--out", str(out)])
    assert result.exit_code == 0, result.output
    mine = {c["id"]: c for c in strict(out / "results.json")["claims"]}
    base = {c["id"]: c for c in default["claims"]}
    for cid in ("gpt2_lambdaml_tokens_per_s", "cpu_cluster_saving", "lambdaml_saving"):
        assert mine[cid]["ours"] != pytest.approx(base[cid]["ours"]), cid
        # the paper-fitted column does not use the run's profile
        assert mine[cid]["by_profile"]["paper-lambda"]["ours"] == pytest.approx(
            base[cid]["by_profile"]["paper-lambda"]["ours"]), cid
    gpt2 = load_problem("gpt2-moe-4", profile=str(profile))
    assert mine["gpt2_lambdaml_tokens_per_s"]["ours"] == pytest.approx(
        evaluate(gpt2, lambdaml_plan(gpt2)).throughput_tokens_per_s)
    assert "m6a.32xlarge" in mine["cpu_cluster_saving"]["reason"]
    assert "| ours (slow-cpu profile) |" in (out / "REPORT.md").read_text()
    assert mine["predictor_vs_token_id"]["reason"] == "not run"


def test_reproduce_rejects_bad_input(tmp_path):
    bad = CliRunner().invoke(cli, ["reproduce", "--quick", "--only", "fig99", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "allowed: calibration" in bad.output
    missing = CliRunner().invoke(cli, ["reproduce", "--quick", "--profile", str(tmp_path / "nope.json"),
                                       "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "error:" in missing.output
