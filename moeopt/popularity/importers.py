"""Bring routing data from other tools: per-layer count files and per-token routing JSONL.

Per-token JSONL (vLLM, SGLang or a user's own hooks): one JSON object per line and per
(token, layer), with at least a layer id and the chosen expert id(s). Defaults:

    {"layer": 3, "experts": [5, 17], "gate": [0.61, 0.22], "token_id": 2023, "token_index": 0}

``experts`` may be a list or one integer; ``gate`` (probabilities of the chosen experts),
``token_id``, ``token_index`` (groups the records of one token across layers) and
``position`` are optional. Field names map with ``fields={"layer": "layer_id", ...}``
(``--field layer=layer_id`` on the command line); a dotted name reads nested objects
(``routing.topk_ids``). Without ``token_index`` the n-th record of each layer is token n.
Layer ids may be any integers (e.g. 1, 3, 5); they are numbered 0.. in ascending order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.errors import InputError
from moeopt.popularity.traces import TRACE_FORMAT, RoutingTrace, json_record, read_trace

FIELDS = ("layer", "experts", "gate", "token_id", "token_index", "position")
REQUIRED = ("layer", "experts")


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


def read_counts(path: str | Path) -> LayerCounts:
    """A counts file: ``{"counts": [[...]]}`` or Switch-style ``expert_usage_by_layer``."""
    from moeopt.popularity.loads import read_layer_counts

    return LayerCounts(read_layer_counts(path), str(path))


def parse_field_map(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["layer=layer_id", ...]`` to a mapping; unknown names are an InputError."""
    out: dict[str, str] = {}
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


