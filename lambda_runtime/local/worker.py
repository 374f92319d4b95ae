"""The worker process of one execution environment: AWS's runtime interface client
(``awslambdaric``) with Lambda's environment variables, forked from the fork server or spawned
fresh, its output read into log lines, its memory watched, killed on demand.

Its environment is Lambda's documented one (``function_environment``), built from nothing: no
variable of the host or of the server reaches a function, and its credentials are its own (an
execution environment's key pair, good for the local S3 only).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lambda_runtime.local.config import FunctionConfig
from lambda_runtime.local.credentials import Credentials
from lambda_runtime.local.errors import REGION
from lambda_runtime.local.forkserver import ForkedProcess, ForkServer
from lambda_runtime.local.limits import CpuLimiter, rss_mb
from lambda_runtime.local.privileges import drop_privileges

#: Variables Lambda sets and a function's configuration may not (CreateFunction refuses them).
RESERVED_VARIABLES = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ",
})
#: Lambda's PATH, after the directory of this Python (the runtime's interpreter).
LAMBDA_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
_LOG_LINES = 2000


def runtime_dir() -> str:
    import awslambdaric

    return str(Path(awslambdaric.__file__).parent)


def server_environment(s3_endpoint: str, python_path: str, s3_wait: bool) -> dict[str, str]:
    """The variables every function of a server gets besides Lambda's own (the local S3's
    endpoint, the runtime's import path); made from constants, not from ``os.environ``. Only
    ``LD_LIBRARY_PATH`` is passed through: the interpreter may need it to start."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{LAMBDA_PATH}",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": python_path,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    if s3_wait:
        env["MOEOPT_S3_WAIT"] = "1"  # this S3 can hold a GET until its object lands
    return env


def function_environment(cfg: FunctionConfig, server_env: dict[str, str], runtime_api: str,
                         log_stream: str, credentials: Credentials, home: str) -> dict[str, str]:
    """Lambda's documented variables for one execution environment, the function's own, and
    the server's (``server_environment``); ``home`` is the environment's own ``/tmp``."""
    env = {**server_env, "HOME": home, "TMPDIR": home, **cfg.environment}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (cfg.task_root, env.get("PYTHONPATH", "")) if p)
    env.update({
        "_HANDLER": cfg.handler,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{cfg.runtime or 'python3.11'}",
        "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "LAMBDA_TASK_ROOT": cfg.task_root,
        "LAMBDA_RUNTIME_DIR": runtime_dir(),
        "TZ": ":UTC",
        # The execution role's credentials: this environment's own (its own network link too).
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_ACCESS_KEY": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
    })
    return env



def _enter(cgroup: Path | None) -> None:
    """In the worker between fork and exec: join its cgroup, then give up every privilege."""
    CpuLimiter.attach_self(cgroup)
    drop_privileges()


