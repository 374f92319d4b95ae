"""One JSONL record per run: its identity, what the solver said, and what re-pricing the
returned plan found (the parent never trusts a reported number), with where it ran."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moeopt.bench.results import SCHEMA, store_plan
from moeopt.errors import InputError

if TYPE_CHECKING:
    from moeopt.bench.runs import RunSpec

PACKAGES = ("moeopt", "numpy", "scipy", "pulp", "highspy", "nevergrad", "torch", "scikit-learn",
            "matplotlib", "dask", "distributed", "ray", "rich")


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
