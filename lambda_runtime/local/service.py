"""The local Lambda service's data plane: execution environments, invocations and their bills.

An invocation takes a warm idle environment of its function (the most recently used) or starts
one, under the account's and the function's concurrency (429 beyond them), then waits for the
host's vCPUs (``host``), then runs. Its REPORT line bills ceil(Duration) plus ceil(Init
Duration) on a cold start. The control plane is ``control``, the HTTP front end ``api``, events
``events``.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lambda_runtime.local.api import STATUS_PATH, SYNC_PAYLOAD_LIMIT, lambda_api_handler
from lambda_runtime.local.control import ControlPlane, Function
from lambda_runtime.local.credentials import ServerSecrets
from lambda_runtime.local.environment import ExecutionEnvironment, Outcome
from lambda_runtime.local.errors import ApiError
from lambda_runtime.local.events import DEFAULT_TIME_SCALE, EventQueue
from lambda_runtime.local.host import HostCpu
from lambda_runtime.local.http import LoopbackHTTPServer
from lambda_runtime.local.limits import CpuLimiter, vcpu_share
from lambda_runtime.local.network import NetworkModel

__all__ = ["STATUS_PATH", "InvocationRecord", "LambdaService"]

ASYNC_PAYLOAD_LIMIT = 1_048_576  # 1 MB for InvocationType=Event (AWS raised it from 256 KB in 2025)
LOG_TAIL_BYTES = 4096


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


class LambdaService:
    """Function registry, execution environments, events and the HTTP front end."""

    def __init__(
        self,
        server_env: dict[str, str],
        workdir: Path,
        secrets: ServerSecrets,
        concurrency_limit: int = 64,
        max_environments: int = 32,
        enforce_memory: bool = True,
        cpu_limits: bool = True,
        init_timeout_s: float = 60.0,
        forkserver: Any = None,
        network: NetworkModel | None = None,
        host_vcpus: float | None = None,
        event_time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        self.secrets = secrets
        self.forkserver = forkserver
        self.network = network
        self.host = HostCpu(host_vcpus)
        self.server_env = server_env
        self.workdir = workdir
        self.concurrency_limit = concurrency_limit
        self.max_environments = max_environments
        self.enforce_memory = enforce_memory
        self.init_timeout_s = init_timeout_s
        self.limiter = CpuLimiter(enabled=cpu_limits)
        self._lock = threading.Lock()
        self.control = ControlPlane(workdir, concurrency_limit, self._lock)
        self.records: list[InvocationRecord] = []
        self.invocations = 0
        self.throttles = 0
        self.events = EventQueue(self._run_event, event_time_scale)
        self.server = LoopbackHTTPServer(lambda_api_handler(self), max_connections=512)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="lambda-api")

    @property
    def functions(self) -> dict[str, Function]:
        return self.control.functions

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.events.stop()
        with self._lock:
            envs = [e for f in self.functions.values() for e in f.envs]
            self.functions.clear()
        with ThreadPoolExecutor(max_workers=32) as pool:  # each close waits for its poll loop
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
                     "cgroup": str(e.cgroup) if e.cgroup else None,
                     "pid": e.worker.pid if e.worker is not None else None,
                     "forked": e.worker.forked if e.worker is not None else None}
                    for e in envs
                ]
            return {
                **extra,
                "lambda_endpoint": self.endpoint,
                "cpu_limit": {"enforced": s.enforced, "mechanism": s.mechanism, "detail": s.detail},
                "memory_limit": "RSS watchdog (kill above memory size)"
                if self.enforce_memory else "not enforced",
                "payload_limit_bytes": SYNC_PAYLOAD_LIMIT,
                "concurrency_limit": self.concurrency_limit,
                "start_method": "fork" if self.forkserver is not None else "spawn",
                "functions": len(self.functions),
                "environments": len(envs),
                "busy": sum(e.busy for e in envs),
                "invocations": self.invocations,
                "throttles": self.throttles,
                "events": asdict(self.events.status()),
                "host": self.host.status().__dict__,
            }

    # ---- control plane operations that touch environments --------------------------------------
    def delete_function(self, name: str) -> None:
        for env in self.control.delete(name):
            env.close()

    def update_configuration(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        config, retired = self.control.update_configuration(name, body)
        for env in retired:
            env.close()
        return config

    # ---- environments -----------------------------------------------------------------------------
    def _throttle(self, reason: str) -> ApiError:
        self.throttles += 1
        return ApiError(429, "TooManyRequestsException", "Rate Exceeded.", Reason=reason)

    def _acquire(self, name: str) -> ExecutionEnvironment:
        """A warm idle environment, else a new one; 429 when concurrency is used up (the
        function's reserved concurrency, or the account's unreserved pool)."""
        with self._lock:
            fn = self.control.get(name)
            stale = [e for e in fn.envs if not e.busy and (e.dead or e.config is not fn.config)]
            for e in stale:
                fn.envs.remove(e)
            functions = list(self.functions.values())
            all_envs = [e for f in functions for e in f.envs]
            if fn.reserved_concurrency is not None:
                if sum(e.busy for e in fn.envs) >= fn.reserved_concurrency:
                    raise self._throttle("ReservedFunctionConcurrentInvocationLimitExceeded")
            else:
                pool = self.concurrency_limit - sum(f.reserved_concurrency or 0 for f in functions)
                busy = sum(e.busy for f in functions if f.reserved_concurrency is None for e in f.envs)
                if busy >= pool:
                    raise self._throttle("ConcurrentInvocationLimitExceeded")
            idle = [e for e in fn.envs if not e.busy]
            victims: list[ExecutionEnvironment] = []
            if idle:  # Lambda reuses the most recently used warm environment
                env = max(idle, key=lambda e: e.last_used)
            else:
                evict = sorted((e for e in all_envs if not e.busy), key=lambda e: e.last_used)
                victims = evict[: max(0, len(all_envs) + 1 - self.max_environments)]
                for v in victims:
                    for f in functions:
                        if v in f.envs:
                            f.envs.remove(v)
                env = ExecutionEnvironment(
                    fn.config, self.server_env, self.limiter, self.secrets.new_environment(),
                    self.workdir, self.enforce_memory, self.init_timeout_s, self.forkserver,
                    self.network,
                )
                fn.envs.append(env)
            env.busy = True
        for v in (*victims, *stale):
            v.close()
        return env

    def _release(self, name: str, env: ExecutionEnvironment) -> None:
        with self._lock:
            env.busy = False
            env.last_used = time.monotonic()
            fn = self.functions.get(name)
            gone = env.dead or fn is None or env not in fn.envs or env.config is not fn.config
            if gone and fn is not None and env in fn.envs:
                fn.envs.remove(env)
        if gone:
            env.close()

    # ---- invocations ------------------------------------------------------------------------------
    def run(self, name: str, payload: bytes,
            request_id: str | None = None) -> tuple[Outcome, InvocationRecord]:
        """Admit the invocation on the host's vCPUs, start it (Lambda's warm-start latency under
        the network model) in a warm or new environment, and bill it."""
        env = self._acquire(name)  # concurrency first: a throttle never waits for the host
        vcpu = vcpu_share(env.config.memory_mb)
        request_id = request_id or str(uuid.uuid4())
        try:
            queue_s, over = self.host.acquire(vcpu)
            try:
                if self.network is not None:
                    time.sleep(self.network.warm_start_s)
                outcome = env.invoke(request_id, payload)
            finally:
                self.host.release(vcpu)
        finally:
            self._release(name, env)
        if outcome.function_error is None and len(outcome.payload) > SYNC_PAYLOAD_LIMIT:
            outcome.function_error = "Unhandled"
            outcome.payload = json.dumps({
                "errorMessage": f"Response payload size ({len(outcome.payload)} bytes) exceeded "
                f"maximum allowed payload size ({SYNC_PAYLOAD_LIMIT} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }).encode()
        init = outcome.init_ms
        billed = math.ceil(outcome.duration_ms) + (math.ceil(init) if init is not None else 0)
        record = InvocationRecord(
            function=name, request_id=request_id, duration_ms=outcome.duration_ms,
            billed_ms=max(1, billed), memory_mb=env.config.memory_mb,
            max_memory_mb=math.ceil(outcome.max_memory_mb), init_ms=init,
            error=outcome.function_error, queue_s=queue_s, over_committed=over,
        )
        with self._lock:
            self.invocations += 1
            self.records.append(record)
            if len(self.records) > 100_000:  # a long-running server keeps the recent ones
                del self.records[:50_000]
        return outcome, record

    def invoke(self, name: str, payload: bytes, invocation_type: str,
               log_type: str) -> tuple[int, dict[str, str], bytes]:
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise ApiError(400, "InvalidParameterValueException",
                           f"InvocationType: {invocation_type[:40]!r}; allowed: RequestResponse, "
                           "Event, DryRun")
        if log_type not in ("None", "Tail"):
            raise ApiError(400, "InvalidParameterValueException",
                           f"LogType: {log_type[:40]!r}; allowed: None, Tail")
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            raise ApiError(413, "RequestEntityTooLargeException",
                           f"Request must be smaller than {limit} bytes for the InvokeFunction "
                           "operation")
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                raise ApiError(400, "InvalidRequestContentException",
                               "Could not parse request body into json") from None
        self.control.get(name)
        if invocation_type == "DryRun":
            return 204, {}, b""
        if invocation_type == "Event":
            request_id = self.events.submit(name, payload or b"{}")
            return 202, {"x-amzn-RequestId": request_id}, b""
        if self.network is not None:  # the payload travels to the function (not billed)
            time.sleep(self.network.payload_s(len(payload)))
        outcome, record = self.run(name, payload or b"{}")
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": record.request_id}
        if record.queue_s > 1e-3 or record.over_committed:
            headers["X-Moeopt-Host-Queue"] = f"{record.queue_s:.4f};over={int(record.over_committed)}"
        if outcome.function_error:
            headers["X-Amz-Function-Error"] = outcome.function_error
        if log_type == "Tail":
            text = outcome.logs + f"END RequestId: {record.request_id}\n" + record.report_line() + "\n"
            headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()[-LOG_TAIL_BYTES:]).decode()
        return 200, headers, outcome.payload

    def _run_event(self, name: str, payload: bytes, request_id: str) -> str | None:
        """One attempt of an Event invocation (every attempt under the event's request id, as
        Lambda retries it): its function error, or None."""
        outcome, _ = self.run(name, payload, request_id)
        return outcome.function_error
