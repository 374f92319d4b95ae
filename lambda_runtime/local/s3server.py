"""The local S3: moto's server behind authentication (``s3auth``) and the network model
(``network``), in a child process by default so S3 requests do not queue behind the
coordinator's GIL, or in a thread of the caller's process."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lambda_runtime.local.credentials import ServerSecrets
from lambda_runtime.local.network import NetworkModel
from lambda_runtime.local.privileges import clean_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
#: moto keeps objects up to this size in memory (its default spills objects over 5 MB to disk).
MOTO_ENV = {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(1 << 30)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_app(network: NetworkModel | None, secrets: ServerSecrets) -> Any:
    """moto's S3 application, shaped by the network model, behind authentication."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    from lambda_runtime.local.network import ShapingMiddleware
    from lambda_runtime.local.s3auth import S3AuthMiddleware

    return S3AuthMiddleware(
        ShapingMiddleware(DomainDispatcherApplication(create_backend_app), network), secrets)


def serve_forever_child() -> None:
    """The child process: configuration (JSON, with the secrets) on stdin's first line; serves
    until stdin closes (the parent stopped us or died)."""
    import logging

    from werkzeug.serving import make_server

    from lambda_runtime.local.logs import quiet_process

    quiet_process("moeopt local S3")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    cfg = json.loads(sys.stdin.readline())
    network = NetworkModel(**cfg["network"]) if cfg["network"] else None
    app = s3_app(network, ServerSecrets.from_config(cfg["secrets"]))
    server = make_server("127.0.0.1", int(cfg["port"]), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.shutdown()



def child_environment() -> dict[str, str]:
    """The service's and S3's variables: this repository on the import path, none of the
    host's secrets (``privileges.clean_environment``)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return clean_environment(path, os.environ.get("HOME"))

class S3Process:
    """moto's server in a child process; stops when told or when the parent dies."""

    def __init__(self, port: int, network: NetworkModel | None, secrets: ServerSecrets) -> None:
        env = {**child_environment(), **MOTO_ENV}
        config = {"port": port, "network": network.to_dict() if network is not None else None,
                  "secrets": secrets.to_config()}
        self.proc = subprocess.Popen(
            [sys.executable, "-c",
             "from lambda_runtime.local.s3server import serve_forever_child; serve_forever_child()"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(config) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("the local S3 server did not start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port answers once werkzeug is listening
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"the local S3 server is not listening on port {port}")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class InProcessS3:
    """The same application served from a thread of this process."""

    def __init__(self, port: int, network: NetworkModel | None, secrets: ServerSecrets) -> None:
        from werkzeug.serving import make_server

        os.environ.update(MOTO_ENV)
        self.server = make_server("127.0.0.1", port, s3_app(network, secrets), threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
