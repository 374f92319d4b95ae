"""One Lambda execution environment: the bookkeeping of its invocations.

An environment owns a worker process (``worker``) and its Runtime API server (``runtime_api``).
An invocation is queued for the worker's ``/next``, starts when the worker takes it, and ends
with its ``/response`` or ``/error``, the deadline (the worker is killed: ``Sandbox.Timedout``),
an out-of-memory kill (``Runtime.OutOfMemory``) or the worker's exit (``Runtime.ExitError``).
The environment is reused while warm and discarded once its worker is gone.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lambda_runtime.local.config import FunctionConfig
from lambda_runtime.local.credentials import Credentials
from lambda_runtime.local.forkserver import ForkServer
from lambda_runtime.local.http import LoopbackHTTPServer
from lambda_runtime.local.limits import CpuLimiter, vcpu_share
from lambda_runtime.local.network import NetworkModel
from lambda_runtime.local.peers import held_by
from lambda_runtime.local.runtime_api import runtime_api_handler
from lambda_runtime.local.worker import Worker, function_environment

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass
class Outcome:
    """The result of one invocation as the Invoke API reports it."""

    request_id: str
    payload: bytes
    function_error: str | None  # None, "Unhandled"
    duration_ms: float
    init_ms: float | None
    max_memory_mb: float
    logs: str


class _Invocation:
    def __init__(self, request_id: str, payload: bytes) -> None:
        self.request_id = request_id
        self.payload = payload
        self.started = threading.Event()
        self.done = threading.Event()
        self.start_time = 0.0
        self.end_time = 0.0
        self.body = b""
        self.error_type: str | None = None


class ExecutionEnvironment:
    """A warm-reusable worker plus its Runtime API endpoint."""

    def __init__(
        self,
        config: FunctionConfig,
        server_env: dict[str, str],
        limiter: CpuLimiter,
        credentials: Credentials,
        workdir: Path,
        enforce_memory: bool = True,
        init_timeout_s: float = 60.0,
        forkserver: ForkServer | None = None,
        network: NetworkModel | None = None,
    ) -> None:
        self.config = config
        self.network = network
        self.forkserver = forkserver
        self.id = f"{config.name}-{next(_ids)}"
        self.limiter = limiter
        self.credentials = credentials
        self.home = workdir / "env" / self.id  # the environment's own /tmp
        self.enforce_memory = enforce_memory
        self.init_timeout_s = init_timeout_s
        self.cold = True
        self.dead = False
        self.busy = False
        self.last_used = time.monotonic()
        self._server_env = server_env
        self._pending: queue.Queue[_Invocation | None] = queue.Queue()
        self._current: _Invocation | None = None
        self._init_done = threading.Event()
        self._spawn_time = 0.0
        self._init_ms = 0.0
        self.worker: Worker | None = None
        self.cgroup: Path | None = None
        self.server = LoopbackHTTPServer(runtime_api_handler(self), max_connections=64,
                                         keepalive_idle_s=config.timeout_s + 60.0,
                                         admit=self._from_worker)
        threading.Thread(
            target=self.server.serve_forever, daemon=True, name=f"rapi-{self.id}"
        ).start()

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def runtime_api(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _from_worker(self, sock: socket.socket) -> bool:
        """Only this environment's worker may use its Runtime API (as on Lambda, where nothing
        else can reach it): another local process could take its events or answer for it."""
        deadline = time.monotonic() + 5.0
        while self.worker is None or self.worker.pid is None:  # it may connect as it is spawned
            if time.monotonic() > deadline or self.dead:
                return False
            time.sleep(0.005)
        if held_by(sock, [self.worker.pid]):
            return True
        log.warning("%s: refused a Runtime API connection from a process other than its worker",
                    self.id)
        return False

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        variables = function_environment(self.config, self._server_env, self.runtime_api,
                                         self.id, self.credentials, str(self.home))
        self.cgroup = self.limiter.create(self.id)
        self._spawn_time = time.monotonic()
        self.worker = Worker(self.id, self.config, variables, self.cgroup, self.forkserver,
                             self.enforce_memory, active=lambda: self.busy or self._current is not None,
                             on_oom=self._on_oom, on_exit=self._on_exit)
        self.worker.start()

    def _on_oom(self, rss_mb: float) -> None:
        log.warning("%s: RSS %.0f MB over %d MB, killing", self.id, rss_mb, self.config.memory_mb)
        self.fail_current("Runtime.OutOfMemory", "Runtime exited with error: signal: killed "
                          f"(RSS {rss_mb:.0f} MB > {self.config.memory_mb} MB)")

    def _on_exit(self) -> None:
        worker = self.worker
        if worker is not None and not worker.killed:
            self.fail_current("Runtime.ExitError", f"Runtime exited with error: {worker.exit_reason()}")
        self.dead = True
        self._init_done.set()

    def kill(self) -> None:
        self.dead = True
        if self.worker is not None:
            self.worker.kill()

    def close(self) -> None:
        self.kill()
        self._pending.put(None)
        self.server.shutdown()
        self.server.server_close()
        self.limiter.remove(self.cgroup)
        shutil.rmtree(self.home, ignore_errors=True)

    # ---- invoke -----------------------------------------------------------------------------
    def invoke(self, request_id: str, payload: bytes) -> Outcome:
        """Run one invocation (cold-starting the worker if needed); blocks until it ends."""
        cold = self.cold
        inv = _Invocation(request_id, payload)
        self._current = inv
        if cold:
            self.cold = False
            try:
                self._start()
            except Exception as exc:  # noqa: BLE001 - the environment failed to start
                self.dead = True
                self.fail_current("Runtime.Unknown", f"the environment did not start: {exc}")
        worker = self.worker
        mark = worker.log_mark() if worker is not None else 0
        if worker is not None:
            worker.note(f"START RequestId: {request_id} Version: $LATEST\n")
        self._pending.put(inv)
        if not inv.started.wait(self.init_timeout_s) and not inv.done.is_set():
            self.fail_current("Runtime.InitTimeout", f"init did not finish in {self.init_timeout_s:.0f} s")
            self.kill()
        remaining = inv.start_time + self.config.timeout_s - time.monotonic() if inv.start_time else 0
        if not inv.done.wait(max(0.0, remaining)):
            self.fail_current("Sandbox.Timedout",
                              f"Task timed out after {self.config.timeout_s:.2f} seconds")
            self.kill()
        self._current = None
        duration_ms = max(0.0, (inv.end_time - inv.start_time) * 1000.0) if inv.start_time else 0.0
        peak = 0.0
        logs = ""
        if worker is not None:
            peak = worker.sample_peak()  # the real peak, also when the worker was killed
            worker.settle_logs()
            logs = worker.log_since(mark)
        return Outcome(
            request_id=request_id,
            payload=inv.body,
            function_error="Unhandled" if inv.error_type else None,
            duration_ms=duration_ms,
            init_ms=self._init_ms if cold else None,
            max_memory_mb=peak,
            logs=logs,
        )

    def fail_current(self, error_type: str, message: str) -> None:
        inv = self._current
        if inv is not None and not inv.done.is_set():
            inv.error_type = error_type
            body = {"errorType": error_type,
                    "errorMessage": f"RequestId: {inv.request_id} Error: {message}"}
            inv.body = json.dumps(body).encode()
            inv.end_time = time.monotonic()
            inv.done.set()
            inv.started.set()

    # ---- runtime API callbacks ---------------------------------------------------------------
    def next_invocation(self) -> _Invocation | None:
        if not self._init_done.is_set():
            self._init_ms = (time.monotonic() - self._spawn_time) * 1000.0
            self._init_done.set()
            self.limiter.set_share(self.cgroup, vcpu_share(self.config.memory_mb))
        inv = self._pending.get()
        if inv is not None:
            inv.start_time = time.monotonic()
            inv.started.set()
        return inv

    def finish(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        inv = self._current
        if inv is None or inv.request_id != request_id or inv.done.is_set():
            return False
        inv.body, inv.error_type, inv.end_time = body, error_type, time.monotonic()
        inv.done.set()
        return True

    def response_too_large(self, request_id: str) -> None:
        inv = self._current
        if inv is not None and inv.request_id == request_id:
            self.fail_current("Function.ResponseSizeTooLarge",
                              "Response payload size exceeded maximum allowed payload size.")

    def init_error(self, body: bytes, error_type: str) -> None:
        """The handler failed to load: the pending invocation fails with the runtime's error."""
        inv = self._current
        if inv is not None and not inv.done.is_set():
            inv.body, inv.error_type, inv.end_time = body, error_type, time.monotonic()
            inv.done.set()
            inv.started.set()
