"""Real-world per-token traces are ragged: the last tokens of a sequence miss some layers and
token indices restart per sequence. They import with ``--incomplete drop --field sequence=...``
and build a problem that greedy and ilp both plan for, wherever ``--trace`` is accepted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moeopt.cli import cli
from moeopt.errors import InputError
from moeopt.popularity.importers import read_routing_jsonl

LAYERS, EXPERTS, SEQUENCES, TOKENS, CUT = 12, 4, 6, 250, 5
FIELDS = ("layer=layer_id", "experts=topk_ids", "sequence=req", "token_index=i", "token_id=tok")


def mapping(*leave_out: str) -> list[str]:
    """``--field NAME=FIELD`` for each field of the trace, but those named in ``leave_out``."""
    return [a for f in FIELDS if f.split("=")[0] not in leave_out for a in ("--field", f)]


MAPPING = mapping()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    """Sequences of TOKENS tokens, indices from 0 in each; the last CUT tokens of every
    sequence have records for the first 8 layers only (the export stopped early)."""
    rng = np.random.default_rng(0)
    lines = []
    for s in range(SEQUENCES):
        for layer in range(LAYERS):
            for i in range(TOKENS):
                if i >= TOKENS - CUT and layer >= 8:
                    continue
                expert = int(rng.choice(EXPERTS, p=[0.55, 0.25, 0.15, 0.05]))
                lines.append({"layer_id": 2 * layer + 1, "topk_ids": [expert], "req": f"req-{s}",
                              "i": i, "tok": 1000 + (i * 7 + s) % 97, "gate": [0.6]})
    path = tmp_path_factory.mktemp("ragged") / "ragged.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_ragged_trace_imports_with_drop_and_sequence(ragged):
    code, out, err = run("popularity", "import", str(ragged), *MAPPING, "--incomplete", "drop",
                         "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["tokens"] == SEQUENCES * (TOKENS - CUT)
    assert summary["dropped_tokens"] == SEQUENCES * CUT
    assert summary["sequences"] == SEQUENCES
    assert (summary["layers"], summary["experts"], summary["top_k"]) == (LAYERS, EXPERTS, 1)


def test_ragged_trace_errors_say_how_through(ragged):
    code, _, err = run("popularity", "import", str(ragged), *MAPPING)
    assert code == 2 and "has no record for layer 17" in err and "--incomplete drop" in err
    code, _, err = run("popularity", "import", str(ragged), *mapping("sequence"), "--incomplete",
                       "drop")
    assert code == 2 and "a second record for token 0" in err and "--field sequence=" in err


def test_sequences_keep_tokens_apart(ragged):
    trace = read_routing_jsonl(
        ragged, {"layer": "layer_id", "experts": "topk_ids", "sequence": "req", "token_index": "i",
                 "token_id": "tok"}, incomplete="drop")
    assert trace.tokens == SEQUENCES * (TOKENS - CUT)
    assert sorted(set(trace.sequence_ids.tolist())) == list(range(SEQUENCES))
    assert trace.extra["layer_ids"] == [2 * layer + 1 for layer in range(LAYERS)]
    assert (trace.token_ids >= 1000).all()
    with pytest.raises(InputError, match="no record for layer"):
        read_routing_jsonl(ragged, {"layer": "layer_id", "experts": "topk_ids", "sequence": "req",
                                    "token_index": "i"})


@pytest.mark.parametrize("solver", ["greedy", "ilp"])
def test_ragged_trace_builds_a_problem_both_solvers_plan_for(ragged, tmp_path, solver):
    mapping = tmp_path / "fields.toml"
    mapping.write_text('layer = "layer_id"\nexperts = "topk_ids"\nsequence = "req"\n'
                       'token_index = "i"\n')
    plan = tmp_path / "plan.json"
    trace = ["--trace", str(ragged), "--fields", str(mapping), "--incomplete", "drop"]
    code, out, err = run("solve", "--problem", "bert-moe-4", *trace, "--solver", solver,
                         "--budget-seconds", "60", "-o", str(plan), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["feasible"], result["message"]
    assert "resampled" in err and f"{SEQUENCES * CUT:,} tokens" in err and "dropped" in err
    # the plan names a problem measured from the trace: evaluating it needs that trace again
    code, _, err = run("evaluate", str(plan))
    assert code == 2 and "--trace FILE" in err and "ragged.jsonl" in err
    code, _, err = run("evaluate", str(plan), "--problem", "bert-moe-4")
    assert code == 2 and "--trace FILE" in err
    code, out, err = run("evaluate", str(plan), *trace, "--json")
    assert code == 0, err
    assert json.loads(out)["cost_usd"] == pytest.approx(result["cost_usd"])


def test_every_command_that_names_a_problem_takes_the_mapping(ragged):
    trace = ["--trace", str(ragged), *MAPPING, "--incomplete", "drop"]
    code, out, err = run("problems", "show", "bert-moe-4", *trace, "--json")
    assert code == 0, err
    popularity = json.loads(out)["popularity"]
    assert any("resampled" in n for n in popularity["notes"])
    assert "resampled" in popularity["source"]
    code, _, err = run("baselines", "--problem", "bert-moe-4", *trace, "--json")
    assert code == 0 and "resampled" in err
    code, _, err = run("compare", "--problem", "bert-moe-4", *trace, "--solvers", "lambdaml",
                       "--json")
    assert code == 0 and "resampled" in err, err
    for args in (("baselines", "--problem", "bert-moe-4"),
                 ("compare", "--problem", "bert-moe-4", "--solvers", "lambdaml"),
                 ("solve", "--problem", "bert-moe-4", "--solver", "greedy")):
        code, out, err = run(*args, *trace, "--json")
        assert code == 0, err
        body = json.loads(out)
        for row in body if isinstance(body, list) else [body]:  # the note is in the JSON too
            assert any("resampled" in n for n in row["popularity_notes"]), args
    code, out, err = run("breakeven", "--problem", "bert-moe-4", *trace, "--solver", "greedy",
                         "--json")
    assert code == 0 and "resampled" in err and "dropped" in err, err
    code, _, err = run("problems", "show", "bert-moe-4", "--field", "layer=layer_id")
    assert code == 2 and "--trace" in err


def test_bayes_needs_token_ids(ragged, tmp_path):
    no_ids = mapping("token_id")
    code, _, err = run("popularity", "evaluate", "--trace", str(ragged), *no_ids,
                       "--incomplete", "drop", "--predictor", "bayes", "--batch-size", "200")
    assert code == 2 and err.count("error:") == 1 and "token id" in err
    code, out, err = run("popularity", "evaluate", "--trace", str(ragged), *no_ids,
                         "--incomplete", "drop", "--predictor", "frequency", "--batch-size", "200",
                         "--json")
    assert code == 0, err
    code, out, err = run("popularity", "evaluate", "--trace", str(ragged), *MAPPING,
                         "--incomplete", "drop", "--predictor", "bayes", "--batch-size", "200",
                         "--json")
    assert code == 0, err


def test_dropped_tokens_are_reported_where_the_trace_is_scored(ragged):
    """popularity evaluate and predict build no problem, yet they use the trace with tokens
    dropped: they say how many, as the commands that build a problem do."""
    for command in (["evaluate", "--folds", "2"], ["predict"]):
        code, out, err = run("popularity", *command, "--trace", str(ragged), *MAPPING,
                             "--incomplete", "drop", "--predictor", "frequency",
                             "--batch-size", "200", "--json")
        assert code == 0, err
        assert "tokens missed a layer and were dropped" in err, (command, err)
        json.loads(out)  # the note stays on stderr: stdout is strict JSON


def test_evaluate_says_when_held_out_batches_are_smaller_than_the_batch_size(ragged):
    code, out, err = run("popularity", "evaluate", "--trace", str(ragged), *MAPPING,
                         "--incomplete", "drop", "--predictor", "frequency", "--folds", "2",
                         "--batch-size", "1000000", "--json")
    assert code == 0, err
    assert "not --batch-size 1,000,000" in err, err
    json.loads(out)


def test_bo_popularity_reads_the_trace_as_the_problem_did(ragged, tmp_path):
    """bo-popularity re-reads the problem's trace: with the problem's field mapping and its
    rule for incomplete tokens (it once re-read it as a moeopt trace and refused it)."""
    from moeopt.builtin_problems import builtin_spec

    spec = builtin_spec("bert-moe-4")
    spec["workload"]["tokens_per_batch"] = 256  # the ragged trace holds ~1,470 tokens
    spec["slo"] = {"time_limit_s": 1000.0}
    problem_file = tmp_path / "small.json"
    problem_file.write_text(json.dumps(spec))
    trace = ["--trace", str(ragged), *MAPPING, "--incomplete", "drop"]
    code, out, err = run("solve", "--problem", str(problem_file), *trace, "--solver", "bo-popularity",
                         "-O", "max_iterations=2", "--budget-seconds", "60", "--json")
    assert code == 0, err
    assert json.loads(out)["feasible"]
