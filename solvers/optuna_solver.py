"""Optuna's samplers (TPE, CMA-ES, GP) over the plan space, in a compact parameterisation.

One integer parameter per layer: the layer's position on its cost-vs-time curve
(:mod:`solvers.layer_curves`; fastest point 0, each next point slower and cheaper). A plan is
one point per layer, so 12-58 parameters replace the 100-30,000 integers of the full plan vector
(per expert a memory size and a replica count), on which the plainly wrapped samplers were weak
(issue 16: TPE 112 % and CMA-ES 81 % above the optimum of bert-moe-4 at 200 evaluations,
GPSampler 1,378 s for 200). What the parameterisation gives up: plans off the curves (an expert
slower than its layer's bottleneck allows is never cheaper, so little).

- **Warm start**: the plans given to ``Solver.suggest`` (priced by the base already) and the
  start design (evenly spaced points of the Lagrangian path up to the time limit) enter the study
  as finished trials (``study.add_trial``) before the sampler's first ask.
- **Constraints**: the five named violations, each in units of its limit (signed: <= 0 holds),
  are set on every trial with ``Trial.set_constraint``, which Optuna 5 reads in place of the
  deprecated ``constraints_func``; TPE and GP use them (constrained TPE, constrained log-EI).
  CMA-ES ignores constraints, so it minimises score x (1 + 10 x summed violation) instead.
- **Batches**: TPE (constant liar) and CMA-ES ask ``batch_size`` trials, priced in one
  evaluator call; GP asks one at a time (each ask fits its GP again).
- A plan asked again is told its known value without being priced again; after ``max_stale``
  asks in a row that bring nothing new, the search has converged and stops.

>>> from moeopt.problem import load_problem
>>> r = OptunaTPESolver(seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=64))
>>> r.solution_status.value
'feasible'
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from moeopt.evaluate import VIOLATIONS, EvaluationBatch, violation_scales
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, SolverStatus, Tracker
from moeopt.space import PlanSpace, structured_design
from solvers.layer_curves import LayerCurves, expert_estimate

PENALTY = 10.0  # CMA-ES: score x (1 + PENALTY x summed violation) for an infeasible plan


class OptunaSolver(Solver):
    """Base of the Optuna solvers: subclasses name the sampler (``_sampler``)."""

    name = ""
    tags = frozenset({"black-box", "optuna", "objectives"})
    requires: ClassVar[tuple[str, ...]] = ("optuna",)
    default_budget: ClassVar[Budget] = Budget(evaluations=2000, seconds=60.0)
    default_options: ClassVar[dict[str, Any]] = {
        "batch_size": 8,
        "reach": 4,  # per-layer offset from the path point: -reach..reach curve points
        "design_batch": 16,  # warm start: Lagrangian-path points priced per round ...
        "design_rounds": 3,  # ... narrowing in on the time limit each round (the third: a point or two)
        "max_stale": 64,  # asks in a row that bring no new plan before stopping
    }
    uses_constraints: ClassVar[bool] = True
    continuous: ClassVar[bool] = False  # float parameters, rounded (GPSampler optimises them faster)

    def _sampler(self, seed: int, warm: list[Any]) -> Any:
        raise NotImplementedError

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        import optuna

        try:
            curves = LayerCurves.of(problem)
        except ValueError as exc:  # some layer has an expert no option fits: price and report
            space = PlanSpace.of(problem)
            tracker.evaluate(space.decode(structured_design(space, self.rng)[:64]))
            return Outcome(message=f"no layer curves ({exc}); priced the structured design")
        enc = _Encoding(curves, int(self.options["reach"]), self.continuous)
        known: dict[bytes, tuple[float, np.ndarray]] = {}  # curve positions -> (score, violations)

        def price(k: np.ndarray) -> np.ndarray:
            """Price new positions; per row 1 feasible, 0 infeasible, -1 not priced now."""
            fresh = np.unique(k, axis=0)
            fresh = fresh[[row.tobytes() not in known for row in fresh]]
            result = {}
            if len(fresh):
                batch, score, violation = tracker.evaluate(curves.plans(fresh))  # may stop short
                v = signed_violations(batch, problem)
                for row, s, vi, bad in zip(fresh, score, v, violation, strict=False):
                    known[row.tobytes()] = (float(s), vi)
                    result[row.tobytes()] = int(bad == 0)
            return np.asarray([result.get(row.tobytes(), -1) for row in k])

        warm = [*self._suggested_positions(curves, tracker, known)]
        if not tracker.exhausted():
            warm += list(curves.walk_to_limit(price, int(self.options["design_batch"]),
                                              int(self.options["design_rounds"])))
        logging.getLogger("optuna").setLevel(logging.WARNING)  # a line per trial otherwise
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature and deprecation notices
            trials = []
            for k in warm:
                if k.tobytes() in known:
                    score, v = known[k.tobytes()]
                    trials.append(optuna.trial.create_trial(
                        params=enc.params(k), distributions=enc.distributions,
                        value=self._value(score, v, known), constraints=self._constraints(v),
                    ))
            sampler = self._sampler(int(self.rng.integers(2**31)), trials)
            study = optuna.create_study(direction="minimize", sampler=sampler)
            for t in trials:
                study.add_trial(t)
            stale = 0
            q = int(self.options["batch_size"])
            slowest = 0.0  # slowest batch of asks so far: none is started that cannot finish
            while not tracker.exhausted():
                left = tracker.remaining_seconds()
                if left is not None and left < 1.5 * slowest:
                    return Outcome(status=SolverStatus.TIME_LIMIT, message=(
                        f"stopped {left:.1f} s before the seconds budget: an ask took {slowest:.1f} s"))
                t0 = time.perf_counter()
                asked = [study.ask(enc.distributions) for _ in range(q)]
                slowest = max(slowest, time.perf_counter() - t0)
                k = np.asarray([enc.positions(t.params) for t in asked], dtype=np.int64)
                before = len(known)
                price(k)
                stale = 0 if len(known) > before else stale + len(asked)
                for t, row in zip(asked, k, strict=True):
                    if row.tobytes() not in known:  # the budget ended inside this batch
                        study.tell(t, state=optuna.trial.TrialState.FAIL)
                        continue
                    score, v = known[row.tobytes()]
                    for key, value in self._constraints(v).items():
                        t.set_constraint(key, value)
                    study.tell(t, self._value(score, v, known))
                if stale >= int(self.options["max_stale"]):
                    return Outcome(
                        status=SolverStatus.COMPLETED,
                        message=f"converged: {stale} asks in a row gave no new plan",
                    )
        return None

    def _suggested_positions(
        self, curves: LayerCurves, tracker: Tracker, known: dict[bytes, tuple[float, np.ndarray]]
    ) -> np.ndarray:
        """Curve positions of the suggested plans; a plan exactly on the curves is known already,
        any other is represented by its nearest curve point (priced when asked)."""
        s = tracker.suggested
        if s is None:
            return np.zeros((0, len(curves.layers)), dtype=np.int64)
        flat = PlanArrays(
            _per_expert(s.plans, "memory_mb"), _per_expert(s.plans, "replicas"), s.plans.method,
            s.plans.pipeline_degree,
        )
        k = curves.locate(flat, expert_estimate(curves.problem, flat).bottleneck_s)
        on_curve = _same(curves.plans(k), s.plans)
        v = signed_violations(s.batch, curves.problem)
        for row, score, vi, same in zip(k, s.score, v, on_curve, strict=True):
            if same:
                known[row.tobytes()] = (float(score), vi)
        return k

    def _constraints(self, v: np.ndarray) -> dict[str, float]:
        """One constraint, the largest named violation in its units (<= 0: every one holds):
        Optuna's GPSampler fits one GP per constraint, and five cost five times one."""
        return {"violation": float(v.max())} if self.uses_constraints else {}

    def _value(self, score: float, v: np.ndarray, known: dict[bytes, tuple[float, np.ndarray]]) -> float:
        """The objective told to Optuna: the score (finite: NaN/inf become 10 x the worst finite
        score seen); with penalties (CMA-ES), times 1 + PENALTY x the summed violation."""
        if not np.isfinite(score):
            finite = [s for s, _ in known.values() if np.isfinite(s)]
            return 10.0 * max(finite) if finite else 1.0
        if self.uses_constraints:
            return score
        return score * (1.0 + PENALTY * float(np.clip(v, 0.0, None).sum()))


