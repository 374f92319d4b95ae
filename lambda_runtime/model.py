"""What the runtime serves: a model's MoE layers as an export, and one request's inputs.

``SeededMoE`` is an MoE with seeded random weights and any shape (for problems with no real
model here); ``lambda_runtime.converted`` serves the converted all-MiniLM-L6-v2. Each MoE layer:
gate logits ``W_g @ h`` (E, h), softmax, top-k; expert FFN ``y = W2 @ gelu(W1 @ x + b1) + b2``;
residual ``h + sum_k w_k * expert_k(h)`` with ``w_k`` the renormalised top-k gate weights
(``combine="gate"``) or 1 (``combine="sum"``, as the converted model combines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ExpertWeights:
    """One expert FFN; shapes ``w1 (f, h)``, ``b1 (f)``, ``w2 (h, f)``, ``b2 (h)``, float32."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


@dataclass(frozen=True)
class MoEExport:
    """What the runtime deploys: per layer a gate ``(E, h)`` and the experts' weights."""

    gates: tuple[np.ndarray, ...]
    experts: tuple[tuple[ExpertWeights, ...], ...]
    top_k: int
    gate_biases: tuple[np.ndarray, ...] = ()  # per layer (E,), added to the logits; empty: zeros
    combine: str = "gate"  # "gate": weight each expert output by its gate weight; "sum": by 1

    def gate_bias(self, layer: int) -> np.ndarray | None:
        return self.gate_biases[layer] if self.gate_biases else None

    @property
    def layers(self) -> int:
        return len(self.gates)

    @property
    def experts_per_layer(self) -> int:
        return self.gates[0].shape[0]

    @property
    def hidden_size(self) -> int:
        return self.gates[0].shape[1]


@dataclass(frozen=True)
class Request:
    """One batch to serve: the first MoE layer's input rows (``inputs``, or ``head`` that
    computes them: the model's part before MoE layer 0, which the coordinator runs inside the
    measured request), the non-MoE step after each MoE layer, and the monolithic forward the
    distributed one must equal (within ``tolerance``)."""

    inputs: np.ndarray | None  # (n, h) float32; None when ``head`` computes them
    reference: Callable[[], np.ndarray]
    between: Callable[[int, np.ndarray], np.ndarray] | None = None  # (layer, h) -> next input
    tolerance: float = 1e-4  # max absolute difference allowed against ``reference()``
    head: Callable[[], np.ndarray] | None = None
    n_tokens: int = 0

    @property
    def tokens(self) -> int:
        return int(self.inputs.shape[0]) if self.inputs is not None else self.n_tokens

    def first_inputs(self) -> np.ndarray:
        """The first MoE layer's input rows (computing the head when there is one)."""
        if self.inputs is not None:
            return self.inputs
        assert self.head is not None
        return self.head()

    @property
    def forward_input(self) -> np.ndarray | Callable[[], np.ndarray]:
        """What ``Coordinator.forward`` takes: the rows, or the head that computes them."""
        return self.inputs if self.inputs is not None else self.first_inputs


class RuntimeModel(Protocol):
    """What ``run_plan`` serves: weights to deploy and requests to send."""

    @property
    def description(self) -> str: ...

    def export(self) -> MoEExport: ...

    def request(self, tokens: int, index: int) -> Request: ...


