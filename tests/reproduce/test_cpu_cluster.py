"""The always-on CPU cluster and the break-even rate, by hand and as properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cost_models.cpu_cluster import (
    always_on_cost_per_batch,
    break_even_rate,
    cluster_run,
    instances_needed,
    rate_sweep,
    saving_holds_below,
)
from moeopt.baselines import cpu_cluster
from moeopt.breakeven import break_even
from moeopt.builtin_problems import builtin_problem
from moeopt.cli import cli
from moeopt.model import ModelSpec


def test_always_on_cost_by_hand():
    # $3.60 an hour, 100 batches an hour per instance
    assert always_on_cost_per_batch(3.6, 100, 1 / 24) == pytest.approx(3.6 * 24)  # one a day
    assert always_on_cost_per_batch(3.6, 100, 50) == pytest.approx(0.072)
    assert always_on_cost_per_batch(3.6, 100, 100) == pytest.approx(0.036)  # saturated: busy only
    assert always_on_cost_per_batch(3.6, 100, 150) == pytest.approx(2 * 3.6 / 150)  # two instances
    assert instances_needed(100, 100) == 1 and instances_needed(100.5, 100) == 2
    with pytest.raises(ValueError):
        always_on_cost_per_batch(3.6, 100, 0)


def test_break_even_and_where_a_saving_holds_by_hand():
    # Lambda $0.05 a batch; the cluster $3.60/h: equal at 72 batches/h (below saturation at 100)
    assert break_even_rate(0.05, 3.6, 100) == pytest.approx(72)
    assert break_even_rate(0.01, 3.6, 100) is None  # even saturated ($0.036) dearer than Lambda
    # Lambda 75 % cheaper while 3.6 / r >= 0.05 / 0.25: up to 18 batches/h
    assert saving_holds_below(0.75, 0.05, 3.6) == pytest.approx(18)
    with pytest.raises(ValueError):
        saving_holds_below(1.0, 0.05, 3.6)


@given(
    price=st.floats(0.1, 50), capacity=st.floats(1, 1e5), rate=st.floats(1e-3, 1e6),
)
def test_cost_never_below_busy_seconds_and_utilisation_at_most_one(price, capacity, rate):
    cost = always_on_cost_per_batch(price, capacity, rate)
    n = instances_needed(rate, capacity)
    assert cost >= price / capacity * (1 - 1e-9)
    assert rate / (n * capacity) <= 1 + 1e-9
    assert n == 1 or rate > (n - 1) * capacity


def test_rate_sweep_reaches_saturation_from_one_a_day():
    rates = rate_sweep(1000.0)
    assert rates[0] == pytest.approx(1 / 24) and rates[-1] >= 3000
    assert np.all(np.diff(rates) > 0) and 1000.0 in rates


def test_cluster_run_needs_more_instances_when_saturated():
    m = ModelSpec("m", 1, 2, 1, 100, 1000, sequence_length=10)
    loads = np.array([[[600, 400]]])  # 0.121 s a batch: 29,752 batches/h per instance
    run = cluster_run(m, loads, 1000, 3.6, 4, 1e9, "x", requests_per_hour=40_000)
    assert run.instances == 2 and run.utilisation <= 1
    assert run.cost_usd == pytest.approx(2 * 3.6 / 40_000)
    assert "always-on x" in run.assumption and "40,000" in run.assumption


def test_break_even_of_a_problem():
    problem = builtin_problem("bert-moe-4")
    run = cpu_cluster(problem)
    lam = run.busy_cost_usd * 2  # Lambda twice the saturated cluster: the cluster wins from P/L
    be = break_even(problem, lam, "by hand")
    assert be.break_even_per_hour == pytest.approx(run.usd_per_hour / lam)
    assert be.saving_holds_below_per_hour == pytest.approx((1 - 0.7567) * run.usd_per_hour / lam)
    wins = be.cluster_wins()
    rates = np.asarray(be.rates_per_hour)
    assert not wins[rates < be.break_even_per_hour * 0.999].any()
    assert wins[(rates > be.break_even_per_hour * 1.001) & (rates <= run.capacity_per_hour)].all()
    cheap = break_even(problem, run.busy_cost_usd / 2)  # Lambda below even a saturated cluster
    assert cheap.break_even_per_hour is None and not cheap.cluster_wins().any()
    assert cheap.saving_everywhere is False  # 75.67 % needs Lambda <= 24.33 % of the cluster
    with pytest.raises(ValueError):
        break_even(problem, 0.0)


def test_breakeven_command_json_and_text(tmp_path):
    args = ["breakeven", "--problem", "bert-moe-4", "--solver", "greedy", "--budget-seconds", "5"]
    result = CliRunner().invoke(cli, [*args, "--json", "--requests-per-hour", "120"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cluster"]["requests_per_hour"] == 120
    assert data["cluster"]["cost_usd"] == pytest.approx(data["cluster"]["usd_per_hour"] / 120)
    assert data["lambda_cost_usd"] > 0 and data["break_even_per_hour"] is not None
    plot = tmp_path / "be.png"
    text = CliRunner().invoke(cli, [*args, "--plot", str(plot)])
    assert text.exit_code == 0 and "break-even" in text.stdout and "75.67%" in text.stdout
    assert plot.stat().st_size > 10_000
    bad = CliRunner().invoke(cli, ["breakeven", "--problem", "no-such-problem"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_compare_states_the_cluster_and_measures_gaps_against_lambda_plans():
    args = ["compare", "--problem", "bert-moe-4", "--solvers", "greedy,lambdaml,cpu-cluster",
            "--budget-seconds", "5"]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "always-on m7a.32xlarge" in text.stdout and "60 batches/h" in text.stdout
    rows = {r["solver"]: r for r in json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)}
    assert rows["greedy"]["gap_to_best"] == 0.0  # the cheapest Lambda plan, not the cluster
    assert rows["cpu-cluster"]["gap_to_best"] > 0 and "assumption" in rows["cpu-cluster"]
