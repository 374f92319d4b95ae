"""The deployment plan: the only hand-off between solving and running (``docs/plan-format.md``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cost_models.lambda_model import ARCHITECTURES, METHODS, PIPELINED_STORAGE
from moeopt.errors import InputError

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


def plan_from_dict(data: Any, source: str, problem: DeploymentProblem | None = None) -> DeploymentPlan:
    """Parse and validate a plan; with ``problem``, check it fits that problem exactly."""
    if not isinstance(data, dict):
        raise InputError(source, "plan", "must be a JSON object")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise InputError(source, "schema", f"{data.get('schema')!r} not supported; allowed: {SCHEMA}")
    prob = data.get("problem")
    if not isinstance(prob, dict) or not isinstance(prob.get("name"), str):
        raise InputError(source, "problem", "need {'name': ..., 'fingerprint': ...}")
    fingerprint = prob.get("fingerprint", "")
    layers_raw = data.get("layers")
    if not isinstance(layers_raw, list) or not layers_raw:
        raise InputError(source, "layers", "need a non-empty list of layers")
    layers = []
    for i, lr in enumerate(layers_raw):
        where = f"layers[{i}]"
        if not isinstance(lr, dict):
            raise InputError(source, where, "must be an object")
        method = lr.get("method")
        if method not in METHODS:
            raise InputError(source, f"{where}.method", f"{method!r} not allowed; allowed: {', '.join(METHODS)}")
        beta = lr.get("pipeline_degree", 1)
        if isinstance(beta, bool) or not isinstance(beta, int) or beta < 1:
            raise InputError(source, f"{where}.pipeline_degree", f"must be an integer >= 1, got {beta!r}")
        funcs_raw = lr.get("functions")
        if not isinstance(funcs_raw, list) or not funcs_raw:
            raise InputError(source, f"{where}.functions", "need a non-empty list of functions")
        funcs = []
        for j, fr in enumerate(funcs_raw):
            fw = f"{where}.functions[{j}]"
            if not isinstance(fr, dict):
                raise InputError(source, fw, "must be an object")
            experts = fr.get("experts")
            if (
                not isinstance(experts, list)
                or not experts
                or any(isinstance(e, bool) or not isinstance(e, int) for e in experts)
            ):
                raise InputError(source, f"{fw}.experts", f"need a non-empty list of expert ids, got {experts!r}")
            memory = fr.get("memory_mb")
            if isinstance(memory, bool) or not isinstance(memory, int):
                raise InputError(source, f"{fw}.memory_mb", f"must be an integer (MB), got {memory!r}")
            replicas = fr.get("replicas", 1)
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
                raise InputError(source, f"{fw}.replicas", f"must be an integer >= 1, got {replicas!r}")
            arch = fr.get("architecture", "x86_64")
            if arch not in ARCHITECTURES:
                raise InputError(source, f"{fw}.architecture", f"{arch!r} not allowed; allowed: {', '.join(ARCHITECTURES)}")
            funcs.append(FunctionPlan(tuple(experts), memory, replicas, arch))
        layers.append(LayerPlan(method, beta, tuple(funcs)))
    plan = DeploymentPlan(
        prob["name"], fingerprint, tuple(layers), data.get("predicted"), data.get("solver")
    )
    if problem is not None:
        check_plan(plan, problem, source)
    return plan


def check_plan(plan: DeploymentPlan, problem: DeploymentProblem, source: str) -> None:
    """Raise an InputError naming the field where ``plan`` does not fit ``problem``."""
    if plan.problem_fingerprint and plan.problem_fingerprint != problem.fingerprint:
        raise InputError(
            source,
            "problem.fingerprint",
            f"plan was solved for {plan.problem_name!r} ({plan.problem_fingerprint}), not for "
            f"{problem.name!r} ({problem.fingerprint}); re-solve, or pass the plan's own problem",
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
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, "file", f"not valid JSON: {exc}") from None
    return plan_from_dict(data, source, problem)


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
