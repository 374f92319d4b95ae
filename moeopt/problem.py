"""The deployment problem: an MoE model, its measured popularity, a Lambda cost model and an SLO."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cost_models.constants import DEFAULT_CONSTANTS, CostConstants
from cost_models.lambda_model import ARCHITECTURES, METHODS
from moeopt.errors import InputError
from moeopt.model import DTYPE_BYTES, ModelSpec, ServiceLevel, Workload
from moeopt.popularity import Popularity, read_layer_counts

SCHEMA = "moeopt.problem/1"
PAPER_MEMORY_MENU = (128, *range(768, 3072 + 1, 192))
FULL_MEMORY_STEP_MB = 64
COST_SCOPES = ("paper", "full")
STARTS = ("warm", "cold")
#: How a function gets its weights: from storage on every invocation (the paper's head time H),
#: or once per execution environment, kept while it is warm.
WEIGHTS = ("per_invocation", "cached")


@dataclass(frozen=True, eq=False)
class DeploymentProblem:
    """Everything a solver needs; ``evaluate`` in :mod:`moeopt.evaluate` prices plans for it."""

    name: str
    model: ModelSpec
    workload: Workload
    slo: ServiceLevel
    popularity: Popularity
    constants: CostConstants = DEFAULT_CONSTANTS
    memory_menu: tuple[int, ...] | None = PAPER_MEMORY_MENU
    max_replicas: int = 8
    methods: tuple[str, ...] = METHODS
    architectures: tuple[str, ...] = ("x86_64",)
    cost_scope: str = "paper"
    start: str = "warm"
    weights: str = "per_invocation"
    description: str = ""
    spec: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def layers(self) -> int:
        return self.model.moe_layers

    @property
    def experts(self) -> int:
        return self.model.experts_per_layer

    @property
    def memory_options(self) -> tuple[int, ...]:
        """The memory sizes solvers choose from (the menu, or a 64 MB grid of the full range)."""
        if self.memory_menu is not None:
            return self.memory_menu
        c = self.constants
        grid = range(c.lambda_memory_min_mb, c.lambda_memory_max_mb + 1, FULL_MEMORY_STEP_MB)
        return tuple(sorted({*grid, c.lambda_memory_max_mb}))

    def memory_allowed(self, memory_mb: int) -> bool:
        """A plan may use only the problem's memory options (its menu, or the 64 MB grid of a
        'full' menu): the space a proof of optimality covers is exactly the space of valid plans."""
        return memory_mb in self._memory_set

    @cached_property
    def _memory_set(self) -> frozenset[int]:
        return frozenset(self.memory_options)

    def memory_rule(self) -> str:
        if self.memory_menu is not None:
            return "one of the problem's memory options: " + ", ".join(map(str, self.memory_menu))
        c = self.constants
        return (
            f"a size on the {FULL_MEMORY_STEP_MB} MB grid from {c.lambda_memory_min_mb} to "
            f"{c.lambda_memory_max_mb} (128, 192, ...; and {c.lambda_memory_max_mb})"
        )

    @property
    def fetch_weights(self) -> bool:
        """Whether each invocation fetches its weights (per_invocation, or every start cold)."""
        return self.weights == "per_invocation" or self.start == "cold"

    @property
    def start_s(self) -> float:
        return self.constants.warm_start_s if self.start == "warm" else self.constants.cold_start_s

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the problem a plan was solved for: spec, constants and loads."""
        body = {
            "spec": self.spec,
            "constants": {n: getattr(self.constants, n) for n in self.constants.names()},
            "loads": self.popularity.digest(),
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode())
        return "sha256:" + digest.hexdigest()[:16]

    def with_popularity(self, popularity: Popularity, name: str | None = None) -> DeploymentProblem:
        """The same problem on other loads (e.g. predicted loads for planning, real for scoring)."""
        spec = dict(self.spec, popularity={"source": "loads", "digest": popularity.digest()})
        return _replace(self, popularity=popularity, spec=spec, name=name or self.name)

    def with_constants(self, constants: CostConstants) -> DeploymentProblem:
        """The same problem priced with other constants (a profile)."""
        spec = dict(self.spec)
        spec["cost_model"] = {"profile": constants.profile}
        return _replace(self, constants=constants, spec=spec)

    def with_workload(self, workload: Workload) -> DeploymentProblem:
        spec = dict(self.spec, workload={"tokens_per_batch": workload.tokens_per_batch})
        return _replace(self, workload=workload, spec=spec)

    def with_slo(self, slo: ServiceLevel) -> DeploymentProblem:
        spec = dict(self.spec, slo={"time_limit_s": slo.time_limit_s})
        return _replace(self, slo=slo, spec=spec)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for ``moeopt problems show``."""
        m = self.model
        return {
            "name": self.name,
            "description": self.description,
            "fingerprint": self.fingerprint,
            "model": {
                **{f.name: getattr(m, f.name) for f in fields(m)},
                "expert_param_bytes": m.expert_param_bytes,
                "token_bytes": m.token_bytes,
            },
            "tokens_per_batch": self.workload.tokens_per_batch,
            "time_limit_s": self.slo.time_limit_s,
            "throughput_target_tokens_per_s": self.slo.throughput_target(
                self.workload.tokens_per_batch
            ),
            "popularity": {
                "source": self.popularity.source,
                "batches": self.popularity.batches,
                "mean_tokens_per_expert": float(self.popularity.mean().mean()),
                "max_share_of_layer": float(
                    (self.popularity.loads / self.popularity.loads.sum(axis=2, keepdims=True))
                    .max()
                ),
            },
            "memory_options_mb": list(self.memory_options)
            if self.memory_menu is not None
            else f"full range, solvers use a {FULL_MEMORY_STEP_MB} MB grid",
            "max_replicas": self.max_replicas,
            "methods": list(self.methods),
            "architectures": list(self.architectures),
            "cost_scope": self.cost_scope,
            "start": self.start,
            "weights": self.weights,
            "constants_profile": self.constants.profile,
        }


def _replace(problem: DeploymentProblem, **changes: Any) -> DeploymentProblem:
    values = {f.name: getattr(problem, f.name) for f in fields(problem)}
    values.update(changes)
    return DeploymentProblem(**values)


# ---- reading problem files ---------------------------------------------------------------------


class _Reader:
    """Typed access to a nested dict that reports the file and dotted field on any mistake."""

    def __init__(self, data: Any, source: str, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(source, prefix or "file", "must be a table/object")
        self.data, self.source, self.prefix = data, source, prefix

    def _path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def table(self, key: str, required: bool = True) -> _Reader:
        if key not in self.data:
            if required:
                raise InputError(self.source, self._path(key), "missing (a table is required)")
            return _Reader({}, self.source, self._path(key))
        return _Reader(self.data[key], self.source, self._path(key))

    def get(self, key: str, kind: type, default: Any = ..., low: float | None = None) -> Any:
        if key not in self.data:
            if default is ...:
                raise InputError(self.source, self._path(key), "missing")
            return default
        value = self.data[key]
        ok = (
            isinstance(value, int) and not isinstance(value, bool)
            if kind is int
            else isinstance(value, int | float) and not isinstance(value, bool)
            if kind is float
            else isinstance(value, kind)
        )
        if not ok:
            raise InputError(
                self.source, self._path(key), f"must be {kind.__name__}, got {value!r}"
            )
        if low is not None and value < low:
            raise InputError(self.source, self._path(key), f"must be >= {low}, got {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in allowed:
            raise InputError(
                self.source, self._path(key), f"{value!r} not allowed; allowed: {', '.join(allowed)}"
            )
        return value

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise InputError(
                self.source,
                self._path(extra[0]),
                f"unknown field; allowed: {', '.join(sorted(allowed))}",
            )


def problem_from_dict(
    data: dict[str, Any], source: str, base_dir: Path | None = None
) -> DeploymentProblem:
    """Build and validate a problem from its file form (see ``docs/problem-format.md``)."""
    top = _Reader(data, source)
    top.unknown(
        {"schema", "name", "description", "model", "workload", "slo", "popularity", "deployment",
         "cost_model"}
    )
    schema = top.get("schema", str, SCHEMA)
    if schema != SCHEMA:
        raise InputError(source, "schema", f"{schema!r} not supported; allowed: {SCHEMA}")
    name = top.get("name", str)
    base_dir = base_dir or Path.cwd()

    m = top.table("model")
    m.unknown({f.name for f in fields(ModelSpec)})
    model = ModelSpec(
        name=m.get("name", str, name),
        moe_layers=m.get("moe_layers", int, low=1),
        experts_per_layer=m.get("experts_per_layer", int, low=1),
        top_k=m.get("top_k", int, low=1),
        hidden_size=m.get("hidden_size", int, low=1),
        expert_ffn_size=m.get("expert_ffn_size", int, low=1),
        dtype=m.choice("dtype", tuple(DTYPE_BYTES), "float32"),
        ffn_matrices=m.get("ffn_matrices", int, 2, low=2),
        sequence_length=m.get("sequence_length", int, 128, low=1),
        nonmoe_params_per_layer=m.get("nonmoe_params_per_layer", int, 0, low=0),
        embedding_params=m.get("embedding_params", int, 0, low=0),
    )
    if model.top_k > model.experts_per_layer:
        raise InputError(
            source, "model.top_k", f"must be <= experts_per_layer ({model.experts_per_layer})"
        )
    if model.ffn_matrices > 3:
        raise InputError(source, "model.ffn_matrices", "allowed: 2 (GELU MLP) or 3 (SwiGLU)")

    w = top.table("workload", required=False)
    w.unknown({"tokens_per_batch"})
    workload = Workload(tokens_per_batch=w.get("tokens_per_batch", int, 10_240, low=1))

    s = top.table("slo")
    s.unknown({"time_limit_s", "throughput_tokens_per_s"})
    if ("time_limit_s" in s.data) == ("throughput_tokens_per_s" in s.data):
        raise InputError(source, "slo", "give exactly one of time_limit_s, throughput_tokens_per_s")
    if "time_limit_s" in s.data:
        slo = ServiceLevel(s.get("time_limit_s", float))
    else:
        slo = ServiceLevel.from_throughput(
            s.get("throughput_tokens_per_s", float), workload.tokens_per_batch
        )
    if not slo.time_limit_s > 0:
        raise InputError(source, "slo", "the time limit must be > 0")

    popularity = _read_popularity(top.table("popularity"), model, workload, base_dir)

    d = top.table("deployment", required=False)
    d.unknown({"memory_menu", "max_replicas", "methods", "architectures", "cost_scope", "start",
               "weights"})
    menu_raw = d.data.get("memory_menu", "paper")
    constants = DEFAULT_CONSTANTS
    c = top.table("cost_model", required=False)
    c.unknown({"profile", "constants"})
    if "profile" in c.data:
        from moeopt.profiles import read_profile as read_named_profile

        prof = read_named_profile(c.get("profile", str), base_dir)
        constants = constants.with_overrides(prof.constants, prof.source)
    if "constants" in c.data:
        constants = constants.with_overrides(c.table("constants").data, source)
    memory_menu = _read_menu(menu_raw, constants, source)
    methods = _read_names(d, "methods", METHODS)
    architectures = _read_names(d, "architectures", ARCHITECTURES, default=("x86_64",))
    max_replicas = d.get("max_replicas", int, 8, low=1)

    if popularity.layers != model.moe_layers or popularity.experts != model.experts_per_layer:
        raise InputError(
            source,
            "popularity",
            f"loads have {popularity.layers} layers x {popularity.experts} experts; the model has "
            f"{model.moe_layers} x {model.experts_per_layer}",
        )
    spec = json.loads(json.dumps(data, default=str))
    spec.pop("description", None)
    return DeploymentProblem(
        name=name,
        description=top.get("description", str, ""),
        model=model,
        workload=workload,
        slo=slo,
        popularity=popularity,
        constants=constants,
        memory_menu=memory_menu,
        max_replicas=max_replicas,
        methods=methods,
        architectures=architectures,
        cost_scope=d.choice("cost_scope", COST_SCOPES, "paper"),
        start=d.choice("start", STARTS, "warm"),
        weights=d.choice("weights", WEIGHTS, "per_invocation"),
        spec=spec,
    )


def _read_names(
    d: _Reader, key: str, allowed: tuple[str, ...], default: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    values = d.get(key, list, list(default or allowed))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise InputError(
            d.source, d._path(key), f"{bad or values!r} not allowed; allowed: {', '.join(allowed)}"
        )
    return tuple(v for v in allowed if v in values)


def _read_menu(raw: Any, c: CostConstants, source: str) -> tuple[int, ...] | None:
    if raw == "paper":
        return PAPER_MEMORY_MENU
    if raw == "full":
        return None
    rule = f"'paper', 'full' or a list of integers from {c.lambda_memory_min_mb} to {c.lambda_memory_max_mb}"
    if not isinstance(raw, list) or not raw:
        raise InputError(source, "deployment.memory_menu", f"allowed: {rule}")
    for i, m in enumerate(raw):
        if isinstance(m, bool) or not isinstance(m, int) or not (
            c.lambda_memory_min_mb <= m <= c.lambda_memory_max_mb
        ):
            raise InputError(source, f"deployment.memory_menu[{i}]", f"{m!r} out of range; allowed: {rule}")
    return tuple(sorted(set(raw)))


def _read_popularity(
    p: _Reader, model: ModelSpec, workload: Workload, base_dir: Path
) -> Popularity:
    kind = p.choice("source", ("zipf", "counts", "trace", "loads"), "zipf")
    src = p.source
    if kind == "loads":
        p.unknown({"source", "loads", "file"})
        if "file" in p.data:
            path = Path(p.get("file", str))
            path = path if path.is_absolute() else _resolve_data_file(path, base_dir)
            return Popularity(loads=_read_loads_file(path), source=path.name)
        raw = p.get("loads", list)
        try:
            loads = np.asarray(raw, dtype=float)
        except (TypeError, ValueError):
            raise InputError(
                src, "popularity.loads", "need a (batches x layers x experts) array of counts"
            ) from None
        return Popularity(loads=loads, source=f"{src}:popularity.loads")
    batches = p.get("batches", int, 8, low=1)
    seed = p.get("seed", int, 0)
    if kind == "zipf":
        p.unknown({"source", "exponent", "batches", "seed"})
        return Popularity.zipf(
            model.moe_layers,
            model.experts_per_layer,
            workload.tokens_per_batch,
            model.top_k,
            p.get("exponent", float, 1.0, low=0.0),
            batches,
            seed,
        )
    path = Path(p.get("file", str))
    if not path.is_absolute():
        path = _resolve_data_file(path, base_dir)
    if kind == "counts":
        p.unknown({"source", "file", "batches", "seed"})
        counts = read_layer_counts(path)
        return Popularity.from_layer_counts(
            counts, workload.tokens_per_batch, model.top_k, batches, seed, source=str(path.name)
        )
    p.unknown({"source", "file", "batches", "seed", "fields"})
    from moeopt.popularity import traces_to_popularity  # the trace importer (issue 4)

    return traces_to_popularity(path, model, workload, p.data)


def _read_loads_file(path: Path) -> np.ndarray:
    """A per-batch loads file: ``{"loads": [[[...experts] ...layers] ...batches]}``."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(str(path), "file", f"cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(str(path), "file", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("loads"), list):
        raise InputError(str(path), "loads", "need {'loads': [[[...]]]} (batches x layers x experts)")
    try:
        return np.asarray(data["loads"], dtype=float)
    except (TypeError, ValueError):
        raise InputError(str(path), "loads", "need a (batches x layers x experts) array of counts") from None


