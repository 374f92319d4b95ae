"""Per-token routing JSONL from other tools (vLLM, SGLang, a user's own hooks).

Per-token JSONL (vLLM, SGLang or a user's own hooks): one JSON object per line and per
(token, layer), with at least a layer id and the chosen expert id(s). Defaults:

    {"layer": 3, "experts": [5, 17], "gate": [0.61, 0.22], "token_id": 2023, "token_index": 0,
     "sequence": 7}

``experts`` may be a list or one integer; ``gate`` (probabilities of the chosen experts),
``token_id``, ``token_index`` (groups the records of one token across layers), ``sequence``
(token indices count within a sequence: they may restart per sequence or prompt) and
``position`` are optional. Field names map with ``fields={"layer": "layer_id", ...}``
(``--field layer=layer_id`` on the command line, or ``--fields FILE``); a dotted name reads
nested objects (``routing.topk_ids``). Without ``token_index`` the n-th record of each layer
(within its sequence) is token n. Layer ids may be any integers (e.g. 1, 3, 5); they are
numbered 0.. in ascending order. Tokens missing a layer are an error, or dropped and counted
with ``incomplete="drop"``. Every file is read through :mod:`moeopt.files`.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from moeopt import limits
from moeopt.errors import InputError
from moeopt.files import iter_records, read_document
from moeopt.popularity.traces import RoutingTrace

FIELDS = ("layer", "experts", "gate", "token_id", "token_index", "position", "sequence")
REQUIRED = ("layer", "experts")
INCOMPLETE = ("error", "drop")
#: Largest integer id (layer, token, index, position) a record may carry: exact in float64.
MAX_ID = 2**53



def check_field_map(mapping: Any, source: str, where: str = "fields") -> dict[str, str]:
    """A mapping of moeopt field names to the file's field names; unknown names are errors."""
    if not isinstance(mapping, dict):
        raise InputError(source, where, 'need a table of NAME = "SOURCE_FIELD"')
    for name, column in mapping.items():
        if name not in FIELDS:
            raise InputError(source, f"{where}.{name}", f"unknown field; allowed: {', '.join(FIELDS)}")
        if not isinstance(column, str) or not column or len(column) > limits.MAX_NAME:
            raise InputError(source, f"{where}.{name}", "need the name of a field in the records")
    return mapping


def parse_field_map(
    items: list[str] | tuple[str, ...], mapping_file: str | Path | None = None
) -> dict[str, str]:
    """``["layer=layer_id", ...]`` (and a JSON/TOML mapping file) to one mapping.

    The file holds ``{"layer": "layer_id", ...}``; a repeated ``--field`` wins over it.
    """
    out: dict[str, str] = {}
    if mapping_file is not None:
        out.update(check_field_map(read_document(mapping_file), str(mapping_file), "file"))
    for item in items:
        name, sep, source = item.partition("=")
        if not sep or not source:
            raise InputError("--field", item, "need NAME=SOURCE_FIELD, e.g. layer=layer_id")
        if name not in FIELDS:
            raise InputError("--field", name, f"unknown field; allowed: {', '.join(FIELDS)}")
        out[name] = source
    return out


def _get(rec: dict[str, Any], dotted: str) -> Any:
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _int(where: str, field: str, v: Any, allowed: str, high: int = MAX_ID) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= high:
        raise InputError(where, field, f"got {limits.shown(v)}; allowed: {allowed}")
    return v


class _Columns:
    """Per-token records as compact typed columns (8 bytes a number), not Python objects."""

    def __init__(self) -> None:
        self.line, self.layer, self.token_id, self.index, self.position, self.sequence = (
            array("q") for _ in range(6)
        )
        self.experts, self.gate = array("q"), array("d")


