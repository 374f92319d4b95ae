"""The local server as an attacker on loopback and a curious function see it: functions get
Lambda's environment and their own S3-only credentials, never the host's variables; every
request must be signed with the server's credentials; an event cannot make the handler open an
arbitrary path."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import zipfile

import boto3
import pytest
from botocore.config import Config

from lambda_runtime import handler as h
from lambda_runtime.codec import PayloadError
from tests.runtime.conftest import HOST_MARKERS, fn, make_plan, one_layer
from tests.runtime.signing import call, signed_headers

ROLE = "arn:aws:iam::123456789012:role/x"
SNOOP = """
import json, os
def handler(event, context):
    out = {"environ": dict(os.environ),
           "proc": open('/proc/self/environ', 'rb').read().decode('utf-8', 'replace')}
    others = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            others.append(open(f'/proc/{pid}/environ', 'rb').read().decode('utf-8', 'replace'))
        except OSError:
            pass
    out["others"] = " | ".join(others)
    out["cap_eff"] = next(l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff'))
    if event.get("lambda_endpoint"):
        import boto3
        s3 = boto3.client("s3")  # its own credentials, the local S3's endpoint from its environment
        s3.put_object(Bucket=event["bucket"], Key="from-function", Body=b"hello")
        out["s3"] = s3.get_object(Bucket=event["bucket"], Key="from-function")["Body"].read().decode()
        lam = boto3.client("lambda", endpoint_url=event["lambda_endpoint"])
        try:
            lam.list_functions()
            out["lambda"] = "allowed"
        except Exception as exc:
            out["lambda"] = getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc))
    return out
