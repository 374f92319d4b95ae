"""The embedded local backend: a Lambda-compatible service plus an S3 server, both on 127.0.0.1.

>>> with LocalBackend() as backend:                      # doctest: +SKIP
...     lam = backend.lambda_client()
...     s3 = backend.s3_client()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from lambda_runtime.local.host import default_host_vcpus
from lambda_runtime.local.network import COORDINATOR_KEY_PREFIX, NetworkModel, ShapingMiddleware
from lambda_runtime.local.service import LambdaService

log = logging.getLogger(__name__)

REGION = "us-east-1"
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: The coordinator's credentials: its S3 streams are never queued behind each other.
COORDINATOR_CREDENTIALS = {
    "aws_access_key_id": f"{COORDINATOR_KEY_PREFIX}LOCAL",
    "aws_secret_access_key": "testing",
}


#: moto keeps objects up to this size in memory (its default spills objects over 5 MB to disk).
MOTO_ENV = {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(1 << 30)}


def lambda_network() -> NetworkModel:
    """The network the local backend emulates by default: Lambda's, from the cost constants."""
    from cost_models.constants import DEFAULT_CONSTANTS

    return NetworkModel.from_constants(DEFAULT_CONSTANTS)
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_MOTO_MAIN = """
import json, logging, sys, threading
from werkzeug.serving import make_server
from moto.server import DomainDispatcherApplication, create_backend_app
from lambda_runtime.local.network import NetworkModel, ShapingMiddleware
logging.getLogger("werkzeug").setLevel(logging.WARNING)
cfg = json.loads(sys.argv[2])
app = ShapingMiddleware(DomainDispatcherApplication(create_backend_app), NetworkModel(**cfg) if cfg else None)
server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()  # until the parent closes our stdin (or exits)
server.shutdown()
"""


