"""How close a converted MoE model stays to its dense original, on held-out text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moeopt.models.bert_moe import BertMoE, sentence_embeddings, windows


@dataclass(frozen=True)
class Closeness:
    """Sentence-embedding cosine similarity and relative L2 of final hidden states."""

    experts: int
    top_k: int
    tokens: int
    cosine_mean: float  # mean over windows of cos(sentence embedding MoE, dense)
    cosine_min: float
    relative_l2: float  # mean over tokens of ||h_moe - h_dense|| / ||h_dense||


@torch.no_grad()
def closeness(moe: BertMoE, token_ids: np.ndarray, window: int = 128, batch: int = 16) -> Closeness:
    """Compare ``moe`` with the dense model that shares its weights, on ``token_ids``.

    Use text the gate was not calibrated on.
    """
    dense = BertMoE(moe.config, moe.state)
    ids, mask = windows(np.asarray(token_ids), window)
    cos, rel = [], []
    for s in range(0, ids.shape[0], batch):
        bi, bm = ids[s : s + batch], mask[s : s + batch]
        hd, _ = dense(bi, bm)
        hm, _ = moe(bi, bm)
        cos.append((sentence_embeddings(hm, bm) * sentence_embeddings(hd, bm)).sum(-1))
        real = bm.bool()
        rel.append((hm - hd)[real].norm(dim=-1) / hd[real].norm(dim=-1))
    c, r = torch.cat(cos), torch.cat(rel)
    return Closeness(
        experts=moe.experts,
        top_k=moe.top_k,
        tokens=int(mask.sum()),
        cosine_mean=float(c.mean()),
        cosine_min=float(c.min()),
        relative_l2=float(r.mean()),
    )
