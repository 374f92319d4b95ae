from __future__ import annotations

import math

import numpy as np
import pytest

from moeopt.popularity.predictors import BayesianPredictor, FrequencyPredictor
from moeopt.popularity.traces import batch_loads
from moeopt.problem import problem_from_dict
from solvers.bo_popularity_learn import boosts, learn, propose
from solvers.bo_popularity_pairs import KeyValuePairs, select_pairs, with_values
from solvers.bo_popularity_trial import (
    Feedback,
    LearningConfig,
    deploy,
    feedback,
    oracle,
    replicate,
)
from tests.popularity.conftest import random_trace

BS = 512  # tokens per batch of the tiny problem
LAYERS, EXPERTS = 2, 4


def tiny_problem(loads: np.ndarray):
    """A 2-layer x 4-expert problem with 512-token batches (a generous time limit)."""
    return problem_from_dict(
        {
            "name": "tiny-learning",
            "model": {
                "name": "tiny",
                "moe_layers": LAYERS,
                "experts_per_layer": EXPERTS,
                "top_k": 1,
                "hidden_size": 64,
                "expert_ffn_size": 128,
                "dtype": "float32",
                "sequence_length": 64,
            },
            "workload": {"tokens_per_batch": BS},
            "slo": {"time_limit_s": 30.0},
            "popularity": {"source": "loads", "loads": loads.tolist()},
            "deployment": {"memory_menu": "paper", "max_replicas": 8, "cost_scope": "paper"},
        },
        "tiny-learning",
    )


@pytest.fixture(scope="module")
def setup():
    trace = random_trace(1, 6 * BS, LAYERS, EXPERTS, 1)
    profile, held = trace.select(slice(0, 4 * BS)), trace.select(slice(4 * BS, 6 * BS))
    real = batch_loads(held.experts, EXPERTS, BS)
    predictor = BayesianPredictor().fit(profile)
    return predictor, tiny_problem(real), held.token_ids, real


def test_config_checks_the_paper_order():
    with pytest.raises(ValueError, match="rho3 < rho2"):
        LearningConfig(rho1=0.2)
    with pytest.raises(ValueError, match="acquisition"):
        LearningConfig(acquisition="tpe")


def test_select_pairs_splits_profiled_and_new_keys(setup):
    predictor, _, tokens, _ = setup
    pairs = select_pairs(predictor, tokens, 40, 0.5)
    assert pairs.q == 40 and pairs.explore_from == 20
    counts = predictor.key_counts
    assert np.all(counts[pairs.key[:20], pairs.expert[:20]] > 0)  # profiled mappings
    assert np.all(counts[pairs.key[20:], pairs.expert[20:]] == 0)  # brand-new mappings
    assert np.all(np.isin(pairs.token, tokens))
    assert len({(k, e) for k, e in zip(pairs.key, pairs.expert, strict=True)}) == 40
    assert np.array_equal(pairs.initial, counts[pairs.key, pairs.expert])


def test_with_values_changes_a_copy_and_the_prediction(setup):
    predictor, _, tokens, _ = setup
    pairs = select_pairs(predictor, tokens, 40, 0.5)
    before = predictor.predict_loads(tokens, BS)
    same = with_values(predictor, pairs, pairs.initial)
    assert np.array_equal(same.predict_loads(tokens, BS), before)
    big = np.where(np.arange(pairs.q) >= pairs.explore_from, 1e6, pairs.initial)
    moved = with_values(predictor, pairs, big)  # new keys dominate their tokens' posterior
    assert not np.array_equal(moved.predict_loads(tokens, BS), before)
    assert np.array_equal(predictor.predict_loads(tokens, BS), before)  # original untouched
    with pytest.raises(TypeError):
        select_pairs(FrequencyPredictor().fit(random_trace(0, 100, 2, 4, 1)), tokens, 4, 0.5)


def test_propose_moves_only_allowed_pairs_within_caps():
    rng = np.random.default_rng(0)
    pairs = KeyValuePairs(
        key=np.arange(6), expert=np.zeros(6, int), layer=np.zeros(6, int), token=np.arange(6),
        attention=np.arange(6), cap=np.full(6, 10.0), initial=np.full(6, 3.0), explore_from=3,
    )
    allowed = np.array([True, False, True, False, True, True])
    cand = propose(rng, pairs.initial, pairs, np.full(6, 0.3), allowed, 200)
    assert np.all(cand[:, ~allowed] == 3.0)
    assert np.all((cand >= 0) & (cand <= 10)) and np.all(cand == np.rint(cand))
    assert np.all((cand != 3.0).any(axis=1))  # every proposal moves something


def test_feedback_branches_and_replicate(setup):
    predictor, problem, tokens, real = setup
    trial = deploy(predictor, problem, tokens, real, LearningConfig(replicate=False))
    assert trial.planned is not None
    # predicted loads of zero everywhere: every used expert is mispredicted
    fb = feedback(problem, trial.planned, np.zeros_like(real), real * 5000, alpha=0.0)
    assert fb.mispredicted[real > 0].all()
    assert not (fb.memory & fb.payload).any()  # exactly one branch
    assert fb.memory.any()  # 5000x the load cannot fit the memory planned for the real load
    assert (fb.n_new[fb.memory.any(axis=0)] >= 2).all()
    plan2 = replicate(problem, trial.planned, fb.n_new)
    for layer, old in zip(plan2.layers, trial.planned.layers, strict=True):
        for f, g in zip(layer.functions, old.functions, strict=True):
            assert g.replicas <= f.replicas <= problem.max_replicas