class _MotoProcess:
    """moto's ThreadedMotoServer in a child process; stops when told or when the parent dies."""

    def __init__(self, port: int, network: NetworkModel | None) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            **MOTO_ENV}
        config = json.dumps(network.to_dict() if network is not None else {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _MOTO_MAIN, str(port), config],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("moto S3 server did not start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port answers once werkzeug is listening
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"moto S3 server not listening on port {port}")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _ServiceProcess:
    """The local Lambda service in a child process (``lambda_runtime.local.server``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lambda_runtime.local.server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(config) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.proc.kill()
            raise RuntimeError("the local Lambda service did not start")
        self.endpoint = line[1]

    def status(self) -> dict[str, Any]:
        import urllib.request

        from lambda_runtime.local.service import STATUS_PATH

        with urllib.request.urlopen(self.endpoint + STATUS_PATH, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _InProcessS3:
    """moto's S3 app behind the network model, served from a thread of this process."""

    def __init__(self, port: int, network: NetworkModel | None) -> None:
        import threading

        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        os.environ.update(MOTO_ENV)
        app = ShapingMiddleware(DomainDispatcherApplication(create_backend_app), network)
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


class LocalBackend:
    """Starts moto's S3 server and the local Lambda service; stops both on exit.

    ``concurrency_limit`` is the account's concurrent executions (429 beyond it);
    ``cpu_limits`` turns on the cgroup vCPU share when the OS allows it; ``network`` is the
    emulated network (default: Lambda's, from the cost constants; None: loopback speed);
    ``host_vcpus`` the vCPUs functions may use at once (default: this machine's cores; None:
    no admission, functions may over-commit the host); ``start_method`` is
    ``fork`` (workers forked from a process that imported torch once) or ``spawn`` (a fresh
    ``python -m awslambdaric`` per environment: slower, a truer cold start). moto's
    ``ThreadedMotoServer`` runs in a child process unless ``s3_in_process``.
    """

    def __init__(
        self,
        concurrency_limit: int = 64,
        max_environments: int = 32,
        enforce_memory: bool = True,
        cpu_limits: bool = True,
        task_root: str | Path = REPO_ROOT,
        start_method: str = "fork",
        s3_in_process: bool = False,
        network: NetworkModel | None | str = "lambda",
        host_vcpus: float | None | str = "host",
        service_in_process: bool = False,
    ) -> None:
        self.service_in_process = service_in_process
        self.network = lambda_network() if network == "lambda" else network
        self.host_vcpus = default_host_vcpus() if host_vcpus == "host" else host_vcpus
        self.s3_in_process = s3_in_process
        if start_method not in ("fork", "spawn"):
            raise ValueError(f"start_method: {start_method!r}; allowed: fork, spawn")
        self.start_method = start_method
        self._forkserver: Any = None
        self.concurrency_limit = concurrency_limit
        self.max_environments = max_environments
        self.enforce_memory = enforce_memory
        self.cpu_limits = cpu_limits
        self.task_root = str(Path(task_root).resolve())
        self.s3_endpoint = ""
        self._moto: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.service: LambdaService | None = None  # when the service runs in this process
        self._service_proc: _ServiceProcess | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalBackend:
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
        if self.s3_in_process:
            self._moto = _InProcessS3(port, self.network)
        else:  # its own process: S3 requests do not queue behind the coordinator's GIL
            self._moto = _MotoProcess(port, self.network)
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="moeopt-local-", ignore_cleanup_errors=True)
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "TMPDIR": self._tmp.name,
        }
        if self.network is not None:
            base_env["MOEOPT_S3_WAIT"] = "1"  # this S3 can hold a GET until its object lands
        if not self.service_in_process:  # its own process: payloads do not share our GIL
            self._service_proc = _ServiceProcess({
                "base_env": base_env, "workdir": self._tmp.name, "repo_root": str(REPO_ROOT),
                "concurrency_limit": self.concurrency_limit,
                "max_environments": self.max_environments, "enforce_memory": self.enforce_memory,
                "cpu_limits": self.cpu_limits, "start_method": self.start_method,
                "network": self.network.to_dict() if self.network is not None else None,
                "host_vcpus": self.host_vcpus,
            })
            log.info("local Lambda at %s, S3 at %s", self._service_proc.endpoint, self.s3_endpoint)
            return self
        if self.start_method == "fork":
            from lambda_runtime.local.forkserver import ForkServer

            self._forkserver = ForkServer(str(REPO_ROOT))
        self.service = LambdaService(
            base_env,
            Path(self._tmp.name),
            concurrency_limit=self.concurrency_limit,
            max_environments=self.max_environments,
            enforce_memory=self.enforce_memory,
            cpu_limits=self.cpu_limits,
            forkserver=self._forkserver,
            network=self.network,
            host_vcpus=self.host_vcpus,
        )
        self.service.start()
        log.info("local Lambda at %s, S3 at %s", self.service.endpoint, self.s3_endpoint)
        return self

    def stop(self) -> None:
        if self._service_proc is not None:
            self._service_proc.stop()
            self._service_proc = None
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._forkserver is not None:
            self._forkserver.close()
            self._forkserver = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- clients --------------------------------------------------------------------------------
    @property
    def lambda_endpoint(self) -> str:
        if self._service_proc is not None:
            return self._service_proc.endpoint
        assert self.service is not None, "backend not started"
        return self.service.endpoint

    def lambda_client(self, read_timeout: float = 960.0, max_attempts: int = 1) -> Any:
        """boto3's Lambda client on the local endpoint (botocore retries off by default)."""
        config = Config(
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=64,
        )
        return boto3.client(
            "lambda",
            endpoint_url=self.lambda_endpoint,
            region_name=REGION,
            config=config,
            **TEST_CREDENTIALS,
        )

    def s3_client(self) -> Any:
        """boto3's S3 client as the coordinator (the non-MoE functions): GETs may wait for an
        object to land (the network model's notification), each stream moves at ``Bs``."""
        from lambda_runtime.local.network import LOCAL_S3_CONFIG, add_wait_header

        config = Config(
            max_pool_connections=64, retries={"total_max_attempts": 3, "mode": "standard"},
            read_timeout=360, **LOCAL_S3_CONFIG,
        )
        client = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=REGION,
            config=config,
            **COORDINATOR_CREDENTIALS,
        )
        if self.network is not None:
            add_wait_header(client, 300.0)
        return client

    def status(self) -> dict[str, Any]:
        if self._service_proc is not None:
            service = self._service_proc.status()
        else:
            assert self.service is not None, "backend not started"
            service = self.service.status(detail=True)
        return {
            **service,
            "s3_endpoint": self.s3_endpoint,
            "python": sys.executable,
            "network": self.network.to_dict() if self.network is not None else None,
        }

    def code(self) -> dict[str, Any]:
        """CreateFunction arguments that point a function at this repository's handler."""
        return {
            "PackageType": "Image",
            "Code": {"ImageUri": f"local:{self.task_root}"},
            "ImageConfig": {"Command": ["lambda_runtime.handler.handler"]},
        }
