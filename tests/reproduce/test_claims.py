"""The claims are read from the figures a run computed: by hand on small figures."""

from __future__ import annotations

import pytest

from reproduce.claims import build_claims, lambdaml_saving, lambdaml_throughput_loss
from reproduce.config import PAPER_RATIO
from reproduce.regime import loss_for_saving

REQUIRED = {"cpu_cluster_saving", "lambdaml_saving", "lambdaml_throughput_loss",
            "gpt2_lambdaml_tokens_per_s", "predictor_vs_token_id", "bo_vs_no_bo",
            "ods_solve_seconds"}


def rows(*points: tuple[float, float | None, float | None]) -> list[dict]:
    return [{"ratio": r, "saving": s, "throughput_loss": loss, "saving_bound": None,
             "throughput_tokens_per_s": 100.0} for r, s, loss in points]


def test_loss_for_saving_interpolates_between_sweep_points():
    sweep = rows((1.0, 0.30, 0.0), (0.9, 0.40, 0.10), (0.8, 0.50, 0.20))
    # 43.41 % lies 34.1 % of the way from 40 % to 50 %: loss 0.10 + 0.341 * 0.10
    assert loss_for_saving(sweep, 0.4341) == pytest.approx(0.1341)
    assert loss_for_saving(sweep, 0.25) == 0.0  # already at the fastest target
    assert loss_for_saving(sweep, 0.60) is None  # never reached
    assert loss_for_saving(rows((1.0, None, None), (0.9, 0.5, 0.1)), 0.45) == pytest.approx(0.1)


def figures(savings: dict[str, float], losses: dict[str, float | None]) -> dict:
    per = {n: {"rows": rows((1.0, s - 0.05, 0.0), (PAPER_RATIO, s, 0.18)),
               "loss_for_paper_saving": losses[n],
               "lambdaml": {"cost_usd": 1.0, "compute_floor_usd": 0.25}} for n, s in savings.items()}
    return {"regime": {"profiles": {"default": per}}}


def test_lambdaml_claims_take_the_worst_model():
    f = figures({"a": 0.50, "b": 0.40}, {"a": 0.10, "b": None})
    v = lambdaml_saving(f, "default")
    assert v.ours == pytest.approx(0.40) and v.holds is False and "holds on a" in v.why
    assert "Compute is 25 % of LambdaML's bill on b" in v.why and "at most 75 % can be saved" in v.why
    loss = lambdaml_throughput_loss(f, "default")
    assert loss.ours == pytest.approx(0.18) and loss.holds is False and "b never" in loss.why
    assert loss.text == "> 18.0 %" and "lower bound" in loss.why and "a 10.0 %" in loss.why
    f = figures({"a": 0.50, "b": 0.45}, {"a": 0.10, "b": 0.15})
    assert lambdaml_saving(f, "default").holds is True
    loss = lambdaml_throughput_loss(f, "default")
    assert loss.ours == pytest.approx(0.15) and loss.holds is True


def test_every_claim_is_listed_and_missing_figures_are_not_run():
    claims = build_claims({}, ["default", "paper-lambda"])
    assert {c.id for c in claims} >= REQUIRED
    for c in claims:
        d = c.to_dict("default")
        assert {"id", "paper", "ours", "unit", "holds", "reason"} <= d.keys()
        if c.id != "cold_start":
            assert d["ours"] is None and d["reason"] == "not run"


def test_compute_floor_by_hand_and_below_every_plan():
    from moeopt.builtin_problems import builtin_problem
    from moeopt.evaluate import evaluate
    from moeopt.plan import DeploymentPlan
    from reproduce.regime import compute_floor_usd

    p = builtin_problem("bert-moe-4")
    flops = 2 * 2 * 768 * 3072  # per token, two matrices
    seconds = 10_240 * 12 * flops / 25e9  # at one vCPU
    assert compute_floor_usd(p) == pytest.approx(seconds * 1769 / 1024 * 0.0000166667)
    for memory in (768, 1728, 3072):
        for replicas in (1, 4):
            plan = DeploymentPlan.uniform(p, memory, replicas, "storage")
            assert evaluate(p, plan).cost_usd >= compute_floor_usd(p)
