"""Best-known costs per instance fingerprint, marked as in MIPLIB's solution files.

``proven_optimal``: a plan whose re-priced cost meets a solver's proven lower bound;
``best_found``: the cheapest plan any run returned, re-priced here; ``infeasible``: an exact
solver proved no plan fits and no run ever found one. A number enters the file only after
``moeopt.evaluate`` re-priced the plan on the instance: a solver's own report is never trusted.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moeopt.bench.results import load_plan_dict, store_plan
from moeopt.errors import InputError
from moeopt.jsonout import strict

SCHEMA = "moeopt.bench.references/1"
MARKS = ("proven_optimal", "best_found", "infeasible")
PROOF_TOLERANCE = 1e-6  # relative: a bound this close to the re-priced cost proves optimality


@dataclass(frozen=True)
class Reference:
    instance: str
    status: str  # one of MARKS
    cost_usd: float | None
    lower_bound_usd: float | None
    solver: str | None
    seed: int | None
    run_id: str | None
    plan: dict[str, Any] | None  # inline, or {"file": ..., "sha256": ...} beside the file
    updated: str


def read_references(path: Path) -> dict[str, Reference]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(str(path), "file", f"not valid JSON: {exc}") from None
    if data.get("schema") != SCHEMA:
        raise InputError(str(path), "schema", f"allowed: {SCHEMA}")
    return {fp: Reference(**entry) for fp, entry in data["instances"].items()}


def write_references(path: Path, refs: dict[str, Reference]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"schema": SCHEMA,
            "note": "Costs are USD per batch, re-priced with moeopt.evaluate; keys are problem "
                    "fingerprints. Marks as in MIPLIB: proven_optimal / best_found / infeasible.",
            "instances": {fp: asdict(r) for fp, r in sorted(refs.items(), key=lambda kv: kv[1].instance)}}
    # Write beside, then rename: an interrupted run never leaves half a reference file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(strict(body), indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


def update_references(path: Path, records: list[dict[str, Any]], results_dir: Path) -> dict[str, Reference]:
    """Fold verified results into the file; returns the updated table (also written to ``path``).

    Each candidate plan is re-priced on its instance's problem file before it can win.
    """
    from moeopt.bench.runner import verify_plan

    refs = read_references(path)
    stored_before = _plan_files(refs)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_instance.setdefault(r["instance"]["fingerprint"], []).append(r)
    for fp, runs in by_instance.items():
        name = runs[0]["instance"]["name"]
        problem_file = runs[0]["instance"]["file"]
        old = refs.get(fp)
        best_cost = old.cost_usd if old and old.cost_usd is not None else math.inf
        best: Reference | None = old
        for r in sorted(runs, key=lambda r: r["cost_usd"] if r["cost_usd"] is not None else math.inf):
            if r["cost_usd"] is None or r["cost_usd"] >= best_cost * (1 - 1e-12):
                continue
            plan = load_plan_dict(r["plan"], results_dir)
            check = verify_plan(problem_file, plan)  # again, from the stored plan: trust nothing
            if not check or not check["feasible"] or check["cost_usd"] is None:
                continue
            best_cost = check["cost_usd"]
            best = Reference(name, "best_found", best_cost, None, r["solver"]["name"], r["seed"],
                             r["run_id"], store_plan(plan, path.parent), now)
            break
        bound = max((b for r in runs if (b := _bound(r)) is not None), default=None)
        if old and old.lower_bound_usd is not None:
            bound = max(bound or -math.inf, old.lower_bound_usd)
        if best is not None and best.cost_usd is not None:
            proven = bound is not None and bound >= best.cost_usd * (1 - PROOF_TOLERANCE)
            best = Reference(**{**asdict(best), "status": "proven_optimal" if proven else "best_found",
                                "lower_bound_usd": bound})
        elif any(r["solver_status"] == "infeasible" and "exact" in r["solver"].get("tags", [])
                 and r["status"] == "ok" for r in runs):
            best = Reference(name, "infeasible", None, bound, None, None, None, None, now)
        if best is not None:
            refs[fp] = best
    write_references(path, refs)
    # Plan files no entry points at any more (a better plan replaced theirs), removed after the
    # new file is in place: an interruption leaves a stray file, never a dangling pointer.
    for rel in stored_before - _plan_files(refs):
        (path.parent / rel).unlink(missing_ok=True)
    return refs


_PLAN_FILE = re.compile(r"plans/[0-9a-f]{20}\.json\.gz")  # what store_plan writes, nothing else


def _plan_files(refs: dict[str, Reference]) -> set[str]:
    """The plan files (relative to the references file) the entries point at."""
    return {r.plan["file"] for r in refs.values()
            if r.plan and isinstance(r.plan.get("file"), str) and _PLAN_FILE.fullmatch(r.plan["file"])}


def _bound(r: dict[str, Any]) -> float | None:
    """A run's proven lower bound; a claimed optimum counts only if re-pricing agrees with it."""
    if r["status"] != "ok":
        return None
    if r.get("lower_bound_usd") is not None:
        return float(r["lower_bound_usd"])
    cost, reported = r.get("cost_usd"), r.get("reported_cost_usd")
    if r.get("solution_status") == "proven_optimal" and cost is not None and reported is not None \
            and abs(cost - reported) <= PROOF_TOLERANCE * max(abs(cost), 1e-300):
        return float(cost)
    return None
