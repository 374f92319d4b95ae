"""Checks of a moeopt trace file: its header, and its records in blocks of thousands.

A block of records is validated at once with numpy (shapes, integer ids in range, distinct
top-k experts, probabilities in [0, 1]); only when a block fails are its records checked one
by one, so the error names the line and field of the first mistake.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moeopt import limits
from moeopt.errors import InputError, errors_in
from moeopt.files import json_record

GATES = ("topk", "full")


def read_header(line: str, src: str, trace_format: str, schema_version: int) -> dict[str, Any]:
    """The header line: format, schema version and the shape, checked before any allocation."""
    where = f"{src}:1"
    try:
        head = json_record(line, where)
    except InputError as exc:
        raise InputError(where, "header", exc.message) from None
    if head.get("format") != trace_format:
        raise InputError(
            where, "format",
            f"need a header with format {trace_format!r}; "
            "per-token records from other tools go through `moeopt popularity import`",
        )
    if head.get("schema_version") != schema_version or isinstance(head.get("schema_version"), bool):
        raise InputError(
            where, "schema_version", f"got {limits.shown(head.get('schema_version'))}; allowed {schema_version}"
        )
    with errors_in(where):
        experts = limits.whole(head.get("experts"), "header", "experts", 1, limits.MAX_EXPERTS)
        layers = limits.whole(head.get("moe_layers"), "header", "moe_layers", 1, limits.MAX_MOE_LAYERS)
        limits.whole(head.get("top_k"), "header", "top_k", 1, min(experts, limits.MAX_TOP_K))
        limits.choice(head.get("gate", "topk"), "header", "gate", GATES)
        if "tokens" in head:
            limits.whole(head["tokens"], "header", "tokens", 0, limits.MAX_COUNT)
        for key in ("model", "corpus"):
            if key in head:
                limits.text(head[key], "header", key, empty=True, limit=4096)
    if layers * experts > limits.MAX_CELLS:
        raise InputError(
            where, "experts", f"moe_layers x experts = {layers * experts:,}; allowed: at most {limits.MAX_CELLS:,}"
        )
    if not isinstance(head.get("extra", {}), dict):
        raise InputError(where, "extra", "need an object")
    return head


def _ints(where: str, field: str, value: Any, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    """A nested list of integers of exactly ``shape``, each in [low, high]."""
    try:
        arr = np.array(value)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.shape != shape or arr.dtype.kind not in "iu":
        raise InputError(where, field, f"need {_describe(shape)} integers, got {limits.shown(value)}")
    bad = (arr < low) | (arr > high)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        at = field + "".join(f"[{i}]" for i in index[:-1]) if len(shape) > 1 else field
        raise InputError(where, at, f"{arr[index]} out of range; allowed {low}..{high}")
    return arr


def _no_bools(rec: dict[str, Any], where: str) -> None:
    """true/false are not numbers (numpy would read them as 1/0)."""
    for key in ("experts", "attn", "gate"):
        stack = [rec.get(key)]
        while stack:
            value = stack.pop()
            if isinstance(value, bool):
                raise InputError(where, key, f"got {value!r}; allowed: numbers")
            if isinstance(value, list):
                stack.extend(value)


def _describe(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"a list of {shape[0]}"
    return f"{shape[0]} per-layer lists of {shape[1]}"


def _gates(where: str, value: Any, layers: int, width: int) -> np.ndarray:
    """Per-layer gate probabilities in [0, 1]; null (unknown) becomes NaN."""
    rule = f"{layers} per-layer lists of {width} probabilities in [0, 1] (or null)"
    if not isinstance(value, list) or len(value) != layers:
        raise InputError(where, "gate", f"need {rule}")
    try:
        arr = np.array(value, dtype=object)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.shape != (layers, width):
        raise InputError(where, "gate", f"need {rule}")
    flat = arr.ravel()
    ok = [p is None or (isinstance(p, int | float) and not isinstance(p, bool) and 0.0 <= p <= 1.0) for p in flat]
    if not all(ok):
        i = ok.index(False)
        raise InputError(where, f"gate[{i // width}]", f"got {limits.shown(flat[i])}; allowed: a probability in [0, 1] or null")
    return np.array([np.nan if p is None else p for p in flat], dtype=np.float32).reshape(layers, width)


class RecordShape:
    """What every record of one trace must hold."""

    def __init__(self, layers: int, k: int, gate_width: int, num_experts: int) -> None:
        self.layers, self.k, self.gate_width, self.num_experts = layers, k, gate_width, num_experts

    def check(self, rec: dict[str, Any], where: str) -> None:
        """Every field of one record; raises an InputError naming the first mistake."""
        _no_bools(rec, where)
        ex = rec.get("experts")
        if not isinstance(ex, list) or len(ex) != self.layers:
            raise InputError(where, "experts", f"need {self.layers} per-layer lists of {self.k} expert ids")
        ids = _ints(where, "experts", ex, (self.layers, self.k), 0, self.num_experts - 1)
        repeated = np.any(np.diff(np.sort(ids, axis=1), axis=1) == 0, axis=1)
        if np.any(repeated):
            layer = int(np.argmax(repeated))
            raise InputError(where, f"experts[{layer}]", f"repeated expert id in {ids[layer].tolist()}")
        if rec.get("gate") is not None:
            _gates(where, rec["gate"], self.layers, self.gate_width)
        if rec.get("attn") is not None:
            _ints(where, "attn", rec["attn"], (self.layers,), -1, limits.MAX_COUNT)
        for name in ("token", "pos", "seq"):
            v = rec.get(name, -1)
            if isinstance(v, bool) or not isinstance(v, int) or not -1 <= v <= limits.MAX_COUNT:
                raise InputError(where, name, f"need an integer >= 0 (or -1: unknown), got {limits.shown(v)}")


class RecordBlock:
    """Up to ``size`` records, validated together with numpy (the per-record checks run only
    to name the line of a mistake the block check found)."""

    size = 4096

    def __init__(self) -> None:
        self.where: list[str] = []
        self.records: list[dict[str, Any]] = []

    def add(self, rec: dict[str, Any], where: str) -> None:
        self.where.append(where)
        self.records.append(rec)

    def _locate(self, shape: RecordShape) -> None:
        for rec, where in zip(self.records, self.where, strict=True):
            shape.check(rec, where)
        raise InputError(self.where[0], "record", "records of this block do not fit the header")

    def flush(self, shape: RecordShape, arrays: dict[str, np.ndarray], t: int) -> int:
        m = len(self.records)
        if not m:
            return t
        recs, span = self.records, slice(t, t + m)
        try:
            ex = np.array([r.get("experts") for r in recs])
            ints = [np.array([r.get(n, -1) for r in recs]) for n in ("token", "pos", "seq")]
        except (ValueError, TypeError):
            self._locate(shape)
        ok = ex.shape == (m, shape.layers, shape.k) and ex.dtype.kind in "iu"
        ok = ok and bool(np.all((ex >= 0) & (ex < shape.num_experts)))
        ok = ok and not np.any(np.diff(np.sort(ex, axis=2), axis=2) == 0)
        for values in ints:
            ok = ok and values.shape == (m,) and values.dtype.kind in "iu"
            ok = ok and bool(np.all((values >= -1) & (values <= limits.MAX_COUNT)))
        has_gate = [i for i, r in enumerate(recs) if r.get("gate") is not None]
        has_attn = [i for i, r in enumerate(recs) if r.get("attn") is not None]
        try:
            gate = np.array([recs[i]["gate"] for i in has_gate], dtype=np.float64)
            attn = np.array([recs[i]["attn"] for i in has_attn])
        except (ValueError, TypeError):
            self._locate(shape)
        if has_gate:
            inside = np.isnan(gate) | ((gate >= 0.0) & (gate <= 1.0))
            ok = ok and gate.shape == (len(has_gate), shape.layers, shape.gate_width)
            ok = ok and bool(np.all(inside))
        if has_attn:
            ok = ok and attn.shape == (len(has_attn), shape.layers) and attn.dtype.kind in "iu"
            ok = ok and bool(np.all((attn >= -1) & (attn <= limits.MAX_COUNT)))
        if not ok:
            self._locate(shape)
        arrays["experts"][span] = ex
        for name, values in zip(("token", "pos", "seq"), ints, strict=True):
            arrays[name][span] = values
        if has_gate:
            arrays["gate"][np.asarray(has_gate) + t] = gate
        if has_attn:
            arrays["attn"][np.asarray(has_attn) + t] = attn
        self.where, self.records = [], []
        return t + m
