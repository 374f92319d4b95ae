"""The embedded local backend: a Lambda-compatible service plus an S3 server, both on 127.0.0.1.

>>> with LocalBackend() as backend:                      # doctest: +SKIP
...     lam = backend.lambda_client()
...     s3 = backend.s3_client()

Both authenticate every request (SigV4) with credentials generated for this backend: the client's
(``lambda_client``, ``s3_client``, and the 0600 file at ``credentials_file`` that awscli and
boto3 read) and one pair per execution environment (S3 only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from lambda_runtime.local.cleanup import PREFIX, remove_stale_folders
from lambda_runtime.local.credentials import PROFILE, Credentials, ServerSecrets
from lambda_runtime.local.errors import REGION
from lambda_runtime.local.events import DEFAULT_TIME_SCALE
from lambda_runtime.local.host import default_host_vcpus
from lambda_runtime.local.network import NetworkModel
from lambda_runtime.local.privileges import protect_this_process
from lambda_runtime.local.s3server import (
    REPO_ROOT,
    InProcessS3,
    S3Process,
    child_environment,
    free_port,
)
from lambda_runtime.local.worker import server_environment

log = logging.getLogger(__name__)

__all__ = ["REGION", "REPO_ROOT", "LocalBackend", "lambda_network"]


def lambda_network() -> NetworkModel:
    """The network the local backend emulates by default: Lambda's, from the cost constants."""
    from cost_models.constants import DEFAULT_CONSTANTS

    return NetworkModel.from_constants(DEFAULT_CONSTANTS)


