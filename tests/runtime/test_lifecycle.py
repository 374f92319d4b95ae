"""What happens around invocations: Event retries on Lambda's schedule, honest REPORT lines when
a worker dies, the 128 MB floor, and leftovers of a server killed with SIGKILL."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lambda_runtime.local.cleanup import remove_stale_cgroups, remove_stale_folders
from lambda_runtime.local.events import RETRY_DELAYS_S, EventQueue
from tests.runtime.signing import signed_call

ROLE = "arn:aws:iam::123456789012:role/x"
FLAKY = """
import json, os, time
def handler(event, context):
    with open(event["log"], "a") as fh:
        fh.write(f"{time.time()} {context.aws_request_id}\\n")
    if event.get("fail"):
        raise RuntimeError("always fails")
    if event.get("allocate_mb"):
        block = bytearray(event["allocate_mb"] << 20)
        return len(block)
    return "ok"
"""
MAX_USED = re.compile(r"Max Memory Used: (\d+) MB")


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("flaky.py", source)
    return buf.getvalue()


@pytest.fixture(scope="module")
def flaky(lambda_client):
    made = []

    def make(name: str, memory: int) -> str:
        lambda_client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                                      Handler="flaky.handler", Code={"ZipFile": _zip(FLAKY)},
                                      MemorySize=memory, Timeout=30)
        made.append(name)
        return name

    yield make
    for name in made:
        lambda_client.delete_function(FunctionName=name)


def test_a_failing_event_is_retried_twice_with_lambdas_backoff(lambda_client, backend, flaky, tmp_path):
    name = flaky("flaky-event", 512)
    log = tmp_path / "attempts"
    scale = backend.event_time_scale
    event = json.dumps({"log": str(log), "fail": True})
    queued = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=event)
    assert queued["StatusCode"] == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and backend.status()["events"]["failed"] < 1:
        time.sleep(0.1)
    time.sleep(RETRY_DELAYS_S[0] * scale)  # no fourth attempt comes
    lines = [line.split() for line in log.read_text().splitlines()]
    times = [float(t) for t, _ in lines]
    assert len(times) == 3, times  # the first attempt and Lambda's two retries
    # every attempt runs under the request id the 202 gave, as Lambda's retries do
    assert {rid for _, rid in lines} == {queued["ResponseMetadata"]["RequestId"]}
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= RETRY_DELAYS_S[0] * scale and gaps[1] >= RETRY_DELAYS_S[1] * scale, gaps


def test_throttled_events_wait_and_bad_scale_is_refused():
    calls = []

    def run(name: str, payload: bytes, request_id: str) -> str | None:
        from lambda_runtime.local.errors import ApiError

        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ApiError(429, "TooManyRequestsException", "Rate Exceeded.")
        return None

    q = EventQueue(run, time_scale=0.01)
    try:
        q.submit("f", b"{}")
        deadline = time.monotonic() + 10
        while q.status().succeeded < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert q.status().succeeded == 1 and len(calls) == 3
        assert calls[2] - calls[1] >= calls[1] - calls[0]  # backoff grows
    finally:
        q.stop()
    with pytest.raises(ValueError, match="time_scale"):
        EventQueue(run, time_scale=0)


def test_small_functions_run_in_128_mb_and_a_report_is_honest_when_the_worker_dies(
        lambda_client, flaky, tmp_path):
    name = flaky("flaky-128", 128)
    log = str(tmp_path / "log")
    resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"log": log}), LogType="Tail")
    assert "FunctionError" not in resp and json.loads(resp["Payload"].read()) == "ok"
    used = int(MAX_USED.search(base64.b64decode(resp["LogResult"]).decode())[1])
    assert 5 < used < 128  # a fresh interpreter, not the fork server's torch
    resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"log": log, "allocate_mb": 400}),
                                LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "Runtime.OutOfMemory"
    used = int(MAX_USED.search(base64.b64decode(resp["LogResult"]).decode())[1])
    assert used > 128  # the peak it reached before it was killed, not 0


def test_leftovers_of_a_killed_server_are_removed_at_the_next_start(tmp_path):
    """`runtime serve` killed with SIGKILL (all of its process group) leaves its temp folder and
    cgroups; the next backend removes them, and the workers left in them."""
    proc = subprocess.Popen([sys.executable, "-m", "moeopt.cli", "runtime", "serve", "--no-network"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    endpoint = creds = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and creds is None:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("Lambda API:"):
                endpoint = line.split()[-1]
            if line.startswith("credentials:"):
                creds = Path(line.split()[1])
        assert endpoint and creds and creds.exists()
        folder = creds.parent

        class _Backend:  # what signed_call needs of a backend
            lambda_endpoint = endpoint
            credentials = _client_credentials(creds)

        status, _, out = signed_call(_Backend, "POST", "/2015-03-31/functions", {
            "FunctionName": "left", "Role": ROLE, "Runtime": "python3.11",
            "Handler": "flaky.handler", "MemorySize": 512,
            "Code": {"ZipFile": base64.b64encode(_zip(FLAKY)).decode()}})
        assert status == 201, out
        status, _, _ = signed_call(_Backend, "POST", "/2015-03-31/functions/left/invocations",
                                   {"log": str(tmp_path / "x")})
        assert status == 200
        _, _, state = signed_call(_Backend, "GET", "/moeopt/status")
        cgroup = state["environment_list"][0]["cgroup"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert folder.exists()
    roots = [Path(cgroup).parent] if cgroup else []
    assert all(r.exists() for r in roots)
    from lambda_runtime.local import LocalBackend

    with LocalBackend(network=None, start_method="spawn"):
        assert not folder.exists()
        assert not any(r.exists() for r in roots)


def _client_credentials(path: Path):
    from lambda_runtime.local.credentials import Credentials

    fields = dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)
    return Credentials(fields["aws_access_key_id"], fields["aws_secret_access_key"])


def test_stale_folder_rules(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = tmp_path / f"moeopt-local-{dead.pid}-abc"
    live = tmp_path / f"moeopt-local-{os.getpid()}-abc"
    other = tmp_path / "moeopt-local-xyz"
    for d in (mine, live, other):
        d.mkdir()
    assert remove_stale_folders(tmp_path) == [mine]
    assert live.exists() and other.exists() and not mine.exists()
    assert remove_stale_cgroups(tmp_path / "nowhere") == []
