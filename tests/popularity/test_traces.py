from __future__ import annotations

import json

import numpy as np
import pytest

from moeopt.errors import InputError
from moeopt.popularity.traces import (
    TRACE_FORMAT,
    batch_loads,
    read_trace,
    trace_loads,
    trace_popularity,
    write_trace,
)
from tests.popularity.conftest import make_trace, random_trace


def test_round_trip_keeps_every_field(tmp_path):
    trace = random_trace(1, 500, 4, 16, 2)
    gate = np.random.default_rng(0).random(trace.gate.shape).astype(np.float32)
    trace = make_trace(trace.experts, trace.token_ids, trace.attention_ids, 16)
    object.__setattr__(trace, "gate", gate)
    path = tmp_path / "t.jsonl"
    write_trace(trace, path)
    head = json.loads(path.read_text().splitlines()[0])
    assert head["format"] == TRACE_FORMAT and head["schema_version"] == 1
    assert (head["experts"], head["top_k"], head["moe_layers"], head["tokens"]) == (16, 2, 4, 500)
    back = read_trace(path)
    for name in ("experts", "token_ids", "position_ids", "sequence_ids", "attention_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(trace, name), err_msg=name)
    np.testing.assert_allclose(back.gate, gate, atol=1e-5)
    assert back.num_experts == 16 and back.model == "test"


def test_batch_loads_counts_consecutive_tokens():
    ex = np.array([[[0]], [[1]], [[1]], [[2]], [[0]]])  # 5 tokens, 1 layer, top-1
    np.testing.assert_array_equal(batch_loads(ex, 3, 2), [[[1, 1, 0]], [[0, 1, 1]]])
    np.testing.assert_array_equal(batch_loads(ex, 3, 2, partial=True)[2], [[1, 0, 0]])
    np.testing.assert_array_equal(batch_loads(ex, 3, 10), [[[2, 2, 1]]])  # only batch: kept


def test_trace_builds_a_popularity(small_trace):
    pop = trace_popularity(small_trace, batch_size=1000)
    assert pop.loads.shape == (3, 3, 8)
    assert np.all(pop.loads.sum(axis=2) == 1000 * 2)
    np.testing.assert_array_equal(pop.loads, trace_loads(small_trace, 1000))


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        (["not json"], "header"),
        ([json.dumps({"format": "other"})], "format"),
        ([json.dumps({"format": TRACE_FORMAT, "schema_version": 99})], "schema_version"),
    ],
)
def test_bad_header_is_an_input_error(tmp_path, lines, field):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        read_trace(p)
    assert err.value.field == field


def test_bad_record_names_line_and_field(tmp_path):
    head = {"format": TRACE_FORMAT, "schema_version": 1, "experts": 4, "top_k": 1, "moe_layers": 2}
    good = {"token": 5, "pos": 0, "seq": 0, "experts": [[0], [3]], "attn": [5, 5]}
    bad = dict(good, experts=[[0], [4]])
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in (head, good, bad)) + "\n")
    with pytest.raises(InputError) as err:
        read_trace(p)
    assert err.value.source.endswith(":3") and err.value.field == "experts[1]"
    assert "0..3" in err.value.message
