from __future__ import annotations

import json

import numpy as np
import pytest

from moeopt.errors import InputError
from moeopt.popularity.importers import (
    LayerCounts,
    load_any,
    parse_field_map,
    read_counts,
    read_routing_jsonl,
)
from moeopt.popularity.traces import write_trace
from tests.popularity.conftest import random_trace


def write_lines(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_switch_counts_file(tmp_path):
    data = {"expert_usage_by_layer": {"1": {"0": 5, "2": 1}, "3": {"1": 6}}, "num_experts": 3}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(data, indent=2))
    counts = load_any(p)
    assert isinstance(counts, LayerCounts)
    np.testing.assert_array_equal(counts.counts, [[5, 0, 1], [0, 6, 0]])
    pop = counts.popularity(tokens_per_batch=100, top_k=1, batches=4, seed=0)
    assert pop.loads.shape == (4, 2, 3) and np.all(pop.loads.sum(axis=2) == 100)


def test_real_switch_counts_file():
    """The packaged copy of the real Switch-base-128 counts (and the shared original, when the
    repository sits beside it: the copy must not drift)."""
    from importlib import resources
    from pathlib import Path

    shipped = resources.files("moeopt").joinpath("data/traces/switch-base-128-expert-counts.json")
    counts = read_counts(Path(str(shipped)))
    assert counts.counts.shape == (6, 128)
    assert counts.counts.sum(axis=1).tolist() == [206_866] * 6
    shared = Path(__file__).parents[3] / "shared/data/traces/switch-base-128-expert-counts.json"
    if shared.exists():
        np.testing.assert_array_equal(read_counts(shared).counts, counts.counts)


def test_mapped_fields_nested_and_layer_ids(tmp_path):
    recs = [
        {"layer_id": 5, "r": {"ids": [2, 0]}, "tok": 11, "i": 0, "p": [0.6, 0.3]},
        {"layer_id": 1, "r": {"ids": [1, 3]}, "tok": 11, "i": 0, "p": [0.5, 0.2]},
        {"layer_id": 1, "r": {"ids": [0, 1]}, "tok": 12, "i": 1},
        {"layer_id": 5, "r": {"ids": [3, 2]}, "tok": 12, "i": 1},
    ]
    fields = parse_field_map(
        ["layer=layer_id", "experts=r.ids", "token_id=tok", "token_index=i", "gate=p"]
    )
    t = read_routing_jsonl(write_lines(tmp_path / "r.jsonl", recs), fields, num_experts=4)
    assert t.extra["layer_ids"] == [1, 5]
    np.testing.assert_array_equal(t.experts, [[[1, 3], [2, 0]], [[0, 1], [3, 2]]])
    np.testing.assert_array_equal(t.token_ids, [11, 12])
    np.testing.assert_allclose(t.gate[0, 1], [0.6, 0.3])
    assert np.isnan(t.gate[1, 0]).all()


def test_records_without_index_are_numbered_per_layer(tmp_path):
    recs = [{"layer": 0, "experts": 1}, {"layer": 1, "experts": 2}, {"layer": 0, "experts": 3}]
    recs.append({"layer": 1, "experts": 0})
    t = read_routing_jsonl(write_lines(tmp_path / "r.jsonl", recs))
    np.testing.assert_array_equal(t.experts[..., 0], [[1, 2], [3, 0]])


def test_own_trace_is_recognised(tmp_path, small_trace):
    write_trace(small_trace, tmp_path / "t.jsonl")
    back = load_any(tmp_path / "t.jsonl")
    np.testing.assert_array_equal(back.experts, small_trace.experts)


GOOD = {"layer": 0, "experts": [1, 2], "token_index": 0}


@pytest.mark.parametrize(
    ("records", "line", "field", "needle"),
    [
        ([GOOD, "{broken"], 2, "record", "not valid JSON"),
        ([GOOD, [1, 2]], 2, "record", "JSON object"),
        ([{"experts": [1]}], 1, "layer", "missing"),
        ([GOOD, {"layer": 0, "experts": [1, "a"], "token_index": 1}], 2, "experts", "allowed"),
        ([GOOD, {"layer": 0, "experts": [1], "token_index": 1}], 2, "experts", "top-k"),
        ([GOOD, {"layer": 0, "experts": [1, 9], "token_index": 1}], 2, "experts", "0..7"),
        ([GOOD, {"layer": 0, "experts": [3, 3], "token_index": 1}], 2, "experts", "repeated"),
        ([{"layer": -1, "experts": [1, 2]}], 1, "layer", "allowed"),
        ([dict(GOOD, gate=[0.5, 1.5])], 1, "gate", "[0, 1]"),
        ([GOOD, GOOD], 2, "layer", "second record"),
        ([GOOD, {"layer": 0, "experts": [1, 2]}], 2, "token_index", "every record"),
    ],
)
def test_malformed_records(tmp_path, records, line, field, needle):
    p = write_lines(tmp_path / "bad.jsonl", records)
    with pytest.raises(InputError) as err:
        read_routing_jsonl(p, num_experts=8)
    assert err.value.source == f"{p}:{line}"
    assert err.value.field == field
    assert needle in err.value.message


def test_token_missing_a_layer(tmp_path):
    recs = [GOOD, {"layer": 1, "experts": [0, 1], "token_index": 0}, dict(GOOD, token_index=1)]
    with pytest.raises(InputError, match="no record for layer 1"):
        read_routing_jsonl(write_lines(tmp_path / "r.jsonl", recs))


@pytest.mark.parametrize("item", ["layer", "bogus=x", "layer="])
def test_bad_field_option(item):
    with pytest.raises(InputError):
        parse_field_map([item])


def test_empty_file(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n")
    with pytest.raises(InputError, match="no routing records"):
        read_routing_jsonl(p)


def test_round_trips_through_random(tmp_path):
    tr = random_trace(3, 40, 2, 4, 1)
    recs = [
        {
            "layer": layer,
            "experts": tr.experts[t, layer].tolist(),
            "token_index": t,
            "token_id": int(tr.token_ids[t]),
        }
        for layer in range(2)
        for t in range(40)
    ]
    back = read_routing_jsonl(write_lines(tmp_path / "r.jsonl", recs), num_experts=4)
    np.testing.assert_array_equal(back.experts, tr.experts)
    np.testing.assert_array_equal(back.token_ids, tr.token_ids)


def test_problem_popularity_from_a_trace(tmp_path):
    from moeopt.model import ModelSpec, Workload
    from moeopt.popularity.importers import traces_to_popularity

    tr = random_trace(4, 2500, 3, 8, 2)
    write_trace(tr, tmp_path / "t.jsonl")
    model = ModelSpec(
        "m", moe_layers=3, experts_per_layer=8, top_k=2, hidden_size=8, expert_ffn_size=8
    )
    pop = traces_to_popularity(tmp_path / "t.jsonl", model, Workload(1000), {"batches": 8})
    assert pop.loads.shape == (2, 3, 8) and np.all(pop.loads.sum(axis=2) == 2000)
    small = traces_to_popularity(tmp_path / "t.jsonl", model, Workload(10_240), {"seed": 1})
    assert small.loads.shape == (8, 3, 8) and np.all(small.loads.sum(axis=2) == 20_480)
    with pytest.raises(InputError, match="top-2"):
        traces_to_popularity(
            tmp_path / "t.jsonl", ModelSpec("m", 3, 8, 1, 8, 8), Workload(1000), {}
        )