def _int(where: str, field: str, v: Any, allowed: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(where, field, f"got {v!r}; allowed: {allowed}")
    return v


def read_routing_jsonl(
    path: str | Path,
    fields: dict[str, str] | None = None,
    num_experts: int | None = None,
    model: str = "imported",
) -> RoutingTrace:
    """Per-token routing records from another tool, as a ``RoutingTrace``."""
    src = str(path)
    names = {f: f for f in FIELDS} | (fields or {})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(src, "file", f"cannot read: {exc.strerror}") from None
    rows: list[tuple[int, int, list[int], list[float] | None, int, int, int]] = []
    k: int | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{src}:{lineno}"
        rec = json_record(line, where)
        for f in REQUIRED:
            if _get(rec, names[f]) is None:
                raise InputError(
                    where, names[f], f"missing; map it with --field {f}=<name in your records>"
                )
        layer = _int(where, names["layer"], _get(rec, names["layer"]), "an integer >= 0")
        ex = _get(rec, names["experts"])
        ex = [ex] if isinstance(ex, int) and not isinstance(ex, bool) else ex
        if not isinstance(ex, list) or not ex:
            raise InputError(
                where, names["experts"], f"got {ex!r}; allowed: an expert id or a list"
            )
        ids = [_int(where, names["experts"], e, "expert ids >= 0") for e in ex]
        if num_experts is not None and max(ids) >= num_experts:
            raise InputError(
                where,
                names["experts"],
                f"expert id {max(ids)} out of range; allowed 0..{num_experts - 1}",
            )
        if len(set(ids)) != len(ids):
            raise InputError(where, names["experts"], f"repeated expert id in {ids}")
        if k is None:
            k = len(ids)
        elif len(ids) != k:
            raise InputError(
                where,
                names["experts"],
                f"{len(ids)} experts, earlier records have {k}; top-k must be fixed",
            )
        gate = _get(rec, names["gate"])
        if gate is not None and (
            not isinstance(gate, list)
            or len(gate) != k
            or any(isinstance(p, bool) or not isinstance(p, int | float) for p in gate)
            or any(not 0.0 <= p <= 1.0 for p in gate)
        ):
            raise InputError(
                where, names["gate"], f"got {gate!r}; allowed: {k} probabilities in [0, 1]"
            )
        opt = []
        for f in ("token_id", "token_index", "position"):
            v = _get(rec, names[f])
            opt.append(-1 if v is None else _int(where, names[f], v, "an integer >= 0"))
        rows.append((lineno, layer, ids, gate, *opt))
    if not rows or k is None:
        raise InputError(src, "records", "no routing records")
    layer_ids = sorted({r[1] for r in rows})
    layer_of = {lay: i for i, lay in enumerate(layer_ids)}
    has_index = [r[5] >= 0 for r in rows]
    if any(has_index) and not all(has_index):
        lineno = rows[has_index.index(False)][0]
        raise InputError(
            f"{src}:{lineno}",
            names["token_index"],
            "missing here but present elsewhere; give it on every record or none",
        )
    if all(has_index):
        token_keys = sorted({r[5] for r in rows})
        slot = {t: i for i, t in enumerate(token_keys)}
        index = [slot[r[5]] for r in rows]
    else:
        seen: dict[int, int] = {}
        index = []
        for r in rows:
            index.append(seen.get(r[1], 0))
            seen[r[1]] = index[-1] + 1
    n, layers = max(index) + 1, len(layer_ids)
    experts = np.full((n, layers, k), -1, dtype=np.int64)
    gates = np.full((n, layers, k), np.nan, dtype=np.float32)
    tok, pos = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    for (lineno, layer, ids, gate, token_id, _, position), t in zip(rows, index, strict=True):
        li = layer_of[layer]
        if experts[t, li, 0] >= 0:
            raise InputError(
                f"{src}:{lineno}", names["layer"], f"a second record for token {t} at layer {layer}"
            )
        experts[t, li] = ids
        if gate is not None:
            gates[t, li] = gate
        if token_id >= 0:
            if tok[t] >= 0 and tok[t] != token_id:
                raise InputError(
                    f"{src}:{lineno}",
                    names["token_id"],
                    f"token {t} had id {tok[t]} on another layer",
                )
            tok[t] = token_id
        if position >= 0:
            pos[t] = position
    missing = np.argwhere(experts[:, :, 0] < 0)
    if len(missing):
        t, li = missing[0]
        raise InputError(
            src,
            "records",
            f"token {t} has no record for layer {layer_ids[li]}; every token needs every layer",
        )
    e = num_experts if num_experts is not None else int(experts.max()) + 1
    return RoutingTrace(
        experts=experts,
        gate=gates,
        token_ids=tok,
        position_ids=pos,
        sequence_ids=np.full(n, -1, dtype=np.int64),
        attention_ids=np.full((n, layers), -1, dtype=np.int64),
        num_experts=e,
        model=model,
        corpus=src,
        extra={"layer_ids": layer_ids},
    )


def load_any(
    path: str | Path, fields: dict[str, str] | None = None, num_experts: int | None = None
) -> RoutingTrace | LayerCounts:
    """A moeopt trace, a per-token routing JSONL, or a counts JSON file, told apart by content."""
    src = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except OSError as exc:
        raise InputError(src, "file", f"cannot read: {exc.strerror}") from None
    try:
        head = json.loads(first) if first.strip() else None
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and head.get("format") == TRACE_FORMAT:
        return read_trace(path)
    if isinstance(head, dict) and ({"counts", "expert_usage_by_layer"} & head.keys()):
        return read_counts(path)
    if head is None and src.endswith(".json"):
        return read_counts(path)  # pretty-printed JSON spans lines
    return read_routing_jsonl(path, fields, num_experts)


def traces_to_popularity(path: str | Path, model: Any, workload: Any, data: dict[str, Any]):
    """The ``Popularity`` of a problem whose ``[popularity] source = "trace"``.

    ``data`` is the problem's popularity table (``file``, optional ``batches``, ``seed`` and
    ``fields``, a mapping of field names for per-token JSONL). A routing trace gives measured
    per-batch loads: consecutive batches of ``workload.tokens_per_batch`` tokens, at most
    ``batches`` of them. A trace shorter than one batch is resampled: each batch draws
    ``tokens_per_batch`` of its tokens with replacement (seeded), a stated model. A counts
    file is sampled with ``Popularity.from_layer_counts``.
    """
    from moeopt.popularity.loads import Popularity
    from moeopt.popularity.traces import batch_loads

    src = str(path)
    fields = data.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise InputError(src, "popularity.fields", 'need a table of NAME = "SOURCE_FIELD"')
    for name in fields:
        if name not in FIELDS:
            raise InputError(src, f"popularity.fields.{name}", f"allowed: {', '.join(FIELDS)}")
    batches = int(data.get("batches", 8))
    seed = int(data.get("seed", 0))
    n = int(workload.tokens_per_batch)
    found = load_any(path, fields, getattr(model, "experts_per_layer", None))
    if isinstance(found, LayerCounts):
        return found.popularity(n, model.top_k, batches, seed)
    if found.top_k != model.top_k:
        raise InputError(
            src, "top_k", f"trace routes top-{found.top_k}; the model is top-{model.top_k}"
        )
    name = Path(path).name
    if found.tokens >= n:
        loads = batch_loads(found.experts, found.num_experts, n)[:batches]
        return Popularity(loads=loads, source=f"trace:{name}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, found.tokens, (batches, n))
    loads = np.stack([batch_loads(found.experts[p], found.num_experts, n)[0] for p in picks])
    return Popularity(
        loads=loads, source=f"trace:{name} (resampled {found.tokens} tokens, seed {seed})"
    )
