"""The local Lambda API and Runtime API against clients that stall, lie about their bodies or
never finish them, and against every control-plane input Lambda would refuse: each answers a
4xx or closes cleanly, and the server serves a normal invoke after all of them."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from lambda_runtime.local.http import FIRST_REQUEST_S, READ_TIMEOUT_S, LoopbackHTTPServer
from tests.runtime.signing import raw_exchange, signed_call, signed_headers

ROLE = "arn:aws:iam::123456789012:role/x"
ECHO = """
import base64, os, socket, time
def _exchange(data):
    # from inside the function: only its own worker may reach its Runtime API
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    t, out = time.monotonic(), b""
    with socket.create_connection((host, int(port)), timeout=30) as s:
        if data:
            s.sendall(data)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
    return {"status": int(out.split(b" ", 2)[1]) if out else 0, "s": time.monotonic() - t}
def handler(event, context):
    if "raw" in event:
        return {"raw": [_exchange(base64.b64decode(r)) for r in event["raw"]]}
    return {"echo": event, "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
            "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "mode": os.environ.get("MODE")}
"""
INVOKE = "/2015-03-31/functions/robust/invocations"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("echo.py", ECHO)
    return buf.getvalue()


@pytest.fixture(scope="module")
def robust(lambda_client):
    lambda_client.create_function(FunctionName="robust", Runtime="python3.11", Role=ROLE,
                                  Handler="echo.handler", Code={"ZipFile": _zip()},
                                  MemorySize=512, Timeout=30)
    yield "robust"
    lambda_client.delete_function(FunctionName="robust")


def _status(raw: bytes) -> int:
    """The status of the first response in ``raw`` (0: the server closed without answering)."""
    if not raw:
        return 0
    return int(raw.split(b" ", 2)[1])


def _held(endpoint: str, data: bytes, limit_s: float) -> float:
    """Send ``data`` (maybe nothing), then wait for the server to close: seconds it took."""
    host = urlsplit(endpoint)
    t = time.monotonic()
    with socket.create_connection((host.hostname, host.port), timeout=limit_s) as s:
        if data:
            s.sendall(data)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return float("inf")
    return time.monotonic() - t


def _stalled_connections_are_dropped(endpoint: str) -> None:
    partial = b"POST " + INVOKE.encode() + b" HTTP/1.1\r\nHost: x\r\n"  # headers never end
    body_short = b"POST " + INVOKE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    cases = [b""] * 20 + [partial] * 15 + [body_short] * 15
    with ThreadPoolExecutor(len(cases)) as pool:
        held = list(pool.map(lambda d: _held(endpoint, d, 30.0), cases))
    # nothing held longer than its timeout, plus the reaper's tick and a busy machine's slack
    assert max(held) < FIRST_REQUEST_S + READ_TIMEOUT_S + 10, held


def _bad_framing_is_refused(endpoint: str) -> None:
    head = f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    cases = {
        "Content-Length: -1\r\n\r\n{}": 400,
        "Content-Length: abc\r\n\r\n{}": 400,
        "Content-Length: 1e12\r\n\r\n{}": 400,
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\n{}": 400,
        "Content-Length: 99999999999999999\r\n\r\n": 413,
        "Content-Length: 200000000\r\n\r\n": 413,  # 200 MB: refused before a byte of it is sent
        "Content-Length: 200000000\r\nExpect: 100-continue\r\n\r\n": 413,
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n": 411,
        "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n": 411,
    }
    for tail, status in cases.items():
        raw = raw_exchange(endpoint, (head + tail).encode())
        assert _status(raw) == status, (tail, raw[:300])
        assert b"HTTP/1.1 100" not in raw, tail  # a refused body is never asked for
        if status in (411, 413):
            assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["message"]
    for garbage in (b"GARBAGE\r\n\r\n", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n"):
        assert _status(raw_exchange(endpoint, garbage)) in (0, 400, 414, 431)


def _incomplete_requests_never_invoke(backend, endpoint: str) -> None:
    """Properly signed, but the client shuts its write side before the body is complete."""
    body = json.dumps({"pad": "x" * 1000}).encode()
    headers = signed_headers(backend.credentials, "POST", endpoint + INVOKE, body)
    head = f"POST {INVOKE} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    before = backend.status()
    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(lambda _: raw_exchange(endpoint, head.encode() + body[:100],
                                                       shut_write=True), range(50)))
    assert {_status(a) for a in answers} <= {0, 400}, {a[:100] for a in answers}
    after = backend.status()
    assert after["invocations"] == before["invocations"]
    assert after["environments"] <= before["environments"] + 1


def test_lambda_api_survives_every_raw_http_case(backend, lambda_client, robust):
    endpoint = backend.lambda_endpoint
    lambda_client.invoke(FunctionName=robust, Payload=b"{}")  # warm
    _bad_framing_is_refused(endpoint)
    _incomplete_requests_never_invoke(backend, endpoint)
    _stalled_connections_are_dropped(endpoint)
    # a burst of connections beyond the old backlog of 5 is served (each gets its 403)
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda _: raw_exchange(
            endpoint, b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            range(150)))
    assert {_status(a) for a in answers} == {403}
    assert LoopbackHTTPServer.request_queue_size >= 128
    out = json.loads(lambda_client.invoke(FunctionName=robust, Payload=b'{"n": 7}')["Payload"].read())
    assert out["echo"] == {"n": 7}


def test_runtime_api_survives_raw_http_cases(lambda_client, robust):
    """The cases are sent by the function itself (its worker is the only process the Runtime
    API serves; test_server_security checks that another's connection is closed unread)."""
    first = json.loads(lambda_client.invoke(FunctionName=robust, Payload=b"{}")["Payload"].read())
    path = "/2018-06-01/runtime/invocation/abc/response"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    cases = {"Content-Length: -1\r\n\r\n": 400, "Content-Length: zz\r\n\r\n": 400,
             "Content-Length: 999999999999\r\n\r\n": 413,
             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 411,
             "Content-Length: 2\r\n\r\n{}": 400}  # 400: not its request id
    raw = [base64.b64encode((head + tail).encode()).decode() for tail in cases] + [""]
    out = lambda_client.invoke(FunctionName=robust, Payload=json.dumps({"raw": raw}).encode())
    assert "FunctionError" not in out, out["Payload"].read()
    answers = json.loads(out["Payload"].read())["raw"]
    assert [a["status"] for a in answers[:-1]] == list(cases.values()), answers
    assert answers[-1]["status"] == 0 and answers[-1]["s"] < FIRST_REQUEST_S + 10  # sent nothing
    again = json.loads(lambda_client.invoke(FunctionName=robust, Payload=b'{"k": 1}')["Payload"].read())
    assert again["echo"] == {"k": 1} and again["runtime_api"] == first["runtime_api"]  # still warm


def _zip_b64() -> str:
    return base64.b64encode(_zip()).decode()


BAD_CONTROL_PLANE = [
    ("PUT", "/2017-10-31/functions/robust/concurrency", {}, "ReservedConcurrentExecutions"),
    ("PUT", "/2017-10-31/functions/robust/concurrency", {"ReservedConcurrentExecutions": -5},
     "ReservedConcurrentExecutions"),
    ("PUT", "/2017-10-31/functions/robust/concurrency", {"ReservedConcurrentExecutions": "x"},
     "ReservedConcurrentExecutions"),
    ("PUT", "/2017-10-31/functions/robust/concurrency", {"ReservedConcurrentExecutions": 10**9},
     "ReservedConcurrentExecutions"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f1", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler", "MemorySize": "abc",
                                       "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}},
     "MemorySize"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f2", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Code": {"ZipFile": "%%%not base64"}},
     "base64"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f3", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler",
                                       "Code": {"ZipFile": base64.b64encode(b"not a zip").decode()}},
     "unzip"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f4", "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Code": {"ZipFile": "x"}}, "Role"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f5", "Role": "r", "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Code": {"ZipFile": "x"}}, "Role"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "a/b", "Role": ROLE}, "FunctionName"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f6", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Code": {"ZipFile": _zip_b64()},
                                       "Environment": {"Variables": {"AWS_SECRET_ACCESS_KEY": "x"}}},
     "reserved keys"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f7", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Code": {"ZipFile": _zip_b64()},
                                       "Environment": {"Variables": {"BIG": "x" * 5000}}}, "4KB"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f8", "Role": ROLE, "Runtime": "nodejs20.x",
                                       "Handler": "echo.handler", "Code": {"ZipFile": _zip_b64()}},
     "Runtime"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f9", "Role": ROLE, "Runtime": "python3.11",
                                       "Handler": "echo.handler", "Timeout": 901,
                                       "Code": {"ZipFile": _zip_b64()}}, "Timeout"),
    ("POST", "/2015-03-31/functions", {"FunctionName": "f10", "Role": ROLE, "PackageType": "Image",
                                       "Code": {"ImageUri": "local:relative/dir"},
                                       "ImageConfig": {"Command": ["m.handler"]}}, "ImageUri"),
    ("PUT", "/2015-03-31/functions/robust/configuration", {"MemorySize": True}, "MemorySize"),
    ("PUT", "/2015-03-31/functions/robust/configuration", {"Environment": {"Variables": {"1X": "y"}}},
     "Environment"),
]