def expert_forward(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rows of ``x`` (n, h) through one expert; the same op the handler runs."""
    return F.linear(F.gelu(F.linear(x, w["w1"], w["b1"])), w["w2"], w["b2"])


def gate_topk(
    h: np.ndarray, gate: np.ndarray, top_k: int, bias: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k experts per token and their renormalised softmax weights, as (n, k) arrays."""
    with torch.no_grad():
        logits = torch.from_numpy(h) @ torch.from_numpy(gate).T
        if bias is not None:
            logits = logits + torch.from_numpy(bias)
        probs = torch.softmax(logits, dim=-1)
        weights, experts = torch.topk(probs, top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return experts.numpy().astype(np.int64), weights.numpy().astype(np.float32)


class SeededMoE:
    """An MoE with seeded random weights and configurable shapes (a stand-in for a real model)."""

    def __init__(
        self, layers: int, experts: int, hidden: int, ffn: int, top_k: int = 1, seed: int = 0
    ) -> None:
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k: {top_k} not allowed; must be 1..experts ({experts})")
        rng = np.random.default_rng(seed)
        s1, s2 = 1.0 / np.sqrt(hidden), 1.0 / np.sqrt(ffn)

        def arr(shape: tuple[int, ...], scale: float) -> np.ndarray:
            return (rng.standard_normal(shape) * scale).astype(np.float32)

        self.export_ = MoEExport(
            gates=tuple(arr((experts, hidden), s1) for _ in range(layers)),
            experts=tuple(
                tuple(
                    ExpertWeights(
                        arr((ffn, hidden), s1),
                        arr((ffn,), 0.1),
                        arr((hidden, ffn), s2),
                        arr((hidden,), 0.1),
                    )
                    for _ in range(experts)
                )
                for _ in range(layers)
            ),
            top_k=top_k,
        )
        self.layers, self.experts, self.hidden, self.ffn, self.top_k = (
            layers,
            experts,
            hidden,
            ffn,
            top_k,
        )

    @property
    def description(self) -> str:
        return (
            f"seeded random weights ({self.layers} layers x {self.experts} experts, "
            f"hidden {self.hidden}, FFN {self.ffn}, top-{self.top_k})"
        )

    def export(self) -> MoEExport:
        return self.export_

    def match_loads(
        self, shares: np.ndarray, tokens: int = 4096, iterations: int = 12, seed: int = 99
    ) -> SeededMoE:
        """Fit per-layer gate biases so routing follows ``shares`` (layers, experts) of tokens.

        Why: a plan is sized for its problem's expert popularity; with random gates the load is
        near uniform and a plan's small functions would get tokens they were not sized for.
        """
        shares = np.asarray(shares, dtype=np.float64)
        if shares.shape != (self.layers, self.experts):
            raise ValueError(
                f"shares: shape {shares.shape}; allowed: (layers, experts) = {(self.layers, self.experts)}"
            )
        shares = shares / shares.sum(axis=1, keepdims=True)
        h = self.tokens(tokens, seed=seed)
        biases = []
        ex = self.export_
        for layer in range(self.layers):
            bias = np.zeros(self.experts, dtype=np.float32)
            target = shares[layer] * tokens * self.top_k
            for _ in range(iterations):
                experts, _ = gate_topk(h, ex.gates[layer], self.top_k, bias)
                counts = np.bincount(experts.reshape(-1), minlength=self.experts)
                bias = (bias + 0.7 * np.log((target + 1.0) / (counts + 1.0))).astype(np.float32)
            biases.append(bias)
            h = self._layer(h, layer, bias)
        self.export_ = replace(ex, gate_biases=tuple(biases))
        return self

    def request(self, tokens: int, index: int) -> Request:
        """Seeded hidden states; no non-MoE step between the MoE layers."""
        x = self.tokens(tokens, seed=100 + index)
        return Request(x, lambda: self.forward(x))

    def tokens(self, n: int, seed: int = 1) -> np.ndarray:
        """A seeded batch of ``n`` hidden states."""
        return np.random.default_rng(seed).standard_normal((n, self.hidden)).astype(np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The monolithic forward through every MoE layer, in one process."""
        h = np.asarray(x, dtype=np.float32)
        for layer in range(self.layers):
            h = self._layer(h, layer, self.export_.gate_bias(layer))
        return h

    def _layer(self, h: np.ndarray, layer: int, bias: np.ndarray | None) -> np.ndarray:
        ex = self.export_
        with torch.no_grad():
            experts, weights = gate_topk(h, ex.gates[layer], ex.top_k, bias)
            ht = torch.from_numpy(h)
            out = ht.clone()
            for e, w in enumerate(ex.experts[layer]):
                rows, slots = np.nonzero(experts == e)
                if rows.size == 0:
                    continue
                tw = {k: torch.from_numpy(v) for k, v in w.arrays().items()}
                y = expert_forward(ht[rows], tw)
                out.index_add_(
                    0, torch.from_numpy(rows), y * torch.from_numpy(weights[rows, slots])[:, None]
                )
        return out.numpy()
