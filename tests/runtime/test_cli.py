"""The click commands: run (local, dry run), calibrate, runtime serve, and clear user errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from lambda_runtime.cli import calibrate_command, run_command
from tests.runtime.conftest import fn, make_plan, one_layer

PLAN = make_plan(
    [
        one_layer("storage", [fn([0, 1]), fn([2], replicas=2)]),
        one_layer("direct", [fn([0]), fn([1, 2])]),
    ]
)
PLAN["predicted"] = {
    "cost_usd": 1e-6,
    "cost_gb_s": 0.05,
    "latency_s": 0.5,
    "throughput_tokens_per_s": 100.0,
}


def test_run_local_reports_measured_against_predicted(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN))
    args = [
        str(path),
        "--backend",
        "local",
        "--requests",
        "3",
        "--warmup",
        "0",
        "--tokens",
        "40",
        "--hidden",
        "16",
        "--ffn",
        "32",
        "--top-k",
        "2",
        "--json",
        "--no-prewarm",
    ]
    result = CliRunner().invoke(run_command, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["requests"] == 3 and out["ok_requests"] == 3 and out["tokens_per_request"] == 40
    assert out["billed_gb_s_per_request"] > 0 and out["usd_per_request"] > 0
    assert out["latency_p50_s"] <= out["latency_p95_s"] <= out["latency_p99_s"]
    assert out["cold_starts"] >= 4  # the first request started every function
    assert set(out["measured_vs_predicted"]) == {
        "cost_usd_relative_error",
        "cost_gb_s_relative_error",
        "latency_s_relative_error",
        "throughput_tokens_per_s_relative_error",
    }


def test_run_dry_run_and_bad_plan(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(PLAN))
    result = CliRunner().invoke(
        run_command, [str(path), "--backend", "aws", "--dry-run", "--tokens", "300"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("lambda:function") == 4
    assert "per 1,000 requests: $" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(make_plan([one_layer("teleport", [fn([0])])])))
    result = CliRunner().invoke(run_command, [str(bad), "--dry-run"])
    assert result.exit_code == 2
    assert "layers[0].method: 'teleport' not allowed" in result.output
    result = CliRunner().invoke(run_command, [str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_calibrate_writes_a_profile(tmp_path):
    out = tmp_path / "profile.json"
    args = ["-o", str(out), "--memory", "1769", "--hidden", "32", "--ffn", "64", "--tokens", "32"]
    result = CliRunner().invoke(calibrate_command, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output  # a clean run printed one (issue 14)
    profile = json.loads(out.read_text())
    constants = profile["constants"]
    for key in (
        "flops_per_second_per_vcpu",
        "storage_bandwidth_bytes_per_s",
        "storage_delay_s",
        "function_bandwidth_bytes_per_s",
        "warm_start_s",
        "cold_start_s",
        "runtime_overhead_mb",
    ):
        assert constants[key] > 0, key
    assert constants["cold_start_s"] > constants["warm_start_s"]
    assert "cpu_limit" in profile["backend"]
    try:  # the core's reader accepts it (when the core package is present)
        from cost_models.constants import load_constants
    except ImportError:
        return
    assert load_constants(out).warm_start_s == constants["warm_start_s"]


def test_runtime_serve_starts_and_stops(tmp_path):
    """`runtime serve` prints its endpoints and the awscli recipe; its credentials file (0600)
    is what a client uses, and it is gone once the server stops."""
    import os
    import stat

    creds = tmp_path / "creds"
    code = f"from lambda_runtime.cli import runtime; runtime(['serve', '--credentials-file', {str(creds)!r}])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        endpoint = recipe = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and recipe is None:
            line = proc.stdout.readline()
            if line.startswith("Lambda API:"):
                endpoint = line.split()[-1]
            if line.startswith("awscli:"):
                recipe = line.split(":", 1)[1].strip()
        assert endpoint and recipe and f"AWS_SHARED_CREDENTIALS_FILE={creds}" in recipe
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(creds)
        try:
            session = boto3.Session(profile_name="moeopt-local")
            lam = session.client("lambda", endpoint_url=endpoint, region_name="us-east-1")
            assert lam.list_functions()["Functions"] == []
        finally:
            del os.environ["AWS_SHARED_CREDENTIALS_FILE"]
        unsigned = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        with pytest.raises(unsigned.exceptions.ClientError, match="UnrecognizedClientException"):
            unsigned.list_functions()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not creds.exists()


def test_run_serves_the_converted_model_for_its_problem(tmp_path):
    """A user's path: solve the default problem, then `moeopt run` the plan on the real model."""
    from moeopt.cli import cli

    plan = tmp_path / "plan.json"
    solved = CliRunner().invoke(
        cli, ["solve", "--problem", "minilm-moe-8", "--solver", "greedy", "-o", str(plan)]
    )
    assert solved.exit_code == 0, solved.output
    args = [str(plan), "--requests", "1", "--warmup", "0", "--tokens", "600", "--json",
            "--no-network", "--host-vcpus", "64"]
    result = CliRunner().invoke(cli, ["run", *args])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"].startswith("converted all-MiniLM-L6-v2 MoE (8 experts")
    assert out["ok_requests"] == 1 and out["tokens_per_request"] == 600
    assert out["billed_gb_s_per_request"] > 0

    wrong = CliRunner().invoke(
        cli, ["run", *args, "--problem", "bert-moe-4", "--model", "converted"]
    )
    assert wrong.exit_code == 2
    assert "--model converted" in wrong.output and "hidden 384" in wrong.output
    assert "Traceback" not in wrong.output


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live children of ``pid`` (from /proc)."""
    import os

    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out[int(entry)] = cmd
    return out


def test_runtime_serve_exits_when_its_service_dies(tmp_path):
    """SIGKILL of the service process: `runtime serve` says so and exits 1 (it kept running,
    printing endpoints nobody answered on), and stops its S3."""
    import os

    creds = tmp_path / "creds"
    code = f"from lambda_runtime.cli import runtime; runtime(['serve', '--credentials-file', {str(creds)!r}])"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not proc.stdout.readline().startswith("awscli:"):
            pass
        service = [p for p, cmd in _children(proc.pid).items() if "lambda_runtime.local.server" in cmd]
        assert len(service) == 1
        os.kill(service[0], signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()
        assert "error: runtime serve: the local Lambda service exited (signal 9)" in err, err
        assert "Traceback" not in err
        assert not _children(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not creds.exists()
