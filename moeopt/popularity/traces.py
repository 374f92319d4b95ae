"""Routing traces: what each token did at each MoE layer, and the paper's token features.

A trace is one record per token (in the order the tokens were served) with per-layer arrays,
so a batch of N tokens is N consecutive records. JSONL, documented in docs/popularity.md:

    {"format": "moeopt-routing-trace", "schema_version": 1, "model": ..., "experts": E,
     "top_k": k, "moe_layers": L, "corpus": ..., "tokens": n, "gate": "topk" | "full"}
    {"seq": 0, "pos": 1, "token": 2023, "experts": [[3], [0], ...], "gate": [[0.61], ...],
     "attn": [2023, 1996, ...]}

``experts[l]`` lists the k experts of layer l, best first; ``gate[l]`` their gate
probabilities (or all E with ``"gate": "full"``); ``attn[l]`` the attention id before layer l
(-1 where unknown, e.g. imported traces). ``token``/``pos``/``seq`` are -1 where unknown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moeopt import limits
from moeopt.errors import InputError
from moeopt.files import MAX_TRACE_BYTES, count_lines, first_line, iter_lines, json_record
from moeopt.popularity.trace_checks import RecordBlock, RecordShape, read_header

TRACE_FORMAT = "moeopt-routing-trace"
SCHEMA_VERSION = 1
TOKENS_PER_BATCH = 10_240  # the paper's batch


@dataclass(frozen=True, eq=False)
class RoutingTrace:
    """Per-token routing of a served token stream; arrays share the first axis (tokens)."""

    experts: np.ndarray  # (tokens, layers, k) int64, best first
    gate: np.ndarray  # (tokens, layers, k) or (tokens, layers, E) float32; NaN where unknown
    token_ids: np.ndarray  # (tokens,) int64, -1 unknown
    position_ids: np.ndarray  # (tokens,) int64, -1 unknown
    sequence_ids: np.ndarray  # (tokens,) int64, -1 unknown
    attention_ids: np.ndarray  # (tokens, layers) int64, -1 unknown
    num_experts: int
    model: str = "unknown"
    corpus: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.experts.shape[0]
        if self.experts.ndim != 3:
            raise ValueError(f"experts must be (tokens, layers, k), got {self.experts.shape}")
        for name in ("token_ids", "position_ids", "sequence_ids"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if self.attention_ids.shape != self.experts.shape[:2]:
            raise ValueError("attention_ids must be (tokens, layers)")
        if self.gate.shape[:2] != self.experts.shape[:2]:
            raise ValueError("gate must be (tokens, layers, k or E)")

    @property
    def tokens(self) -> int:
        return int(self.experts.shape[0])

    @property
    def layers(self) -> int:
        return int(self.experts.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.experts.shape[2])

    @property
    def full_gate(self) -> bool:
        return self.gate.shape[2] == self.num_experts and self.num_experts != self.top_k

    def select(self, index: np.ndarray | slice) -> RoutingTrace:
        """The trace of a subset of tokens (e.g. a profiling or held-out split)."""
        return RoutingTrace(
            experts=self.experts[index],
            gate=self.gate[index],
            token_ids=self.token_ids[index],
            position_ids=self.position_ids[index],
            sequence_ids=self.sequence_ids[index],
            attention_ids=self.attention_ids[index],
            num_experts=self.num_experts,
            model=self.model,
            corpus=self.corpus,
            extra=dict(self.extra),
        )

    def header(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "experts": self.num_experts,
            "top_k": self.top_k,
            "moe_layers": self.layers,
            "corpus": self.corpus,
            "tokens": self.tokens,
            "gate": "full" if self.full_gate else "topk",
            **({"extra": self.extra} if self.extra else {}),
        }


def batch_loads(
    experts: np.ndarray, num_experts: int, batch_size: int = TOKENS_PER_BATCH, partial: bool = False
) -> np.ndarray:
    """Per-batch loads d[b, l, i] from per-token routing (tokens, layers, k).

    Batches are consecutive tokens. A trailing partial batch is dropped unless ``partial`` or
    it is the only batch, so every batch serves the same number of tokens.
    """
    n, layers, _ = experts.shape
    if n == 0:
        raise ValueError("no tokens")
    full = n // batch_size
    count = full + (1 if (n % batch_size and (partial or full == 0)) else 0)
    batch_of = np.minimum(np.arange(n) // batch_size, count - 1)
    keep = np.arange(n) < (n if count > full else full * batch_size)
    e = experts[keep]
    b = np.broadcast_to(batch_of[keep][:, None, None], e.shape)
    lay = np.broadcast_to(np.arange(layers)[None, :, None], e.shape)
    flat = (b * layers + lay) * num_experts + e
    loads = np.bincount(flat.ravel(), minlength=count * layers * num_experts)
    return loads.reshape(count, layers, num_experts)


def trace_loads(
    trace: RoutingTrace, batch_size: int = TOKENS_PER_BATCH, partial: bool = False
) -> np.ndarray:
    """The per-batch loads array (batches, layers, experts) a ``Popularity`` takes."""
    return batch_loads(trace.experts, trace.num_experts, batch_size, partial)


def trace_popularity(trace: RoutingTrace, batch_size: int = TOKENS_PER_BATCH, source: str = ""):
    """A ``Popularity`` of measured per-batch loads, so a problem can be built from a trace."""
    from moeopt.popularity.loads import Popularity

    return Popularity(
        loads=trace_loads(trace, batch_size), source=source or f"trace:{trace.model}:{trace.corpus}"
    )


# ---- JSONL ------------------------------------------------------------------------------------


def _round(values: np.ndarray) -> list[Any]:
    return [[None if np.isnan(p) else round(float(p), 5) for p in row] for row in values]


def iter_records(trace: RoutingTrace) -> Iterator[dict[str, Any]]:
    for t in range(trace.tokens):
        yield {
            "seq": int(trace.sequence_ids[t]),
            "pos": int(trace.position_ids[t]),
            "token": int(trace.token_ids[t]),
            "experts": trace.experts[t].tolist(),
            "gate": _round(trace.gate[t]),
            "attn": trace.attention_ids[t].tolist(),
        }


def write_trace(trace: RoutingTrace, path: str | Path) -> None:
    """Write a trace as JSONL: header line, then one record per token."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(trace.header()) + "\n")
        for rec in iter_records(trace):
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def read_trace(path: str | Path) -> RoutingTrace:
    """Read a JSONL trace written by ``write_trace`` (or by hand in that format).

    Read through :mod:`moeopt.files` (size cap, UTF-8, nesting, finite numbers); the header's
    shape and the number of records are checked against ``moeopt.limits`` before the arrays
    are allocated; every record is checked and a mistake names its line and field.
    """
    src = str(path)
    first = first_line(path, MAX_TRACE_BYTES)
    if not first.strip():
        raise InputError(src, "header", "empty file; need a header line")
    head = read_header(first, src, TRACE_FORMAT, SCHEMA_VERSION)
    num_experts, k, layers = int(head["experts"]), int(head["top_k"]), int(head["moe_layers"])
    gate_width = num_experts if head.get("gate") == "full" else k
    n = count_lines(path, MAX_TRACE_BYTES)  # an upper bound on the records
    if n * layers * gate_width > limits.MAX_TRACE_CELLS:
        raise InputError(
            src, "records",
            f"up to {n:,} tokens x {layers} layers x {gate_width} gate values; allowed: at most "
            f"{limits.MAX_TRACE_CELLS:,}",
        )
    arrays = {
        "experts": np.zeros((n, layers, k), dtype=np.int64),
        "gate": np.full((n, layers, gate_width), np.nan, dtype=np.float32),
        "attn": np.full((n, layers), -1, dtype=np.int64),
        **{name: np.full(n, -1, dtype=np.int64) for name in ("token", "pos", "seq")},
    }
    shape = RecordShape(layers, k, gate_width, num_experts)
    block, t = RecordBlock(), 0
    for lineno, line in iter_lines(path, MAX_TRACE_BYTES):
        if lineno == 1 or not line.strip():
            continue
        where = f"{src}:{lineno}"
        rec = json_record(line, where)
        # Keys are the only strings of a well-formed record (each brings two quotes), and it
        # holds no true/false: numpy would read "0.5" or true as numbers, so check those alone.
        if line.count('"') != 2 * len(rec) or "true" in line or "false" in line:
            shape.check(rec, where)
        block.add(rec, where)
        if len(block.records) >= RecordBlock.size:
            t = block.flush(shape, arrays, t)
    t = block.flush(shape, arrays, t)
    if t == 0:
        raise InputError(src, "records", "no token records after the header; need at least one")
    if "tokens" in head and head["tokens"] != t:  # a truncated (or concatenated) trace
        raise InputError(
            f"{src}:1", "tokens", f"the header says {head['tokens']:,} tokens, the file has {t:,} "
            "records; allowed: the number of records (or no tokens field)",
        )
    experts, gate, attn = arrays["experts"], arrays["gate"], arrays["attn"]
    tok, pos, seq = arrays["token"], arrays["pos"], arrays["seq"]
    return RoutingTrace(
        experts=experts[:t],
        gate=gate[:t],
        token_ids=tok[:t],
        position_ids=pos[:t],
        sequence_ids=seq[:t],
        attention_ids=attn[:t],
        num_experts=num_experts,
        model=str(head.get("model", "unknown")),
        corpus=str(head.get("corpus", "unknown")),
        extra=dict(head.get("extra", {})),
    )