def test_boosts_follow_the_branch_order():
    pairs = KeyValuePairs(
        key=np.arange(4), expert=np.zeros(4, int), layer=np.array([0, 1, 0, 1]),
        token=np.array([5, 5, 9, 5]), attention=np.zeros(4, int), cap=np.ones(4),
        initial=np.ones(4), explore_from=3,
    )
    shape = (1, 2, 2)
    mis = np.ones(shape, bool)
    memory = np.zeros(shape, bool)
    memory[0, 0, 1] = True  # layer 0 broke memory
    fb = Feedback(mis, memory, np.zeros(shape, bool), np.ones((2, 2), int))
    cfg = LearningConfig()
    rho_p, in_l = boosts(pairs, fb, [np.array([5])], cfg)
    # pair 0: token 5 in the batch, layer 0 broke memory -> rho1; pair 1: layer 1 -> rho3;
    # pair 2: token 9 not in a mispredicted batch -> no boost, not in L; pair 3: new key.
    assert rho_p.tolist() == [cfg.rho1, cfg.rho3, 0.0, 0.0]
    assert in_l.tolist() == [True, True, False, True]


def test_learn_records_and_never_worse_than_no_bo(setup):
    predictor, problem, tokens, real = setup
    cfg = LearningConfig(q=40, max_iterations=5, candidates=32, lambda_iters=3, seed=3)
    result = learn(predictor, problem, tokens, real, cfg)
    no_bo = deploy(predictor, problem, tokens, real, cfg)
    assert result.records[0].score == pytest.approx(no_bo.score)  # trial 1 is the raw table
    assert result.trial.score <= no_bo.score or (result.trial.feasible and not no_bo.feasible)
    assert [r.tau for r in result.records] == list(range(1, len(result.records) + 1))
    assert all(0 < r.eps_mean <= r.eps_max <= 1 for r in result.records)
    best = [r.best_score for r in result.records]
    if all(r.feasible for r in result.records):
        assert best == sorted(best, reverse=True)
    assert result.trial.feasible or not any(r.feasible for r in result.records)
    assert result.stopped in ("converged", "max_iterations")
    assert result.plan is not None and math.isfinite(result.trial.cost_usd)
    # the learned predictor reproduces its trial
    again = deploy(result.predictor, problem, tokens, real, cfg)
    assert again.score == pytest.approx(result.trial.score)
    # seeded: the same run twice gives the same trials
    twice = learn(predictor, problem, tokens, real, cfg)
    assert [r.score for r in twice.records] == [r.score for r in result.records]


@pytest.mark.parametrize("acquisition", ["single-eps", "random"])
def test_ablations_run(setup, acquisition):
    predictor, problem, tokens, real = setup
    cfg = LearningConfig(q=30, max_iterations=3, candidates=16, acquisition=acquisition)
    result = learn(predictor, problem, tokens, real, cfg)
    assert len(result.records) == 3
    if acquisition == "single-eps":
        assert all(np.isclose(r.eps_mean, r.eps_max) for r in result.records)


def test_oracle_plans_on_real_loads(setup):
    _, problem, _, real = setup
    trial = oracle(problem, real)
    assert trial.feasible and trial.score == pytest.approx(trial.cost_usd)


def test_solver_wrapper_learns_from_a_trace_file(tmp_path, setup):
    from moeopt.popularity.traces import write_trace
    from moeopt.solver import Budget
    from solvers.bo_popularity import BoPopularitySolver

    _, problem, _, _ = setup
    path = tmp_path / "t.jsonl"
    write_trace(random_trace(2, 4 * BS, LAYERS, EXPERTS, 1), path)
    solver = BoPopularitySolver(seed=0, trace=str(path), q=30, max_iterations=3)
    result = solver.solve(problem, Budget(evaluations=5, seconds=60))
    assert result.plan is not None and result.evaluations == 1
    assert "Alg. 2: 3 trials" in result.message
    from moeopt.errors import InputError

    with pytest.raises(InputError, match="trace"):
        BoPopularitySolver().solve(problem)


def test_time_margin_plans_tighter(setup):
    predictor, problem, tokens, real = setup
    with pytest.raises(ValueError, match="time_margin"):
        LearningConfig(time_margin=1.0)
    loose = deploy(predictor, problem, tokens, real, LearningConfig())
    tight = deploy(predictor, problem, tokens, real, LearningConfig(time_margin=0.5))
    assert tight.evaluation is not None and loose.evaluation is not None
    assert tight.evaluation.latency_s <= problem.slo.time_limit_s  # billed on the true limit
    assert tight.evaluation.latency_s <= loose.evaluation.latency_s + 1e-9
