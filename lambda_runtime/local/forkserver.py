"""A fork server for execution environments: import torch once, fork a worker per environment.

A fresh ``python -m awslambdaric`` spends seconds importing torch before the handler loads; on a
shared 2-core machine that dominates every test. The fork server imports the heavy libraries
once and forks; each child then runs AWS's runtime client exactly as a spawned worker would
(``runpy`` of ``awslambdaric`` with the environment's variables), like a Lambda environment
restored from a snapshot (SnapStart). ``LocalBackend(start_method="spawn")`` turns it off.

The fork server starts with a clean environment (``clean_environment``): a forked worker's
``/proc/self/environ`` is the fork server's, so no host variable may be in it. A forked worker
shares the fork server's pages (Python, numpy, torch, boto3: about 230 MB resident) and its RSS
counts them; a function whose memory size leaves less than ``FORK_HEADROOM_MB`` above that
footprint is spawned fresh instead (``fits``), so a 128 MB function that does not import torch
runs in 128 MB, as on Lambda.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

from lambda_runtime.local.privileges import clean_environment, drop_privileges

#: Memory a forked function needs above the fork server's footprint to be forked at all.
FORK_HEADROOM_MB = 64.0

PRELOAD = (
    "numpy",
    "torch",
    "torch.nn.functional",
    "boto3",
    "botocore.session",
    "concurrent.futures",
)


class ForkedProcess:
    """Enough of ``subprocess.Popen`` for an environment: pid, stdout, poll, wait."""

    def __init__(self, pid: int, stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state == "Z":
                    raise ProcessLookupError
            except (ProcessLookupError, FileNotFoundError):
                self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.005)
        return -1


class ForkServer:
    """Client side: starts the fork server process and asks it to fork one worker at a time."""

    def __init__(self, python_path: str, home: str | None = None) -> None:
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = clean_environment(python_path, home)
        self._footprint_mb: float | None = None
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from lambda_runtime.local.forkserver import main; main(int(sys.argv[1]))",
                str(child.fileno()),
            ],
            pass_fds=(child.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.close()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        threading.Thread(target=self._wait_ready, daemon=True).start()

    def _wait_ready(self) -> None:
        try:
            msg = self._sock.recv(64)
        except OSError:  # closed before it was ready
            return
        if msg == b"ready":
            self._ready.set()

    def footprint_mb(self) -> float:
        """The fork server's resident memory once its libraries are imported (what every forked
        worker's RSS starts from)."""
        if self._footprint_mb is None:
            from lambda_runtime.local.limits import rss_mb

            if not self._ready.wait(120):
                raise RuntimeError("fork server did not start (importing torch took over 120 s)")
            self._footprint_mb = rss_mb(self.proc.pid)[0]
        return self._footprint_mb

    def fits(self, memory_mb: int) -> bool:
        """Whether a function of ``memory_mb`` is forked (else: spawned fresh)."""
        return memory_mb >= self.footprint_mb() + FORK_HEADROOM_MB

    def spawn(
        self, handler: str, env: dict[str, str], cwd: str, cgroup: str | None
    ) -> ForkedProcess:
        if not self._ready.wait(120):
            raise RuntimeError("fork server did not start (importing torch took over 120 s)")
        read_fd, write_fd = os.pipe()
        request = json.dumps(
            {"handler": handler, "env": env, "cwd": cwd, "cgroup": cgroup}
        ).encode()
        try:
            with self._lock:
                socket.send_fds(self._sock, [request], [write_fd])
                reply = self._sock.recv(256)
            pid = int(json.loads(reply)["pid"])
        except (OSError, ValueError, KeyError):
            os.close(read_fd)
            raise RuntimeError("the fork server is gone") from None
        finally:
            os.close(write_fd)
        return ForkedProcess(pid, os.fdopen(read_fd, "rb"))

    def close(self) -> None:
        self._sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _child(sock: socket.socket, req: dict[str, Any], out_fd: int) -> None:
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if req["cgroup"]:
            with open(os.path.join(req["cgroup"], "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        drop_privileges()  # after joining the cgroup, before the function's code
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.close(devnull)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.path[:0] = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.argv = ["awslambdaric", req["handler"]]
        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report and exit like a crashed runtime
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(fd: int) -> None:
    import importlib

    from lambda_runtime.local.logs import quiet_process

    quiet_process("moeopt fork server")
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    sock = socket.socket(fileno=fd)
    sock.send(b"ready")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
        except OSError:
            return
        if not msg:
            return
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            _child(sock, req, fds[0])
        os.close(fds[0])
        try:
            sock.send(json.dumps({"pid": pid}).encode())
        except OSError:  # the service went away: so do we
            return


if __name__ == "__main__":
    main(int(sys.argv[1]))
