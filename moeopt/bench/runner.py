"""Run solvers on a suite: one process per run, a hard time limit, results appended as they land.

Each run is a fresh ``python -m moeopt.bench.runner SPEC OUT`` subprocess, so a solver that
segfaults, calls ``os._exit`` or sleeps forever costs only its own run: the parent records it
as ``crashed`` or ``timeout`` (killing the process group on expiry) and goes on. The parent
never trusts a reported number: it re-prices every returned plan with ``moeopt.evaluate``.
Runs already in the results file (same instance fingerprint, solver, seed and budget) are
skipped, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.bench.results import SCHEMA, append_records, read_results, run_key, store_plan
from moeopt.bench.suite import Suite
from moeopt.errors import InputError
from moeopt.solver import Budget

EXECUTORS = ("local", "dask", "ray")
PACKAGES = ("moeopt", "numpy", "scipy", "pulp", "highspy", "nevergrad", "torch", "scikit-learn",
            "matplotlib", "dask", "distributed", "ray")
# Solvers entered by default: every available one except variants and no-plan baselines.
DEFAULT_SOLVERS = ("ilp", "greedy", "bayes-egreedy", "nevergrad", "exhaustive", "random", "eplb",
                   "lambdaml")
BASELINE = "random"


@dataclass(frozen=True)
class RunSpec:
    """One run: what the child process needs, and the identity used to resume."""

    suite: str
    instance: str
    problem_file: str
    fingerprint: str
    solver: str
    seed: int
    seed_index: int
    master_seed: int
    budget: Budget
    timeout_s: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_dict(self) -> dict[str, Any]:
        return {"evaluations": self.budget.evaluations, "seconds": self.budget.seconds}

    @property
    def key(self) -> str:
        return run_key(self.fingerprint, self.solver, self.seed, self.budget_dict)


def derive_seeds(master_seed: int, count: int) -> list[int]:
    """Seed k of every run, from one master seed (numpy SeedSequence, so streams are independent)."""
    children = np.random.SeedSequence(master_seed).spawn(count)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def default_timeout(budget: Budget) -> float:
    """Hard wall limit: the seconds budget plus room for start-up and a late stop."""
    return 600.0 if budget.seconds is None else max(3.0 * budget.seconds, budget.seconds + 30.0)


def available_default_solvers() -> list[str]:
    """The default zoo that is available here, plus every available plugin."""
    from moeopt.registry import list_solvers

    entries = [e for e in list_solvers() if e.available]
    names = [n for n in DEFAULT_SOLVERS if any(e.name == n for e in entries)]
    return names + [e.name for e in entries if e.origin != "built-in" and e.name not in names]


def plan_runs(
    suite: Suite,
    solvers: list[str],
    seeds: int,
    budget: Budget,
    master_seed: int = 0,
    timeout_s: float | None = None,
    repeat_deterministic: bool = False,
) -> list[RunSpec]:
    """Instances x solvers x seeds, instance-major so early results cover every solver.

    Solvers tagged ``deterministic`` run once (seed index 0) unless ``repeat_deterministic``:
    another seed would repeat the same run; scoring pairs that run with every seed.
    """
    timeout = timeout_s or suite.timeout_s or default_timeout(budget)
    once = set() if repeat_deterministic else {s for s in solvers if "deterministic" in solver_info(s)["tags"]}
    out = []
    for inst in suite.instances:
        for k, seed in enumerate(derive_seeds(master_seed, seeds)):
            for solver in solvers:
                if k > 0 and solver in once:
                    continue  # the same seed-free run again: scoring reuses seed 0's
                out.append(RunSpec(suite.name, inst.name, str(inst.path.resolve()), inst.fingerprint,
                                   solver, seed, k, master_seed, budget, float(timeout)))
    return out


# ---- the child process ----------------------------------------------------------------------


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
            [sys.executable, "-m", "moeopt.bench.runner", str(spec_path), str(out_path)],
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


# ---- records ----------------------------------------------------------------------------------


@cache
def environment() -> dict[str, Any]:
    """Where the runs ran: Python, platform, package versions and the git commit."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": packages,
        **_git(),
    }


RECORDED_OUTPUTS = ("benchmarks/results", "benchmarks/references", "benchmarks/LEADERBOARD*")


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        # A recorded run rewrites the committed results and references: those are not the code.
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", ".", *(f":(exclude){p}" for p in RECORDED_OUTPUTS)],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(dirty) if commit else None}


@cache
def solver_info(name: str) -> dict[str, Any]:
    """Version, origin and tags from the registry (a plugin's version is its distribution's)."""
    from moeopt.registry import list_solvers

    entry = next((e for e in list_solvers() if e.name == name), None)
    if entry is None:
        return {"name": name, "version": None, "origin": "unknown", "tags": []}
    cls = entry.solver_class
    version = getattr(cls, "version", None)
    if version is None:
        dist = "moeopt" if entry.origin == "built-in" else entry.origin
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
    return {"name": name, "version": version, "origin": entry.origin, "tags": list(entry.tags)}


@cache
def _problem(path: str) -> Any:
    from moeopt.problem import read_problem_file

    return read_problem_file(resolve_instance_file(path))


def resolve_instance_file(path: str) -> str:
    """A recorded instance path: as written (relative to where the sweep ran), else from the
    checkout's root, so a committed results file re-prices from any working directory."""
    if Path(path).exists():
        return path
    root_relative = Path(__file__).resolve().parents[2] / path
    return str(root_relative) if root_relative.exists() else path


