"""The converted all-MiniLM-L6-v2 MoE (``moeopt.models``) served by the runtime.

The plan's functions run the experts; the coordinator runs the rest of the model, as the
paper's non-MoE functions would: embeddings and the first attention block before MoE layer 0,
and after each MoE layer its output LayerNorm and the next layer's attention block. Requests are
consecutive [CLS] ... [SEP] windows of the bundled corpus right after the gates' calibration
tokens: the text `moeopt popularity profile` measured the built-in problem's loads on, so the
routing follows the popularity the plan was sized for.

Needs the core package (``moeopt``) on the coordinator's side; the expert functions do not.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

from lambda_runtime.model import ExpertWeights, MoEExport, Request

CALIBRATION_TOKENS = 8000  # `moeopt popularity profile`'s default
WINDOW = 128
# Summation order differs (experts summed by the coordinator, not in one tensor op) and six
# LayerNorms follow; measured: 9e-6 on a 10,240-token request.
TOLERANCE = 1e-4


def compatible(layers: int, experts: int, hidden: int, ffn: int) -> str | None:
    """Why a problem's model shape is not the converted MiniLM's (None when it is)."""
    if (layers, hidden) != (6, 384) or experts not in (4, 8, 16) or experts * ffn != 1536:
        return (
            f"shape {layers} layers x {experts} experts, hidden {hidden}, expert FFN {ffn}; "
            "the converted all-MiniLM-L6-v2 has 6 layers, hidden 384, 4/8/16 experts "
            "of 1536/experts neurons"
        )
    return None


def content_tokens(positions: int) -> int:
    """Corpus tokens whose windows (two special tokens each) fill at most ``positions``."""
    if positions < 3:
        raise ValueError(f"tokens: {positions}; the converted model needs at least 3 per request")
    c = positions - 2 * math.ceil(positions / WINDOW)
    while c + 2 * math.ceil(c / (WINDOW - 2)) > positions:
        c -= 1
    return max(c, 1)


class ConvertedMiniLM:
    """all-MiniLM-L6-v2 with every FFN split into ``experts`` experts and a top-``top_k`` gate."""

    def __init__(self, experts: int = 8, top_k: int = 1, seed: int = 0) -> None:
        self.experts, self.top_k = experts, top_k
        self.model, self._stream = _converted(experts, top_k, seed)
        layers = self.model.export_experts()
        self._export = MoEExport(
            gates=tuple(la.gate for la in layers),
            experts=tuple(
                tuple(ExpertWeights(e.w1, e.b1, e.w2, e.b2) for e in la.experts) for la in layers
            ),
            top_k=top_k,
            combine="sum",  # the converted model sums its routed experts' outputs (weight 1)
        )

    @property
    def description(self) -> str:
        return f"converted all-MiniLM-L6-v2 MoE ({self.experts} experts, top-{self.top_k})"

    def export(self) -> MoEExport:
        return self._export

    def windows(self, tokens: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Request ``index``: the next ``tokens`` positions of the corpus (wrapping around)."""
        from moeopt.models import windows

        c = content_tokens(tokens)
        if c > len(self._stream):
            raise ValueError(
                f"tokens: {tokens} per request; the bundled corpus holds {len(self._stream)} "
                "after calibration"
            )
        start = (index * c) % (len(self._stream) - c + 1)
        return windows(self._stream[start : start + c], WINDOW)

    def request(self, tokens: int, index: int) -> Request:
        m = self.model
        ids, mask = self.windows(tokens, index)
        real = mask.bool()
        shape = (*ids.shape, m.config.hidden)
        with torch.no_grad():
            key_bias = m.key_bias(mask)

        def head() -> np.ndarray:
            """Embeddings and the first attention block: the first non-MoE function's work."""
            with torch.no_grad():
                first, _ = m.attention(0, m.embed(ids), key_bias)
            return np.ascontiguousarray(first[real].numpy())

        def between(layer: int, h: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                full = torch.zeros(shape)
                full[real] = torch.from_numpy(h)
                x = m.output_norm(layer, full)
                if layer + 1 < m.config.layers:
                    x, _ = m.attention(layer + 1, x, key_bias)
            return np.ascontiguousarray(x[real].numpy())

        def reference() -> np.ndarray:
            hidden, _ = m(ids, mask)
            return hidden[real].numpy()

        return Request(None, reference, between, TOLERANCE, head=head, n_tokens=int(real.sum()))


@cache
def _converted(experts: int, top_k: int, seed: int):  # -> (BertMoE, np.ndarray)
    """Convert once per process (k-means over the FFN neurons takes seconds)."""
    from moeopt.models import convert
    from moeopt.popularity.corpus import load_corpus

    corpus = load_corpus(None)
    model = convert(experts, top_k, corpus.token_ids[:CALIBRATION_TOKENS], seed=seed)
    return model, corpus.token_ids[CALIBRATION_TOKENS:]
