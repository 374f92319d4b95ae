"""The local Lambda API through boto3's unmodified client: control plane, invocation types, errors."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile

import pytest

from lambda_runtime.local import LocalBackend

REPORT = re.compile(
    r"^REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d{2} ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: (\d+) MB\tMax Memory Used: (\d+) MB\t(Init Duration: \d+\.\d{2} ms\t)?$",
    re.M,
)

ECHO = """
import json, os
def handler(event, context):
    if event.get("raise"):
        raise ValueError("asked to raise")
    if event.get("print"):
        print("hello from", context.function_name)
    if event.get("big"):
        return "x" * 6_400_000
    return {"echo": event, "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            "remaining_ms": context.get_remaining_time_in_millis()}
"""


ROLE = "arn:aws:iam::123456789012:role/x"


def zip_code(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("echo.py", source)
    return buf.getvalue()


@pytest.fixture(scope="module")
def echo(lambda_client):
    lambda_client.create_function(
        FunctionName="echo",
        Runtime="python3.11",
        Role="arn:aws:iam::123456789012:role/x",
        Handler="echo.handler",
        Code={"ZipFile": zip_code(ECHO)},
        MemorySize=256,
        Timeout=5,
        Tags={"team": "runtime"},
    )
    yield "echo"
    lambda_client.delete_function(FunctionName="echo")


def test_control_plane_roundtrip(lambda_client, echo):
    cfg = lambda_client.get_function(FunctionName=echo)
    assert (
        cfg["Configuration"]["MemorySize"] == 256
        and cfg["Configuration"]["Handler"] == "echo.handler"
    )
    assert cfg["Tags"] == {"team": "runtime"}
    assert echo in [f["FunctionName"] for f in lambda_client.list_functions()["Functions"]]
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.create_function(
            FunctionName=echo, Role=ROLE, Runtime="python3.11", Handler="echo.handler",
            Code={"ZipFile": zip_code(ECHO)},
        )
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException, match="MemorySize"):
        lambda_client.create_function(
            FunctionName="too-big",
            Role=ROLE,
            Runtime="python3.11",
            Handler="echo.handler",
            Code={"ZipFile": zip_code(ECHO)},
            MemorySize=20_000,
        )


def test_request_response_with_log_tail(lambda_client, echo):
    resp = lambda_client.invoke(
        FunctionName=echo, Payload=json.dumps({"print": True, "n": 1}), LogType="Tail"
    )
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    body = json.loads(resp["Payload"].read())
    assert body["echo"]["n"] == 1 and body["memory"] == "256"
    assert 0 < body["remaining_ms"] <= 5000
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "hello from echo" in log
    m = REPORT.search(log)
    assert m, log
    assert m.group(1) == "256" and int(m.group(2)) > 10


def test_function_error_header(lambda_client, echo):
    resp = lambda_client.invoke(FunctionName=echo, Payload=json.dumps({"raise": True}))
    assert resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "asked to raise"
    # the environment survives a handled error and serves the next request warm
    resp = lambda_client.invoke(FunctionName=echo, Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(resp["LogResult"]).decode()


def test_response_over_6mb_is_a_function_error(lambda_client, echo):
    resp = lambda_client.invoke(FunctionName=echo, Payload=json.dumps({"big": True}))
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"


def test_event_and_dry_run(lambda_client, backend, echo):
    assert lambda_client.invoke(FunctionName=echo, InvocationType="DryRun")["StatusCode"] == 204
    before = backend.status()["invocations"]
    assert (
        lambda_client.invoke(FunctionName=echo, InvocationType="Event", Payload=b"{}")["StatusCode"]
        == 202
    )
    deadline = time.monotonic() + 20
    while backend.status()["invocations"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.status()["invocations"] == before + 1


def test_unknown_function_is_404(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as info:
        lambda_client.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_backend_status_reports_cpu_limit(backend):
    status = backend.status()
    cpu = status["cpu_limit"]
    assert set(cpu) == {"enforced", "mechanism", "detail"}
    assert cpu["mechanism"] in ("cgroup-v1", "cgroup-v2", "none")
    assert cpu["enforced"] == (cpu["mechanism"] != "none")
    assert status["payload_limit_bytes"] == 6_291_456


def test_vcpu_share_is_applied_as_cfs_quota(lambda_client, backend, echo):
    lambda_client.invoke(FunctionName=echo, Payload=b"{}")
    status = backend.status()["cpu_limit"]
    if not status["enforced"]:
        pytest.skip(f"cgroup cpu quota not available here: {status['detail']}")
    from pathlib import Path

    from lambda_runtime.local.limits import PERIOD_US

    cgroup = Path(next(e["cgroup"] for e in backend.status()["environment_list"]
                       if e["function"] == echo))
    quota_file = cgroup / (
        "cpu.cfs_quota_us" if status["mechanism"] == "cgroup-v1" else "cpu.max"
    )
    quota = int(quota_file.read_text().split()[0])
    assert quota == int(256 / 1769 * PERIOD_US)  # 256 MB -> 0.145 vCPU
    assert (cgroup / "cgroup.procs").read_text().split()  # the worker runs inside it


def test_spawned_worker_runs_awslambdaric_with_cold_start_report():
    """The faithful path: a fresh ``python -m awslambdaric`` per environment, Init Duration once."""
    with LocalBackend(start_method="spawn", cpu_limits=False) as b:
        lam = b.lambda_client(read_timeout=120)
        lam.create_function(
            FunctionName="echo2",
            Role=ROLE,
            Runtime="python3.11",
            Handler="echo.handler",
            Code={"ZipFile": zip_code(ECHO)},
            MemorySize=512,
            Timeout=30,
        )
        logs = [
            base64.b64decode(
                lam.invoke(FunctionName="echo2", Payload=b"{}", LogType="Tail")["LogResult"]
            ).decode()
            for _ in range(2)
        ]
        assert b.status()["start_method"] == "spawn"
    first, second = (REPORT.search(x) for x in logs)
    assert first and second
    assert first.group(3) and not second.group(3)  # Init Duration on the cold start only
    fields = dict(re.findall(r"(Duration|Billed Duration|Init Duration): ([\d.]+) ms", logs[0]))
    # the init phase is billed on a cold start (container images; all on-demand functions since 2025)
    assert int(fields["Billed Duration"]) >= float(fields["Duration"]) + float(
        fields["Init Duration"]
    )


def test_handler_that_cannot_load_is_an_init_error(lambda_client):
    lambda_client.create_function(
        FunctionName="broken",
        Role=ROLE,
        Runtime="python3.11",
        Handler="nomodule.handler",
        Code={"ZipFile": zip_code(ECHO)},
        MemorySize=512,
        Timeout=5,
    )
    try:
        resp = lambda_client.invoke(FunctionName="broken", Payload=b"{}")
        assert resp["FunctionError"] == "Unhandled"
        body = json.loads(resp["Payload"].read())
        assert body["errorType"] == "Runtime.ImportModuleError"
        assert "nomodule" in body["errorMessage"]
    finally:
        lambda_client.delete_function(FunctionName="broken")
