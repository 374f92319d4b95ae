"""The deployment plan: the only hand-off between solving and running (``docs/plan-format.md``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cost_models.lambda_model import ARCHITECTURES, METHODS, PIPELINED_STORAGE
from moeopt import limits
from moeopt.errors import InputError, errors_in
from moeopt.files import read_json

if TYPE_CHECKING:
    from moeopt.problem import DeploymentProblem

SCHEMA = "moeopt.plan/1"


@dataclass(frozen=True)
class FunctionPlan:
    """One Lambda function hosting one or more experts of a layer, run as ``replicas`` copies."""

    experts: tuple[int, ...]
    memory_mb: int
    replicas: int = 1
    architecture: str = "x86_64"


@dataclass(frozen=True)
class LayerPlan:
    method: str
    pipeline_degree: int
    functions: tuple[FunctionPlan, ...]


@dataclass(frozen=True)
class DeploymentPlan:
    problem_name: str
    problem_fingerprint: str
    layers: tuple[LayerPlan, ...]
    predicted: dict[str, float] | None = field(default=None, compare=False)
    solver: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "problem": {"name": self.problem_name, "fingerprint": self.problem_fingerprint},
            "layers": [
                {
                    "layer": i,
                    "method": layer.method,
                    "pipeline_degree": layer.pipeline_degree,
                    "functions": [
                        {
                            "experts": list(f.experts),
                            "memory_mb": f.memory_mb,
                            "replicas": f.replicas,
                            "architecture": f.architecture,
                        }
                        for f in layer.functions
                    ],
                }
                for i, layer in enumerate(self.layers)
            ],
            **({"predicted": self.predicted} if self.predicted is not None else {}),
            **({"solver": self.solver} if self.solver is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def uniform(
        cls,
        problem: DeploymentProblem,
        memory_mb: int,
        replicas: int = 1,
        method: str = "storage",
        pipeline_degree: int = 256,
    ) -> DeploymentPlan:
        """Every expert in its own function with the same memory and replicas (a baseline)."""
        layer = LayerPlan(
            method,
            pipeline_degree,
            tuple(FunctionPlan((e,), memory_mb, replicas) for e in range(problem.experts)),
        )
        return cls(problem.name, problem.fingerprint, (layer,) * problem.layers)


_PLAN_KEYS = ("schema", "problem", "layers", "predicted", "solver")
_LAYER_KEYS = ("layer", "method", "pipeline_degree", "functions")
_FUNCTION_KEYS = ("experts", "memory_mb", "replicas", "architecture")


def _unknown(data: dict[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    extra = sorted((k for k in data if k not in allowed), key=str)
    if extra:
        at = f"{where}.{extra[0]}" if where else str(extra[0])
        raise InputError(source, at, f"unknown field; allowed: {', '.join(allowed)}")


def _int_field(source: str, where: str, value: Any, low: int, high: int, what: str = "") -> int:
    with errors_in(source):
        return limits.whole(value, "plan", where, low, high, what)


def plan_from_dict(data: Any, source: str, problem: DeploymentProblem | None = None) -> DeploymentPlan:
    """Parse and validate a plan; with ``problem``, check it fits that problem exactly.

    Every field is checked (``docs/plan-format.md``): layer indices are 0..L-1, each once
    (layers are put in that order, whatever the file's order), expert ids, memory, replicas,
    pipeline degree and architecture are integers or names in range, never bools, strings or
    NaN.
    """
    if not isinstance(data, dict):
        raise InputError(source, "plan", "must be a JSON object")
    _unknown(data, _PLAN_KEYS, source, "")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise InputError(source, "schema", f"{limits.shown(data.get('schema'))} not supported; allowed: {SCHEMA}")
    prob = data.get("problem")
    if not isinstance(prob, dict) or not isinstance(prob.get("name"), str) or not prob["name"]:
        raise InputError(source, "problem", "need {'name': ..., 'fingerprint': ...}")
    _unknown(prob, ("name", "fingerprint"), source, "problem")
    fingerprint = prob.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.strip() or len(fingerprint) > 128:
        raise InputError(
            source, "problem.fingerprint",
            f"need the fingerprint of the problem the plan was solved for (`moeopt problems show "
            f"NAME` prints it), got {limits.shown(fingerprint)}",
        )
    layers_raw = data.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw or len(layers_raw) > limits.MAX_MOE_LAYERS:
        raise InputError(source, "layers", f"need a list of 1 to {limits.MAX_MOE_LAYERS:,} layers")
    count = len(layers_raw)
    layers: list[LayerPlan | None] = [None] * count
    for i, lr in enumerate(layers_raw):
        where = f"layers[{i}]"
        if not isinstance(lr, dict):
            raise InputError(source, where, "must be an object")
        _unknown(lr, _LAYER_KEYS, source, where)
        if "layer" not in lr:
            raise InputError(source, f"{where}.layer", f"missing; need the MoE layer index 0..{count - 1}")
        index = _int_field(source, f"{where}.layer", lr["layer"], 0, count - 1,
                           f" (one entry per MoE layer of {count}, each once)")
        if layers[index] is not None:
            raise InputError(source, f"{where}.layer", f"layer {index} appears twice; each layer once")
        method = lr.get("method")
        if method not in METHODS:
            raise InputError(source, f"{where}.method", f"{limits.shown(method)} not allowed; allowed: {', '.join(METHODS)}")
        beta = _int_field(source, f"{where}.pipeline_degree", lr.get("pipeline_degree", 1), 1,
                          limits.MAX_PIPELINE_DEGREE, " (tokens per minibatch)")
        funcs_raw = lr.get("functions")
        if not isinstance(funcs_raw, list) or not funcs_raw or len(funcs_raw) > limits.MAX_EXPERTS:
            raise InputError(source, f"{where}.functions", f"need a list of 1 to {limits.MAX_EXPERTS:,} functions")
        layers[index] = LayerPlan(method, beta, tuple(
            _function(fr, source, f"{where}.functions[{j}]") for j, fr in enumerate(funcs_raw)
        ))
    predicted = data.get("predicted")
    if predicted is not None and (
        not isinstance(predicted, dict)
        or any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in predicted.values())
    ):
        raise InputError(source, "predicted", "need an object of name: number (informational)")
    solver = data.get("solver")
    if solver is not None and not isinstance(solver, dict):
        raise InputError(source, "solver", "need an object (informational)")
    plan = DeploymentPlan(
        prob["name"], fingerprint, tuple(layer for layer in layers if layer is not None), predicted, solver
    )
    if problem is not None:
        check_plan(plan, problem, source)
    return plan


def _function(fr: Any, source: str, fw: str) -> FunctionPlan:
    if not isinstance(fr, dict):
        raise InputError(source, fw, "must be an object")
    _unknown(fr, _FUNCTION_KEYS, source, fw)
    experts = fr.get("experts")
    if not isinstance(experts, list) or not experts or len(experts) > limits.MAX_EXPERTS:
        raise InputError(source, f"{fw}.experts", f"need a non-empty list of expert ids, got {limits.shown(experts)}")
    ids = tuple(
        _int_field(source, f"{fw}.experts[{k}]", e, 0, limits.MAX_EXPERTS - 1, " (an expert id)")
        for k, e in enumerate(experts)
    )
    memory = fr.get("memory_mb")
    if isinstance(memory, bool) or not isinstance(memory, int):
        raise InputError(source, f"{fw}.memory_mb", f"must be an integer (MB), got {limits.shown(memory)}")
    memory = _int_field(source, f"{fw}.memory_mb", memory, 1, 1 << 20, " (MB)")
    replicas = _int_field(source, f"{fw}.replicas", fr.get("replicas", 1), 1, limits.MAX_REPLICAS)
    arch = fr.get("architecture", "x86_64")
    if arch not in ARCHITECTURES:
        raise InputError(source, f"{fw}.architecture", f"{limits.shown(arch)} not allowed; allowed: {', '.join(ARCHITECTURES)}")
    return FunctionPlan(ids, memory, replicas, arch)


def check_plan(plan: DeploymentPlan, problem: DeploymentProblem, source: str,
               fingerprint: bool = True) -> None:
    """Raise an InputError naming the field where ``plan`` does not fit ``problem`` (without
    ``fingerprint``: its shape and options only, for a plan run against a problem it was not
    solved for)."""
    if fingerprint and plan.problem_fingerprint != problem.fingerprint:
        traced = "@" in plan.problem_name and "@" not in problem.name
        hint = (
            f"; the plan was solved on a problem measured from the trace "
            f"{plan.problem_name.split('@', 1)[1]!r}: add --trace FILE (that trace) to use it"
            if traced
            else "; re-solve, or pass the plan's own problem"
        )
        raise InputError(
            source,
            "problem.fingerprint",
            f"plan was solved for {plan.problem_name!r} ({plan.problem_fingerprint}), not for "
            f"{problem.name!r} ({problem.fingerprint}){hint}",
        )
    if len(plan.layers) != problem.layers:
        raise InputError(source, "layers", f"plan has {len(plan.layers)} layers; the problem has {problem.layers}")
    for i, layer in enumerate(plan.layers):
        where = f"layers[{i}]"
        if layer.method not in problem.methods:
            raise InputError(source, f"{where}.method", f"{layer.method!r} not allowed by the problem; allowed: {', '.join(problem.methods)}")
        seen: set[int] = set()
        for j, f in enumerate(layer.functions):
            fw = f"{where}.functions[{j}]"
            for e in f.experts:
                if not 0 <= e < problem.experts:
                    raise InputError(source, f"{fw}.experts", f"unknown expert {e}; allowed 0..{problem.experts - 1}")
                if e in seen:
                    raise InputError(source, f"{fw}.experts", f"expert {e} is in two functions")
                seen.add(e)
            if not problem.memory_allowed(f.memory_mb):
                raise InputError(source, f"{fw}.memory_mb", f"{f.memory_mb} is not a memory option of the problem; allowed: {problem.memory_rule()}")
            if f.replicas > problem.max_replicas:
                raise InputError(source, f"{fw}.replicas", f"{f.replicas} > max_replicas {problem.max_replicas}")
            if f.architecture not in problem.architectures:
                raise InputError(source, f"{fw}.architecture", f"{f.architecture!r} not allowed; allowed: {', '.join(problem.architectures)}")
        missing = sorted(set(range(problem.experts)) - seen)
        if missing:
            raise InputError(source, f"{where}.functions", f"experts {missing[:8]} have no function")


def load_plan(path: str | Path, problem: DeploymentProblem | None = None) -> DeploymentPlan:
    """A plan file read through ``moeopt.files`` (size cap, UTF-8, depth, finite numbers)."""
    return plan_from_dict(read_json(path), str(path), problem)


def traced_problem_name(plan: DeploymentPlan, source: str, trace: Any) -> str:
    """The problem a plan names, for commands that load it: a plan solved on a problem
    measured from a trace needs that trace (``--trace FILE``) to be rebuilt."""
    base, at, trace_name = plan.problem_name.partition("@")
    if at and trace is None:
        raise InputError(
            source, "problem.name",
            f"the plan was solved on {plan.problem_name!r}, a problem measured from the trace "
            f"{trace_name!r}: add --trace FILE (that trace) to evaluate it",
        )
    return base


# ---- array form: many plans at once ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlanArrays:
    """P plans as arrays, for vectorized evaluation and for black-box solvers.

    Function slot s of layer l hosts the experts e with ``group[p, l, e] == s`` (``group`` None:
    slot e hosts expert e alone). Slots that host no expert cost nothing.
    """

    memory_mb: np.ndarray  # (P, L, S)
    replicas: np.ndarray  # (P, L, S)
    method: np.ndarray  # (P, L) index into METHODS
    pipeline_degree: np.ndarray  # (P, L)
    group: np.ndarray | None = None  # (P, L, E)
    arm64: np.ndarray | None = None  # (P, L, S) bool

    @property
    def size(self) -> int:
        return int(self.memory_mb.shape[0])

    @classmethod
    def from_plans(cls, plans: list[DeploymentPlan], problem: DeploymentProblem) -> PlanArrays:
        n, layers, experts = len(plans), problem.layers, problem.experts
        memory = np.full((n, layers, experts), problem.constants.lambda_memory_min_mb, dtype=float)
        replicas = np.ones((n, layers, experts), dtype=np.int64)
        method = np.zeros((n, layers), dtype=np.int64)
        beta = np.ones((n, layers), dtype=float)
        group = np.zeros((n, layers, experts), dtype=np.int64)
        arm = np.zeros((n, layers, experts), dtype=bool)
        grouped = False
        for p, plan in enumerate(plans):
            for li, layer in enumerate(plan.layers):
                method[p, li] = METHODS.index(layer.method)
                beta[p, li] = layer.pipeline_degree
                for s, f in enumerate(layer.functions):
                    memory[p, li, s] = f.memory_mb
                    replicas[p, li, s] = f.replicas
                    arm[p, li, s] = f.architecture == "arm64"
                    group[p, li, list(f.experts)] = s
                    grouped |= len(f.experts) > 1 or f.experts[0] != s
        return cls(memory, replicas, method, beta, group if grouped else None, arm if arm.any() else None)

    def plan(self, p: int, problem: DeploymentProblem, **info: Any) -> DeploymentPlan:
        """Plan ``p`` as a DeploymentPlan (empty slots dropped)."""
        layers = []
        for li in range(problem.layers):
            group = self.group[p, li] if self.group is not None else np.arange(problem.experts)
            funcs = []
            for s in range(self.memory_mb.shape[2]):
                members = tuple(int(e) for e in np.flatnonzero(group == s))
                if not members:
                    continue
                arm = self.arm64 is not None and bool(self.arm64[p, li, s])
                funcs.append(
                    FunctionPlan(
                        members,
                        int(self.memory_mb[p, li, s]),
                        int(self.replicas[p, li, s]),
                        "arm64" if arm else "x86_64",
                    )
                )
            m = int(self.method[p, li])
            beta = int(self.pipeline_degree[p, li]) if m == PIPELINED_STORAGE else 1
            layers.append(LayerPlan(METHODS[m], beta, tuple(funcs)))
        return DeploymentPlan(problem.name, problem.fingerprint, tuple(layers), **info)
