"""Expert popularity: tokens routed to each expert of each MoE layer, per batch.

A problem needs the spread across batches, not only a mean: a plan sized for the mean breaks
its memory or payload limit on a heavy batch. ``Popularity.loads[b, l, e]`` is the number of
token assignments that expert ``e`` of MoE layer ``l`` receives in batch ``b``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.errors import InputError


@dataclass(frozen=True, eq=False)
class Popularity:
    """Per-batch expert loads, shape (batches, moe_layers, experts), non-negative integers."""

    loads: np.ndarray
    source: str = "inline"

    def __post_init__(self) -> None:
        loads = np.asarray(self.loads)
        if loads.ndim != 3 or min(loads.shape) == 0:
            raise InputError(
                self.source, "loads", f"need shape (batches, layers, experts), got {loads.shape}"
            )
        if not np.issubdtype(loads.dtype, np.number) or not np.all(np.isfinite(loads)):
            raise InputError(self.source, "loads", "token counts must be finite numbers")
        if np.any(loads < 0):
            b, layer, e = np.argwhere(loads < 0)[0]
            raise InputError(
                self.source,
                f"loads[{b}][{layer}][{e}]",
                f"token count must be >= 0, got {loads[b, layer, e]}",
            )
        if np.any(loads != np.round(loads)):
            raise InputError(self.source, "loads", "token counts must be whole numbers")
        loads = loads.astype(np.int64)
        loads.setflags(write=False)
        object.__setattr__(self, "loads", loads)

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
        counts = np.asarray(counts, dtype=float)
        if counts.ndim != 2:
            raise InputError(source, "counts", f"need shape (layers, experts), got {counts.shape}")
        totals = counts.sum(axis=1, keepdims=True)
        if np.any(totals <= 0):
            layer = int(np.argmax(totals[:, 0] <= 0))
            raise InputError(source, f"counts[{layer}]", "a layer routes no tokens at all")
        freq = counts / totals
        rng = np.random.default_rng(seed)
        loads = np.stack(
            [
                np.stack([rng.multinomial(tokens_per_batch * top_k, f) for f in freq])
                for _ in range(batches)
            ]
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
        n_batches = int(batch_ids.max()) + 1
        flat = (batch_ids * layers + layer_ids) * experts + expert_ids
        loads = np.bincount(flat, minlength=n_batches * layers * experts)
        return cls(loads=loads.reshape(n_batches, layers, experts), source=source)


def read_layer_counts(path: str | Path) -> np.ndarray:
    """Per-layer expert totals from a JSON counts file, shape (layers, experts).

    Accepts ``{"counts": [[...], ...]}`` and the ``expert_usage_by_layer`` form of the
    Switch-base-128 file in ``moeopt/data/traces``.
    """
    source = str(path)
    try:
        data: Any = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(source, "file", f"cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, "file", f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and "counts" in data:
        rows = data["counts"]
        field = "counts"
    elif isinstance(data, dict) and "expert_usage_by_layer" in data:
        usage = data["expert_usage_by_layer"]
        experts = int(data.get("num_experts", 0)) or 1 + max(
            int(e) for layer in usage.values() for e in layer
        )
        rows = []
        for layer in sorted(usage, key=int):
            row = [0] * experts
            for e, n in usage[layer].items():
                if not e.isdigit() or int(e) >= experts:
                    raise InputError(
                        source,
                        f"expert_usage_by_layer.{layer}.{e}",
                        f"unknown expert; allowed 0..{experts - 1}",
                    )
                row[int(e)] = n
            rows.append(row)
        field = "expert_usage_by_layer"
    else:
        raise InputError(source, "counts", "need 'counts' or 'expert_usage_by_layer'")
    if not isinstance(rows, list) or not rows or any(not isinstance(r, list) for r in rows):
        raise InputError(source, field, "need a list of per-layer lists of token counts")
    if len({len(r) for r in rows}) != 1:
        raise InputError(source, field, "every layer needs the same number of experts")
    for i, row in enumerate(rows):
        for j, n in enumerate(row):
            if isinstance(n, bool) or not isinstance(n, int | float) or n < 0 or n != int(n):
                raise InputError(
                    source, f"{field}[{i}][{j}]", f"token count must be a whole number >= 0, got {n!r}"
                )
    return np.asarray(rows, dtype=float)