def read_routing_jsonl(
    path: str | Path,
    fields: dict[str, str] | None = None,
    num_experts: int | None = None,
    model: str = "imported",
    incomplete: str = "error",
) -> RoutingTrace:
    """Per-token routing records from another tool, as a ``RoutingTrace``."""
    src = str(path)
    names = {f: f for f in FIELDS} | (fields or {})
    if incomplete not in INCOMPLETE:
        raise InputError("--incomplete", str(incomplete), f"allowed: {', '.join(INCOMPLETE)}")
    top_id = (num_experts or limits.MAX_EXPERTS) - 1
    cols = _Columns()
    k: int | None = None
    layers_seen: set[int] = set()
    sequences: dict[Any, int] = {}
    present = {"token_index": [0, 0], "sequence": [0, 0]}  # [with, without], first line without
    for lineno, rec in iter_records(path):
        where = f"{src}:{lineno}"
        for f in REQUIRED:
            if _get(rec, names[f]) is None:
                raise InputError(
                    where, names[f], f"missing; map it with --field {f}=<name in your records>"
                )
        layer = _int(where, names["layer"], _get(rec, names["layer"]), "an integer >= 0")
        if layer not in layers_seen:
            if len(layers_seen) >= limits.MAX_MOE_LAYERS:
                raise InputError(where, names["layer"], f"more than {limits.MAX_MOE_LAYERS:,} distinct layers")
            layers_seen.add(layer)
        ex = _get(rec, names["experts"])
        ex = [ex] if isinstance(ex, int) and not isinstance(ex, bool) else ex
        if not isinstance(ex, list) or not ex or len(ex) > limits.MAX_TOP_K:
            raise InputError(
                where, names["experts"],
                f"got {limits.shown(ex)}; allowed: an expert id or a list of 1 to {limits.MAX_TOP_K}",
            )
        ids = [_int(where, names["experts"], e, f"expert ids 0..{top_id}", top_id) for e in ex]
        if len(set(ids)) != len(ids):
            raise InputError(where, names["experts"], f"repeated expert id in {ids}")
        if k is None:
            k = len(ids)
        elif len(ids) != k:
            raise InputError(
                where, names["experts"],
                f"{len(ids)} experts, earlier records have {k}; top-k must be fixed",
            )
        gate = _get(rec, names["gate"])
        if isinstance(gate, int | float) and not isinstance(gate, bool) and k == 1:
            gate = [gate]
        if gate is not None and (
            not isinstance(gate, list)
            or len(gate) != k
            or any(isinstance(p, bool) or not isinstance(p, int | float) for p in gate)
            or any(not 0.0 <= p <= 1.0 for p in gate)
        ):
            raise InputError(
                where, names["gate"], f"got {limits.shown(gate)}; allowed: {k} probabilities in [0, 1]"
            )
        cols.line.append(lineno)
        cols.layer.append(layer)
        cols.experts.extend(ids)
        cols.gate.extend(gate if gate is not None else [np.nan] * k)
        for f, col in (("token_id", cols.token_id), ("position", cols.position)):
            v = _get(rec, names[f])
            col.append(-1 if v is None else _int(where, names[f], v, "an integer >= 0"))
        index = _get(rec, names["token_index"])
        cols.index.append(
            -1 if index is None else _int(where, names["token_index"], index, "an integer >= 0")
        )
        s = _get(rec, names["sequence"])
        if s is not None and (
            isinstance(s, bool) or not isinstance(s, int | str) or (isinstance(s, str) and len(s) > limits.MAX_NAME)
        ):
            raise InputError(where, names["sequence"], f"got {limits.shown(s)}; allowed: an integer or a string id")
        cols.sequence.append(-1 if s is None else sequences.setdefault(s, len(sequences)))
        for f, given in (("token_index", index), ("sequence", s)):
            if given is None and not present[f][1]:
                present[f][1] = lineno
            present[f][0] += given is not None
    if not cols.line or k is None:
        raise InputError(src, "records", "no routing records")
    for f, (with_, first_without) in present.items():
        if with_ and first_without:
            raise InputError(
                f"{src}:{first_without}", names[f],
                "missing here but present elsewhere; give it on every record or none",
            )
    return _assemble(cols, k, names, src, num_experts, model, incomplete, len(sequences))