def verify_plan(problem_file: str, plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """Re-price a returned plan on the instance; None when there is no plan to check."""
    if plan is None:
        return None
    from moeopt.evaluate import evaluate
    from moeopt.plan import plan_from_dict

    problem = _problem(problem_file)
    try:
        ev = evaluate(problem, plan_from_dict(plan, "returned plan", problem))
    except (InputError, ValueError, KeyError, IndexError) as exc:
        return {"cost_usd": None, "feasible": False, "latency_s": None,
                "message": f"the plan does not fit the instance: {exc}"}
    return {"cost_usd": ev.cost_usd, "feasible": ev.feasible, "latency_s": ev.latency_s,
            "violations": ev.violations}


def make_record(spec: RunSpec, out: dict[str, Any], folder: Path, started: str) -> dict[str, Any]:
    """One JSONL line: the run's identity, what the solver said and what re-pricing found."""
    result = out.get("result") or {}
    verified = verify_plan(spec.problem_file, out.get("plan"))
    feasible = bool(verified and verified["feasible"])
    reported = result.get("cost_usd")
    return {
        "schema": SCHEMA,
        "run_id": spec.key,
        "suite": spec.suite,
        "instance": {"name": spec.instance, "fingerprint": spec.fingerprint,
                     "file": _relative(spec.problem_file)},
        "solver": {**solver_info(spec.solver), "options": result.get("options", spec.options)},
        "seed": spec.seed,
        "seed_index": spec.seed_index,
        "master_seed": spec.master_seed,
        "budget": spec.budget_dict,
        "timeout_s": spec.timeout_s,
        "status": out["status"],
        "exit_code": out.get("exit_code"),
        "solver_status": result.get("solver_status"),
        "solution_status": result.get("solution_status"),
        "feasible": feasible,
        "cost_usd": verified["cost_usd"] if feasible and verified else None,
        "reported_cost_usd": reported,
        "reported_feasible": result.get("feasible"),
        "verified": verified,
        "lower_bound_usd": result.get("lower_bound_usd"),
        "gap": result.get("gap"),
        "evaluations": result.get("evaluations"),
        "solve_seconds": result.get("solve_seconds"),
        "wall_seconds": out["wall_seconds"],
        "trajectory": result.get("trajectory", []),
        "plan": store_plan(out.get("plan"), folder),
        "message": (out.get("message") or result.get("message") or "")[:4000],
        "environment": environment(),
        "started_at": started,
        "finished_at": _now(),
    }


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- the sweep ----------------------------------------------------------------------------


def pending(specs: list[RunSpec], results_path: Path) -> list[RunSpec]:
    """The runs not yet in the results file (resume)."""
    done = {r["run_id"] for r in read_results(results_path)} if results_path.exists() else set()
    return [s for s in specs if s.key not in done]


def _timed(spec: RunSpec) -> tuple[dict[str, Any], str]:
    started = _now()
    return run_isolated(spec), started


def execute(specs: list[RunSpec], jobs: int, executor: str = "local",
            scheduler: str | None = None) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    """Yield (spec, child output, start time) as runs finish, on the chosen executor."""
    if executor == "local":
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            futures = {pool.submit(_timed, s): s for s in specs}
            for fut in as_completed(futures):
                out, started = fut.result()
                yield futures[fut], out, started
    elif executor == "dask":
        yield from _execute_dask(specs, jobs, scheduler)
    elif executor == "ray":
        yield from _execute_ray(specs, jobs, scheduler)
    else:
        raise InputError("--executor", executor, f"allowed: {', '.join(EXECUTORS)}")


def _execute_dask(specs: list[RunSpec], jobs: int, scheduler: str | None
                  ) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    """Each dask task starts the same isolated subprocess, so the hard limit holds on any worker."""
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise InputError("--executor", "dask",
                         'needs dask.distributed: pip install "dask[distributed]"') from None
    cluster = None if scheduler else LocalCluster(n_workers=1, threads_per_worker=max(jobs, 1),
                                                  processes=False, dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        futures = {client.submit(_timed, s, pure=False): s for s in specs}
        for fut in dask_completed(list(futures)):
            out, started = fut.result()
            yield futures[fut], out, started
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _execute_ray(specs: list[RunSpec], jobs: int, address: str | None
                 ) -> Iterator[tuple[RunSpec, dict[str, Any], str]]:
    try:
        import ray
    except ImportError:
        raise InputError("--executor", "ray", 'needs Ray: pip install "ray"') from None
    ray.init(address=address, num_cpus=None if address else jobs, ignore_reinit_error=True)
    remote = ray.remote(_timed)
    refs = {remote.remote(s): s for s in specs}
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        out, started = ray.get(ready[0])
        yield refs[ready[0]], out, started


def run_bench(
    specs: list[RunSpec],
    results_path: Path,
    jobs: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    progress: Callable[[RunSpec, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run what is not yet recorded; append each record as soon as its run ends."""
    todo = pending(specs, results_path)
    records = []
    for spec, out, started in execute(todo, jobs, executor, scheduler):
        record = make_record(spec, out, results_path.parent, started)
        append_records(results_path, [record])
        records.append(record)
        if progress:
            progress(spec, record)
    return records


def parse_solvers(text: str | None) -> list[str]:
    """``a,b`` -> names, checked against the registry; ``all`` = every available solver."""
    from moeopt.registry import list_solvers

    entries = {e.name: e for e in list_solvers()}
    if not text:
        names = available_default_solvers()
    elif text.strip() == "all":
        names = [n for n, e in entries.items() if e.available and "no-plan" not in e.tags]
    else:
        names = [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        if n not in entries:
            raise InputError("--solvers", n, f"unknown solver; registered: {', '.join(entries)}")
        if not entries[n].available:
            raise InputError("--solvers", n, f"not available here: {entries[n].reason}")
    return names


def with_baseline(names: Iterable[str]) -> list[str]:
    """Random search is the score's 1: enter it whenever it is not already entered."""
    names = list(names)
    return names if BASELINE in names else [*names, BASELINE]


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
