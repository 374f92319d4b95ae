"""A run whose workers are killed under it: `moeopt run --json` exits 4 with strict JSON (null
where a figure does not exist), one FAILED line per failed shard, and no traceback anywhere
(its own stderr and its backend processes')."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.runtime.conftest import fn, make_plan, one_layer


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for c in _children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return seen


def _is_fork_server(pid: int) -> bool:
    try:
        return b"lambda_runtime.local.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_run_with_every_worker_killed_exits_4_with_strict_json_and_no_traceback(tmp_path):
    plan = make_plan([one_layer("direct", [fn([0, 1]), fn([2], replicas=2)]),
                      one_layer("storage", [fn([0, 1, 2])])])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moeopt.cli", "run", str(path), "--requests", "2", "--warmup", "0",
         "--tokens", "64", "--hidden", "32", "--ffn", "64", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: set[int] = set()
    stop = threading.Event()

    def killer() -> None:  # the workers only (children of the run's fork server), as they appear
        while not stop.is_set():
            for server in [p for p in _descendants(proc.pid) if _is_fork_server(p)]:
                for worker in _children(server):
                    try:
                        os.kill(worker, signal.SIGKILL)
                        killed.add(worker)
                    except OSError:
                        pass
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        stop.set()
        thread.join()
    assert killed
    assert proc.returncode == 4, err
    assert "Traceback" not in err and "Traceback" not in out
    report = _strict(out)
    assert report["ok_requests"] == 0 and report["requests"] == 2
    assert report["latency_p50_s"] is None and report["throughput_tokens_per_s"] is None
    assert report["failures"] and all("Runtime.ExitError" in f for f in report["failures"])
    assert "error: 2 of 2 requests failed" in err