def _resolve_data_file(path: Path, base_dir: Path) -> Path:
    """Relative data files resolve against the problem file, then the package's data folder."""
    candidate = base_dir / path
    if candidate.exists():
        return candidate
    packaged = Path(__file__).parent / "data" / path
    return packaged if packaged.exists() else candidate


def read_problem_file(path: str | Path) -> DeploymentProblem:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(source, "file", f"not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    return problem_from_dict(data, source, base_dir=path.parent)


def load_problem(
    name_or_path: str | Path, trace: str | Path | None = None, profile: str | Path | None = None
) -> DeploymentProblem:
    """A built-in problem by name, or a problem file, with ``profile`` (a built-in profile name
    or a profile file) replacing its cost constants when given."""
    from moeopt.profiles import apply_profile

    return apply_profile(_load_problem(name_or_path, trace), profile)


def _load_problem(name_or_path: str | Path, trace: str | Path | None = None) -> DeploymentProblem:
    """A built-in problem by name, or a problem file (.json or .toml).

    With ``trace`` (a routing trace, per-token JSONL or counts file), the problem's popularity
    comes from the trace; a trace of moeopt's converted MiniLM MoE whose shape differs from the
    named problem gets the matching MiniLM model (see :func:`problem_from_trace`).
    """
    from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_problem, builtin_spec

    text = str(name_or_path)
    if trace is not None:
        if text in BUILTIN_PROBLEMS:
            return problem_from_trace(trace, builtin_spec(text))
        minilm = re.fullmatch(r"minilm-moe-(\d+)(?:-top(\d+))?", text)
        if minilm:  # the shape a MiniLM trace names its problem by
            from moeopt.builtin_problems import minilm_spec

            experts, top_k = int(minilm[1]), int(minilm[2] or 1)
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
    trace: str | Path, base: dict[str, Any], base_dir: Path | None = None
) -> DeploymentProblem:
    """``base`` (a problem-file dict) with its popularity measured from ``trace``."""
    import copy

    from moeopt.builtin_problems import minilm_spec
    from moeopt.popularity.importers import load_any
    from moeopt.popularity.traces import RoutingTrace

    trace = Path(trace).resolve()
    spec = copy.deepcopy(base)
    found = load_any(trace, None, spec["model"]["experts_per_layer"])
    model = spec["model"]
    if isinstance(found, RoutingTrace):
        shape = (found.layers, found.num_experts, found.top_k)
        if shape != (model["moe_layers"], model["experts_per_layer"], model["top_k"]):
            if "MiniLM" not in found.model:
                raise InputError(
                    str(trace), "moe_layers/experts/top_k",
                    f"trace is {shape[0]} layers x {shape[1]} experts, top-{shape[2]}; the problem "
                    f"{spec['name']!r} is {model['moe_layers']} x {model['experts_per_layer']}, "
                    f"top-{model['top_k']}; name a problem of the trace's shape",
                )
            spec = minilm_spec(found.num_experts, found.top_k, {}, 1600.0)
    spec["popularity"] = {"source": "trace", "file": str(trace), "batches": 8, "seed": 0}
    spec["name"] = f"{spec['name']}@{trace.name}"
    return problem_from_dict(spec, f"{spec['name']}", base_dir=base_dir)
