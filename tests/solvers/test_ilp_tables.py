"""build_tables, vectorized across layers, gives the very tables of the per-layer reference
(tests/solvers/_tables_reference.py): same tables in the same order, same rows, the same floats
to the bit, same bounds and the same binding constraints when nothing is feasible."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from moeopt.builtin_problems import builtin_problem
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.space import PIPELINE_DEGREES
from moeopt.testing import small_problem, tiny_problem
from solvers._ilp_tables import (
    Tables,
    VariantTable,
    _dominated,
    _on_two_threads,
    build_tables,
    variants_of,
)
from tests.solvers._tables_reference import _dominated as reference_dominated
from tests.solvers._tables_reference import reference_build_tables


def _spec(**deployment):
    return {
        "name": "tables",
        "model": {"moe_layers": 3, "experts_per_layer": 4, "top_k": 2, "hidden_size": 768,
                  "expert_ffn_size": 3072, "nonmoe_params_per_layer": 2_362_368},
        "workload": {"tokens_per_batch": 4096},
        "slo": {"time_limit_s": 8.0},
        "popularity": {"source": "zipf", "exponent": 1.2, "batches": 3, "seed": 2},
        "deployment": {"memory_menu": [768, 1536, 3072], "max_replicas": 4, **deployment},
    }


def _constants(problem: DeploymentProblem, **changes) -> DeploymentProblem:
    return dataclasses.replace(problem, constants=dataclasses.replace(problem.constants, **changes))


def _problems() -> dict[str, DeploymentProblem]:
    top2 = problem_from_dict(_spec(), "test")
    return {
        "bert-moe-4": builtin_problem("bert-moe-4"),
        "gpt2-moe-4": builtin_problem("gpt2-moe-4"),
        "small": small_problem(),
        "tiny": tiny_problem(time_limit_s=1.5),
        "top2": top2,
        "full-scope-arm64": problem_from_dict(
            _spec(cost_scope="full", architectures=["x86_64", "arm64"]), "test"),
        "full-scope-cold-direct": problem_from_dict(
            {**_spec(cost_scope="full", methods=["direct", "storage"], start="cold"),
             "slo": {"time_limit_s": 40.0}}, "test"),
        # The concurrency limit can bind (some options break it, not all): active vectors join
        # the dominance check.
        "concurrency-can-bind": _constants(top2, lambda_concurrency_limit=14),
        # The time limit drops a variant in one layer and keeps it in the others.
        "tight-time-limit": problem_from_dict(
            {**_spec(), "slo": {"time_limit_s": 5.5}}, "test"),
        "infeasible-time-limit": small_problem(time_limit_s=0.5, name="impossible"),
        "infeasible-memory": problem_from_dict(_spec(memory_menu=[128]), "test"),
        "infeasible-payload": problem_from_dict(
            {**_spec(methods=["direct"], max_replicas=1), "workload": {"tokens_per_batch": 40_000}},
            "test"),
        "infeasible-timeout": _constants(top2, lambda_timeout_max_s=0.05),
        "infeasible-concurrency": _constants(top2, lambda_concurrency_limit=3),
    }


PROBLEMS = _problems()


def _same_array(a: np.ndarray, b: np.ndarray, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what  # bit for bit (NaN, -0.0 included)
    assert a.flags.c_contiguous == b.flags.c_contiguous, what  # same reduction order downstream


def _same_tables(new: Tables, ref: Tables) -> None:
    assert new.problem is ref.problem
    for name in ("memory_mb", "replicas", "arm64", "fixed_s"):
        _same_array(getattr(new, name), getattr(ref, name), name)
    for name in ("cost_const_usd", "lower_bound_usd", "concurrency", "binding", "options_before"):
        assert getattr(new, name) == getattr(ref, name), name
    assert len(new.layers) == len(ref.layers)
    for layer, (got, want) in enumerate(zip(new.layers, ref.layers, strict=True)):
        assert [t.variant for t in got] == [t.variant for t in want], layer
        for t, w in zip(got, want, strict=True):
            assert isinstance(t, VariantTable) and t.layer == w.layer == layer
            for name in ("expert", "option", "cost", "lat", "active", "floor", "lower"):
                _same_array(getattr(t, name), getattr(w, name), f"layer {layer} {t.variant} {name}")
            if w.nonmoe is None:
                assert t.nonmoe is None
            else:
                for f in ("price_usd_per_s", "start_s", "compute_s", "cold_s", "direct_usd"):
                    assert getattr(t.nonmoe, f) == getattr(w.nonmoe, f), f
                assert t.nonmoe.constants is w.nonmoe.constants


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_tables_are_the_per_layer_references(name):
    problem = PROBLEMS[name]
    for degrees in (PIPELINE_DEGREES, (64, 256)):
        variants = variants_of(problem, degrees)
        _same_tables(build_tables(problem, variants), reference_build_tables(problem, variants))


def test_the_cases_cover_what_they_name():
    """Guard the fixtures: each named case really exercises its branch."""
    def tables(name):
        p = PROBLEMS[name]
        return build_tables(p, variants_of(p, PIPELINE_DEGREES))

    for name, binding in [("infeasible-time-limit", ("time_limit",)),
                          ("infeasible-memory", ("memory",)), ("infeasible-payload", ("payload",)),
                          ("infeasible-timeout", ("timeout",)),
                          ("infeasible-concurrency", ("concurrency",))]:
        assert tables(name).binding == binding, name
    assert tables("concurrency-can-bind").concurrency and not tables("concurrency-can-bind").binding
    assert np.any(tables("full-scope-arm64").arm64)
    assert all(t.nonmoe is not None for layer in tables("full-scope-arm64").layers for t in layer)
    cold_direct = tables("full-scope-cold-direct")
    assert not cold_direct.binding and {t.variant.method for t in cold_direct.layers[0]} == {1, 2}
    # A variant dropped by the time limit in some layer, kept in another.
    tight = tables("tight-time-limit")
    assert not tight.binding and len({len(layer) for layer in tight.layers}) > 1


@pytest.mark.parametrize("seed", range(12))
def test_dominance_is_the_references(seed):
    """The dominance pass on random option vectors with ties, infinities (infeasible options)
    and rows past the pairwise limit."""
    rng = np.random.default_rng(seed)
    rows, k, d = 40, int(rng.integers(2, 400)), int(rng.integers(2, 7))
    vec = rng.integers(0, 4 + seed, size=(rows, k, d)).astype(float)
    vec[rng.random((rows, k, d)) < 0.05] = np.inf  # some terms (or costs) infinite
    vec[rng.random((rows, k)) < 0.2] = np.inf  # infeasible options
    vec[:3, :, 1:] = 0.0  # every option at the floor
    vec[3:6, :, 1:] = np.inf  # no latency term finite
    vec[6, ::7, 0] = -np.inf  # costs that do not sort the live options first
    vec[7, ::5, 0] = np.nan
    np.testing.assert_array_equal(_dominated(np.ascontiguousarray(vec.transpose(2, 0, 1))),
                                  reference_dominated(vec))


def _reference_quick_incumbent(tables):
    """quick_incumbent as it was (a loop over experts), for the test below."""
    from solvers._ilp_model import TIME_MARGIN_S, Choice

    problem = tables.problem
    lowers = np.array([np.min([t.lower for t in layer], axis=0) for layer in tables.layers])
    slack = problem.slo.time_limit_s - TIME_MARGIN_S - 1e-9 * problem.slo.time_limit_s
    slack = (slack - tables.fixed_s - lowers.sum(axis=0)) / len(tables.layers)
    if (slack < 0).any():
        return None
    choices = []
    for layer, low in zip(tables.layers, lowers, strict=True):
        cap = low + slack
        best = None
        for t in layer:
            fits = (t.add + t.lat <= cap).all(axis=1)
            cost = np.where(fits, t.cost, np.inf)
            rows = np.zeros(t.experts, dtype=int)
            ok = True
            for e in range(t.experts):
                idx = np.flatnonzero(t.expert == e)
                k = idx[np.argmin(cost[idx])]
                ok &= bool(np.isfinite(cost[k]))
                rows[e] = k
            if ok:
                ch = Choice(t, rows)
                if (ch.latency_s <= cap + 1e-12).all() and (best is None or ch.cost_usd < best.cost_usd):
                    best = ch
        if best is None:
            return None
        choices.append(best)
    return tuple(choices)


@pytest.mark.parametrize("name", ["bert-moe-4", "small", "tiny", "top2", "full-scope-arm64",
                                  "full-scope-cold-direct", "concurrency-can-bind", "tight-time-limit"])
def test_quick_incumbent_is_the_loops(name):
    from solvers._ilp_model import quick_incumbent

    problem = PROBLEMS[name]
    tables = build_tables(problem, variants_of(problem, PIPELINE_DEGREES))
    got, want = quick_incumbent(tables), _reference_quick_incumbent(tables)
    assert (got is None) == (want is None)
    if want is not None:
        for g, w in zip(got, want, strict=True):
            assert g.table is w.table
            np.testing.assert_array_equal(g.rows, w.rows)


def _cheapest_fitting_reference(t: VariantTable, fits: np.ndarray) -> np.ndarray | None:
    """The rule as first written: lexsort of (masked cost, expert) per call."""
    cost = np.where(fits, t.cost, np.inf)
    by = np.lexsort((cost, t.expert))
    rows = by[np.searchsorted(t.expert[by], np.arange(t.experts))]
    return rows if np.isfinite(cost[rows]).all() else None


@pytest.mark.parametrize("share", [0.0, 0.05, 0.3, 0.9, 1.0])
def test_cheapest_fitting_is_each_experts_first_cheapest_fitting_row(share):
    """Against the per-call lexsort, on real tables with equal costs made on purpose (the
    first of equals must win) and masks from none to all rows."""
    tables = build_tables(PROBLEMS["top2"], variants_of(PROBLEMS["top2"], PIPELINE_DEGREES))
    rng = np.random.default_rng(int(share * 100))
    for t in (t for layer in tables.layers for t in layer):
        cost = t.cost.copy()
        cost[::3] = cost[0]  # ties across and within experts
        t = dataclasses.replace(t, cost=cost)
        for _ in range(5):
            fits = rng.random(len(cost)) < share
            got, want = t.cheapest_fitting(fits), _cheapest_fitting_reference(t, fits)
            assert (got is None) == (want is None)
            if want is not None:
                assert got.tolist() == want.tolist()


@pytest.mark.parametrize("name", ["bert-moe-4", "top2", "full-scope-arm64"])
def test_expert_rows_are_each_experts_rows_in_row_order(name):
    tables = build_tables(PROBLEMS[name], variants_of(PROBLEMS[name], PIPELINE_DEGREES))
    for t in (t for layer in tables.layers for t in layer):
        want = [np.flatnonzero(t.expert == e).tolist() for e in range(t.experts)]
        assert [rows.tolist() for rows in t.expert_rows] == want


DERIVED = ("least_cost", "least_finish", "slowest_first", "rows_slowest_first", "by_expert_cost",
           "add", "base", "least_slowest")


@pytest.mark.parametrize("name", [n for n in PROBLEMS if not n.startswith("infeasible")])
def test_derived_arrays_filled_in_by_build_tables_are_each_tables_own(name):
    """build_tables fills in every table's derived arrays at once (_derive); a copy of the
    table without them computes its own: the same arrays, bit for bit, dtype and layout too."""
    problem = PROBLEMS[name]
    for degrees in (PIPELINE_DEGREES, (64, 256)):
        tables = build_tables(problem, variants_of(problem, degrees))
        for t in (t for layer in tables.layers for t in layer):
            assert "flat" in t.__dict__  # filled in, not computed on first use
            own = VariantTable(**{f.name: getattr(t, f.name) for f in dataclasses.fields(t)})
            assert t.experts == own.experts
            for name_ in DERIVED:
                got, want = getattr(t, name_), getattr(own, name_)
                for g, w in zip(got if isinstance(got, tuple) else (got,),
                                want if isinstance(want, tuple) else (want,), strict=True):
                    _same_array(g, w, f"{t.layer} {t.variant} {name_}")
            for f in dataclasses.fields(t.flat):
                _same_array(getattr(t.flat, f.name), getattr(own.flat, f.name), f"flat.{f.name}")


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_two_threads_run_every_job_once(n):
    done: list[int] = []
    _on_two_threads(done.append, list(range(n)))
    assert sorted(done) == list(range(n))


@pytest.mark.parametrize("bad", [0, 1])
def test_two_threads_raise_either_threads_error(bad):
    def work(job: int) -> None:
        if job == bad:
            raise ValueError(f"job {job}")

    with pytest.raises(ValueError, match=f"job {bad}"):
        _on_two_threads(work, [0, 1, 2])
