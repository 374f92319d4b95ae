"""A deployment problem by name: a built-in, a problem file, or either measured from a trace.

The pieces live one job per module: ``moeopt.deployment_problem`` (the ``DeploymentProblem``
dataclass and its validation), ``moeopt.problem_file`` (reading problem files),
``moeopt.builtin_problems`` (the built-in specs). This module sits above them all, so they
never import it (no import circle); it re-exports their public names for library users.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_problem, builtin_spec, minilm_spec
from moeopt.deployment_problem import (
    COST_SCOPES,
    FULL_MEMORY_STEP_MB,
    PAPER_MEMORY_MENU,
    STARTS,
    WEIGHTS,
    DeploymentProblem,
)
from moeopt.errors import InputError, errors_in
from moeopt.popularity.importers import TraceSource, as_trace_source, load_any
from moeopt.popularity.traces import RoutingTrace
from moeopt.problem_file import SCHEMA, problem_from_dict, read_problem_file
from moeopt.profiles import apply_profile

__all__ = [
    "COST_SCOPES",
    "FULL_MEMORY_STEP_MB",
    "PAPER_MEMORY_MENU",
    "SCHEMA",
    "STARTS",
    "WEIGHTS",
    "DeploymentProblem",
    "TraceSource",
    "load_problem",
    "problem_from_dict",
    "problem_from_trace",
    "read_problem_file",
]


def load_problem(
    name_or_path: str | Path,
    trace: str | Path | TraceSource | None = None,
    profile: str | Path | None = None,
) -> DeploymentProblem:
    """A built-in problem by name, or a problem file (.json or .toml).

    With ``trace`` (a routing trace, per-token JSONL or counts file; a :class:`TraceSource`
    also says how to map per-token fields and what to do with incomplete tokens), the
    problem's popularity comes from the trace; a trace of moeopt's converted MiniLM MoE whose
    shape differs from the named problem gets the matching MiniLM model (see
    :func:`problem_from_trace`). With ``profile`` (a built-in profile name or a profile file),
    its constants replace the problem's; a constant the problem refuses (e.g.
    ``flops_per_second_per_vcpu = 0``) is an error naming the profile.
    """
    problem = _load_problem(name_or_path, trace)
    if profile is None:
        return problem
    with errors_in(str(profile)):
        return apply_profile(problem, profile)


def _load_problem(
    name_or_path: str | Path, trace: str | Path | TraceSource | None
) -> DeploymentProblem:
    text = str(name_or_path)
    if trace is not None:
        if text in BUILTIN_PROBLEMS:
            return problem_from_trace(trace, builtin_spec(text))
        minilm = re.fullmatch(r"minilm-moe-(4|8|16)(?:-top([1-8]))?", text)
        if minilm:  # the shape a MiniLM trace names its problem by
            experts, top_k = int(minilm[1]), int(minilm[2] or 1)
            if top_k <= experts:
                return problem_from_trace(trace, minilm_spec(experts, top_k, {}, 1600.0))
        path = Path(text)
        base = read_problem_file(path).spec
        return problem_from_trace(trace, base, base_dir=path.parent)
    if text in BUILTIN_PROBLEMS:
        return builtin_problem(text)
    path = Path(text)
    if path.suffix in (".json", ".toml") or path.exists():
        return read_problem_file(path)
    raise InputError(
        text, "problem", f"no such problem file or built-in; built-ins: {', '.join(BUILTIN_PROBLEMS)}"
    )


def problem_from_trace(
    trace: str | Path | TraceSource, base: dict[str, Any], base_dir: Path | None = None
) -> DeploymentProblem:
    """``base`` (a problem-file dict) with its popularity measured from ``trace``."""
    source = as_trace_source(trace)
    path = source.path.resolve()
    spec = copy.deepcopy(base)
    model = spec["model"]
    found = load_any(path, source.field_map, model["experts_per_layer"], source.incomplete)
    if isinstance(found, RoutingTrace):
        shape = (found.layers, found.num_experts, found.top_k)
        if shape != (model["moe_layers"], model["experts_per_layer"], model["top_k"]):
            if "MiniLM" not in found.model or found.num_experts not in (4, 8, 16):
                raise InputError(
                    str(path), "moe_layers/experts/top_k",
                    f"trace is {shape[0]} layers x {shape[1]} experts, top-{shape[2]}; the problem "
                    f"{spec['name']!r} is {model['moe_layers']} x {model['experts_per_layer']}, "
                    f"top-{model['top_k']}; name a problem of the trace's shape",
                )
            spec = minilm_spec(found.num_experts, found.top_k, {}, 1600.0)
    spec["popularity"] = {
        "source": "trace", "file": str(path), "batches": 8, "seed": 0, **source.table()
    }
    spec["name"] = f"{spec['name']}@{path.name}"
    return problem_from_dict(spec, f"{spec['name']}", base_dir=base_dir)