# ---- capture from the converted model ---------------------------------------------------------


def capture(
    model: Any,
    token_ids: np.ndarray,
    corpus: str = "unknown",
    window: int = 128,
    batch_windows: int = 16,
    full_gate: bool = False,
    progress: bool = False,
) -> RoutingTrace:
    """Run the MoE model over a token stream in [CLS] ... [SEP] windows and record routing.

    Records every real position, special tokens included (they are routed too). The attention
    id is the token with the highest head-summed softmax attention in the block before each
    MoE layer (PAPER.md 3.1).
    """
    import torch
    from tqdm import tqdm

    from moeopt.models.bert_moe import MODEL_NAME, windows

    ids, mask = windows(np.asarray(token_ids), window)
    k, num_experts = model.top_k, model.experts
    parts: dict[str, list[np.ndarray]] = {n: [] for n in ("ex", "g", "tok", "pos", "seq", "att")}
    starts = range(0, ids.shape[0], batch_windows)
    bar = tqdm(starts, desc="profiling", unit="batch", disable=not progress)
    for s in bar:
        bi, bm = ids[s : s + batch_windows], mask[s : s + batch_windows]
        _, r = model(bi, bm, record=True)
        real = bm.bool()
        ex = r.experts.permute(1, 2, 0, 3)[real]  # (n, layers, k)
        probs = r.gate_probs.permute(1, 2, 0, 3)[real]  # (n, layers, E)
        g = probs if full_gate else torch.gather(probs, 2, ex)
        parts["ex"].append(ex.numpy())
        parts["g"].append(g.numpy().astype(np.float32))
        parts["att"].append(r.attention_ids.permute(1, 2, 0)[real].numpy())
        parts["tok"].append(bi[real].numpy())
        parts["pos"].append(torch.arange(bi.shape[1]).expand_as(bi)[real].numpy())
        parts["seq"].append((torch.arange(s, s + bi.shape[0])[:, None].expand_as(bi))[real].numpy())
    cat = {n: np.concatenate(v) for n, v in parts.items()}
    return RoutingTrace(
        experts=cat["ex"].astype(np.int64),
        gate=cat["g"],
        token_ids=cat["tok"].astype(np.int64),
        position_ids=cat["pos"].astype(np.int64),
        sequence_ids=cat["seq"].astype(np.int64),
        attention_ids=cat["att"].astype(np.int64),
        num_experts=num_experts,
        model=f"{MODEL_NAME}-moe-e{num_experts}-top{k}",
        corpus=corpus,
    )
