"""The converted MoE: faithful dense forward, exact when every expert is routed, close otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moeopt.models import BertMoE, convert, load_dense, windows
from moeopt.models.bert_moe import MoEFFN
from moeopt.models.fidelity import closeness
from moeopt.popularity.corpus import load_corpus
from moeopt.popularity.traces import capture

COSINE_THRESHOLD = 0.8  # E=4, top-2, gates fitted on 1,500 tokens: 0.88-0.89 for seeds 0-2


@pytest.fixture(scope="module")
def dense():
    return load_dense()


@pytest.fixture(scope="module")
def corpus_ids():
    return load_corpus(max_tokens=3000).token_ids


@pytest.fixture(scope="module")
def moe(dense, corpus_ids):
    return convert(4, 2, corpus_ids[:1500], seed=0, dense=dense)


def test_dense_forward_matches_transformers(dense, corpus_ids):
    from transformers import BertModel

    from moeopt.models.bert_moe import model_dir

    hf = BertModel.from_pretrained(str(model_dir())).eval()
    ids, mask = windows(corpus_ids[:150], 64)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    ours, _ = BertMoE(*dense)(ids, mask)
    real = mask.bool()
    assert torch.allclose(ours[real], ref[real], atol=1e-4)


def test_routing_every_expert_is_the_dense_ffn(dense):
    config, state = dense
    w1, b1 = (
        state["encoder.layer.2.intermediate.dense.weight"],
        state["encoder.layer.2.intermediate.dense.bias"],
    )
    w2, b2 = (
        state["encoder.layer.2.output.dense.weight"],
        state["encoder.layer.2.output.dense.bias"],
    )
    perm = np.random.default_rng(0).permutation(config.intermediate)
    neurons = np.split(perm, 4)
    mean = torch.randn(4, config.hidden)
    ffn = MoEFFN(w1, b1, w2, b2, neurons, torch.randn(4, config.hidden), top_k=4, expert_mean=mean)
    x = torch.randn(7, config.hidden)
    y, chosen, probs = ffn(x)
    assert torch.allclose(y, F.gelu(x @ w1.T + b1) @ w2.T + b2, atol=1e-4)
    assert torch.allclose(probs.sum(-1), torch.ones(7))


def test_export_reproduces_the_moe_layer(moe):
    layer = moe.export_experts()[1]
    assert layer.gate.shape == (4, 384) and layer.gate.dtype == np.float32
    e0 = layer.experts[0]
    assert (e0.w1.shape, e0.b1.shape, e0.w2.shape, e0.b2.shape) == (
        (384, 384),
        (384,),
        (384, 384),
        (384,),
    )
    assert sorted(np.concatenate(layer.neurons).tolist()) == list(range(1536))
    x = np.random.default_rng(1).standard_normal((5, 384)).astype(np.float32)
    top = np.argsort(-(x @ layer.gate.T), axis=1)[:, : layer.top_k]
    gelu = lambda v: F.gelu(torch.from_numpy(v)).numpy()  # noqa: E731 - exact erf GELU
    y = np.stack(
        [
            sum(
                layer.experts[e].w2 @ gelu(layer.experts[e].w1 @ x[t] + layer.experts[e].b1)
                + layer.experts[e].b2
                for e in top[t]
            )
            for t in range(5)
        ]
    )
    ref, chosen, _ = moe.moe[1](torch.from_numpy(x))
    np.testing.assert_array_equal(np.sort(top, 1), np.sort(chosen.numpy(), 1))
    np.testing.assert_allclose(y, ref.numpy(), atol=1e-4)


def test_conversion_stays_close_to_dense(moe, corpus_ids):
    c = closeness(moe, corpus_ids[2000:2600])
    assert c.cosine_mean > COSINE_THRESHOLD, c
    assert 0.0 < c.relative_l2 < 1.0


def test_capture_records_every_token_with_paper_features(moe, corpus_ids):
    stream = corpus_ids[2000:2300]
    trace = capture(moe, stream, corpus="test", window=64)
    n_windows = -(-300 // 62)
    assert trace.tokens == 300 + 2 * n_windows  # [CLS] and [SEP] are routed too
    assert trace.experts.shape == (trace.tokens, 6, 2)
    assert np.all((trace.experts >= 0) & (trace.experts < 4))
    assert np.all(trace.experts[..., 0] != trace.experts[..., 1])
    assert np.all(trace.gate[..., 0] >= trace.gate[..., 1])  # best first
    for s in np.unique(trace.sequence_ids):  # attention ids are tokens of the same window
        sel = trace.sequence_ids == s
        assert np.isin(trace.attention_ids[sel], trace.token_ids[sel]).all()
    assert trace.position_ids.max() == 63 and trace.token_ids[0] == 101
