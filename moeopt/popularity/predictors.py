"""Expert-popularity predictors: the paper's Bayesian posterior and the baselines it is judged by.

All share one interface: ``fit(trace)`` on a profiled routing trace, then
``predict_experts(token_ids)`` (tokens, layers, k) for top-k accuracy and
``predict_loads(token_ids, batch_size)`` (batches, layers, experts) of predicted token counts
d[e, i] per batch of consecutive tokens, which is what a deployment problem needs.

The Bayesian posterior (PAPER.md 3.3, Eqs. 1-2), in the discrete form implemented here: for a
new token with id t (f1), with n(t, p, a, i) the profiled count of tokens with id t, position p
and attention id a routed to expert i of the layer,

    P(i | t)  ∝  Σ_p Σ_a  P*(i | t, p, a) · P*(a | t, p) · P*(p | t) · P'(a) · P'(p)
              =  Σ_a  P'(a) · n(t, ·, a, i) / n(t)          (P'(p) uniform, so p sums out)

with P'(a) the frequency of token id a among the tokens being predicted (the paper's
"not-yet-inferred tokens"), Laplace-smoothed so unseen attention ids keep a small weight.
MAP takes the argmax (top-k: the k largest). A token id never profiled falls back to the
layer's expert frequency. The Lina baseline is the same with P'(a) = 1: P(i | t) = n(t,·,·,i)/n(t).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from moeopt.popularity.traces import TOKENS_PER_BATCH, RoutingTrace, batch_loads

CHUNK = 8192  # tokens scored at once: bounds memory at CHUNK x layers x experts floats


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``shares`` (last axis) that sum exactly to ``total``."""
    shares = np.asarray(shares, dtype=float)
    s = shares.sum(axis=-1, keepdims=True)
    uniform = np.full_like(shares, 1.0 / shares.shape[-1])
    p = np.where(s > 0, shares / np.where(s > 0, s, 1.0), uniform)
    exact = p * total
    base = np.floor(exact).astype(np.int64)
    short = total - base.sum(axis=-1)
    order = np.argsort(-(exact - base), axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable")
    return base + (rank < short[..., None]).astype(np.int64)


def _batches(n: int, batch_size: int) -> list[slice]:
    if n == 0:
        raise ValueError("no tokens to predict")
    full = n // batch_size
    if full == 0:
        return [slice(0, n)]
    return [slice(b * batch_size, (b + 1) * batch_size) for b in range(full)]


class Predictor(ABC):
    """Predicts which experts tokens go to, and so each batch's expert loads."""

    name: ClassVar[str]
    #: Whether ``fit`` needs a token id on every trace record (the token-keyed tables do).
    needs_token_ids: ClassVar[bool] = False

    def __init__(self) -> None:
        self.layers = 0
        self.num_experts = 0
        self.top_k = 0
        self.frequency = np.zeros((0, 0))  # (layers, E), profiled share of assignments

    def fit(self, trace: RoutingTrace) -> Predictor:
        self.layers, self.num_experts, self.top_k = trace.layers, trace.num_experts, trace.top_k
        counts = batch_loads(trace.experts, trace.num_experts, max(trace.tokens, 1))[0]
        self.frequency = counts / counts.sum(axis=1, keepdims=True)
        self._fit(trace)
        return self

    def _fit(self, trace: RoutingTrace) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    def scores(self, token_ids: np.ndarray, prior_tokens: np.ndarray | None = None) -> np.ndarray:
        """Per-token posterior-like scores (tokens, layers, E); rows need not be normalised.

        ``prior_tokens``: the whole set being predicted, when ``token_ids`` is one chunk of it.
        """

    def predict_experts(
        self, token_ids: np.ndarray, k: int | None = None, prior_tokens: np.ndarray | None = None
    ) -> np.ndarray:
        """Top-k (MAP for k=1) experts per token and layer, (tokens, layers, k), best first."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        prior = token_ids if prior_tokens is None else prior_tokens
        out = []
        for start in range(0, max(len(token_ids), 1), CHUNK):
            s = self.scores(token_ids[start : start + CHUNK], prior)
            s = s + 1e-9 * self.frequency[None]  # ties go to the globally more popular expert
            out.append(np.argsort(-s, axis=-1, kind="stable")[..., : (k or self.top_k)])
        return np.concatenate(out)

    def predict_loads(
        self, token_ids: np.ndarray, batch_size: int = TOKENS_PER_BATCH
    ) -> np.ndarray:
        """Predicted d[b, e, i]: batches of consecutive tokens, each token counted k times."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        return np.stack(
            [
                self._batch_loads(token_ids[sl], token_ids)
                for sl in _batches(len(token_ids), batch_size)
            ]
        )

    def _batch_loads(self, batch: np.ndarray, prior_tokens: np.ndarray) -> np.ndarray:
        """d[e, i] of one batch: each token's predicted top-k experts counted once."""
        chosen = self.predict_experts(batch, prior_tokens=prior_tokens)
        return batch_loads(chosen, self.num_experts, len(batch))[0]


