"""Bring routing data from other tools: per-layer count files, per-token routing JSONL
(``moeopt.popularity.routing_jsonl``) and moeopt traces, told apart by content; and the
popularity of a problem whose ``[popularity] source = "trace"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moeopt import limits
from moeopt.errors import InputError, errors_in
from moeopt.files import MAX_TRACE_BYTES, first_line
from moeopt.popularity.routing_jsonl import (
    FIELDS,
    INCOMPLETE,
    check_field_map,
    parse_field_map,
    read_routing_jsonl,
)
from moeopt.popularity.traces import TRACE_FORMAT, RoutingTrace, read_trace

__all__ = [
    "FIELDS",
    "INCOMPLETE",
    "LayerCounts",
    "TraceSource",
    "as_trace_source",
    "check_field_map",
    "load_any",
    "parse_field_map",
    "read_counts",
    "read_routing_jsonl",
    "traces_to_popularity",
]


@dataclass(frozen=True)
class LayerCounts:
    """Per-layer expert totals (layers, experts) with no per-batch detail."""

    counts: np.ndarray
    source: str

    def popularity(self, tokens_per_batch: int, top_k: int, batches: int, seed: int):
        """Per-batch loads sampled from the totals (the lead's stated multinomial model)."""
        from moeopt.popularity.loads import Popularity

        return Popularity.from_layer_counts(
            self.counts, tokens_per_batch, top_k, batches, seed, source=self.source
        )


@dataclass(frozen=True)
class TraceSource:
    """A trace file and how to read it: the same wherever a trace is accepted.

    ``fields`` maps moeopt's per-token field names to the file's (``{"layer": "layer_id"}``);
    ``incomplete`` is what to do with tokens that miss a layer: ``error`` or ``drop``.
    """

    path: Path
    fields: tuple[tuple[str, str], ...] = ()
    incomplete: str = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        mapping = dict(self.fields)
        check_field_map(mapping, "--field")
        object.__setattr__(self, "fields", tuple(sorted(mapping.items())))
        if self.incomplete not in INCOMPLETE:
            raise InputError(
                "--incomplete", str(self.incomplete), f"allowed: {', '.join(INCOMPLETE)}"
            )

    @property
    def field_map(self) -> dict[str, str]:
        return dict(self.fields)

    def table(self) -> dict[str, Any]:
        """The problem file's ``[popularity]`` keys that say how to read this trace."""
        return {
            **({"fields": self.field_map} if self.fields else {}),
            **({"incomplete": self.incomplete} if self.incomplete != "error" else {}),
        }


def as_trace_source(trace: str | Path | TraceSource) -> TraceSource:
    return trace if isinstance(trace, TraceSource) else TraceSource(Path(trace))


def read_counts(path: str | Path) -> LayerCounts:
    """A counts file: ``{"counts": [[...]]}`` or Switch-style ``expert_usage_by_layer``."""
    from moeopt.popularity.loads import read_layer_counts

    return LayerCounts(read_layer_counts(path), str(path))


# ---- any trace ----------------------------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], RoutingTrace | LayerCounts] = {}


def load_any(
    path: str | Path,
    fields: dict[str, str] | None = None,
    num_experts: int | None = None,
    incomplete: str = "error",
) -> RoutingTrace | LayerCounts:
    """A moeopt trace, a per-token routing JSONL, or a counts JSON file, told apart by content.

    The last few results are kept (keyed by the file's identity and modification time), so a
    command that builds a problem from a trace reads it once.
    """
    try:
        info = os.stat(path)
        key: tuple[Any, ...] | None = (
            str(Path(path).resolve()), info.st_ino, info.st_size, info.st_mtime_ns,
            tuple(sorted((fields or {}).items())), num_experts, incomplete,
        )
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    found = _load_any(path, fields, num_experts, incomplete)
    if key is not None:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = found
    return found


def _load_any(
    path: str | Path, fields: dict[str, str] | None, num_experts: int | None, incomplete: str
) -> RoutingTrace | LayerCounts:
    from moeopt.files import json_record

    src = str(path)
    first = first_line(path, MAX_TRACE_BYTES)
    try:
        head = json_record(first, src) if first.strip() else None
    except InputError:
        head = None
    if isinstance(head, dict) and head.get("format") == TRACE_FORMAT:
        return read_trace(path)
    if isinstance(head, dict) and ({"counts", "expert_usage_by_layer"} & head.keys()):
        return read_counts(path)
    if head is None and src.endswith(".json"):
        return read_counts(path)  # pretty-printed JSON spans lines
    return read_routing_jsonl(path, fields, num_experts, incomplete=incomplete)


def traces_to_popularity(path: str | Path, model: Any, workload: Any, data: dict[str, Any]):
    """The ``Popularity`` of a problem whose ``[popularity] source = "trace"``.

    ``data`` is the problem's popularity table (``file``, optional ``batches``, ``seed``,
    ``fields``, a mapping of field names for per-token JSONL, and ``incomplete``). A routing
    trace gives measured per-batch loads: consecutive batches of ``workload.tokens_per_batch``
    tokens, at most ``batches`` of them. A trace shorter than one batch is resampled: each
    batch draws ``tokens_per_batch`` of its tokens with replacement (seeded), a stated model
    recorded in the popularity's ``notes``. A counts file is sampled with
    ``Popularity.from_layer_counts``.
    """
    from moeopt.popularity.loads import Popularity

    src = str(path)
    fields = check_field_map(data.get("fields") or {}, src, "popularity.fields")
    with errors_in(src, "popularity."):
        batches = limits.whole(data.get("batches", 8), "popularity", "batches", 1, limits.MAX_BATCHES)
        seed = limits.whole(data.get("seed", 0), "popularity", "seed", 0, limits.MAX_SEED)
        incomplete = limits.choice(data.get("incomplete", "error"), "popularity", "incomplete", INCOMPLETE)
    n = int(workload.tokens_per_batch)
    found = load_any(path, fields, getattr(model, "experts_per_layer", None), incomplete)
    if isinstance(found, LayerCounts):
        with errors_in(src, "popularity."):
            return found.popularity(n, model.top_k, batches, seed)
    if found.top_k != model.top_k:
        raise InputError(
            src, "top_k", f"trace routes top-{found.top_k}; the model is top-{model.top_k}"
        )
    name = Path(path).name
    notes = []
    dropped = int(found.extra.get("dropped_tokens", 0))
    if dropped:
        notes.append(f"{dropped:,} tokens of {name} missed a layer and were dropped (--incomplete drop)")
    if found.tokens >= n:
        from moeopt.popularity.traces import batch_loads

        loads = batch_loads(found.experts[: batches * n], found.num_experts, n)
        return Popularity(loads=loads, source=f"trace:{name}", notes=tuple(notes))
    notes.append(
        f"{name} has {found.tokens:,} tokens, fewer than one batch of {n:,}: each of the "
        f"{batches} batches is resampled, {n:,} tokens drawn with replacement (seed {seed})"
    )
    rng = np.random.default_rng(seed)
    layers, e = found.layers, found.num_experts
    flat = (np.arange(layers)[None, :, None] * e + found.experts).reshape(found.tokens, -1)
    loads = np.empty((batches, layers, e), dtype=np.int64)
    for b in range(batches):
        times = np.bincount(rng.integers(0, found.tokens, n), minlength=found.tokens)
        weights = np.broadcast_to(times[:, None], flat.shape)
        counts = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=layers * e)
        loads[b] = np.rint(counts).astype(np.int64).reshape(layers, e)
    return Popularity(
        loads=loads,
        source=f"trace:{name} (resampled {found.tokens} tokens, seed {seed})",
        notes=tuple(notes),
    )
