"""Billing as Lambda bills it, written to catch mutants that the runtime suite let through
(benchmarks/mutants.py R1-R4): rounding, units, per-request figures, the exact payload limit."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile

import numpy as np
import pytest

from lambda_runtime.coordinator import ForwardResult, InvocationReport
from lambda_runtime.deploy import Deployment
from lambda_runtime.run import summarize

LIMIT = 6_291_456
SIZED = """
import time
def handler(event, context):
    time.sleep(event.get("sleep_ms", 0) / 1000)
    return "x" * (event["bytes"] - 2)  # a JSON string: two quote characters around it
"""
FIELDS = re.compile(r"Duration: ([\d.]+) ms\tBilled Duration: (\d+) ms.*?(?:Init Duration: ([\d.]+) ms)?\t?$",
                    re.M)


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("sized.py", source)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sized(lambda_client):
    lambda_client.create_function(
        FunctionName="sized", Runtime="python3.11", Role="arn:aws:iam::123456789012:role/x",
        Handler="sized.handler", Code={"ZipFile": _zip(SIZED)}, MemorySize=256, Timeout=10,
    )
    yield "sized"
    lambda_client.delete_function(FunctionName="sized")


def test_billed_duration_is_the_duration_rounded_up_to_the_millisecond(lambda_client, sized):
    """Durations of a few ms with every fraction: rounding to nearest would bill under the
    duration about half the time. REPORT prints durations to 0.01 ms, hence the 0.005 slack."""
    for i in range(12):
        payload = json.dumps({"bytes": 10, "sleep_ms": 3 + i / 12})
        resp = lambda_client.invoke(FunctionName=sized, Payload=payload, LogType="Tail")
        log = base64.b64decode(resp["LogResult"]).decode()
        m = FIELDS.search(log)
        assert m, log
        if m[3]:
            continue  # a cold start also bills its init, printed to 0.01 ms as well
        duration, billed = float(m[1]), int(m[2])
        assert duration - 0.005 <= billed < duration + 1.005, log


def test_a_response_of_exactly_6_mib_is_allowed_and_one_byte_more_is_not(lambda_client, sized):
    ok = lambda_client.invoke(FunctionName=sized, Payload=json.dumps({"bytes": LIMIT}))
    assert "FunctionError" not in ok and len(ok["Payload"].read()) == LIMIT
    over = lambda_client.invoke(FunctionName=sized, Payload=json.dumps({"bytes": LIMIT + 1}))
    assert over.get("FunctionError") == "Unhandled"
    assert "Function.ResponseSizeTooLarge" in over["Payload"].read().decode()


def _report(billed_ms: int, memory_mb: int) -> InvocationReport:
    return InvocationReport(layer=0, function="f", replica=0, attempt=1, tokens=1, error=None,
                            billed_ms=billed_ms, memory_mb=memory_mb)


def test_gb_seconds_use_1024_mb_per_gb():
    assert _report(1500, 2048).billed_gb_s == 3.0
    assert _report(1, 1024).billed_gb_s == 0.001


def test_run_summary_reports_per_request_figures():
    """Two identical requests cost what one does, per request."""
    request = ForwardResult("r", np.zeros(1), (_report(1000, 1024), _report(500, 2048)), (), 1.0, (1.0,),
                            (np.ones((1, 1)),))
    deployment = Deployment(layers=(), bucket="b", prefix="p")
    one = summarize([request], deployment, tokens=8)
    two = summarize([request, request], deployment, tokens=8)
    assert one.billed_gb_s_per_request == two.billed_gb_s_per_request == 2.0
    assert one.usd_per_request == pytest.approx(two.usd_per_request)
    assert one.invocations_per_request == two.invocations_per_request == 2
