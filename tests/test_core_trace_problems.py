"""Problems from measured popularity: the Switch-128 counts, and a trace profiled on our own
converted MoE, each plannable by every registered solver."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moeopt.builtin_problems import builtin_problem
from moeopt.cli import cli
from moeopt.problem import load_problem
from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget, SolutionStatus, SolverStatus

# One of each family (the ablations and variants share the code and pass the conformance kit).
SOLVERS = ("ilp", "greedy", "bayes-egreedy", "nevergrad", "random", "lambdaml", "eplb",
           "cpu-cluster", "oracle")
SEARCHERS = {"ilp", "greedy", "bayes-egreedy", "nevergrad", "oracle"}


@pytest.fixture(scope="module")
def profiled_trace(tmp_path_factory):
    """A real routing trace of the converted all-MiniLM-L6-v2 MoE (4 experts, top-1)."""
    path = tmp_path_factory.mktemp("trace") / "minilm4.jsonl"
    result = CliRunner().invoke(
        cli, ["popularity", "profile", "--experts", "4", "--tokens", "3000",
              "--calibration-tokens", "2000", "-o", str(path), "--json"],
    )
    assert result.exit_code == 0, result.output
    return path


def _plan_with_every_solver(problem):
    available = {e.name for e in list_solvers() if e.available}
    for name in SOLVERS:
        assert name in available, name
        result = make_solver(name, seed=0).solve(problem, Budget(evaluations=3000, seconds=8))
        assert result.solver_status != SolverStatus.ERROR, (name, result.message)
        assert result.evaluation is not None, name
        if name in SEARCHERS:
            assert result.solution_status != SolutionStatus.NONE, (name, result.message)


def test_profiled_trace_builds_a_problem_every_solver_plans_for(profiled_trace):
    header = json.loads(profiled_trace.read_text().splitlines()[0])
    assert header["experts"] == 4 and header["moe_layers"] == 6
    problem = load_problem("bert-moe-4", trace=profiled_trace)  # a MiniLM trace: MiniLM shape
    assert (problem.layers, problem.experts, problem.model.hidden_size) == (6, 4, 384)
    assert problem.popularity.source.startswith("trace:minilm4.jsonl")
    assert (problem.popularity.loads.sum(axis=2) == 10_240).all()
    _plan_with_every_solver(problem)


def test_cli_takes_a_trace_wherever_a_problem_is_named(profiled_trace, tmp_path):
    plan = tmp_path / "plan.json"
    r = CliRunner().invoke(cli, ["solve", "--trace", str(profiled_trace), "--solver", "greedy",
                                 "-o", str(plan), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["evaluate", str(plan), "--trace", str(profiled_trace), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["feasible"]


def test_switch_128_counts_every_solver_plans_for():
    _plan_with_every_solver(builtin_problem("switch-base-128"))


def test_minilm_builtin_is_measured():
    problem = builtin_problem("minilm-moe-8")
    assert problem.popularity.batches == 4
    # Measured routing is far from uniform: some layer sends most tokens to one expert.
    assert (problem.popularity.loads.max(axis=2) > 0.5 * 10_240).any()


def test_trace_of_another_shape_is_a_clear_error(tmp_path):
    from moeopt.errors import InputError

    bad = tmp_path / "r.jsonl"
    bad.write_text("\n".join(json.dumps({"layer": 0, "experts": [e % 3], "token": i})
                             for i, e in enumerate(range(50))))
    with pytest.raises(InputError):
        load_problem("bert-moe-4", trace=bad)
