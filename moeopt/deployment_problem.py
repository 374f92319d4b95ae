"""The deployment problem: an MoE model, its measured popularity, a Lambda cost model and an SLO.

``DeploymentProblem(...)`` checks every value on construction (types, ranges, the products in
``moeopt.limits``, and that the parts fit each other), so a problem built in code is validated
exactly as a problem file is: the file reader only builds this dataclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from cost_models.constants import DEFAULT_CONSTANTS, CostConstants
from cost_models.lambda_model import ARCHITECTURES, METHODS
from moeopt import limits
from moeopt.errors import FieldError
from moeopt.model import ModelSpec, ServiceLevel, Workload
from moeopt.popularity.loads import Popularity

PAPER_MEMORY_MENU = (128, *range(768, 3072 + 1, 192))
FULL_MEMORY_STEP_MB = 64
COST_SCOPES = ("paper", "full")
STARTS = ("warm", "cold")
#: How a function gets its weights: from storage on every invocation (the paper's head time H),
#: or once per execution environment, kept while it is warm.
WEIGHTS = ("per_invocation", "cached")

#: Constants the cost model divides by (or that make no sense at 0): they must be > 0.
POSITIVE_CONSTANTS = (
    "lambda_price_x86_64_usd_per_gb_s",
    "lambda_price_arm64_usd_per_gb_s",
    "lambda_billing_granularity_ms",
    "lambda_mb_per_vcpu",
    "lambda_max_vcpu",
    "lambda_payload_limit_bytes",
    "lambda_payload_encoding_overhead",
    "lambda_timeout_max_s",
    "lambda_concurrency_limit",
    "storage_bandwidth_bytes_per_s",
    "function_bandwidth_bytes_per_s",
    "flops_per_second_per_vcpu",
    "arm64_speed_factor",
    "cpu_cluster_flops_per_second_per_core",
    "lambda_memory_min_mb",
)
#: Largest Lambda-style memory size a profile may declare (1 TiB); the full grid then has at
#: most 16,384 sizes, and the option product in ``moeopt.limits`` still applies.
MAX_PLATFORM_MEMORY_MB = 1_048_576


def check_constants(c: CostConstants, owner: str = "DeploymentProblem") -> None:
    """Every number finite and >= 0, those divided by > 0, and a sane memory range."""
    if not isinstance(c, CostConstants):
        raise FieldError(owner, "constants", f"must be a CostConstants, got {limits.shown(c)}")
    for name in c.names():
        value = getattr(c, name)
        if isinstance(value, str):
            continue
        where = f"constants.{name}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise FieldError(owner, where, f"must be a finite number, got {limits.shown(value)}")
        if name in POSITIVE_CONSTANTS and value <= 0:
            raise FieldError(owner, where, f"must be > 0 (the cost model divides by it), got {value!r}")
        if value < 0:
            raise FieldError(owner, where, f"must be >= 0, got {value!r}")
    low, high = c.lambda_memory_min_mb, c.lambda_memory_max_mb
    if not low <= high <= MAX_PLATFORM_MEMORY_MB:
        raise FieldError(
            owner, "constants.lambda_memory_max_mb",
            f"must be from lambda_memory_min_mb ({low:,}) to {MAX_PLATFORM_MEMORY_MB:,}, got {high!r}",
        )
    if not low <= c.nonmoe_memory_mb <= high:
        raise FieldError(
            owner, "constants.nonmoe_memory_mb",
            f"must be from {low:,} to {high:,} (the platform's memory range), got {c.nonmoe_memory_mb!r}",
        )


@dataclass(frozen=True, eq=False)
class DeploymentProblem:
    """Everything a solver needs; ``evaluate`` in :mod:`moeopt.evaluate` prices plans for it.

    Construction validates (see the module docstring); ``source`` names where the problem came
    from in error messages (a library user's problem: ``DeploymentProblem``).
    """

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

    def __post_init__(self) -> None:
        own = "DeploymentProblem"
        set_ = object.__setattr__
        set_(self, "name", limits.text(self.name, own, "name"))
        set_(self, "description", limits.text(self.description, own, "description", True, 1 << 16))
        for key, kind in (("model", ModelSpec), ("workload", Workload), ("slo", ServiceLevel),
                          ("popularity", Popularity)):
            if not isinstance(getattr(self, key), kind):
                raise FieldError(own, key, f"must be a {kind.__name__}, got {limits.shown(getattr(self, key))}")
        if not isinstance(self.spec, dict):
            raise FieldError(own, "spec", "must be a dict (the problem-file form)")
        check_constants(self.constants, own)
        set_(self, "memory_menu", _menu(self.memory_menu, self.constants, own))
        set_(self, "max_replicas", limits.whole(self.max_replicas, own, "max_replicas", 1, limits.MAX_REPLICAS))
        set_(self, "methods", _names(self.methods, METHODS, own, "methods"))
        set_(self, "architectures", _names(self.architectures, ARCHITECTURES, own, "architectures"))
        limits.choice(self.cost_scope, own, "cost_scope", COST_SCOPES)
        limits.choice(self.start, own, "start", STARTS)
        limits.choice(self.weights, own, "weights", WEIGHTS)
        m, pop = self.model, self.popularity
        if (pop.layers, pop.experts) != (m.moe_layers, m.experts_per_layer):
            raise FieldError(
                own, "popularity",
                f"loads have {pop.layers} layers x {pop.experts} experts; the model has "
                f"{m.moe_layers} x {m.experts_per_layer}",
            )
        most = self.workload.tokens_per_batch * m.top_k
        layer_tokens = pop.loads.sum(axis=2)
        if np.any(layer_tokens > most):
            b, layer = (int(i) for i in np.argwhere(layer_tokens > most)[0])
            raise FieldError(
                own, f"popularity.loads[{b}][{layer}]",
                f"routes {int(layer_tokens[b, layer]):,} tokens; a layer of a batch routes at most "
                f"tokens_per_batch x top_k = {most:,}",
            )
        options = (pop.batches * m.moe_layers * m.experts_per_layer * len(self.memory_options)
                   * self.max_replicas)
        if options > limits.MAX_OPTIONS:
            raise FieldError(
                own, "max_replicas",
                f"batches x layers x experts x memory sizes x max_replicas = {options:,} options "
                f"to price; allowed: at most {limits.MAX_OPTIONS:,} (fewer batches, sizes or "
                "replicas)",
            )

    @property
    def layers(self) -> int:
        return self.model.moe_layers

    @property
    def experts(self) -> int:
        return self.model.experts_per_layer

    @property
    def memory_options(self) -> tuple[int, ...]:
        """The memory sizes a plan may use: the menu, or a 64 MB grid of the full range."""
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
            f"{c.lambda_memory_max_mb} ({c.lambda_memory_min_mb}, "
            f"{c.lambda_memory_min_mb + FULL_MEMORY_STEP_MB}, ...; and {c.lambda_memory_max_mb})"
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
        return dataclasses.replace(self, popularity=popularity, spec=spec, name=name or self.name)

    def with_constants(self, constants: CostConstants) -> DeploymentProblem:
        """The same problem priced with other constants (a profile)."""
        spec = dict(self.spec)
        spec["cost_model"] = {"profile": constants.profile}
        return dataclasses.replace(self, constants=constants, spec=spec)

    def with_workload(self, workload: Workload) -> DeploymentProblem:
        spec = dict(self.spec, workload={"tokens_per_batch": workload.tokens_per_batch})
        return dataclasses.replace(self, workload=workload, spec=spec)

    def with_slo(self, slo: ServiceLevel) -> DeploymentProblem:
        spec = dict(self.spec, slo={"time_limit_s": slo.time_limit_s})
        return dataclasses.replace(self, slo=slo, spec=spec)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for ``moeopt problems show``."""
        m = self.model
        loads = self.popularity.loads
        totals = loads.sum(axis=2, keepdims=True)
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
                "max_share_of_layer": float((loads / np.maximum(totals, 1)).max()),
                **({"notes": list(self.popularity.notes)} if self.popularity.notes else {}),
            },
            "memory_options_mb": list(self.memory_options)
            if self.memory_menu is not None
            else f"full range, plans use a {FULL_MEMORY_STEP_MB} MB grid",
            "max_replicas": self.max_replicas,
            "methods": list(self.methods),
            "architectures": list(self.architectures),
            "cost_scope": self.cost_scope,
            "start": self.start,
            "weights": self.weights,
            "constants_profile": self.constants.profile,
        }