class _Encoding:
    """Parameters <-> curve positions: ``path`` (a point of the Lagrangian path up to the time
    limit's lower bound) and per layer ``d_l``, an offset of -reach..reach curve points."""

    def __init__(self, curves: LayerCurves, reach: int, continuous: bool) -> None:
        import optuna

        path = curves.lagrangian_path()
        ok = curves.time_lower_bound(path) <= curves.problem.slo.time_limit_s
        self.path = path[: int(np.flatnonzero(ok).max()) + 1] if ok.any() else path
        self.curves, self.reach = curves, reach
        self.names = [f"d_{i}" for i in range(len(curves.layers))]
        if continuous:  # rounded to the nearest integer; half a step of margin at each end
            F = optuna.distributions.FloatDistribution
            self.distributions = {"path": F(-0.49, len(self.path) - 0.51)}
            self.distributions.update({n: F(-reach - 0.49, reach + 0.49) for n in self.names})
        else:
            IntD = optuna.distributions.IntDistribution
            self.distributions = {"path": IntD(0, len(self.path) - 1)}
            self.distributions.update({n: IntD(-reach, reach) for n in self.names})

    def positions(self, params: dict[str, float]) -> np.ndarray:
        p = int(np.clip(round(params["path"]), 0, len(self.path) - 1))
        d = np.rint([params[n] for n in self.names]).astype(np.int64)
        return self.curves.clip(self.path[p] + d)

    def params(self, k: np.ndarray) -> dict[str, int]:
        """The nearest parameters: exact where k is within reach of a path point (the nearest
        such point), else the nearest path point with its offsets clipped."""
        gap = np.abs(self.path - k)
        within = gap.max(axis=1) <= self.reach
        p = int(np.where(within, gap.sum(axis=1), np.inf).argmin() if within.any() else gap.sum(axis=1).argmin())
        d = np.clip(k - self.path[p], -self.reach, self.reach)
        return {"path": p, **dict(zip(self.names, d.tolist(), strict=True))}


