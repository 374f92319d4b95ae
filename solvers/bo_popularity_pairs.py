"""Alg. 2's variables: the Q key-value pairs of the profiled popularity table (bo-popularity).

A pair is one cell of the (layer, token id, attention id) -> expert table that the paper's
Bayesian predictor reads (:mod:`moeopt.popularity.predictors`): :func:`select_pairs` picks the Q
cells that matter for the learning batches, :func:`with_values` writes values back into a copy
of the predictor. The loop that tunes them is :mod:`solvers.bo_popularity_learn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.popularity.predictors import Predictor


@dataclass(frozen=True, eq=False)
class KeyValuePairs:
    """The Q pairs {z_q, v_q}: cell (key row, expert) of the table and its value bounds.

    Pairs [0, explore_from) are profiled mappings (count > 0), adjusted only when their token
    id is in L; pairs [explore_from, Q) are mappings never profiled (count 0): new keys.
    """

    key: np.ndarray  # (Q,) row of the predictor's key table
    expert: np.ndarray  # (Q,)
    layer: np.ndarray  # (Q,)
    token: np.ndarray  # (Q,) token id f1
    attention: np.ndarray  # (Q,) attention id f3
    cap: np.ndarray  # (Q,) largest value: the key's total profiled count
    initial: np.ndarray  # (Q,) v_0, the profiled counts
    explore_from: int

    @property
    def q(self) -> int:
        return len(self.key)


def _check_table(predictor: Predictor) -> None:
    if not hasattr(predictor, "key_counts"):
        raise TypeError(f"{predictor.name} has no profiled key-value table; use bayes or token-id")


def select_pairs(
    predictor: Predictor, token_ids: np.ndarray, q: int, mu: float, spread: bool = True
) -> KeyValuePairs:
    """The Q pairs that matter for ``token_ids``.

    Profiled pairs (the first mu Q): keys ranked by how often their token occurs in
    ``token_ids`` times the key's profiled count (its weight in the posterior), their largest
    cells first. New keys (the rest): cells never profiled. With ``spread`` they are dealt
    round-robin over (layer, expert), rarest tokens first, so every expert has pairs that can
    move a few tokens onto it (an expert predicted empty gets the smallest memory, and any real
    token then breaks it); their cap is the token's whole profiled count, enough to flip it.
    Without ``spread``: the empty cells of the top keys, capped at the key's count.
    """
    _check_table(predictor)
    p: Any = predictor
    counts = p.key_counts
    vocab, freq = np.unique(np.asarray(token_ids, dtype=np.int64), return_counts=True)
    tok = p.tokens[p.key_row]
    pos = np.minimum(np.searchsorted(vocab, tok), len(vocab) - 1)
    occurs = np.where(vocab[pos] == tok, freq[pos], 0)
    total = counts.sum(axis=1)
    weight = occurs * total
    keys = np.argsort(-weight, kind="stable")
    keys = keys[weight[keys] > 0]
    if len(keys) == 0:
        raise ValueError("no profiled key has a token id of the learning batches")
    e = counts.shape[1]
    order = np.argsort(-counts[keys], axis=1, kind="stable")  # experts by count, per key
    cell_key = np.repeat(keys, e)
    cell_exp = order.ravel()
    filled = counts[cell_key, cell_exp] > 0
    old = np.flatnonzero(filled)
    new = np.flatnonzero(~filled)
    if spread and len(new):
        group = p.key_layer[cell_key[new]] * e + cell_exp[new]
        by = np.lexsort((-total[cell_key[new]], occurs[cell_key[new]], group))
        start = np.searchsorted(group[by], group[by], side="left")
        rank = np.arange(len(by)) - start  # rank within its (layer, expert) group
        new = new[by][np.lexsort((group[by], rank))]
    n_old = min(len(old), max(round(mu * q), q - len(new)))
    n_new = min(len(new), q - n_old)
    pick = np.concatenate([old[:n_old], new[:n_new]])
    k, x = cell_key[pick], cell_exp[pick]
    cap = total[k].astype(float)
    if spread:
        cap[n_old:] = p.token_count[p.key_row[k[n_old:]]]
    return KeyValuePairs(
        key=k,
        expert=x,
        layer=p.key_layer[k],
        token=tok[k],
        attention=p.key_attn[k],
        cap=np.maximum(cap, 1.0),
        initial=counts[k, x].copy(),
        explore_from=int(n_old),
    )


def with_values(predictor: Predictor, pairs: KeyValuePairs, values: np.ndarray) -> Predictor:
    """A copy of the predictor whose table holds ``values`` at the pairs (Alg. 2 line 2)."""
    _check_table(predictor)
    counts = predictor.key_counts.copy()  # type: ignore[attr-defined]
    counts[pairs.key, pairs.expert] = values
    return predictor.with_key_counts(counts)  # type: ignore[attr-defined]