class _ServiceProcess:
    """The local Lambda service in a child process (``lambda_runtime.local.server``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        env = child_environment()  # none of the host's secrets to read
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

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LocalBackend:
    """Starts the local S3 and the local Lambda service; stops both on exit.

    ``concurrency_limit`` is the account's concurrent executions (429 beyond it);
    ``cpu_limits`` turns on the cgroup vCPU share when the OS allows it; ``network`` is the
    emulated network (default: Lambda's, from the cost constants; None: loopback speed);
    ``host_vcpus`` the vCPUs functions may use at once (default: this machine's cores; None:
    no admission, functions may over-commit the host); ``start_method`` is
    ``fork`` (workers forked from a process that imported torch once) or ``spawn`` (a fresh
    ``python -m awslambdaric`` per environment: slower, a truer cold start). moto's server runs
    in a child process unless ``s3_in_process``. ``event_time_scale`` scales Lambda's retry
    schedule of Event invocations (default 1/60: retries after 1 s and 2 s instead of 1 and 2
    minutes). ``credentials_file``: where the client's credentials are written (default: in the
    backend's temp folder).
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
        event_time_scale: float = DEFAULT_TIME_SCALE,
        credentials_file: str | Path | None = None,
    ) -> None:
        if start_method not in ("fork", "spawn"):
            raise ValueError(f"start_method: {start_method!r}; allowed: fork, spawn")
        if not event_time_scale > 0:
            raise ValueError(f"event_time_scale: {event_time_scale!r}; allowed: > 0")
        self.service_in_process = service_in_process
        self.network = lambda_network() if network == "lambda" else network
        self.host_vcpus = default_host_vcpus() if host_vcpus == "host" else host_vcpus
        self.s3_in_process = s3_in_process
        self.start_method = start_method
        self.concurrency_limit = concurrency_limit
        self.max_environments = max_environments
        self.enforce_memory = enforce_memory
        self.cpu_limits = cpu_limits
        self.event_time_scale = event_time_scale
        self.task_root = str(Path(task_root).resolve())
        self.secrets = ServerSecrets.generate()
        self._credentials_path = Path(credentials_file).resolve() if credentials_file else None
        self.credentials_file: Path | None = None
        self.s3_endpoint = ""
        self._s3: Any = None
        self._forkserver: Any = None
        self._tmp: Path | None = None
        self.service: Any = None  # the LambdaService when it runs in this process
        self._service_proc: _ServiceProcess | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> LocalBackend:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalBackend:
        protect_this_process()  # functions run as this user: keep this process's /proc/environ from them
        remove_stale_folders(Path(tempfile.gettempdir()))  # of backends that died without stopping
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.credentials_file = self._credentials_path or self._tmp / "credentials"
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
        if self.s3_in_process:
            self._s3 = InProcessS3(port, self.network, self.secrets)
        else:  # its own process: S3 requests do not queue behind the coordinator's GIL
            self._s3 = S3Process(port, self.network, self.secrets)
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        server_env = server_environment(self.s3_endpoint, str(REPO_ROOT), self.network is not None)
        if not self.service_in_process:  # its own process: payloads do not share our GIL
            self._service_proc = _ServiceProcess({
                "server_env": server_env, "workdir": str(self._tmp), "repo_root": str(REPO_ROOT),
                "secrets": self.secrets.to_config(),
                "concurrency_limit": self.concurrency_limit,
                "max_environments": self.max_environments, "enforce_memory": self.enforce_memory,
                "cpu_limits": self.cpu_limits, "start_method": self.start_method,
                "network": self.network.to_dict() if self.network is not None else None,
                "host_vcpus": self.host_vcpus, "event_time_scale": self.event_time_scale,
            })
        else:
            from lambda_runtime.local.service import LambdaService

            if self.start_method == "fork":
                from lambda_runtime.local.forkserver import ForkServer

                home = self._tmp / "forkserver"
                home.mkdir(mode=0o700)
                self._forkserver = ForkServer(str(REPO_ROOT), str(home))
            self.service = LambdaService(
                server_env, self._tmp, self.secrets,
                concurrency_limit=self.concurrency_limit, max_environments=self.max_environments,
                enforce_memory=self.enforce_memory, cpu_limits=self.cpu_limits,
                forkserver=self._forkserver, network=self.network, host_vcpus=self.host_vcpus,
                event_time_scale=self.event_time_scale,
            )
            self.service.start()
        self.secrets.write_file(self.credentials_file, self.describe_endpoints())
        log.info("local Lambda at %s, S3 at %s", self.lambda_endpoint, self.s3_endpoint)
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
        if self._s3 is not None:
            self._s3.stop()
            self._s3 = None
        if self.credentials_file is not None and self._credentials_path is not None:
            self.credentials_file.unlink(missing_ok=True)  # its keys die with this backend
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def failure(self) -> str | None:
        """Which of the backend's processes has died (killed, crashed), or None: a server that
        lost its service must say so, not keep printing endpoints nobody answers on."""
        procs = (("the local Lambda service", self._service_proc),
                 ("the local S3 server", self._s3 if isinstance(self._s3, S3Process) else None))
        for what, holder in procs:
            code = holder.proc.poll() if holder is not None else None
            if code is not None:
                how = f"signal {-code}" if code < 0 else f"status {code}"
                return f"{what} exited ({how})"
        return None

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

    @property
    def credentials(self) -> Credentials:
        """The client's credentials (the Lambda API and S3)."""
        return self.secrets.client()

    def describe_endpoints(self) -> str:
        return (f"moeopt local backend: Lambda API {self.lambda_endpoint}, S3 {self.s3_endpoint}, "
                f"region {REGION}; valid while it runs")

    def awscli_recipe(self) -> str:
        """How awscli reaches this backend with its credentials (profile ``moeopt-local``)."""
        return (f"AWS_SHARED_CREDENTIALS_FILE={self.credentials_file} aws --profile {PROFILE} "
                f"--region {REGION} --endpoint-url {self.lambda_endpoint} lambda list-functions")

    def lambda_client(self, read_timeout: float = 960.0, max_attempts: int = 1) -> Any:
        """boto3's Lambda client on the local endpoint (botocore retries off by default)."""
        config = Config(
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=64,
        )
        return boto3.client("lambda", endpoint_url=self.lambda_endpoint, region_name=REGION,
                            config=config, **self.credentials.boto3())

    def s3_client(self) -> Any:
        """boto3's S3 client as the coordinator (the non-MoE functions): GETs may wait for an
        object to land (the network model's notification), each stream moves at ``Bs``."""
        from lambda_runtime.local.network import LOCAL_S3_CONFIG, add_wait_header

        config = Config(
            max_pool_connections=64, retries={"total_max_attempts": 3, "mode": "standard"},
            read_timeout=360, **LOCAL_S3_CONFIG,
        )
        client = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=REGION,
                              config=config, **self.credentials.boto3())
        if self.network is not None:
            add_wait_header(client, 300.0)
        return client

    def status(self) -> dict[str, Any]:
        if self._service_proc is not None:
            service = self._signed_get("/moeopt/status")
        else:
            assert self.service is not None, "backend not started"
            service = self.service.status(detail=True)
        return {
            **service,
            "s3_endpoint": self.s3_endpoint,
            "credentials_file": str(self.credentials_file),
            "python": sys.executable,
            "network": self.network.to_dict() if self.network is not None else None,
        }

    def _signed_get(self, path: str) -> dict[str, Any]:
        """A GET on the backend's own route, signed like every request to it."""
        import urllib.request

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as BotoCredentials

        c = self.credentials
        req = AWSRequest(method="GET", url=self.lambda_endpoint + path)
        SigV4Auth(BotoCredentials(c.access_key_id, c.secret_access_key), "lambda", REGION).add_auth(req)
        request = urllib.request.Request(req.url, headers=dict(req.headers.items()))
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def code(self) -> dict[str, Any]:
        """CreateFunction arguments that point a function at this repository's handler."""
        return {
            "PackageType": "Image",
            "Code": {"ImageUri": f"local:{self.task_root}"},
            "ImageConfig": {"Command": ["lambda_runtime.handler.handler"]},
        }
