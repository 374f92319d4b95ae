"""One Lambda execution environment: a worker process running AWS's runtime client.

The worker is ``python -m awslambdaric <handler>`` (AWS's own Python runtime interface client)
pointed at this environment's Runtime API server (``AWS_LAMBDA_RUNTIME_API``), which speaks
``/2018-06-01/runtime/invocation/next``, ``.../response``, ``.../error`` and ``/init/error``.
The environment is reused while warm, killed on timeout or when its RSS passes the memory size.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import itertools
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from lambda_runtime.local.forkserver import ForkedProcess, ForkServer
from lambda_runtime.local.http import LoopbackHTTPServer
from lambda_runtime.local.limits import CpuLimiter, rss_mb, vcpu_share
from lambda_runtime.local.network import NetworkModel

log = logging.getLogger(__name__)

RUNTIME_PREFIX = "/2018-06-01/runtime"
_ids = itertools.count(1)


@dataclass(frozen=True)
class FunctionConfig:
    """What CreateFunction registered; ``task_root`` is the local directory holding the code."""

    name: str
    handler: str
    memory_mb: int
    timeout_s: float
    task_root: str
    environment: dict[str, str] = field(default_factory=dict)
    architecture: str = "x86_64"
    package_type: str = "Zip"
    role: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    last_modified: str = ""
    code_sha256: str = ""
    code_size: int = 0

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"


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
    def __init__(self, request_id: str, payload: bytes, deadline_s: float) -> None:
        self.request_id = request_id
        self.payload = payload
        self.timeout_s = deadline_s
        self.started = threading.Event()
        self.done = threading.Event()
        self.start_time = 0.0
        self.end_time = 0.0
        self.body = b""
        self.error_type: str | None = None


class ExecutionEnvironment:
    """A warm-reusable worker process plus its Runtime API endpoint."""

    def __init__(
        self,
        config: FunctionConfig,
        base_env: dict[str, str],
        limiter: CpuLimiter,
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
        self.enforce_memory = enforce_memory
        self.init_timeout_s = init_timeout_s
        self.cold = True
        self.dead = False
        self.busy = False
        self.last_used = time.monotonic()
        self._base_env = base_env
        self._pending: queue.Queue[_Invocation | None] = queue.Queue()
        self._current: _Invocation | None = None
        self._init_error: bytes | None = None
        self._init_done = threading.Event()
        self._logs: list[str] = []
        self._log_lock = threading.Lock()
        self._log_busy = threading.Lock()  # held while a pipe read turns into lines
        self._spawn_time = 0.0
        self._init_ms = 0.0
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.cgroup: Path | None = None
        self.server = LoopbackHTTPServer(_runtime_handler(self))
        threading.Thread(
            target=self.server.serve_forever, daemon=True, name=f"rapi-{self.id}"
        ).start()

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def runtime_api(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _start(self) -> None:
        cfg = self.config
        env = {
            **self._base_env,
            **cfg.environment,
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.id,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "LAMBDA_TASK_ROOT": cfg.task_root,
            "_HANDLER": cfg.handler,
            # Its own credentials: the network model gives each environment its own link.
            "AWS_ACCESS_KEY_ID": f"LOCALENV{self.id.rsplit('-', 1)[-1]}",
            "PYTHONPATH": os.pathsep.join(
                p for p in (cfg.task_root, self._base_env.get("PYTHONPATH", "")) if p
            ),
        }
        self.cgroup = self.limiter.create(self.id)
        cgroup = self.cgroup
        self._spawn_time = time.monotonic()
        if self.forkserver is not None:
            self.proc = self.forkserver.spawn(
                cfg.handler, env, cfg.task_root, str(cgroup) if cgroup else None
            )
        else:
            self.proc = self._popen(env, cgroup)
        threading.Thread(target=self._read_logs, daemon=True, name=f"log-{self.id}").start()
        threading.Thread(target=self._watch, daemon=True, name=f"watch-{self.id}").start()

    def _popen(self, env: dict[str, str], cgroup: Path | None) -> subprocess.Popen[bytes]:
        """A fresh interpreter running AWS's runtime client (the faithful, slower cold start)."""
        cfg = self.config
        return subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", cfg.handler],
            cwd=cfg.task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: CpuLimiter.attach_self(cgroup)) if cgroup else None,  # noqa: PLW1509
            start_new_session=True,
        )

    def _read_logs(self) -> None:
        """Read the worker's stdout+stderr into lines. Each read and its lines happen under
        ``_log_busy``, so ``_settle_logs`` can tell when everything written is in ``_logs``."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            select.select([fd], [], [])  # wait for data or EOF without holding the lock
            with self._log_busy:
                try:
                    chunk = os.read(fd, 1 << 16)
                except OSError:
                    chunk = b""
                pending += chunk
                *complete, pending = pending.split(b"\n")
                if not chunk and pending:  # EOF: keep a last line without a newline
                    complete, pending = [*complete, pending], b""
                self._append_logs([line + b"\n" for line in complete])
            if not chunk:
                break
        self._on_exit()

    def _append_logs(self, raw_lines: list[bytes]) -> None:
        if not raw_lines:
            return
        with self._log_lock:
            self._logs.extend(line.decode("utf-8", "replace") for line in raw_lines)
            if len(self._logs) > 2000:
                del self._logs[:1000]

    def _watch(self) -> None:
        """Memory limit: kill the worker when its RSS passes the memory size (Lambda's OOM)."""
        proc = self.proc
        assert proc is not None
        while proc.poll() is None and not self.dead:
            if not self.busy and self._current is None:  # an idle worker allocates nothing
                time.sleep(0.1)
                continue
            if self.enforce_memory:
                rss, _ = rss_mb(proc.pid)
                if rss > self.config.memory_mb:
                    log.warning(
                        "%s: RSS %.0f MB over %d MB, killing", self.id, rss, self.config.memory_mb
                    )
                    self._fail_current(
                        "Runtime.OutOfMemory",
                        f"Runtime exited with error: signal: killed (RSS {rss:.0f} MB > {self.config.memory_mb} MB)",
                    )
                    self.kill()
                    return
            time.sleep(0.02)

    def _on_exit(self) -> None:
        if not self.dead:
            code = self.proc.poll() if self.proc else None
            self._fail_current(
                "Runtime.ExitError", f"Runtime exited with error: exit status {code}"
            )
        self.dead = True
        self._init_done.set()

    def _fail_current(self, error_type: str, message: str) -> None:
        inv = self._current
        if inv is not None and not inv.done.is_set():
            inv.error_type = error_type
            body = {
                "errorType": error_type,
                "errorMessage": f"RequestId: {inv.request_id} Error: {message}",
            }
            inv.body = json.dumps(body).encode()
            inv.end_time = time.monotonic()
            inv.done.set()
            inv.started.set()

    def kill(self) -> None:
        self.dead = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        self._pending.put(None)
        self.server.shutdown()
        self.server.server_close()
        self.limiter.remove(self.cgroup)

    # ---- invoke -----------------------------------------------------------------------------
    def invoke(self, request_id: str, payload: bytes) -> Outcome:
        """Run one invocation (cold-starting the worker if needed); blocks until it ends."""
        cold = self.cold
        inv = _Invocation(request_id, payload, self.config.timeout_s)
        with self._log_lock:
            mark = len(self._logs)
            self._logs.append(f"START RequestId: {request_id} Version: $LATEST\n")
        self._current = inv
        if cold:
            self.cold = False
            self._start()
        self._pending.put(inv)
        if not inv.started.wait(self.init_timeout_s) and not inv.done.is_set():
            self._fail_current(
                "Runtime.InitTimeout", f"init did not finish in {self.init_timeout_s:.0f} s"
            )
            self.kill()
        remaining = (
            inv.start_time + self.config.timeout_s - time.monotonic() if inv.start_time else 0
        )
        if not inv.done.wait(max(0.0, remaining)):
            self._fail_current(
                "Sandbox.Timedout", f"Task timed out after {self.config.timeout_s:.2f} seconds"
            )
            self.kill()
        self._current = None
        duration_ms = max(0.0, (inv.end_time - inv.start_time) * 1000.0) if inv.start_time else 0.0
        _, peak = rss_mb(self.proc.pid) if self.proc and not self.dead else (0.0, 0.0)
        self._peak = max(getattr(self, "_peak", 0.0), peak)
        self._settle_logs()
        with self._log_lock:
            lines = self._logs[mark:]
        return Outcome(
            request_id=request_id,
            payload=inv.body,
            function_error="Unhandled" if inv.error_type else None,
            duration_ms=duration_ms,
            init_ms=self._init_ms if cold else None,
            max_memory_mb=self._peak,
            logs="".join(lines),
        )

    def _settle_logs(self, limit_s: float = 0.05) -> None:
        """Wait until every byte the worker wrote is in ``_logs``: the handler printed before
        it answered (its stdout is unbuffered), but another thread reads the pipe. Nothing
        unread in the pipe and no read in progress means nothing is in flight."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if _unread_bytes(fd) == 0:
                with self._log_busy:  # a read in progress finishes its lines first
                    if _unread_bytes(fd) == 0:
                        return
            time.sleep(0.0002)

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

    def init_error(self, body: bytes, error_type: str) -> None:
        """The handler failed to load: the pending invocation fails with the runtime's error."""
        self._init_error = body
        inv = self._current
        if inv is not None and not inv.done.is_set():
            inv.body, inv.error_type, inv.end_time = body, error_type, time.monotonic()
            inv.done.set()
            inv.started.set()


def _runtime_handler(env: ExecutionEnvironment) -> type[BaseHTTPRequestHandler]:
    class RuntimeAPI(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # header and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _reply(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            try:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the worker was killed while waiting for its next event
                self.close_connection = True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:  # noqa: N802
            if self.path != f"{RUNTIME_PREFIX}/invocation/next":
                return self._reply(404, b'{"errorMessage":"not found"}')
            inv = env.next_invocation()
            if inv is None:
                return self._reply(410, b"{}")
            deadline_ms = int((time.time() + env.config.timeout_s) * 1000)
            self._reply(
                200,
                inv.payload,
                {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": env.config.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{inv.request_id.replace('-', '')[:24]}",
                },
            )

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            parts = self.path[len(RUNTIME_PREFIX) :].strip("/").split("/")
            if parts == ["init", "error"]:
                env.init_error(
                    body,
                    self.headers.get("Lambda-Runtime-Function-Error-Type", "Runtime.InitError"),
                )
                return self._reply(202, b'{"status":"OK"}')
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                if parts[2] == "response" and env.network is not None:
                    # the outputs leave the function at Bf within the billed duration (Eq. 10)
                    time.sleep(env.network.payload_s(len(body)))
                error_type = None
                if parts[2] == "error":
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "Unhandled")
                if env.finish(parts[1], body, error_type):
                    return self._reply(202, b'{"status":"OK"}')
                return self._reply(400, b'{"errorType":"InvalidRequestID"}')
            self._reply(404, b'{"errorMessage":"not found"}')

    return RuntimeAPI


def _unread_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (Linux FIONREAD); 0 when the fd is closed."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]