class Worker:
    """One worker process. ``active()`` says when an invocation runs (the memory watchdog samples
    only then); ``on_oom(rss)`` is called before the watchdog kills it; ``on_exit()`` once its
    output ends (it exited or was killed)."""

    def __init__(self, env_id: str, config: FunctionConfig, variables: dict[str, str],
                 cgroup: Path | None, forkserver: ForkServer | None, enforce_memory: bool,
                 active: Callable[[], bool], on_oom: Callable[[float], None],
                 on_exit: Callable[[], None]) -> None:
        self.id, self.config, self.variables, self.cgroup = env_id, config, variables, cgroup
        self.forkserver, self.enforce_memory = forkserver, enforce_memory
        self._active, self._on_oom, self._on_exit = active, on_oom, on_exit
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.forked = False
        self.killed = False
        self.peak_mb = 0.0  # the largest resident memory seen (VmHWM), kept after it dies
        self._logs: list[str] = []
        self._log_base = 0  # lines dropped from the front
        self._log_lock = threading.Lock()
        self._log_busy = threading.Lock()  # held while a pipe read turns into lines

    def start(self) -> None:
        cfg = self.config
        fs = self.forkserver
        if fs is not None and fs.fits(cfg.memory_mb):
            self.forked = True
            self.proc = fs.spawn(cfg.handler, self.variables, cfg.task_root,
                                 str(self.cgroup) if self.cgroup else None)
        else:
            self.proc = self._popen()
        threading.Thread(target=self._read_logs, daemon=True, name=f"log-{self.id}").start()
        threading.Thread(target=self._watch, daemon=True, name=f"watch-{self.id}").start()

    def _popen(self) -> subprocess.Popen[bytes]:
        """A fresh interpreter running AWS's runtime client: the faithful cold start, and what a
        function too small for the fork server's footprint gets."""
        cfg, cgroup = self.config, self.cgroup
        return subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", cfg.handler],
            cwd=cfg.task_root,
            env=self.variables,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _enter(cgroup),  # noqa: PLW1509
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_reason(self) -> str:
        """How the worker ended, as Lambda words it (``exit status 1``, ``signal: killed``)."""
        code = self.proc.poll() if self.proc is not None else None
        if self.forked:  # not our child: its status is the kernel's to reap
            return "the runtime process is gone (killed or crashed)"
        if code is None:
            return "the runtime closed its output"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"signal: {name.removeprefix('SIG').lower()}"
        return f"exit status {code}"

    def kill(self) -> None:
        self.killed = True
        if self.proc is not None and self.proc.poll() is None:
            self.sample_peak()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def sample_peak(self) -> float:
        """The peak resident memory so far (sampled now if the worker is alive)."""
        if self.proc is not None and self.proc.poll() is None:
            rss, hwm = rss_mb(self.proc.pid)
            self.peak_mb = max(self.peak_mb, rss, hwm)
        return self.peak_mb

    # ---- memory --------------------------------------------------------------------------------
    def _watch(self) -> None:
        """Memory limit: kill the worker when its RSS passes the memory size (Lambda's OOM)."""
        proc = self.proc
        assert proc is not None
        while proc.poll() is None and not self.killed:
            if not self._active():  # an idle worker allocates nothing
                time.sleep(0.1)
                continue
            rss, hwm = rss_mb(proc.pid)
            self.peak_mb = max(self.peak_mb, rss, hwm)
            if self.enforce_memory and rss > self.config.memory_mb:
                self._on_oom(rss)
                self.kill()
                return
            time.sleep(0.02)

    # ---- logs ----------------------------------------------------------------------------------
    def log_mark(self) -> int:
        with self._log_lock:
            return self._log_base + len(self._logs)

    def log_since(self, mark: int) -> str:
        with self._log_lock:
            return "".join(self._logs[max(0, mark - self._log_base):])

    def note(self, line: str) -> None:
        """A line of the platform's own (START, errors) in the function's log."""
        with self._log_lock:
            self._append([line])

    def _append(self, lines: list[str]) -> None:
        self._logs.extend(lines)
        if len(self._logs) > _LOG_LINES:
            drop = len(self._logs) - _LOG_LINES // 2
            del self._logs[:drop]
            self._log_base += drop

    def _read_logs(self) -> None:
        """Read the worker's stdout+stderr into lines. Each read and its lines happen under
        ``_log_busy``, so ``settle_logs`` can tell when everything written is in the log."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        try:
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
                    if complete:
                        with self._log_lock:
                            self._append([c.decode("utf-8", "replace") + "\n" for c in complete])
                if not chunk:
                    break
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            self._on_exit()

    def settle_logs(self, limit_s: float = 0.05) -> None:
        """Wait until every byte the worker wrote is in the log: the handler printed before it
        answered (its stdout is unbuffered), but another thread reads the pipe. Nothing unread in
        the pipe and no read in progress means nothing is in flight."""
        if self.proc is None or self.proc.stdout is None:
            return
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if _unread_bytes(fd) == 0:
                with self._log_busy:  # a read in progress finishes its lines first
                    if _unread_bytes(fd) == 0:
                        return
            time.sleep(0.0002)


def _unread_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (Linux FIONREAD); 0 when the fd is closed."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]