def test_control_plane_refuses_bad_input_with_lambdas_400(backend, lambda_client, robust):
    for method, path, body, field in BAD_CONTROL_PLANE:
        status, headers, out = signed_call(backend, method, path, body)
        assert status == 400, (path, body, status, out)
        assert headers["x-amzn-errortype"] == "InvalidParameterValueException", (body, headers)
        assert field in out["message"], (body, out)
    for raw in (b"{not json", b"[1, 2]"):
        status, headers, _ = signed_call(backend, "POST", "/2015-03-31/functions", raw)
        assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert [f["FunctionName"] for f in lambda_client.list_functions()["Functions"]
            if f["FunctionName"].startswith("f")] == []  # nothing half-created
    out = json.loads(lambda_client.invoke(FunctionName=robust, Payload=b"{}")["Payload"].read())
    assert out["echo"] == {}


def test_update_configuration_concurrency_and_account_settings(lambda_client, robust):
    """The operations awscli users call: update-function-configuration,
    delete-function-concurrency, get-account-settings."""
    before = lambda_client.get_account_settings()
    assert before["AccountLimit"]["ConcurrentExecutions"] == 64
    lambda_client.put_function_concurrency(FunctionName=robust, ReservedConcurrentExecutions=5)
    assert lambda_client.get_function_concurrency(FunctionName=robust)["ReservedConcurrentExecutions"] == 5
    assert lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == \
        before["AccountLimit"]["UnreservedConcurrentExecutions"] - 5
    lambda_client.delete_function_concurrency(FunctionName=robust)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(FunctionName=robust)
    assert "Concurrency" not in lambda_client.get_function(FunctionName=robust)
    lambda_client.invoke(FunctionName=robust, Payload=b"{}")  # a warm environment of the old one
    cfg = lambda_client.update_function_configuration(
        FunctionName=robust, MemorySize=640, Environment={"Variables": {"MODE": "new"}})
    assert cfg["MemorySize"] == 640 and cfg["Environment"]["Variables"] == {"MODE": "new"}
    assert lambda_client.get_function_configuration(FunctionName=robust)["MemorySize"] == 640
    out = json.loads(lambda_client.invoke(FunctionName=robust, Payload=b"{}")["Payload"].read())
    assert out["memory"] == "640" and out["mode"] == "new"  # a new environment, new configuration
    assert lambda_client.get_account_settings()["AccountUsage"]["FunctionCount"] >= 1
