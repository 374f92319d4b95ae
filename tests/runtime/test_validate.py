"""`moeopt validate` on a tiny subset: every field of its report, from a real run."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lambda_runtime.cli import validate_command


def test_validate_reports_every_field():
    args = ["--plans", "pipelined-256,storage-256", "--requests", "2", "--warmup", "1", "--json"]
    result = CliRunner().invoke(validate_command, [*args, "--tolerance", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"plans", "pipelined_over_storage", "profile", "emulation"} <= report.keys()
    assert report["emulation"]["storage_delay_s"] > 0 and report["profile"] == "built-in"
    for row in report["plans"]:
        assert {"name", "method", "tokens", "memory_mb", "predicted", "measured", "error"} <= row.keys()
        assert set(row["predicted"]) == {"cost_gb_s", "latency_s"}
        assert set(row["measured"]) == {"cost_gb_s", "latency_s", "cost_gb_s_iqr", "latency_s_iqr"}
        assert set(row["error"]) == {"cost", "latency"}
        assert row["measured"]["latency_s"] > 0 and row["predicted"]["cost_gb_s"] > 0
        for k, key in (("cost", "cost_gb_s"), ("latency", "latency_s")):
            expected = row["measured"][key] / row["predicted"][key] - 1
            assert abs(row["error"][k] - expected) < 1e-9
    assert report["pipelined_over_storage"] is None  # the 2,560-token pair was not run
    strict = CliRunner().invoke(validate_command, [*args, "--tolerance", "1e-9", "--plans", "storage-256"])
    assert strict.exit_code == 5 and "error" in strict.output


def test_validate_rejects_unknown_plans():
    result = CliRunner().invoke(validate_command, ["--plans", "warp-drive"])
    assert result.exit_code == 2 and "allowed: direct-256" in result.output
