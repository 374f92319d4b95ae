"""Expert popularity: tokens routed to each expert of each MoE layer, per batch.

A problem needs the spread across batches, not only a mean: a plan sized for the mean breaks
its memory or payload limit on a heavy batch. ``Popularity.loads[b, l, e]`` is the number of
token assignments that expert ``e`` of MoE layer ``l`` receives in batch ``b``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moeopt import limits
from moeopt.errors import FieldError, InputError, errors_in
from moeopt.files import read_json


def check_shape(layers: int, experts: int, batches: int, owner: str, name: str) -> None:
    """Refuse a loads shape beyond ``moeopt.limits`` before anything of that size exists."""
    limits.whole(batches, owner, f"{name} (batches)", 1, limits.MAX_BATCHES)
    limits.whole(layers, owner, f"{name} (layers)", 1, limits.MAX_MOE_LAYERS)
    limits.whole(experts, owner, f"{name} (experts)", 1, limits.MAX_EXPERTS)
    if layers * experts > limits.MAX_CELLS:
        raise FieldError(
            owner, name, f"{layers:,} layers x {experts:,} experts; allowed: at most "
            f"{limits.MAX_CELLS:,} cells",
        )
    if batches * layers * experts > limits.MAX_LOAD_CELLS:
        raise FieldError(
            owner, name, f"{batches:,} batches x {layers:,} layers x {experts:,} experts; "
            f"allowed: at most {limits.MAX_LOAD_CELLS:,}",
        )


def check_counts(values: np.ndarray, owner: str, name: str, whole: bool = True) -> None:
    """Token counts: finite (whole) numbers from 0 to 2**53; the first bad one is named."""
    as_float = values.astype(float)
    bad = ~np.isfinite(as_float) | (as_float < 0) | (as_float > limits.MAX_COUNT)
    if whole:
        bad |= np.where(np.isfinite(as_float), as_float != np.round(as_float), False)
    # 2**53 + 1 rounds to 2**53 as a float: integers are compared as integers
    if values.dtype.kind in "iu":
        bad |= values > limits.MAX_COUNT
    elif values.dtype == object:
        bad |= np.frompyfunc(
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v > limits.MAX_COUNT, 1, 1
        )(values).astype(bool)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = name + "".join(f"[{i}]" for i in index)
        kind = "a whole number" if whole else "a finite number"
        raise FieldError(
            owner, where, f"token count must be {kind} from 0 to 2**53, got "
            f"{limits.shown(values[index].item())}",
        )


@dataclass(frozen=True, eq=False)
class Popularity:
    """Per-batch expert loads, shape (batches, moe_layers, experts), non-negative integers.

    ``notes`` state how the loads were made where a reader should know (e.g. a short trace
    resampled into batches, tokens dropped for missing layers); commands print them.
    """

    loads: np.ndarray
    source: str = "inline"
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        own = "Popularity"
        if not isinstance(self.source, str):
            raise FieldError(own, "source", f"must be a string, got {limits.shown(self.source)}")
        try:
            loads = np.asarray(self.loads)
        except (TypeError, ValueError):
            loads = None
        if loads is None or loads.ndim != 3 or min(loads.shape) == 0:
            shape = "ragged" if loads is None or loads.dtype == object else loads.shape
            raise FieldError(
                own, "loads", f"need a (batches x layers x experts) array of counts, got {shape}"
            )
        check_shape(loads.shape[1], loads.shape[2], loads.shape[0], own, "loads")
        if not (np.issubdtype(loads.dtype, np.number) or loads.dtype == bool) or np.iscomplexobj(
            loads
        ):
            raise FieldError(own, "loads", "token counts must be numbers")
        check_counts(loads, own, "loads")
        loads = loads.astype(np.int64)
        loads.setflags(write=False)
        object.__setattr__(self, "loads", loads)
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    @property
    def batches(self) -> int:
        return int(self.loads.shape[0])

    @property
    def layers(self) -> int:
        return int(self.loads.shape[1])

    @property
    def experts(self) -> int:
        return int(self.loads.shape[2])

    def mean(self) -> np.ndarray:
        """Mean tokens per expert, shape (layers, experts)."""
        return self.loads.mean(axis=0)

    def peak(self) -> np.ndarray:
        """Heaviest batch per expert, shape (layers, experts)."""
        return self.loads.max(axis=0)

    def digest(self) -> str:
        return hashlib.sha256(self.loads.tobytes() + str(self.loads.shape).encode()).hexdigest()

    def select(self, batches: np.ndarray | list[int]) -> Popularity:
        """A popularity over a subset of the batches (e.g. held-out evaluation batches)."""
        return Popularity(self.loads[np.asarray(batches)], source=f"{self.source}[subset]")

    # ---- constructors -------------------------------------------------------------------------

    @classmethod
    def from_layer_counts(
        cls,
        counts: np.ndarray,
        tokens_per_batch: int,
        top_k: int,
        batches: int,
        seed: int,
        source: str = "counts",
    ) -> Popularity:
        """Sample per-batch loads from per-layer totals.

        Each batch routes ``tokens_per_batch * top_k`` assignments per layer, drawn as one
        multinomial with the measured expert frequencies (seeded). A stated model: totals alone
        say nothing about how batches differ.
        """
        own = "Popularity"
        counts = layer_counts_array(counts, own, "counts", whole=False)
        layers, experts = counts.shape
        tokens = limits.whole(tokens_per_batch, own, "tokens_per_batch", 1, limits.MAX_TOKENS_PER_BATCH)
        k = limits.whole(top_k, own, "top_k", 1, min(experts, limits.MAX_TOP_K))
        batches = limits.whole(batches, own, "batches", 1, limits.MAX_BATCHES)
        seed = limits.whole(seed, own, "seed", 0, limits.MAX_SEED)
        check_shape(layers, experts, batches, own, "batches")
        freq = counts / counts.sum(axis=1, keepdims=True)
        rng = np.random.default_rng(seed)
        loads = np.stack(
            [np.stack([rng.multinomial(tokens * k, f) for f in freq]) for _ in range(batches)]
        )
        return cls(loads=loads, source=source)

    @classmethod
    def zipf(
        cls,
        layers: int,
        experts: int,
        tokens_per_batch: int,
        top_k: int,
        exponent: float,
        batches: int,
        seed: int,
    ) -> Popularity:
        """Synthetic skew: per layer, experts in a random order get weight 1/rank**exponent."""
        own = "Popularity"
        layers = limits.whole(layers, own, "layers", 1, limits.MAX_MOE_LAYERS)
        experts = limits.whole(experts, own, "experts", 1, limits.MAX_EXPERTS)
        exponent = limits.real(exponent, own, "exponent", 0.0, limits.MAX_ZIPF_EXPONENT)
        batches = limits.whole(batches, own, "batches", 1, limits.MAX_BATCHES)
        seed = limits.whole(seed, own, "seed", 0, limits.MAX_SEED - 1)
        check_shape(layers, experts, batches, own, "batches")
        rng = np.random.default_rng(seed)
        weights = 1.0 / np.arange(1, experts + 1) ** exponent
        freq = np.stack([rng.permutation(weights) for _ in range(layers)])
        return cls.from_layer_counts(
            freq, tokens_per_batch, top_k, batches, seed + 1, source=f"zipf(s={exponent})"
        )

    @classmethod
    def from_routing(
        cls,
        batch_ids: np.ndarray,
        layer_ids: np.ndarray,
        expert_ids: np.ndarray,
        layers: int,
        experts: int,
        source: str = "routing",
    ) -> Popularity:
        """Count per-token routing records (one row per token, layer and chosen expert)."""
        batch_ids, layer_ids, expert_ids = (
            np.asarray(a, dtype=np.int64) for a in (batch_ids, layer_ids, expert_ids)
        )
        for name, ids, bound in (("layer", layer_ids, layers), ("expert", expert_ids, experts)):
            bad = (ids < 0) | (ids >= bound)
            if np.any(bad):
                raise InputError(
                    source, name, f"id {ids[bad][0]} out of range; allowed 0..{bound - 1}"
                )
        if batch_ids.size == 0:
            raise InputError(source, "records", "no routing records")
        if batch_ids.min() < 0:
            raise InputError(source, "batch", "batch ids must be >= 0")
        n_batches = int(batch_ids.max()) + 1
        with errors_in(source):
            check_shape(layers, experts, n_batches, "Popularity", "records")
        flat = (batch_ids * layers + layer_ids) * experts + expert_ids
        loads = np.bincount(flat, minlength=n_batches * layers * experts)
        return cls(loads=loads.reshape(n_batches, layers, experts), source=source)


def layer_counts_array(counts: Any, owner: str, name: str, whole: bool = True) -> np.ndarray:
    """Per-layer totals (or weights, ``whole=False``) as a (layers, experts) float array,
    every limit checked."""
    try:
        array = np.asarray(counts, dtype=float)
    except (TypeError, ValueError):
        raise FieldError(owner, name, "need a (layers x experts) array of token counts") from None
    if array.ndim != 2 or min(array.shape) == 0:
        raise FieldError(owner, name, f"need a (layers x experts) array, got shape {array.shape}")
    check_shape(array.shape[0], array.shape[1], 1, owner, name)
    check_counts(array, owner, name, whole)
    totals = array.sum(axis=1)
    if np.any(totals <= 0):
        layer = int(np.argmax(totals <= 0))
        raise FieldError(owner, f"{name}[{layer}]", "a layer routes no tokens at all; need a count > 0")
    return array


def read_layer_counts(path: str | Path) -> np.ndarray:
    """Per-layer expert totals from a JSON counts file, shape (layers, experts).

    Accepts ``{"counts": [[...], ...]}`` and the ``expert_usage_by_layer`` form of the
    Switch-base-128 file in ``moeopt/data/traces``. Read through ``moeopt.files``; every count
    is a whole number from 0 to 2**53 and every layer routes some tokens.
    """
    source = str(path)
    data: Any = read_json(path)
    if isinstance(data, dict) and "counts" in data:
        rows, name = data["counts"], "counts"
    elif isinstance(data, dict) and "expert_usage_by_layer" in data:
        rows, name = _usage_rows(data, source), "expert_usage_by_layer"
    else:
        raise InputError(source, "counts", "need 'counts' or 'expert_usage_by_layer'")
    if not isinstance(rows, list) or not rows or any(not isinstance(r, list) or not r for r in rows):
        raise InputError(source, name, "need a non-empty list of non-empty per-layer lists of token counts")
    if len({len(r) for r in rows}) != 1:
        raise InputError(source, name, "every layer needs the same number of experts")
    with errors_in(source):
        check_shape(len(rows), len(rows[0]), 1, "counts", name)
    for i, row in enumerate(rows):
        for j, n in enumerate(row):
            if isinstance(n, bool) or not isinstance(n, int | float):
                raise InputError(source, f"{name}[{i}][{j}]", f"token count must be a number, got {limits.shown(n)}")
            if isinstance(n, int) and not 0 <= n <= limits.MAX_COUNT:  # exact: not as a float
                raise InputError(source, f"{name}[{i}][{j}]", "token count must be a whole number "
                                 f"from 0 to 2**53, got {limits.shown(n)}")
    with errors_in(source):
        return layer_counts_array(rows, "counts", name)


def _usage_rows(data: dict[str, Any], source: str) -> list[list[Any]]:
    """Switch-style ``{"expert_usage_by_layer": {"0": {"5": 123, ...}, ...}, "num_experts": E}``."""
    usage = data["expert_usage_by_layer"]
    if not isinstance(usage, dict) or not usage:
        raise InputError(source, "expert_usage_by_layer", "need a table of layer -> {expert: count}")
    layers: dict[int, dict[str, Any]] = {}
    for key, row in usage.items():
        if not key.isdigit() or not isinstance(row, dict):
            raise InputError(
                source, f"expert_usage_by_layer.{key}", "need an integer layer id and a table of expert -> count"
            )
        if int(key) in layers or int(key) >= limits.MAX_MOE_LAYERS:
            raise InputError(source, f"expert_usage_by_layer.{key}", f"layer ids must be distinct integers below {limits.MAX_MOE_LAYERS:,}")
        layers[int(key)] = row
    ids = [e for row in layers.values() for e in row]
    for layer, row in layers.items():
        for e in row:
            if not e.isdigit() or int(e) >= limits.MAX_EXPERTS:
                raise InputError(
                    source, f"expert_usage_by_layer.{layer}.{e}", f"need an expert id from 0 to {limits.MAX_EXPERTS - 1}"
                )
    if "num_experts" in data:
        with errors_in(source):
            experts = limits.whole(data["num_experts"], "counts", "num_experts", 1, limits.MAX_EXPERTS)
    else:
        experts = 1 + max((int(e) for e in ids), default=0)
    with errors_in(source):
        check_shape(len(layers), experts, 1, "counts", "expert_usage_by_layer")
    rows = []
    for layer in sorted(layers):
        row: list[Any] = [0] * experts
        for e, n in layers[layer].items():
            if int(e) >= experts:
                raise InputError(
                    source, f"expert_usage_by_layer.{layer}.{e}", f"unknown expert; allowed 0..{experts - 1}"
                )
            row[int(e)] = n
        rows.append(row)
    return rows