def _assemble(
    cols: _Columns,
    k: int,
    names: dict[str, str],
    src: str,
    num_experts: int | None,
    model: str,
    incomplete: str,
    sequence_count: int,
) -> RoutingTrace:
    """Group the records into tokens (by sequence and index) and layers."""
    line = np.frombuffer(cols.line, dtype=np.int64)
    layer = np.frombuffer(cols.layer, dtype=np.int64)
    seq = np.frombuffer(cols.sequence, dtype=np.int64)
    index = np.frombuffer(cols.index, dtype=np.int64).copy()
    if index[0] < 0:  # the n-th record of a layer (within its sequence) is token n
        order = np.lexsort((np.arange(len(line)), layer, seq))
        group = np.stack([seq[order], layer[order]], axis=1)
        starts = np.r_[True, np.any(group[1:] != group[:-1], axis=1)]
        first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
        index[order] = np.arange(len(order)) - first
    layer_ids, li = np.unique(layer, return_inverse=True)
    keys, token = np.unique(np.stack([seq, index], axis=1), axis=0, return_inverse=True)
    token = token.reshape(-1)
    n, layers = len(keys), len(layer_ids)
    if n * layers * k > limits.MAX_TRACE_CELLS:
        raise InputError(
            src, "records",
            f"{n:,} tokens x {layers:,} layers x top-{k}; allowed: at most {limits.MAX_TRACE_CELLS:,}",
        )
    cell = token * layers + li
    order = np.argsort(cell, kind="stable")
    dup = np.flatnonzero(cell[order][1:] == cell[order][:-1])
    if len(dup):
        r = order[dup[0] + 1]
        hint = (
            "" if sequence_count else
            "; if token indices restart per sequence, map the sequence id with --field sequence=NAME"
        )
        raise InputError(
            f"{src}:{line[r]}", names["layer"],
            f"a second record for token {index[r]}{_in_sequence(seq[r])} at layer {layer[r]}{hint}",
        )
    experts = np.full((n, layers, k), -1, dtype=np.int64)
    gates = np.full((n, layers, k), np.nan, dtype=np.float32)
    experts[token, li] = np.frombuffer(cols.experts, dtype=np.int64).reshape(-1, k)
    gates[token, li] = np.frombuffer(cols.gate, dtype=np.float64).reshape(-1, k)
    tok = _per_token(np.frombuffer(cols.token_id, dtype=np.int64), token, n)
    clash = tok[1] != tok[0]
    if np.any(clash):
        t = int(np.argmax(clash))
        r = int(np.flatnonzero(token == t)[-1])
        raise InputError(
            f"{src}:{line[r]}", names["token_id"],
            f"token {keys[t, 1]}{_in_sequence(keys[t, 0])} has id {tok[1][t]} here and "
            f"{tok[0][t]} on another layer",
        )
    pos = _per_token(np.frombuffer(cols.position, dtype=np.int64), token, n)[1]
    complete = ~np.any(experts[:, :, 0] < 0, axis=1)
    dropped = int(n - complete.sum())
    if dropped and incomplete == "error":
        t = int(np.argmax(~complete))
        missing = int(layer_ids[np.argmax(experts[t, :, 0] < 0)])
        raise InputError(
            src, "records",
            f"token {keys[t, 1]}{_in_sequence(keys[t, 0])} has no record for layer {missing}; every "
            f"token needs every layer ({dropped:,} of {n:,} tokens miss one; --incomplete drop "
            "skips them)",
        )
    if dropped and not complete.any():
        raise InputError(src, "records", f"none of the {n:,} tokens has a record for every layer")
    keep = np.flatnonzero(complete)
    e = num_experts if num_experts is not None else int(experts[keep].max()) + 1
    extra: dict[str, Any] = {"layer_ids": [int(x) for x in layer_ids]}
    if dropped:
        extra["dropped_tokens"] = dropped
    if sequence_count:
        extra["sequences"] = sequence_count
    return RoutingTrace(
        experts=experts[keep],
        gate=gates[keep],
        token_ids=tok[1][keep],
        position_ids=pos[keep],
        sequence_ids=keys[keep, 0] if sequence_count else np.full(len(keep), -1, dtype=np.int64),
        attention_ids=np.full((len(keep), layers), -1, dtype=np.int64),
        num_experts=e,
        model=model,
        corpus=src,
        extra=extra,
    )


def _in_sequence(seq: Any) -> str:
    return "" if int(seq) < 0 else f" of sequence #{int(seq)}"


def _per_token(values: np.ndarray, token: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) known value per token; -1 where no record gives one."""
    low = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(n, -1, dtype=np.int64)
    known = values >= 0
    np.minimum.at(low, token[known], values[known])
    np.maximum.at(high, token[known], values[known])
    return np.where(high < 0, -1, low), high