"""


def _zip(source: str, name: str = "snoop.py") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, source)
    return buf.getvalue()


@pytest.fixture(scope="module")
def snoop(lambda_client):
    names = []
    for memory in (128, 1024):  # spawned fresh (below the fork server's footprint) and forked
        name = f"snoop-{memory}"
        lambda_client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                                      Handler="snoop.handler", Code={"ZipFile": _zip(SNOOP)},
                                      MemorySize=memory, Timeout=30)
        names.append(name)
    yield names
    for name in names:
        lambda_client.delete_function(FunctionName=name)


def test_functions_see_lambdas_environment_not_the_servers(lambda_client, backend, snoop):
    forked = {}
    for name in snoop:
        out = json.loads(lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        env, proc = out["environ"], out["proc"]
        for marker in HOST_MARKERS.values():  # set in the server's environment at its start
            assert marker not in json.dumps(env) and marker not in proc, name
        assert set(env) - {"_X_AMZN_TRACE_ID"} <= {
            "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
            "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API",
            "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "HOME", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT",
            "LANG", "LD_LIBRARY_PATH", "MOEOPT_S3_WAIT", "PATH", "PYTHONPATH", "PYTHONUNBUFFERED",
            "TMPDIR", "TZ", "_HANDLER"}, sorted(env)
        memory = name.rsplit("-", 1)[1]
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == memory
        assert env["AWS_REGION"] == "us-east-1" and env["_HANDLER"] == "snoop.handler"
        assert os.path.isdir(env["LAMBDA_TASK_ROOT"]) and env["TZ"] == ":UTC"
        # its own credentials: an execution environment's key, not the client's, not the host's
        assert env["AWS_ACCESS_KEY_ID"].startswith("MOEOPTENV")
        assert env["AWS_ACCESS_KEY_ID"] != backend.credentials.access_key_id
        assert env["AWS_SECRET_ACCESS_KEY"] != backend.credentials.secret_access_key
        listing = backend.status()["environment_list"]
        forked[name] = next(e["forked"] for e in listing if e["function"] == name)
    assert forked == {"snoop-128": False, "snoop-1024": True}


def test_a_functions_role_reaches_s3_but_not_the_lambda_api(lambda_client, s3_client, backend, snoop):
    s3_client.create_bucket(Bucket="snoop-bucket")
    event = {"lambda_endpoint": backend.lambda_endpoint, "bucket": "snoop-bucket"}
    out = json.loads(lambda_client.invoke(FunctionName=snoop[1], Payload=json.dumps(event))["Payload"].read())
    assert out["s3"] == "hello"
    assert out["lambda"] == "AccessDeniedException"


def test_unsigned_or_wrongly_signed_lambda_requests_get_403(backend):
    endpoint = backend.lambda_endpoint
    status, headers, body = call(endpoint, "GET", "/2015-03-31/functions")
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["message"] == "Missing Authentication Token"

    def client(key: str, secret: str):
        return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(retries={"total_max_attempts": 1}))

    good = backend.credentials
    cases = {
        "InvalidSignatureException": client(good.access_key_id, good.secret_access_key[::-1]),
        "UnrecognizedClientException": client("AKIAIOSFODNN7EXAMPLE", "testing"),
    }
    for code, lam in cases.items():
        with pytest.raises(lam.exceptions.ClientError) as info:
            lam.list_functions()
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # signed ten minutes ago: outside the 5-minute window
    url = endpoint + "/2015-03-31/functions"
    late = signed_headers(good, "GET", url, when=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    status, headers, body = call(endpoint, "GET", "/2015-03-31/functions", headers=late)
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert json.loads(body)["message"].startswith("Signature expired")
    # a signed body swapped for another of the same length: the payload hash no longer matches
    path = "/2015-03-31/functions/nobody/invocations"
    signed = signed_headers(good, "POST", endpoint + path, b'{"a": 1}')
    status, headers, _ = call(endpoint, "POST", path, b'{"a": 2}', signed)
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    # the same request, unaltered, is authenticated (and the function does not exist)
    status, headers, _ = call(endpoint, "POST", path, b'{"a": 1}', signed)
    assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException"


def test_unsigned_or_wrongly_signed_s3_requests_get_403(backend, s3_client):
    s3_client.create_bucket(Bucket="auth-bucket")
    s3_client.put_object(Bucket="auth-bucket", Key="k", Body=b"secret weights")
    endpoint = backend.s3_endpoint
    status, _, body = call(endpoint, "GET", "/auth-bucket/k")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    wrong = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id=backend.credentials.access_key_id,
                         aws_secret_access_key="not-the-secret")
    with pytest.raises(wrong.exceptions.ClientError, match="SignatureDoesNotMatch"):
        wrong.get_object(Bucket="auth-bucket", Key="k")
    stranger = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
    with pytest.raises(stranger.exceptions.ClientError, match="InvalidAccessKeyId"):
        stranger.get_object(Bucket="auth-bucket", Key="k")
    # a declared payload hash that is not the body's
    body = b"tampered"
    url = endpoint + "/auth-bucket/k2"
    declared = {"x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()}
    headers = signed_headers(backend.credentials, "PUT", url, b"original", service="s3",
                             headers=declared)
    status, _, out = call(endpoint, "PUT", "/auth-bucket/k2", body, headers)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in out
    # boto3's defaults (payload hashed over http) and presigned URLs work
    plain = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         **backend.credentials.boto3())
    plain.put_object(Bucket="auth-bucket", Key="k3", Body=b"x" * 1000)
    assert plain.get_object(Bucket="auth-bucket", Key="k3")["Body"].read() == b"x" * 1000
    params = {"Bucket": "auth-bucket", "Key": "k"}
    v4 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(signature_version="s3v4"), **backend.credentials.boto3())
    path = v4.generate_presigned_url("get_object", Params=params, ExpiresIn=60)[len(endpoint):]
    assert call(endpoint, "GET", path)[2] == b"secret weights"
    assert call(endpoint, "GET", path.replace("X-Amz-Signature=", "X-Amz-Signature=0"))[0] == 403
    v2 = plain.generate_presigned_url("get_object", Params=params, ExpiresIn=60)[len(endpoint):]
    status, _, out = call(endpoint, "GET", v2)  # SigV2: S3 no longer takes it, nor do we
    assert status == 400 and b"InvalidRequest" in out and b"AWS4-HMAC-SHA256" in out


def test_credentials_file_is_private_and_names_a_profile(backend):
    path = backend.credentials_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "[moeopt-local]" in text and backend.credentials.secret_access_key in text
    assert "testing" not in text


def test_event_weights_only_from_the_deployment_bucket_or_the_package(deploy, lambda_client, s3_client):
    from lambda_runtime.model import SeededMoE

    moe = SeededMoE(layers=1, experts=2, hidden=8, ffn=16, top_k=1, seed=3)
    d = deploy(make_plan([one_layer("direct", [fn([0, 1])])]), moe)
    name = d.layers[0].functions[0].name
    from lambda_runtime.codec import encode_tensor
    from lambda_runtime.deploy import weight_key

    x = encode_tensor(moe.tokens(3))
    good = f"s3://{d.bucket}/{weight_key(d.prefix, 0, 0)}"

    def invoke(weights: dict[str, str]) -> dict:
        event = {"method": "direct", "tokens": x, "segments": [[0, 3]], "weights": weights}
        resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event))
        return {"error": resp.get("FunctionError"), **json.loads(resp["Payload"].read())}

    assert invoke({"0": good})["error"] is None
    s3_client.create_bucket(Bucket="elsewhere")
    for bad, why in (("file:///etc/passwd", "not a file inside the function's package"),
                     ("/etc/hostname", "not a file inside the function's package"),
                     ("../../../../../../etc/passwd", "not a file inside the function's package"),
                     ("s3://elsewhere/k", "outside the deployment's bucket")):
        out = invoke({"0": bad})
        assert out["error"] == "Unhandled" and why in out["errorMessage"], (bad, out)


def test_event_weights_rule_resolves_symlinks(tmp_path, monkeypatch):
    root = tmp_path / "task"
    root.mkdir()
    (root / "w.npz").write_bytes(b"x")
    (root / "link.npz").symlink_to("/etc/hostname")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(root))
    monkeypatch.setenv("MOEOPT_WEIGHTS", json.dumps({"0": "s3://bkt/w0.npz"}))
    assert h._event_weight("w.npz") == f"file://{root}/w.npz"
    assert h._event_weight("s3://bkt/other.npz") == "s3://bkt/other.npz"
    for bad in ("link.npz", str(tmp_path), "s3://bkt2/w0.npz", "s3://bkt/", "", 3):
        with pytest.raises(PayloadError, match="weights"):
            h._event_weight(bad)


def test_only_its_worker_reaches_an_environments_runtime_api(lambda_client, snoop):
    """Another local process that finds an environment's Runtime API port (a scan) can neither
    take its next event (payload), answer for the function, nor fail its init: its connection is
    closed unread. The function's own worker is served as before, forked or spawned."""
    import socket
    import threading

    for name in snoop:
        first = json.loads(lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        host, port = first["environ"]["AWS_LAMBDA_RUNTIME_API"].split(":")
        answers: list[bytes] = []

        def thief(request: bytes, address: tuple[str, int], answers: list[bytes]) -> None:
            with socket.create_connection(address, timeout=20) as s:
                s.sendall(request)
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                except OSError:
                    pass
                answers.append(data)

        steal = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        fail = (b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 2\r\n\r\n{}")
        thieves = [threading.Thread(target=thief, args=(req, (host, int(port)), answers))
                   for req in (steal, steal, fail)]
        for t in thieves:
            t.start()
        for t in thieves:
            t.join(30)
        served = [lambda_client.invoke(FunctionName=name, Payload=json.dumps({"n": i}).encode())
                  for i in range(3)]
        assert answers == [b"", b"", b""], answers  # closed unread, no event handed out
        for response in served:
            assert "FunctionError" not in response, response["Payload"].read()
            assert "environ" in json.loads(response["Payload"].read())


BYSTANDER = """
import sys, time
from lambda_runtime.local.privileges import drop_privileges, protect_this_process
drop_privileges()  # as capless as the function: only dumpability decides (a non-root user's case)
if sys.argv[1] == "protected":
    protect_this_process()
print("ready", flush=True)
time.sleep(120)
"""


def test_functions_cannot_read_the_environment_of_the_process_that_started_the_backend(lambda_client, snoop):
    """A process holding a secret in its initial environment, as `moeopt runtime serve` does when
    started from a shell with AWS keys: once protected (what LocalBackend.start does to its
    process) no function reads it through /proc. Both bystanders hold no capabilities, as a
    non-root user's processes, so dumpability alone decides; the unprotected control shows the
    scan would find it. Under root, workers also hold no capabilities (CapEff 0), so they cannot
    read any process that has some."""
    import subprocess
    import sys

    procs = {}
    try:
        for kind in ("protected", "unprotected"):
            env = {**os.environ, "MOEOPT_BYSTANDER_SECRET": f"bystander-{kind}-91c2"}
            procs[kind] = subprocess.Popen([sys.executable, "-c", BYSTANDER, kind], env=env,
                                           stdout=subprocess.PIPE, text=True)
            assert procs[kind].stdout.readline().strip() == "ready"
        for name in snoop:
            out = json.loads(lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
            assert "bystander-protected-91c2" not in out["others"], name
            assert "bystander-unprotected-91c2" in out["others"], name  # the scan works
            for marker in HOST_MARKERS.values():
                assert marker not in out["others"], name
            assert int(out["cap_eff"], 16) == 0, name  # no CAP_SYS_PTRACE, even under root
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