def _menu(raw: Any, c: CostConstants, own: str) -> tuple[int, ...] | None:
    """None (the full range) or a sorted tuple of distinct sizes in the platform's range."""
    if raw is None:
        return None
    low, high = c.lambda_memory_min_mb, c.lambda_memory_max_mb
    rule = f"'paper', 'full' or a list of 1 to {limits.MAX_MENU} integers from {low} to {high}"
    if isinstance(raw, str | bytes | dict) or not hasattr(raw, "__len__") or not 0 < len(raw) <= limits.MAX_MENU:
        raise FieldError(own, "memory_menu", f"allowed: {rule}, got {limits.shown(raw)}")
    sizes = [
        limits.whole(m, own, f"memory_menu[{i}]", low, high, " (MB)")
        for i, m in enumerate(raw)
    ]
    return tuple(sorted(set(sizes)))


def _names(raw: Any, allowed: tuple[str, ...], own: str, where: str) -> tuple[str, ...]:
    """A non-empty selection of ``allowed`` names, in ``allowed``'s order."""
    if isinstance(raw, str | bytes | dict) or not hasattr(raw, "__iter__"):
        raise FieldError(own, where, f"need a list; allowed: {', '.join(allowed)}, got {limits.shown(raw)}")
    values = list(raw)
    bad = [v for v in values if not isinstance(v, str) or v not in allowed]
    if bad or not values:
        raise FieldError(own, where, f"{limits.shown(bad or values)} not allowed; allowed: {', '.join(allowed)}")
    return tuple(v for v in allowed if v in values)