class FrequencyPredictor(Predictor):
    """Every batch gets the profiled expert shares of its layer (no per-token information)."""

    name = "frequency"

    def scores(self, token_ids: np.ndarray, prior_tokens: np.ndarray | None = None) -> np.ndarray:
        return np.broadcast_to(self.frequency[None], (len(token_ids), *self.frequency.shape))

    def predict_loads(
        self, token_ids: np.ndarray, batch_size: int = TOKENS_PER_BATCH
    ) -> np.ndarray:
        sizes = [s.stop - s.start for s in _batches(len(token_ids), batch_size)]
        return np.stack([largest_remainder(self.frequency, n * self.top_k) for n in sizes])


class MovingAveragePredictor(Predictor):
    """Loads of the next batch = mean loads of the last ``window`` batches served (over time).

    Needs no token ids. ``history`` holds per-batch real loads in serving order; ``fit`` takes
    them from the profiled trace, ``observe`` appends each batch once it has been served.
    """

    name = "moving-average"

    def __init__(self, window: int = 4, batch_size: int = TOKENS_PER_BATCH) -> None:
        super().__init__()
        self.window = window
        self.batch_size = batch_size
        self.history: list[np.ndarray] = []

    def _fit(self, trace: RoutingTrace) -> None:
        self.history = list(batch_loads(trace.experts, trace.num_experts, self.batch_size))

    def observe(self, loads: np.ndarray) -> None:
        """Record a served batch's real loads (layers, E)."""
        self.history.append(np.asarray(loads))

    def share(self) -> np.ndarray:
        recent = np.stack(self.history[-self.window :])
        return recent.sum(axis=0) / np.maximum(recent.sum(axis=(0, 2))[:, None], 1)

    def scores(self, token_ids: np.ndarray, prior_tokens: np.ndarray | None = None) -> np.ndarray:
        return np.broadcast_to(self.share()[None], (len(token_ids), self.layers, self.num_experts))

    def predict_loads(
        self, token_ids: np.ndarray, batch_size: int = TOKENS_PER_BATCH
    ) -> np.ndarray:
        sizes = [s.stop - s.start for s in _batches(len(token_ids), batch_size)]
        return np.stack([largest_remainder(self.share(), n * self.top_k) for n in sizes])


