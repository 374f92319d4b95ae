"""Fuzz every command that reads a user file: exit 0, or exit 2 with exactly one ``error:``
line; never a traceback, never a hang.

Three parts: the kept corpus (``tests/fuzz_corpus``, one file per failure class the issue-14
fuzzer found, each with the exit status and field it must give), files that are no files
(``/dev/zero``, a FIFO, a directory: real subprocesses with a timeout), and hypothesis
mutations of valid problems, plans, counts and traces run in-process through click's runner.
``benchmarks/fuzz_inputs.py`` is the larger stand-alone fuzzer (not run in CI).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeopt.cli import cli

CORPUS = Path(__file__).parent / "fuzz_corpus"
CASES = json.loads((CORPUS / "cases.json").read_text())
#: Well above any normal run here (a few seconds at most on a loaded 2-core machine).
SUBPROCESS_TIMEOUT_S = 60


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stdout, result.stderr


def assert_clean(code: int, out: str, err: str, args: list[str]) -> None:
    """The property: exit 0, or exit 2 with exactly one ``error:`` line; no traceback."""
    assert "Traceback" not in out + err, (args, err)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, (args, err)


def _args(command: list[str], path: Path) -> list[str]:
    return [a.replace("{file}", str(path)).replace("{dir}", str(CORPUS)) for a in command]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus(case):
    args = _args(case["command"], CORPUS / case["file"])
    code, out, err = invoke(args)
    assert_clean(code, out, err, args)
    assert code == case["exit"], (args, err)
    if code == 2:
        assert case["error"] in err, (case["error"], err)


@pytest.mark.parametrize("case", [c for c in CASES if c["file"] in (
    "deep.json", "experts-1e30.json", "max-replicas-1e9.json", "counts-nan.json",
    "trace-experts-1e12.jsonl", "plan-layer-nan.json")], ids=lambda c: c["file"])
def test_corpus_in_a_real_process(case):
    """A handful of cases as a user runs them: the console entry point, a fresh interpreter."""
    args = _args(case["command"], CORPUS / case["file"])
    run = subprocess.run([sys.executable, "-m", "moeopt.cli", *args], capture_output=True,
                         text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert_clean(run.returncode, run.stdout, run.stderr, args)
    assert run.returncode == case["exit"] and case["error"] in run.stderr


@pytest.fixture
def special_files(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    return {"/dev/zero": "/dev/zero", "fifo": str(fifo), "directory": str(folder)}


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_special_files_are_refused_at_once(special_files, tmp_path):
    """A device, FIFO or directory is refused before any read (no hang, no 16 GB read)."""
    problem = tmp_path / "p.json"
    problem.write_text(json.dumps({**json.loads((CORPUS / "tiny.json").read_text()),
                                   "popularity": {"source": "counts", "file": "/dev/zero"}}))
    for kind, path in special_files.items():
        for args in (["popularity", "import", path], ["problems", "show", path],
                     ["evaluate", path], ["problems", "show", "bert-moe-4", "--trace", path],
                     ["problems", "show", "bert-moe-4", "--profile", path]):
            run = subprocess.run([sys.executable, "-m", "moeopt.cli", *args], capture_output=True,
                                 text=True, timeout=SUBPROCESS_TIMEOUT_S)
            assert_clean(run.returncode, run.stdout, run.stderr, args)
            assert run.returncode == 2 and "regular file" in run.stderr, (kind, run.stderr)
    code, out, err = invoke(["problems", "show", str(problem)])
    assert code == 2 and "/dev/zero: file" in err and "regular file" in err


# ---- plans whose mistakes show only against their problem -------------------------------------


def _tiny_plan(tmp_path, mutate=None) -> tuple[Path, dict[str, Any]]:
    from moeopt.plan import DeploymentPlan
    from moeopt.problem import load_problem

    problem = load_problem(CORPUS / "tiny.json")
    plan = DeploymentPlan.uniform(problem, 1769, 1, "storage").to_dict()
    plan["layers"][1]["functions"][0]["memory_mb"] = 3538
    plan["layers"][1]["functions"][1]["replicas"] = 2
    if mutate:
        mutate(plan)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path, plan


def test_swapped_layers_are_priced_in_layer_order(tmp_path):
    args = ["evaluate", "{plan}", "--problem", str(CORPUS / "tiny.json"), "--json"]
    straight, _ = _tiny_plan(tmp_path)
    code, out, err = invoke([a.replace("{plan}", str(straight)) for a in args])
    assert code == 0, err
    swapped_path = tmp_path / "swapped.json"
    data = json.loads(straight.read_text())
    data["layers"].reverse()
    swapped_path.write_text(json.dumps(data))
    code2, out2, err2 = invoke([a.replace("{plan}", str(swapped_path)) for a in args])
    assert code2 == 0, err2
    one, two = json.loads(out), json.loads(out2)
    assert one["cost_usd"] == two["cost_usd"] and one["layer_latency_s"] == two["layer_latency_s"]
    # the file's order would price layer 1's 3,538 MB function in layer 0, where loads differ
    assert one["layer_latency_s"][0] != one["layer_latency_s"][1]


def test_memory_off_the_menu_is_an_error(tmp_path):
    path, _ = _tiny_plan(tmp_path, lambda p: p["layers"][0]["functions"][0].update(memory_mb=2000))
    code, out, err = invoke(["evaluate", str(path), "--problem", str(CORPUS / "tiny.json")])
    assert_clean(code, out, err, [])
    assert code == 2 and "layers[0].functions[0].memory_mb" in err and "1769, 3538" in err


# ---- hypothesis: mutations of valid files -----------------------------------------------------

NASTY = st.sampled_from([
    None, True, False, 0, -1, -5, 1, 2, 3, 10**6, 10**9, 10**12, 10**30, -(10**30), 0.0, 0.5, -0.5,
    1.5, 1e30, -1e30, 1e-300, math.nan, math.inf, -math.inf, "", "x", "12", "paper", "full",
    [], [0], [[]], [[[]]], {}, {"a": 1}, [1.5, 2], ["storage"], [True],
])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return doc


@st.composite
def mutated(draw, doc: Any) -> Any:
    """``doc`` with one to three values replaced by nasty ones (or keys removed)."""
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        doc = _set(doc, path, draw(NASTY), draw(st.booleans()))
    return doc


def _dump(doc: Any, as_toml: bool) -> bytes:
    if as_toml and isinstance(doc, dict):
        import tomli_w

        try:
            return tomli_w.dumps(doc).encode()
        except (TypeError, ValueError):
            pass
    return json.dumps(doc).encode()  # NaN/Infinity literals, as other tools write them


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """Byte-level damage: truncation, a flipped byte, another encoding, or none."""
    how = draw(st.sampled_from(["none", "none", "truncate", "flip", "utf16", "latin1", "nul"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if how == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "latin1":
        return data.replace(b'"tiny"', '"tinyé"'.encode("latin-1"))
    if how == "nul":
        return data + b"\x00"
    return data


TINY = json.loads((CORPUS / "tiny.json").read_text())
ZIPF = {**TINY, "popularity": {"source": "zipf", "exponent": 1.0, "batches": 2, "seed": 0}}
#: 40 examples per target keep this file to ~20 s in CI; MOEOPT_FUZZ_EXAMPLES=2000 for a deep run.
EXAMPLES = int(os.environ.get("MOEOPT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.data(), as_toml=st.booleans())
def test_mutated_problem_files(tmp_path, data, as_toml):
    doc = data.draw(mutated(data.draw(st.sampled_from([TINY, ZIPF]))))
    path = tmp_path / ("p.toml" if as_toml else "p.json")
    path.write_bytes(data.draw(damaged(_dump(doc, as_toml))))
    args = ["problems", "show", str(path), "--json"]
    assert_clean(*invoke(args), args)


@FUZZ
@given(data=st.data())
def test_mutated_plans(tmp_path, data):
    _, plan = _tiny_plan(tmp_path)
    path = tmp_path / "mutated-plan.json"
    path.write_bytes(data.draw(damaged(_dump(data.draw(mutated(plan)), False))))
    args = ["evaluate", str(path), "--problem", str(CORPUS / "tiny.json"), "--json"]
    assert_clean(*invoke(args), args)


COUNTS = {"counts": [[5, 1, 0, 2], [3, 3, 3, 3]]}
USAGE = {"expert_usage_by_layer": {"0": {"0": 5, "3": 1}, "1": {"2": 6}}, "num_experts": 4}


@FUZZ
@given(data=st.data())
def test_mutated_counts(tmp_path, data):
    doc = data.draw(mutated(data.draw(st.sampled_from([COUNTS, USAGE]))))
    path = tmp_path / "counts.json"
    path.write_bytes(data.draw(damaged(_dump(doc, False))))
    for args in (["popularity", "import", str(path), "--json"],
                 ["problems", "show", str(CORPUS / "tiny-4x2.json"), "--trace", str(path)]):
        assert_clean(*invoke(args), args)


HEADER = {"format": "moeopt-routing-trace", "schema_version": 1, "model": "m", "experts": 4,
          "top_k": 1, "moe_layers": 2, "tokens": 3, "gate": "topk"}
RECORDS = [{"seq": 0, "pos": i, "token": 7 + i, "experts": [[i % 4], [(i + 1) % 4]],
            "gate": [[0.5], [0.25]], "attn": [7, 8]} for i in range(3)]
ROUTING = [{"layer": layer, "experts": [(t + layer) % 4], "gate": [0.5], "token_index": t,
            "token_id": 100 + t, "sequence": "a" if t < 2 else "b"}
           for t in range(3) for layer in (0, 1)]


@FUZZ
@given(data=st.data(), routing=st.booleans())
def test_mutated_traces(tmp_path, data, routing):
    lines = copy.deepcopy(ROUTING if routing else [HEADER, *RECORDS])
    index = data.draw(st.integers(0, len(lines) - 1))
    lines[index] = data.draw(mutated(lines[index]))
    text = "".join(json.dumps(line) + "\n" for line in lines).encode()
    path = tmp_path / "trace.jsonl"
    path.write_bytes(data.draw(damaged(text)))
    mapping = ["--field", "sequence=sequence", "--incomplete", "drop"] if routing else []
    for args in (["popularity", "import", str(path), "--json"],
                 ["problems", "show", str(CORPUS / "tiny-4x2.json"), "--trace", str(path),
                  *mapping]):
        assert_clean(*invoke(args), args)
