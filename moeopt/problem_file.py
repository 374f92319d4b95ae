"""Reading problem files (``docs/problem-format.md``): JSON or TOML into a ``DeploymentProblem``.

The reader only maps tables to the dataclasses (``ModelSpec``, ``Workload``, ``ServiceLevel``,
``Popularity``, ``DeploymentProblem``); their constructors check every value, and this module
re-labels their errors with the file and the field's path (``moeopt.errors.errors_in``). Files
are read through ``moeopt.files``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cost_models.constants import DEFAULT_CONSTANTS, CostConstants
from moeopt import limits
from moeopt.deployment_problem import (
    PAPER_MEMORY_MENU,
    DeploymentProblem,
    check_constants,
)
from moeopt.errors import InputError, errors_in
from moeopt.files import read_document
from moeopt.model import ModelSpec, ServiceLevel, Workload
from moeopt.popularity.loads import Popularity, read_layer_counts

SCHEMA = "moeopt.problem/1"
POPULARITY_SOURCES = ("zipf", "counts", "trace", "loads")
_DEPLOYMENT = ("memory_menu", "max_replicas", "methods", "architectures", "cost_scope", "start",
               "weights")
_TOP = ("schema", "name", "description", "model", "workload", "slo", "popularity", "deployment",
        "cost_model")


class _Table:
    """One table of the file: its dotted path, and which keys it allows."""

    def __init__(self, data: Any, source: str, path: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(source, path or "file", f"must be a table/object, got {limits.shown(data)}")
        self.data, self.source, self.path = data, source, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def table(self, key: str, required: bool = True) -> _Table:
        if key not in self.data:
            if required:
                raise InputError(self.source, self.at(key), "missing (a table is required)")
            return _Table({}, self.source, self.at(key))
        return _Table(self.data[key], self.source, self.at(key))

    def need(self, key: str) -> Any:
        if key not in self.data:
            raise InputError(self.source, self.at(key), "missing")
        return self.data[key]

    def allow(self, *keys: str) -> None:
        extra = sorted(set(self.data) - set(keys), key=str)
        if extra:
            raise InputError(
                self.source, self.at(str(extra[0])), f"unknown field; allowed: {', '.join(sorted(keys))}"
            )


def _problem_field(field: str) -> str:
    """A ``DeploymentProblem`` field as the file names it."""
    head = field.split(".")[0].split("[")[0]
    if head in _DEPLOYMENT:
        return f"deployment.{field}"
    if head == "constants":
        return f"cost_model.{field}"
    return field


def problem_from_dict(
    data: dict[str, Any], source: str, base_dir: Path | None = None
) -> DeploymentProblem:
    """Build and validate a problem from its file form (see ``docs/problem-format.md``)."""
    top = _Table(data, source)
    top.allow(*_TOP)
    schema = top.data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise InputError(source, "schema", f"{limits.shown(schema)} not supported; allowed: {SCHEMA}")
    with errors_in(source):
        name = limits.text(top.need("name"), "problem", "name")
    base_dir = base_dir or Path.cwd()

    m = top.table("model")
    m.allow("name", "moe_layers", "experts_per_layer", "top_k", "hidden_size", "expert_ffn_size",
            "dtype", "ffn_matrices", "sequence_length", "nonmoe_params_per_layer",
            "embedding_params")
    with errors_in(source, "model."):
        for key in ("moe_layers", "experts_per_layer", "top_k", "hidden_size", "expert_ffn_size"):
            m.need(key)
        model = ModelSpec(**{"name": name, **m.data})

    w = top.table("workload", required=False)
    w.allow("tokens_per_batch")
    with errors_in(source, "workload."):
        workload = Workload(**w.data)

    s = top.table("slo")
    s.allow("time_limit_s", "throughput_tokens_per_s")
    if ("time_limit_s" in s.data) == ("throughput_tokens_per_s" in s.data):
        raise InputError(source, "slo", "give exactly one of time_limit_s, throughput_tokens_per_s")
    with errors_in(source, "slo."):
        if "time_limit_s" in s.data:
            slo = ServiceLevel(s.data["time_limit_s"])
        else:
            slo = ServiceLevel.from_throughput(
                s.data["throughput_tokens_per_s"], workload.tokens_per_batch
            )

    c = top.table("cost_model", required=False)
    c.allow("profile", "constants")
    constants = _read_constants(c, base_dir)

    popularity = _read_popularity(top.table("popularity"), model, workload, base_dir)

    d = top.table("deployment", required=False)
    d.allow(*_DEPLOYMENT)
    menu = d.data.get("memory_menu", "paper")
    if isinstance(menu, str):
        if menu not in ("paper", "full"):
            raise InputError(
                source, "deployment.memory_menu", f"{limits.shown(menu)} not allowed; allowed: "
                "'paper', 'full' or a list of sizes (MB)",
            )
        menu = PAPER_MEMORY_MENU if menu == "paper" else None
    spec = json.loads(json.dumps(data, default=str))
    spec.pop("description", None)
    with errors_in(source, _problem_field):
        return DeploymentProblem(
            name=name,
            description=top.data.get("description", ""),
            model=model,
            workload=workload,
            slo=slo,
            popularity=popularity,
            constants=constants,
            memory_menu=menu,
            max_replicas=d.data.get("max_replicas", 8),
            methods=d.data.get("methods", ("pipelined_storage", "storage", "direct")),
            architectures=d.data.get("architectures", ("x86_64",)),
            cost_scope=d.data.get("cost_scope", "paper"),
            start=d.data.get("start", "warm"),
            weights=d.data.get("weights", "per_invocation"),
            spec=spec,
        )


def _read_constants(c: _Table, base_dir: Path) -> CostConstants:
    """The built-in constants, a profile's (built-in name or file), then the problem's own."""
    from moeopt.profiles import read_profile

    constants = DEFAULT_CONSTANTS
    if "profile" in c.data:
        raw = c.data["profile"]
        if not isinstance(raw, str) or not raw:
            raise InputError(c.source, "cost_model.profile", "need a built-in profile name or a file path")
        profile = read_profile(raw, base_dir)
        constants = constants.with_overrides(profile.constants, profile.source)
        with errors_in(profile.source):
            check_constants(constants, "profile")
    if "constants" in c.data:
        overrides = c.table("constants")
        constants = constants.with_overrides(overrides.data, c.source)
        with errors_in(c.source, "cost_model."):
            check_constants(constants, "problem")
    return constants


def _read_popularity(
    p: _Table, model: ModelSpec, workload: Workload, base_dir: Path
) -> Popularity:
    src = p.source
    kind = p.data.get("source", "zipf")
    if kind not in POPULARITY_SOURCES:
        raise InputError(
            src, "popularity.source", f"{limits.shown(kind)} not allowed; allowed: {', '.join(POPULARITY_SOURCES)}"
        )
    if kind == "loads":
        p.allow("source", "loads", "file")
        if "file" in p.data:
            path = _data_file(p, base_dir)
            with errors_in(str(path)):
                return Popularity(loads=_read_loads_file(path), source=path.name)
        raw = p.need("loads")
        if not isinstance(raw, list):
            raise InputError(src, "popularity.loads", "need a (batches x layers x experts) array of counts")
        with errors_in(src, "popularity."):
            return Popularity(loads=_numeric_array(raw, src, "popularity.loads"), source=f"{src}:popularity.loads")
    if kind == "zipf":
        p.allow("source", "exponent", "batches", "seed")
        with errors_in(src, "popularity."):
            return Popularity.zipf(
                model.moe_layers,
                model.experts_per_layer,
                workload.tokens_per_batch,
                model.top_k,
                p.data.get("exponent", 1.0),
                p.data.get("batches", 8),
                p.data.get("seed", 0),
            )
    if kind == "counts":
        p.allow("source", "file", "batches", "seed")
        path = _data_file(p, base_dir)
        counts = read_layer_counts(path)
        with errors_in(src, "popularity."):
            return Popularity.from_layer_counts(
                counts, workload.tokens_per_batch, model.top_k, p.data.get("batches", 8),
                p.data.get("seed", 0), source=str(path.name),
            )
    p.allow("source", "file", "batches", "seed", "fields", "incomplete")
    from moeopt.popularity.importers import traces_to_popularity

    return traces_to_popularity(_data_file(p, base_dir), model, workload, p.data)


def _data_file(p: _Table, base_dir: Path) -> Path:
    raw = p.need("file")
    if not isinstance(raw, str) or not raw:
        raise InputError(p.source, "popularity.file", f"need a file path, got {limits.shown(raw)}")
    path = Path(raw)
    return path if path.is_absolute() else _resolve_data_file(path, base_dir)


def _numeric_array(raw: list[Any], source: str, where: str) -> np.ndarray:
    """A nested list of numbers as an array; strings, bools and ragged lists are refused."""
    try:
        array = np.array(raw)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "iuf":
        raise InputError(
            source, where, "need a (batches x layers x experts) array of token counts (numbers)"
        )
    return array


def _read_loads_file(path: Path) -> np.ndarray:
    """A per-batch loads file: ``{"loads": [[[...experts] ...layers] ...batches]}``."""
    data = read_document(path)
    if not isinstance(data, dict) or not isinstance(data.get("loads"), list):
        raise InputError(str(path), "loads", "need {'loads': [[[...]]]} (batches x layers x experts)")
    return _numeric_array(data["loads"], str(path), "loads")


def _resolve_data_file(path: Path, base_dir: Path) -> Path:
    """Relative data files resolve against the problem file, then the package's data folder."""
    candidate = base_dir / path
    if candidate.exists():
        return candidate
    packaged = Path(__file__).parent / "data" / path
    return packaged if packaged.exists() else candidate


def read_problem_file(path: str | Path) -> DeploymentProblem:
    """A problem file (JSON, or TOML by its ``.toml`` name) read through ``moeopt.files``."""
    path = Path(path)
    return problem_from_dict(read_document(path), str(path), base_dir=path.parent)
