from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moeopt.errors import InputError
from moeopt.popularity.cli import popularity
from moeopt.popularity.traces import write_trace
from tests.popularity.conftest import random_trace


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(random_trace(2, 4000, 3, 8, 1), path)
    return path


def test_evaluate_a_trace_as_json(trace_file, tmp_path):
    out = CliRunner().invoke(
        popularity,
        [
            "evaluate",
            "--trace",
            str(trace_file),
            "--batch-size",
            "500",
            "--json",
            "--plot",
            str(tmp_path / "p.png"),
        ],
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    names = [s["predictor"] for s in report["scores"]]
    assert names == ["bayes", "bayes-expected", "token-id", "frequency", "moving-average"]
    assert all(s["batches"] == 8 for s in report["scores"])
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_predict_writes_loads(trace_file, tmp_path):
    out = CliRunner().invoke(
        popularity,
        [
            "predict",
            "--trace",
            str(trace_file),
            "--tokens-from",
            str(trace_file),
            "--batch-size",
            "1000",
            "-o",
            str(tmp_path / "l.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "l.json").read_text())
    assert len(doc["loads"]) == 4 and all(sum(row) == 1000 for row in doc["loads"][0])


def test_import_routing_with_field_map(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"L": 0, "ids": [1]}\n{"L": 0, "ids": [2]}\n')
    out = CliRunner().invoke(
        popularity,
        [
            "import",
            str(p),
            "--field",
            "layer=L",
            "--field",
            "experts=ids",
            "--json",
            "-o",
            str(tmp_path / "t.jsonl"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["tokens"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["import", "missing.jsonl"],
        ["import", "BAD", "--field", "colour=red"],
        ["predict", "--trace", "TRACE", "--predictor", "oracle"],
    ],
)
def test_user_mistakes_raise_input_error(trace_file, tmp_path, args):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"layer": 0, "experts": [1]}\n')
    args = [str(bad) if a == "BAD" else str(trace_file) if a == "TRACE" else a for a in args]
    out = CliRunner().invoke(popularity, args)
    assert isinstance(out.exception, InputError), out.output
