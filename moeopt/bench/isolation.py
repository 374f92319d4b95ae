"""One run in its own process: ``python -m moeopt.bench.isolation SPEC OUT``.

A solver that segfaults, calls ``os._exit`` or sleeps forever costs only its own run: the
parent records it as ``crashed`` or ``timeout`` (killing the process group on expiry).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from moeopt.bench.runs import RunSpec
from moeopt.solver import Budget


def _child_main(spec_path: str, out_path: str) -> None:
    """Solve one run and write its result as JSON; harness errors are results too."""
    spec = json.loads(Path(spec_path).read_text())
    try:
        from moeopt.problem import read_problem_file
        from moeopt.registry import make_solver

        problem = read_problem_file(spec["problem_file"])
        solver = make_solver(spec["solver"], seed=spec["seed"], **spec["options"])
        b = spec["budget"]
        result = solver.solve(problem, Budget(b["evaluations"], b["seconds"]))
        out = {"result": result.to_dict(),
               "plan": result.plan.to_dict() if result.plan is not None else None}
    except Exception as exc:  # noqa: BLE001 - recorded, not raised: the sweep goes on
        out = {"harness_error": f"{type(exc).__name__}: {exc}"}
    tmp = Path(out_path + ".tmp")
    tmp.write_text(json.dumps(out, default=str))
    tmp.replace(out_path)


def run_isolated(spec: RunSpec) -> dict[str, Any]:
    """Run ``spec`` in a fresh process; returns the child's output plus status and wall time."""
    with tempfile.TemporaryDirectory(prefix="moeopt-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps({**asdict(spec), "budget": spec.budget_dict}))
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moeopt.bench.isolation", str(spec_path), str(out_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=spec.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, stderr = proc.communicate()
            timed_out = True
        wall = time.perf_counter() - start
        tail = stderr.decode(errors="replace")[-2000:]
        if timed_out:
            return {"status": "timeout", "wall_seconds": wall, "exit_code": proc.returncode,
                    "message": f"killed after the hard limit of {spec.timeout_s:g} s"}
        if not out_path.exists():
            code = proc.returncode
            why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            return {"status": "crashed", "wall_seconds": wall, "exit_code": code,
                    "message": f"the solver process died ({why}) without a result. {tail}".strip()}
        out = json.loads(out_path.read_text())
    out.update(wall_seconds=wall, exit_code=proc.returncode)
    if "harness_error" in out:
        out.update(status="error", message=out.pop("harness_error"))
    else:
        out["status"] = "error" if out["result"]["solver_status"] == "error" else "ok"
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
