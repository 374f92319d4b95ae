from __future__ import annotations

import numpy as np
import pytest

from moeopt.popularity.traces import RoutingTrace


def make_trace(
    experts: np.ndarray,
    token_ids: np.ndarray,
    attention_ids: np.ndarray | None = None,
    num_experts: int | None = None,
    position_ids: np.ndarray | None = None,
) -> RoutingTrace:
    """A RoutingTrace from plain arrays; experts (tokens, layers, k)."""
    experts = np.asarray(experts, dtype=np.int64)
    n, layers, k = experts.shape
    token_ids = np.asarray(token_ids, dtype=np.int64)
    return RoutingTrace(
        experts=experts,
        gate=np.full((n, layers, k), 0.5, dtype=np.float32),
        token_ids=token_ids,
        position_ids=np.arange(n) if position_ids is None else np.asarray(position_ids),
        sequence_ids=np.zeros(n, dtype=np.int64),
        attention_ids=(
            np.repeat(token_ids[:, None], layers, axis=1)
            if attention_ids is None
            else np.asarray(attention_ids, dtype=np.int64)
        ),
        num_experts=num_experts or int(experts.max()) + 1,
        model="test",
        corpus="test",
    )


def random_trace(seed: int, tokens: int, layers: int, num_experts: int, k: int) -> RoutingTrace:
    """Tokens routed as a skewed function of their id, so token ids carry information."""
    rng = np.random.default_rng(seed)
    token_ids = rng.zipf(1.5, tokens) % 50
    attn = rng.integers(0, 50, (tokens, layers))
    base = (token_ids[:, None] * (np.arange(layers) + 1)[None] + attn) % num_experts
    noise = rng.random((tokens, layers)) < 0.2
    first = np.where(noise, rng.integers(0, num_experts, (tokens, layers)), base)
    ex = np.stack([(first + j) % num_experts for j in range(k)], axis=-1)
    return make_trace(ex, token_ids, attn, num_experts)


@pytest.fixture
def small_trace() -> RoutingTrace:
    return random_trace(0, 3000, 3, 8, 2)