class _TokenTable(Predictor):
    """Profiled counts keyed by (layer, token id, attention id), aggregated over positions."""

    needs_token_ids = True

    def _fit(self, trace: RoutingTrace) -> None:
        self._cache = None
        if np.any(trace.token_ids < 0):
            raise ValueError(f"{self.name} needs token ids in every trace record")
        n, layers, k = trace.experts.shape
        e = self.num_experts
        attn = trace.attention_ids
        self.tokens = np.unique(trace.token_ids)  # sorted vocabulary seen in profiling
        row = np.searchsorted(self.tokens, trace.token_ids)  # (n,)
        self.token_count = np.bincount(row, minlength=len(self.tokens)).astype(float)
        # one key per (layer, token row, attention id); counts of experts per key
        key_l = np.repeat(np.arange(layers)[None], n, axis=0)  # (n, layers)
        key_r = np.repeat(row[:, None], layers, axis=1)
        keys = np.stack([key_l.ravel(), key_r.ravel(), attn.ravel()], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        counts = np.zeros((len(uniq), e))
        np.add.at(counts, (np.repeat(inverse, k), trace.experts.reshape(-1)), 1.0)
        self.key_layer, self.key_row, self.key_attn = uniq[:, 0], uniq[:, 1], uniq[:, 2]
        self.key_counts = counts

    def with_key_counts(self, key_counts: np.ndarray) -> _TokenTable:
        """A copy whose key-value table is ``key_counts`` (what the paper's Alg. 2 learns)."""
        if key_counts.shape != self.key_counts.shape:
            raise ValueError(
                f"key_counts: shape {key_counts.shape}; allowed {self.key_counts.shape}"
            )
        out = copy.copy(self)
        out.key_counts = key_counts
        out._cache = None  # the posterior table is cached per prior; it changed
        return out

    def attention_weight(self, token_ids: np.ndarray) -> np.ndarray:
        """P'(a) per profiled key; 1 for the token-id-only baseline."""
        return np.ones(len(self.key_attn))

    def posterior_table(self, prior_tokens: np.ndarray) -> np.ndarray:
        """P(i | t) for every profiled token id t, (layers, profiled ids, E); cached per prior."""
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] is prior_tokens:
            return cached[1]
        w = self.attention_weight(prior_tokens)
        table = np.zeros((self.layers, len(self.tokens), self.num_experts))
        np.add.at(table, (self.key_layer, self.key_row), w[:, None] * self.key_counts)
        table /= self.token_count[None, :, None]
        self._cache = (prior_tokens, table)
        return table

    def scores(self, token_ids: np.ndarray, prior_tokens: np.ndarray | None = None) -> np.ndarray:
        token_ids = np.asarray(token_ids, dtype=np.int64)
        table = self.posterior_table(token_ids if prior_tokens is None else prior_tokens)
        pos = np.searchsorted(self.tokens, token_ids)
        pos = np.minimum(pos, len(self.tokens) - 1)
        seen = self.tokens[pos] == token_ids
        out = np.broadcast_to(self.frequency[None], (len(token_ids), self.layers, self.num_experts))
        out = out.copy()
        out[seen] = table[:, pos[seen], :].transpose(1, 0, 2)
        return out


class TokenIdPredictor(_TokenTable):
    """Lina-style baseline: MAP of P(i | token id) from the profiled table."""

    name = "token-id"


class BayesianPredictor(_TokenTable):
    """The paper's posterior (Eq. 1) with MAP / top-k (Eq. 2); see the module docstring.

    ``attention_prior``: "batch" takes P'(a) from the tokens being predicted (the paper);
    "profile" from the profiled corpus. ``smoothing`` is the Laplace pseudo-count.
    """

    name = "bayes"

    def __init__(self, attention_prior: str = "batch", smoothing: float = 1.0) -> None:
        super().__init__()
        if attention_prior not in ("batch", "profile"):
            raise ValueError("attention_prior must be 'batch' or 'profile'")
        self.attention_prior = attention_prior
        self.smoothing = smoothing

    def _fit(self, trace: RoutingTrace) -> None:
        super()._fit(trace)
        self.profile_tokens = trace.token_ids.copy()

    def attention_weight(self, token_ids: np.ndarray) -> np.ndarray:
        ref = token_ids if self.attention_prior == "batch" else self.profile_tokens
        vocab, counts = np.unique(ref, return_counts=True)
        pos = np.minimum(np.searchsorted(vocab, self.key_attn), len(vocab) - 1)
        hits = np.where(vocab[pos] == self.key_attn, counts[pos], 0).astype(float)
        support = len(np.union1d(vocab, self.key_attn))
        return (hits + self.smoothing) / (len(ref) + self.smoothing * support)


class ExpectedBayesianPredictor(BayesianPredictor):
    """The same posterior, but loads are its expectation, not counts of MAP choices.

    Beyond the paper: MAP sends every token to its single likeliest expert, which inflates the
    popular experts' loads; summing each token's normalised posterior (scaled to k) predicts
    the batch's loads without that bias. Per-token predictions stay MAP / top-k.
    """

    name = "bayes-expected"

    def _batch_loads(self, batch: np.ndarray, prior_tokens: np.ndarray) -> np.ndarray:
        s = self.scores(batch, prior_tokens=prior_tokens)
        s = s / np.maximum(s.sum(axis=-1, keepdims=True), 1e-300)
        return largest_remainder(s.sum(axis=0), len(batch) * self.top_k)


PREDICTORS: dict[str, type[Predictor]] = {
    p.name: p
    for p in (
        BayesianPredictor,
        ExpectedBayesianPredictor,
        TokenIdPredictor,
        FrequencyPredictor,
        MovingAveragePredictor,
    )
}


def make_predictor(name: str) -> Predictor:
    """A predictor by its short name (see ``PREDICTORS``)."""
    if name not in PREDICTORS:
        raise KeyError(f"unknown predictor {name!r}; known: {', '.join(PREDICTORS)}")
    return PREDICTORS[name]()
