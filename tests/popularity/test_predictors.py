from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt.popularity.evaluation import evaluate_predictors, topk_accuracy
from moeopt.popularity.predictors import (
    PREDICTORS,
    BayesianPredictor,
    FrequencyPredictor,
    MovingAveragePredictor,
    TokenIdPredictor,
    largest_remainder,
    make_predictor,
)
from tests.popularity.conftest import make_trace, random_trace

# Profiled table, one MoE layer, 2 experts, top-1. Token 10 seen three times:
#   (pos 0, attn 1) -> expert 0, (pos 3, attn 1) -> expert 0, (pos 5, attn 2) -> expert 1.
# Token 20 once: (pos 1, attn 20) -> expert 1.
TABLE = make_trace(
    experts=[[[0]], [[0]], [[1]], [[1]]],
    token_ids=[10, 10, 10, 20],
    attention_ids=[[1], [1], [2], [20]],
    position_ids=[0, 3, 5, 1],
    num_experts=2,
)
# Tokens to predict: P'(f3 = 1) = 1/5, P'(f3 = 2) = 3/5 (smoothing 0).
NEW = np.array([10, 2, 2, 2, 1])


def test_posterior_by_hand():
    bayes = BayesianPredictor(smoothing=0.0).fit(TABLE)
    s = bayes.scores(NEW)
    # P(e0 | 10) ∝ P'(1) * n(10, a=1, e0) / n(10) = 1/5 * 2/3; P(e1 | 10) ∝ 3/5 * 1/3
    np.testing.assert_allclose(s[0, 0], [2 / 15, 1 / 5])
    # unseen tokens 1 and 2 fall back to the layer's expert frequency (e0: 2/4, e1: 2/4)
    np.testing.assert_allclose(s[1, 0], [0.5, 0.5])
    assert bayes.predict_experts(NEW)[0, 0, 0] == 1  # attention ids flip the MAP ...
    lina = TokenIdPredictor().fit(TABLE)
    np.testing.assert_allclose(lina.scores(NEW)[0, 0], [2 / 3, 1 / 3])
    assert lina.predict_experts(NEW)[0, 0, 0] == 0  # ... away from the token-id-only choice


def test_posterior_matches_the_papers_sum_over_positions_and_attention_ids():
    """Eq. 1 as a literal sum over (f2, f3) equals our position-free form, up to a constant."""
    ids, pos, attn, ex = (
        TABLE.token_ids,
        TABLE.position_ids,
        TABLE.attention_ids[:, 0],
        TABLE.experts[:, 0, 0],
    )
    p_attn = {a: np.mean(a == NEW) for a in set(attn)}
    positions = sorted(set(pos))
    t = 10
    post = np.zeros(2)
    for f2, f3 in itertools.product(positions, set(attn)):
        sel = (ids == t) & (pos == f2) & (attn == f3)
        if not sel.any():
            continue
        p_i = np.bincount(ex[sel], minlength=2) / sel.sum()  # P*(i | f1, f2, f3)
        p_f3 = sel.sum() / ((ids == t) & (pos == f2)).sum()  # P*(f3 | f1, f2)
        p_f2 = ((ids == t) & (pos == f2)).sum() / (ids == t).sum()  # P*(f2 | f1)
        post += p_i * p_f3 * p_f2 * p_attn[f3] * (1 / len(positions))
    ours = BayesianPredictor(smoothing=0.0).fit(TABLE).scores(NEW)[0, 0]
    np.testing.assert_allclose(post / post.sum(), ours / ours.sum())


def test_top2_is_the_two_best():
    tr = random_trace(5, 2000, 2, 6, 2)
    p = BayesianPredictor().fit(tr)
    s = p.scores(tr.token_ids[:50])
    top = p.predict_experts(tr.token_ids[:50])
    assert top.shape == (50, 2, 2)
    best = np.take_along_axis(s, top, axis=-1)
    others = np.sort(s, axis=-1)[..., :-2]
    assert np.all(best.min(axis=-1) >= others.max(axis=-1) - 1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    tokens=st.integers(1, 700),
    batch=st.integers(1, 300),
    experts=st.sampled_from([2, 4, 8]),
    k=st.integers(1, 2),
    name=st.sampled_from(sorted(PREDICTORS)),
)
def test_predicted_loads_sum_to_tokens_times_k(seed, tokens, batch, experts, k, name):
    tr = random_trace(seed, 400, 3, experts, k)
    new = np.random.default_rng(seed).integers(0, 60, tokens)  # includes unseen token ids
    p = make_predictor(name)
    if isinstance(p, MovingAveragePredictor):
        p.batch_size = 100
    loads = p.fit(tr).predict_loads(new, batch)
    size = batch if tokens >= batch else tokens
    assert loads.shape == (max(tokens // batch, 1), 3, experts)
    assert loads.dtype.kind == "i" and np.all(loads >= 0)
    assert np.all(loads.sum(axis=2) == size * k)


@given(
    shares=st.lists(st.floats(0, 100), min_size=1, max_size=20),
    total=st.integers(0, 10_000),
)
def test_largest_remainder_is_exact(shares, total):
    out = largest_remainder(np.array(shares), total)
    assert out.sum() == total and np.all(out >= 0)
    if sum(shares) > 0:
        assert np.all(np.abs(out - np.array(shares) / sum(shares) * total) < 1 + 1e-9)


def test_frequency_predictor_uses_profiled_shares():
    tr = make_trace([[[0]], [[0]], [[0]], [[1]]], [1, 2, 3, 4], num_experts=2)
    loads = FrequencyPredictor().fit(tr).predict_loads(np.zeros(8, dtype=int), 8)
    np.testing.assert_array_equal(loads, [[[6, 2]]])


def test_moving_average_follows_recent_batches():
    ex = np.array([0] * 10 + [1] * 10)[:, None, None]
    tr = make_trace(ex, np.arange(20), num_experts=2)
    p = MovingAveragePredictor(window=1, batch_size=10).fit(tr)
    np.testing.assert_array_equal(p.predict_loads(np.zeros(10, dtype=int), 10), [[[0, 10]]])
    p.observe(np.array([[4, 6]]))
    np.testing.assert_array_equal(p.predict_loads(np.zeros(5, dtype=int), 5), [[[2, 3]]])


def test_topk_accuracy():
    pred = np.array([[[0, 1]], [[2, 3]]])
    real = np.array([[[1, 0]], [[2, 0]]])
    assert topk_accuracy(pred, real) == pytest.approx(0.75)


def test_token_predictors_beat_frequency_when_tokens_decide_routing():
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 40, 6000)
    noisy = rng.random((6000, 2)) < 0.2
    ex = np.where(noisy, rng.integers(0, 8, (6000, 2)), (tokens[:, None] + [0, 3]) % 8)
    tr = make_trace(ex[..., None], tokens, num_experts=8)
    report = evaluate_predictors(tr, ("bayes", "token-id", "frequency"), folds=3, batch_size=1000)
    acc = {s.predictor: s.topk_accuracy for s in report.scores}
    assert acc["token-id"] > acc["frequency"] + 0.1
    assert acc["bayes"] > acc["frequency"] + 0.1
    assert all(s.batches == 6 for s in report.scores)
