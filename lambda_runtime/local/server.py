"""The local Lambda service in a process of its own: ``python -m lambda_runtime.local.server``.

The coordinator moves big payloads (base64 JSON, megabytes per invocation) and so does the
service (request bodies in, events to the workers, responses back); in one process they take
turns on one GIL, and a direct-invocation layer ran 24 % slower than the model. The backend
starts this process, sends its configuration (JSON, with the server's secrets: never on a
command line) on stdin, reads ``ready <endpoint>`` from its stdout, and stops it by closing
stdin. Problems are reported on stderr in one line each (``lambda_runtime.local.logs``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    from lambda_runtime.local.logs import quiet_process

    quiet_process("moeopt local Lambda")
    config: dict[str, Any] = json.loads(sys.stdin.readline())
    from lambda_runtime.local.credentials import ServerSecrets
    from lambda_runtime.local.network import NetworkModel
    from lambda_runtime.local.service import LambdaService

    workdir = Path(config["workdir"])
    forkserver = None
    if config["start_method"] == "fork":
        from lambda_runtime.local.forkserver import ForkServer

        home = workdir / "forkserver"
        home.mkdir(mode=0o700, exist_ok=True)
        forkserver = ForkServer(config["repo_root"], str(home))
    network = NetworkModel(**config["network"]) if config["network"] else None
    service = LambdaService(
        config["server_env"],
        workdir,
        ServerSecrets.from_config(config["secrets"]),
        concurrency_limit=config["concurrency_limit"],
        max_environments=config["max_environments"],
        enforce_memory=config["enforce_memory"],
        cpu_limits=config["cpu_limits"],
        forkserver=forkserver,
        network=network,
        host_vcpus=config["host_vcpus"],
        event_time_scale=config["event_time_scale"],
    )
    service.start()
    print(f"ready {service.endpoint}", flush=True)
    try:
        sys.stdin.read()  # until the backend closes our stdin (or exits)
    finally:
        service.stop()
        if forkserver is not None:
            forkserver.close()


if __name__ == "__main__":
    main()
