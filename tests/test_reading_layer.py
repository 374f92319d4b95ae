"""The one reading layer (``moeopt.files``) and the validating dataclasses: a problem built in
code is checked by the same lines as a problem file, before anything is allocated."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moeopt import files, limits
from moeopt.deployment_problem import DeploymentProblem
from moeopt.errors import FieldError, InputError
from moeopt.model import ModelSpec, ServiceLevel, Workload
from moeopt.popularity import Popularity
from moeopt.problem import problem_from_dict
from tests.conftest import tiny_spec

DOCS = Path(__file__).parents[1] / "docs"


# ---- bytes and text -----------------------------------------------------------------------------


def test_size_cap_is_checked_before_reading(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    assert files.read_bytes(big, 4096) == b" " * 2048
    with pytest.raises(InputError, match="2,048 bytes; allowed: at most 1,024 bytes"):
        files.read_bytes(big, 1024)


def test_special_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/zero")):
        if path.exists():
            with pytest.raises(InputError, match="allowed: a regular file"):
                files.read_bytes(path)
    with pytest.raises(InputError, match="no such file"):
        files.read_bytes(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ('{"a": 1}'.encode("utf-16"), "UTF-16 (little-endian) (byte-order mark)"),
        ('{"a": 1}'.encode("utf-16-be"), "zero byte at offset 0"),
        ('{"a": 1}'.encode("utf-32"), "UTF-32"),
        ('{"a": "café"}'.encode("latin-1"), "looks like latin-1 or Windows-1252"),
    ],
)
def test_encodings_are_named(data, needle):
    with pytest.raises(InputError) as err:
        files.decode_utf8(data, "f.json")
    assert needle in err.value.message and "allowed: UTF-8 text" in err.value.message


def test_utf8_bom_is_skipped():
    assert files.decode_utf8(b'\xef\xbb\xbf{"a": 1}', "f") == '{"a": 1}'


@pytest.mark.parametrize(
    ("text", "toml"),
    [
        ("[" * 40 + "]" * 40, False),
        ('{"a":' * 40 + "1" + "}" * 40, False),
        ("a = " + "[" * 40 + "]" * 40, True),
        ("a" + ".b" * 40 + " = 1", True),  # dotted keys nest without brackets
    ],
)
def test_nesting_over_the_limit(text, toml):
    parse = files.loads_toml if toml else files.loads_json
    with pytest.raises(InputError, match=f"at most {files.MAX_DEPTH} levels"):
        parse(text, "f")


def test_nesting_at_the_limit_and_brackets_in_strings():
    depth = files.MAX_DEPTH
    assert files.loads_json("[" * depth + "]" * depth, "f") is not None
    assert files.loads_json(json.dumps({"s": "[" * 1000}), "f") == {"s": "[" * 1000}
    assert files.loads_toml('s = "' + "[" * 1000 + '"  # [[[[\n', "f") == {"s": "[" * 1000}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"a": {"b": [1, NaN]}}', "a.b[1]"),
        ('{"a": Infinity}', "a"),
        ('{"a": [-Infinity]}', "a[0]"),
        ('{"x": 1e999}', "x"),
    ],
)
def test_non_finite_json_numbers_name_their_field(text, field):
    with pytest.raises(InputError) as err:
        files.loads_json(text, "f.json")
    assert err.value.field == field and "finite" in err.value.message


def test_non_finite_toml_numbers_name_their_field():
    with pytest.raises(InputError) as err:
        files.loads_toml("[slo]\nthroughput_tokens_per_s = nan\n", "p.toml")
    assert err.value.field == "slo.throughput_tokens_per_s"


def test_jsonl_lines_are_capped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n' + "x" * 100 + "\n")
    with pytest.raises(InputError) as err:
        list(files.iter_lines(path, max_line=50))
    assert err.value.source.endswith(":2") and "longer than 50 bytes" in err.value.message


# ---- one validation for code and files ----------------------------------------------------------


def _model(**changes):
    values = dict(name="m", moe_layers=4, experts_per_layer=6, top_k=1, hidden_size=64,
                  expert_ffn_size=256)
    values.update(changes)
    return ModelSpec(**values)


def test_problem_validates_on_construction():
    """Issue 16: a 3x5 popularity on a 4x6 model was accepted in code (greedy then crashed)."""
    with pytest.raises(InputError) as err:
        DeploymentProblem(name="m", model=_model(), workload=Workload(100),
                          slo=ServiceLevel(10.0), popularity=Popularity(np.ones((2, 3, 5))))
    assert err.value.source == "DeploymentProblem" and err.value.field == "popularity"
    assert "3 layers x 5 experts" in err.value.message
    spec = tiny_spec(popularity={"source": "loads", "loads": np.ones((2, 3, 5)).tolist()})
    with pytest.raises(InputError) as from_file:
        problem_from_dict(spec, "p.json")
    assert (from_file.value.source, from_file.value.field) == ("p.json", "popularity")
    assert from_file.value.message == err.value.message.replace("4 x 6", "2 x 2")


def test_replace_and_with_popularity_validate(tiny):
    with pytest.raises(InputError, match="max_replicas"):
        dataclasses.replace(tiny, max_replicas=10**9)
    with pytest.raises(InputError, match="3 layers"):
        tiny.with_popularity(Popularity(np.ones((1, 3, 2))))
    with pytest.raises(InputError, match="flops_per_second_per_vcpu"):
        dataclasses.replace(tiny, constants=dataclasses.replace(tiny.constants,
                                                                flops_per_second_per_vcpu=0.0))


FIELDS = ("moe_layers", "experts_per_layer", "top_k", "hidden_size", "expert_ffn_size",
          "sequence_length", "embedding_params", "ffn_matrices")
VALUES = st.one_of(st.integers(-3, 5000), st.sampled_from([10**12, 10**30, 1.5, True, "4", None]))


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_code_and_files_accept_the_same_models(field, value):
    """One code path: ModelSpec(...) and a problem file agree on every value."""
    try:
        ModelSpec(**{"name": "tiny", **tiny_spec()["model"], field: value})
        in_code = None
    except FieldError as exc:
        in_code = exc.message
    spec = tiny_spec()
    spec["model"][field] = value
    spec["popularity"] = {"source": "zipf", "batches": 1}
    try:
        problem_from_dict(spec, "p.json")
        from_file = None
    except InputError as exc:
        from_file = exc
    if in_code is not None:
        assert from_file is not None and from_file.field == f"model.{field}"
        assert from_file.message == in_code
    elif from_file is not None:  # the model is fine; the rest of the tiny problem is not
        assert not from_file.field.startswith("model."), from_file


def test_sizes_are_refused_before_allocation():
    """These would allocate terabytes; each is refused in microseconds."""
    with pytest.raises(FieldError, match="cells"):
        Popularity.zipf(1024, 4096, 10, 1, 1.0, 1, 0)
    with pytest.raises(FieldError, match="batches"):
        Popularity.zipf(10, 10, 10, 1, 1.0, 10**7, 0)
    with pytest.raises(FieldError, match="seed"):
        Popularity.zipf(2, 2, 10, 1, 1.0, 1, -5)
    with pytest.raises(FieldError, match="exponent"):
        Popularity.zipf(2, 2, 10, 1, float("nan"), 1, 0)
    with pytest.raises(FieldError, match="tokens_per_batch"):
        Popularity.from_layer_counts(np.ones((2, 2)), 10**30, 1, 1, 0)


def test_trace_header_sizes_are_refused_before_allocation(tmp_path):
    from moeopt.popularity.traces import read_trace

    header = {"format": "moeopt-routing-trace", "schema_version": 1, "experts": 4096,
              "top_k": 1, "moe_layers": 1024, "gate": "full"}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(header) + "\n" + "{}\n" * 10)
    with pytest.raises(InputError, match="moe_layers x experts"):
        read_trace(path)
    header.update(moe_layers=16)
    path.write_text(json.dumps(header) + "\n" + "{}\n" * 5000)
    with pytest.raises(InputError, match=f"at most {limits.MAX_TRACE_CELLS:,}"):
        read_trace(path)


def test_layer_counts_refuse_zero_layers_everywhere(tmp_path):
    """All-zero counts passed `popularity import` but not `--trace`: now both refuse them."""
    from moeopt.popularity.importers import load_any

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"counts": [[0, 0], [1, 2]]}))
    with pytest.raises(InputError, match="routes no tokens"):
        load_any(path)


# ---- the package layout --------------------------------------------------------------------------


def test_builtin_problems_do_not_import_the_loading_module():
    """The problem <-> builtin_problems circle is broken: built-ins sit below the loader."""
    code = ("import sys, moeopt.builtin_problems; "
            "print('moeopt.problem' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stdout.strip() == "False"


def test_problem_format_doc_examples_run():
    text = (DOCS / "problem-format.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/problem-format.md", "exec"), {})
