"""A Lambda-compatible HTTP service on loopback that boto3's unmodified Lambda client talks to.

Data plane: Invoke (RequestResponse, Event, DryRun; ``X-Amz-Function-Error``; ``LogType: Tail``
with Lambda's START/END/REPORT lines). Control plane: CreateFunction, GetFunction,
DeleteFunction, ListFunctions, PutFunctionConcurrency. Errors use AWS's JSON shape and the
``x-amzn-ErrorType`` header, so botocore raises the modeled exceptions (404
ResourceNotFoundException, 413 RequestEntityTooLargeException, 429 TooManyRequestsException).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lambda_runtime.local.environment import ExecutionEnvironment, FunctionConfig, Outcome
from lambda_runtime.local.host import HostCpu
from lambda_runtime.local.http import LoopbackHTTPServer
from lambda_runtime.local.limits import CpuLimiter, vcpu_share
from lambda_runtime.local.network import NetworkModel

log = logging.getLogger(__name__)

SYNC_PAYLOAD_LIMIT = 6_291_456  # 6 MB, request and response of a synchronous invoke
ASYNC_PAYLOAD_LIMIT = 1_048_576  # 1 MB for InvocationType=Event (AWS raised it from 256 KB in 2025)
LOG_TAIL_BYTES = 4096
MEMORY_RANGE = (128, 10_240)
TIMEOUT_RANGE = (1, 900)
STATUS_PATH = "/moeopt/status"


class ApiError(Exception):
    """An AWS-shaped error: HTTP status, ``x-amzn-ErrorType`` and a JSON body."""

    def __init__(self, status: int, error_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message, self.extra = status, error_type, message, extra


@dataclass(frozen=True)
class InvocationRecord:
    """One billed invocation, as its REPORT line states it."""

    function: str
    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None
    error: str | None
    queue_s: float = 0.0  # waited for the host's vCPUs before it started (not billed)
    over_committed: bool = False  # asked for more vCPUs than the whole host has

    def report_line(self) -> str:
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_mb} MB\t"
        )
        if self.init_ms is not None:
            line += f"Init Duration: {self.init_ms:.2f} ms\t"
        return line


@dataclass
class _Function:
    config: FunctionConfig
    envs: list[ExecutionEnvironment] = field(default_factory=list)
    reserved_concurrency: int | None = None


class LambdaService:
    """Function registry, execution environments and the HTTP front end."""

    def __init__(
        self,
        base_env: dict[str, str],
        workdir: Path,
        concurrency_limit: int = 64,
        max_environments: int = 32,
        enforce_memory: bool = True,
        cpu_limits: bool = True,
        init_timeout_s: float = 60.0,
        forkserver: Any = None,
        network: NetworkModel | None = None,
        host_vcpus: float | None = None,
    ) -> None:
        self.forkserver = forkserver
        self.network = network
        self.host = HostCpu(host_vcpus)
        self.base_env = base_env
        self.workdir = workdir
        self.concurrency_limit = concurrency_limit
        self.max_environments = max_environments
        self.enforce_memory = enforce_memory
        self.init_timeout_s = init_timeout_s
        self.limiter = CpuLimiter(enabled=cpu_limits)
        self.functions: dict[str, _Function] = {}
        self.records: list[InvocationRecord] = []
        self.throttles = 0
        self._lock = threading.Lock()
        self._async = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-event")
        self.server = LoopbackHTTPServer(_api_handler(self))
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="lambda-api"
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._async.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            envs = [e for f in self.functions.values() for e in f.envs]
            self.functions.clear()
        with ThreadPoolExecutor(
            max_workers=32
        ) as pool:  # each close waits for its server's poll loop
            list(pool.map(lambda e: e.close(), envs))
        self.limiter.close()

    def status(self, detail: bool = False) -> dict[str, Any]:
        s = self.limiter.status
        with self._lock:
            envs = [e for f in self.functions.values() for e in f.envs]
            extra: dict[str, Any] = {}
            if detail:
                extra["environment_list"] = [
                    {"function": e.config.name, "id": e.id, "busy": e.busy,
                     "cgroup": str(e.cgroup) if e.cgroup else None}
                    for e in envs
                ]
            return {
                **extra,
                "lambda_endpoint": self.endpoint,
                "cpu_limit": {"enforced": s.enforced, "mechanism": s.mechanism, "detail": s.detail},
                "memory_limit": "RSS watchdog (kill above memory size)"
                if self.enforce_memory
                else "not enforced",
                "payload_limit_bytes": SYNC_PAYLOAD_LIMIT,
                "concurrency_limit": self.concurrency_limit,
                "start_method": "fork" if self.forkserver is not None else "spawn",
                "functions": len(self.functions),
                "environments": len(envs),
                "busy": sum(e.busy for e in envs),
                "invocations": len(self.records),
                "throttles": self.throttles,
                "host": self.host.status().__dict__,
            }

    # ---- control plane ----------------------------------------------------------------------
    def create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("FunctionName")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ApiError(
                400, "InvalidParameterValueException", "FunctionName: 1-64 letters, digits, - or _"
            )
        memory = int(body.get("MemorySize", 128))
        timeout = int(body.get("Timeout", 3))
        if not MEMORY_RANGE[0] <= memory <= MEMORY_RANGE[1]:
            raise ApiError(
                400, "InvalidParameterValueException", f"MemorySize: {memory} not in 128..10240"
            )
        if not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
            raise ApiError(
                400, "InvalidParameterValueException", f"Timeout: {timeout} not in 1..900"
            )
        package = body.get("PackageType", "Zip")
        code = body.get("Code") or {}
        handler = body.get("Handler")
        if package == "Image":
            uri = code.get("ImageUri", "")
            root = Path(uri[len("local:") :] if uri.startswith("local:") else uri)
            if not root.is_dir():
                raise ApiError(
                    400,
                    "InvalidParameterValueException",
                    f"Code.ImageUri: {uri!r} must be local:<directory>",
                )
            handler = ((body.get("ImageConfig") or {}).get("Command") or [handler])[0]
            raw = str(root).encode()
        elif "ZipFile" in code:
            raw = base64.b64decode(code["ZipFile"])
            root = self.workdir / "code" / name
            root.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                zf.extractall(root)
        else:
            raise ApiError(
                400, "InvalidParameterValueException", "Code: give ZipFile, or ImageUri=local:<dir>"
            )
        if not handler:
            raise ApiError(
                400, "InvalidParameterValueException", "Handler: required (module.function)"
            )
        config = FunctionConfig(
            name=name,
            handler=handler,
            memory_mb=memory,
            timeout_s=float(timeout),
            task_root=str(root.resolve()),
            environment=dict((body.get("Environment") or {}).get("Variables") or {}),
            architecture=(body.get("Architectures") or ["x86_64"])[0],
            package_type=package,
            role=body.get("Role", ""),
            tags=dict(body.get("Tags") or {}),
            last_modified=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            code_sha256=base64.b64encode(hashlib.sha256(raw).digest()).decode(),
            code_size=len(raw),
        )
        with self._lock:
            if name in self.functions:
                raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
            self.functions[name] = _Function(config)
        return _configuration(config)

    def _get(self, name: str) -> _Function:
        fn = self.functions.get(name)
        if fn is None:
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}",
            )
        return fn

    def get_function(self, name: str) -> dict[str, Any]:
        fn = self._get(name)
        out: dict[str, Any] = {
            "Configuration": _configuration(fn.config),
            "Code": {"RepositoryType": "Local", "Location": fn.config.task_root},
            "Tags": fn.config.tags,
        }
        if fn.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved_concurrency}
        return out

    def delete_function(self, name: str) -> None:
        with self._lock:
            fn = self._get(name)
            del self.functions[name]
        for env in fn.envs:
            env.close()

    def list_functions(self) -> dict[str, Any]:
        with self._lock:
            return {"Functions": [_configuration(f.config) for f in self.functions.values()]}

    def put_concurrency(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            fn = self._get(name)
            fn.reserved_concurrency = int(body["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": fn.reserved_concurrency}

    # ---- data plane -------------------------------------------------------------------------
    def _acquire(self, name: str) -> ExecutionEnvironment:
        """A warm idle environment, else a new one; 429 when concurrency is used up."""
        with self._lock:
            fn = self._get(name)
            dead = [e for e in fn.envs if e.dead and not e.busy]  # e.g. killed while idle
            for e in dead:
                fn.envs.remove(e)
            all_envs = [e for f in self.functions.values() for e in f.envs]
            fn_busy = sum(e.busy for e in fn.envs)
            if fn.reserved_concurrency is not None and fn_busy >= fn.reserved_concurrency:
                self.throttles += 1
                raise ApiError(
                    429,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
                )
            if sum(e.busy for e in all_envs) >= self.concurrency_limit:
                self.throttles += 1
                raise ApiError(
                    429,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    Reason="ConcurrentInvocationLimitExceeded",
                )
            idle = [e for e in fn.envs if not e.busy and not e.dead]
            victims: list[ExecutionEnvironment] = []
            if idle:  # Lambda reuses the most recently used warm environment
                env = max(idle, key=lambda e: e.last_used)
            else:
                evict = sorted((e for e in all_envs if not e.busy), key=lambda e: e.last_used)
                victims = evict[: max(0, len(all_envs) + 1 - self.max_environments)]
                for v in victims:
                    for f in self.functions.values():
                        if v in f.envs:
                            f.envs.remove(v)
                env = ExecutionEnvironment(
                    fn.config,
                    self.base_env,
                    self.limiter,
                    self.enforce_memory,
                    self.init_timeout_s,
                    self.forkserver,
                    self.network,
                )
                fn.envs.append(env)
            env.busy = True
        for v in (*victims, *dead):
            v.close()
        return env

    def _release(self, name: str, env: ExecutionEnvironment) -> None:
        with self._lock:
            env.busy = False
            env.last_used = time.monotonic()
            fn = self.functions.get(name)
            gone = env.dead or fn is None or env not in fn.envs
            if gone and fn is not None and env in fn.envs:
                fn.envs.remove(env)
        if gone:
            env.close()

    def run(self, name: str, payload: bytes) -> tuple[Outcome, InvocationRecord]:
        """Admit the invocation on the host's vCPUs, start it (Lambda's warm-start latency under
        the network model) in a warm or new environment, and bill it."""
        env = self._acquire(name)  # concurrency first: a throttle never waits for the host
        vcpu = vcpu_share(env.config.memory_mb)
        try:
            queue_s, over = self.host.acquire(vcpu)
            try:
                if self.network is not None:
                    time.sleep(self.network.warm_start_s)
                request_id = str(uuid.uuid4())
                outcome = env.invoke(request_id, payload)
            finally:
                self.host.release(vcpu)
        finally:
            self._release(name, env)
        if outcome.function_error is None and len(outcome.payload) > SYNC_PAYLOAD_LIMIT:
            outcome.function_error = "Unhandled"
            outcome.payload = json.dumps(
                {
                    "errorMessage": f"Response payload size ({len(outcome.payload)} bytes) exceeded maximum "
                    f"allowed payload size ({SYNC_PAYLOAD_LIMIT} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
        init = outcome.init_ms
        billed = math.ceil(outcome.duration_ms) + (math.ceil(init) if init is not None else 0)
        record = InvocationRecord(
            function=name,
            request_id=request_id,
            duration_ms=outcome.duration_ms,
            billed_ms=max(1, billed),
            memory_mb=env.config.memory_mb,
            max_memory_mb=math.ceil(outcome.max_memory_mb),
            init_ms=init,
            error=outcome.function_error,
            queue_s=queue_s,
            over_committed=over,
        )
        with self._lock:
            self.records.append(record)
        return outcome, record

    def invoke(
        self, name: str, payload: bytes, invocation_type: str, log_type: str
    ) -> tuple[int, dict[str, str], bytes]:
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            raise ApiError(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            )
        self._get(name)
        if invocation_type == "DryRun":
            return 204, {}, b""
        if invocation_type == "Event":
            self._async.submit(self._run_async, name, payload)
            return 202, {}, b""
        if invocation_type != "RequestResponse":
            raise ApiError(
                400,
                "InvalidParameterValueException",
                f"InvocationType: {invocation_type!r}; allowed: RequestResponse, Event, DryRun",
            )
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                raise ApiError(
                    400, "InvalidRequestContentException", "Could not parse request body into json"
                ) from None
        if self.network is not None:  # the payload travels to the function (not billed)
            time.sleep(self.network.payload_s(len(payload)))
        outcome, record = self.run(name, payload or b"{}")
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": record.request_id}
        if record.queue_s > 1e-3 or record.over_committed:
            headers["X-Moeopt-Host-Queue"] = f"{record.queue_s:.4f};over={int(record.over_committed)}"
        if outcome.function_error:
            headers["X-Amz-Function-Error"] = outcome.function_error
        if log_type == "Tail":
            text = (
                outcome.logs + f"END RequestId: {record.request_id}\n" + record.report_line() + "\n"
            )
            tail = text.encode()[-LOG_TAIL_BYTES:]
            headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
        return 200, headers, outcome.payload

    def _run_async(self, name: str, payload: bytes) -> None:
        for attempt in range(3):  # Lambda retries async events twice on error
            try:
                outcome, _ = self.run(name, payload or b"{}")
            except ApiError:
                time.sleep(0.1 * 2**attempt)
                continue
            except Exception:  # noqa: BLE001 - a background event must not kill the service
                log.exception("async invoke of %s failed", name)
                return
            if outcome.function_error is None:
                return


def _configuration(c: FunctionConfig) -> dict[str, Any]:
    return {
        "FunctionName": c.name,
        "FunctionArn": c.arn,
        "Runtime": "python3.11" if c.package_type == "Zip" else None,
        "Role": c.role,
        "Handler": c.handler,
        "CodeSize": c.code_size,
        "CodeSha256": c.code_sha256,
        "Timeout": int(c.timeout_s),
        "MemorySize": c.memory_mb,
        "LastModified": c.last_modified,
        "Version": "$LATEST",
        "Environment": {"Variables": c.environment},
        "PackageType": c.package_type,
        "Architectures": [c.architecture],
        "State": "Active",
        "LastUpdateStatus": "Successful",
    }


def _api_handler(service: LambdaService) -> type[BaseHTTPRequestHandler]:
    fn_path = re.compile(r"^/2015-03-31/functions/([^/]+)(/invocations)?/?$")
    conc_path = re.compile(r"^/2017-10-31/functions/([^/]+)/concurrency/?$")

    def fname(raw: str) -> str:
        name = unquote(raw)
        if name.startswith("arn:"):
            name = name.split(":function:", 1)[-1]
        return name.split(":", 1)[0]

    class LambdaAPI(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # header and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            headers = {"Content-Type": "application/json", **headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(
            self, action: Callable[[bytes, str], tuple[int, dict[str, str], bytes]]
        ) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlparse(self.path).path
            try:
                status, headers, out = action(body, path)
            except ApiError as err:
                payload = {"Type": "User", "message": err.message, **err.extra}
                extra = {"x-amzn-ErrorType": err.error_type}
                if err.status == 429:
                    extra["Retry-After"] = "1"
                self._send(err.status, json.dumps(payload).encode(), extra)
                return
            except Exception as exc:  # noqa: BLE001 - report as a service error, keep serving
                log.exception("local Lambda API failure")
                payload = {"Type": "Service", "message": f"{type(exc).__name__}: {exc}"}
                self._send(
                    500, json.dumps(payload).encode(), {"x-amzn-ErrorType": "ServiceException"}
                )
                return
            self._send(status, out, headers)

        def do_POST(self) -> None:  # noqa: N802
            def action(body: bytes, path: str) -> tuple[int, dict[str, str], bytes]:
                if path.rstrip("/") == "/2015-03-31/functions":
                    return 201, {}, json.dumps(service.create_function(_json(body))).encode()
                m = fn_path.match(path)
                if m and m.group(2):
                    return service.invoke(
                        fname(m.group(1)),
                        body,
                        self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                        self.headers.get("X-Amz-Log-Type", "None"),
                    )
                raise ApiError(404, "UnknownOperationException", f"unsupported: POST {path}")

            self._dispatch(action)

        def do_GET(self) -> None:  # noqa: N802
            def action(body: bytes, path: str) -> tuple[int, dict[str, str], bytes]:
                if path.rstrip("/") == STATUS_PATH:  # the backend's own view, not an AWS API
                    return 200, {}, json.dumps(service.status(detail=True)).encode()
                if path.rstrip("/") == "/2015-03-31/functions":
                    return 200, {}, json.dumps(service.list_functions()).encode()
                m = fn_path.match(path)
                if m and not m.group(2):
                    return 200, {}, json.dumps(service.get_function(fname(m.group(1)))).encode()
                raise ApiError(404, "UnknownOperationException", f"unsupported: GET {path}")

            self._dispatch(action)

        def do_DELETE(self) -> None:  # noqa: N802
            def action(body: bytes, path: str) -> tuple[int, dict[str, str], bytes]:
                m = fn_path.match(path)
                if m and not m.group(2):
                    service.delete_function(fname(m.group(1)))
                    return 204, {}, b""
                raise ApiError(404, "UnknownOperationException", f"unsupported: DELETE {path}")

            self._dispatch(action)

        def do_PUT(self) -> None:  # noqa: N802
            def action(body: bytes, path: str) -> tuple[int, dict[str, str], bytes]:
                m = conc_path.match(path)
                if m:
                    return (
                        200,
                        {},
                        json.dumps(
                            service.put_concurrency(fname(m.group(1)), _json(body))
                        ).encode(),
                    )
                raise ApiError(404, "UnknownOperationException", f"unsupported: PUT {path}")

            self._dispatch(action)

    return LambdaAPI


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(
            400, "InvalidRequestContentException", "Could not parse request body into json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidRequestContentException", "request body must be a JSON object")
    return data