def signed_violations(batch: EvaluationBatch, problem: DeploymentProblem) -> np.ndarray:
    """(plans, 5) the named violations in units of their limits, <= 0 where they hold, clipped
    to [-1, 1] (NaN: 1) so a GP on them is not dominated by one far-off plan."""
    scale = violation_scales(problem)
    cols = [
        np.clip(np.nan_to_num(batch.violations[k] / scale[k], nan=1.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        for k in VIOLATIONS
    ]
    return np.stack(cols, axis=1)


def _per_expert(plans: PlanArrays, field: str) -> np.ndarray:
    values = getattr(plans, field)
    return values if plans.group is None else np.take_along_axis(values, plans.group, axis=2)


def _same(a: PlanArrays, b: PlanArrays) -> np.ndarray:
    same = (a.memory_mb == b.memory_mb).all(axis=(1, 2)) & (a.replicas == b.replicas).all(axis=(1, 2))
    same &= (a.method == b.method).all(axis=1) & (a.pipeline_degree == b.pipeline_degree).all(axis=1)
    if b.group is not None:
        same &= (b.group == np.arange(b.group.shape[2])).all(axis=(1, 2))
    if b.arm64 is not None:
        same &= ~b.arm64.any(axis=(1, 2))
    return same


class OptunaTPESolver(OptunaSolver):
    """Optuna's TPE (multivariate, constant liar for batches, constrained)."""

    name = "optuna-tpe"

    def _sampler(self, seed: int, warm: list[Any]) -> Any:
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=10
        )


class OptunaCmaEsSolver(OptunaSolver):
    """Optuna's CMA-ES, its mean, step and covariance warm-started from the priced warm-start
    trials (WS-CMA-ES, ``source_trials``); violations folded into a penalty."""

    name = "optuna-cmaes"
    requires: ClassVar[tuple[str, ...]] = ("optuna", "cmaes")
    uses_constraints: ClassVar[bool] = False

    def _sampler(self, seed: int, warm: list[Any]) -> Any:
        import optuna

        # WS-CMA-ES keeps the best 10 % of the source trials: it needs at least ten.
        return optuna.samplers.CmaEsSampler(
            seed=seed, source_trials=warm if len(warm) >= 10 else None, n_startup_trials=0
        )


class OptunaGPSolver(OptunaSolver):
    """Optuna's GPSampler (constrained log-EI), one trial per ask.

    Each ask re-fits its Gaussian processes and optimises the acquisition, so it is the slow
    one: about half a second per ask on bert-moe-4 with float parameters (rounded), one torch
    thread and greenlet's batched L-BFGS; integer parameters took 2.7x as long, two torch
    threads on two busy cores 4x.
    """

    name = "optuna-gp"
    requires: ClassVar[tuple[str, ...]] = ("optuna", "torch", "scipy")
    default_options: ClassVar[dict[str, Any]] = {**OptunaSolver.default_options, "batch_size": 1}
    continuous: ClassVar[bool] = True

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # two threads on two shared cores: 4x slower asks
        try:
            return super()._solve(problem, tracker)
        finally:
            torch.set_num_threads(threads)

    def _sampler(self, seed: int, warm: list[Any]) -> Any:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10, deterministic_objective=True)
