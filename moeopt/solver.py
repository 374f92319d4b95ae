"""The solver plugin API: one base, one budget loop, one result shape for every solver.

A solver subclasses :class:`Solver` (run-to-completion: exact and constructive solvers) or
:class:`AskTellSolver` (black-box searchers: the base supplies the budget loop) and implements
one or two private hooks. Every plan a solver prices goes through the :class:`Tracker`, which
counts evaluations, enforces the budget, keeps the best plan (feasible first) and records the
best-so-far trajectory.

Example (a complete solver)::

    class Uniform(Solver):
        name = "uniform-1536"
        def _solve(self, problem, tracker):
            tracker.evaluate(PlanArrays.from_plans([DeploymentPlan.uniform(problem, 1536)], problem))
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from moeopt.errors import InputError
from moeopt.evaluate import Evaluation, EvaluationBatch, evaluate_batch, violation_scales
from moeopt.plan import DeploymentPlan, PlanArrays
from moeopt.problem import DeploymentProblem


class SolverStatus(StrEnum):
    """Why the solver stopped."""

    OPTIMAL = "optimal"  # proved optimal (exact solvers)
    COMPLETED = "completed"  # ran to its natural end without a proof (constructive, converged)
    BUDGET = "budget"  # evaluation budget used up
    TIME_LIMIT = "time_limit"  # seconds budget used up
    INFEASIBLE = "infeasible"  # proved (or, for baselines, found) that no plan fits
    ERROR = "error"  # the solver raised; the message says what


class SolutionStatus(StrEnum):
    """What the returned plan is worth."""

    NONE = "none"  # no feasible plan (a least-violating plan may still be returned)
    FEASIBLE = "feasible"
    PROVEN_OPTIMAL = "proven_optimal"


@dataclass(frozen=True)
class Budget:
    """Evaluations and/or seconds, whichever comes first (None: unbounded)."""

    evaluations: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class TrajectoryPoint:
    evaluations: int
    seconds: float
    cost_usd: float
    score: float


OBJECTIVES = ("cheapest", "fastest", "balanced")


@dataclass(frozen=True)
class Objective:
    """What "best" means, after AWS Lambda Power Tuning's strategies.

    cheapest: cost; fastest: latency; balanced: weight * cost/cost_ref + (1 - weight) *
    latency/latency_ref, both references taken from the LambdaML-style plan of the problem.
    Feasibility always comes first.
    """

    kind: str = "cheapest"
    weight: float = 0.5

    def score(self, batch: EvaluationBatch, problem: DeploymentProblem) -> np.ndarray:
        if self.kind == "cheapest":
            return batch.cost_usd
        if self.kind == "fastest":
            return batch.latency_s
        cost_ref, lat_ref = _references(problem)
        return self.weight * batch.cost_usd / cost_ref + (1 - self.weight) * batch.latency_s / lat_ref


def _references(problem: DeploymentProblem) -> tuple[float, float]:
    from moeopt.baselines import lambdaml_plan
    from moeopt.evaluate import evaluate

    ev = evaluate(problem, lambdaml_plan(problem))
    return ev.cost_usd, ev.latency_s


def total_violation(batch: EvaluationBatch, problem: DeploymentProblem) -> np.ndarray:
    """Sum of positive violations, each in its unit (``violation_scales``)."""
    scale = violation_scales(problem)
    total = np.zeros(len(batch))
    for name, v in batch.violations.items():
        total += np.maximum(np.nan_to_num(v, nan=np.inf), 0.0) / scale[name]
    return total


Evaluator = Callable[[DeploymentProblem, PlanArrays], EvaluationBatch]


def describe_budget(budget: Budget) -> str:
    """``2,000 evaluations, 60 s`` (``unbounded`` when neither is set)."""
    parts = []
    if budget.evaluations is not None:
        parts.append(f"{budget.evaluations:,} evaluations")
    if budget.seconds is not None:
        parts.append(f"{budget.seconds:g} s")
    return ", ".join(parts) or "unbounded"


@dataclass(frozen=True, eq=False)
class PricedPlans:
    """Plans priced through the tracker, with what ``Tracker.evaluate`` returned for them."""

    plans: PlanArrays
    batch: EvaluationBatch
    score: np.ndarray  # (n,) objective score, inf where the evaluator gave NaN/inf
    violation: np.ndarray  # (n,) 0 where feasible, else the summed violation (> 0)

    def __len__(self) -> int:
        return self.plans.size


class BudgetExhausted(Exception):
    """Raised inside a solver when the tracker refuses more evaluations."""


class Tracker:
    """Counts evaluations, enforces the budget, keeps the best plan and the trajectory."""

    def __init__(
        self,
        problem: DeploymentProblem,
        budget: Budget,
        objective: Objective,
        evaluator: Evaluator = evaluate_batch,
    ) -> None:
        self.problem, self.budget, self.objective = problem, budget, objective
        self._evaluator = evaluator
        self.start = time.perf_counter()
        self.evaluations = 0
        self._best_plan: DeploymentPlan | None = None
        self._best_row: PlanArrays | None = None  # the best plan's arrays, until first read
        self.best_eval: Evaluation | None = None
        self.best_key: tuple[float, float] = (math.inf, math.inf)
        self.trajectory: list[TrajectoryPoint] = []
        self.seen_feasible = False
        # The plans given to Solver.suggest, priced before the solver's own search (or None).
        self.suggested: PricedPlans | None = None

    # -- budget --
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining_evaluations(self) -> int | None:
        if self.budget.evaluations is None:
            return None
        return max(self.budget.evaluations - self.evaluations, 0)

    def remaining_seconds(self) -> float | None:
        if self.budget.seconds is None:
            return None
        return max(self.budget.seconds - self.elapsed(), 0.0)

    def out_of_time(self) -> bool:
        return self.budget.seconds is not None and self.elapsed() >= self.budget.seconds

    def exhausted(self) -> bool:
        return self.remaining_evaluations() == 0 or self.out_of_time()

    # -- evaluation --
    @property
    def best_plan(self) -> DeploymentPlan | None:
        """The best plan so far, built when first read (a solver that improves often would
        otherwise build a plan object per improvement; ilp: ~0.7 ms each)."""
        if self._best_row is not None:
            self._best_plan, self._best_row = self._best_row.plan(0, self.problem), None
        return self._best_plan

    def evaluate(self, plans: PlanArrays) -> tuple[EvaluationBatch, np.ndarray, np.ndarray]:
        """Price plans (truncated to the remaining budget); returns (batch, score, violation).

        NaN or inf from the evaluator count as infeasible with infinite score, never as best.
        Raises BudgetExhausted when nothing is left.
        """
        left = self.remaining_evaluations()
        if left == 0 or self.out_of_time():
            raise BudgetExhausted
        if left is not None and plans.size > left:
            plans = _take(plans, left)
        batch = self._evaluator(self.problem, plans)
        self.evaluations += plans.size
        score = np.asarray(self.objective.score(batch, self.problem), dtype=float)
        violation = total_violation(batch, self.problem)
        bad = ~np.isfinite(score) | ~np.isfinite(batch.cost_usd)
        score = np.where(bad, np.inf, score)
        violation = np.where(bad & (violation == 0), np.inf, violation)
        feasible = batch.feasible & ~bad
        # Feasible plans rank by score; infeasible ones by violation, after every feasible one.
        keys = np.where(feasible, 0.0, 1.0 + np.nan_to_num(violation, nan=np.inf))
        order = np.lexsort((score, keys))
        p = int(order[0])
        key = (float(keys[p]), float(score[p]))
        if key < self.best_key:
            self.best_key = key
            self._best_row = _row(plans, p)  # a copy: the solver may reuse its arrays
            self._best_plan = None
            self.best_eval = batch[p]
            if feasible[p]:
                self.seen_feasible = True
                self.trajectory.append(
                    TrajectoryPoint(self.evaluations, self.elapsed(), float(batch.cost_usd[p]), key[1])
                )
        return batch, score, np.where(feasible, 0.0, np.maximum(violation, 1e-12))


def _rows(plans: PlanArrays, rows: slice, copy: bool = False) -> PlanArrays:
    """Plans ``rows`` of ``plans`` (views, or copies when the caller keeps them while the
    solver may reuse its arrays)."""
    def part(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows].copy() if copy else a[rows]

    return PlanArrays(part(plans.memory_mb), part(plans.replicas), part(plans.method),
                      part(plans.pipeline_degree), part(plans.group), part(plans.arm64))


def _row(plans: PlanArrays, p: int) -> PlanArrays:
    return _rows(plans, slice(p, p + 1), copy=True)


def _take(plans: PlanArrays, n: int) -> PlanArrays:
    return _rows(plans, slice(0, n))


def _concat_arrays(parts: list[PlanArrays]) -> PlanArrays:
    def cat(name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in parts]
        if all(v is None for v in values):
            return None
        if name == "group":  # None: expert e alone in slot e
            values = [
                np.broadcast_to(np.arange(p.memory_mb.shape[2]), p.memory_mb.shape) if v is None else v
                for p, v in zip(parts, values, strict=True)
            ]
        else:  # arm64: None is x86 everywhere
            values = [np.zeros(p.memory_mb.shape, bool) if v is None else v for p, v in zip(parts, values, strict=True)]
        return np.concatenate(values)

    return PlanArrays(
        np.concatenate([p.memory_mb for p in parts]),
        np.concatenate([p.replicas for p in parts]),
        np.concatenate([p.method for p in parts]),
        np.concatenate([p.pipeline_degree for p in parts]),
        cat("group"),
        cat("arm64"),
    )


@dataclass(frozen=True)
class SolveResult:
    """What a solver returns: the plan, how good it is and how the solver got there."""

    solver: str
    seed: int
    options: dict[str, Any]
    problem: str
    plan: DeploymentPlan | None
    evaluation: Evaluation | None
    solver_status: SolverStatus
    solution_status: SolutionStatus
    lower_bound_usd: float | None
    trajectory: tuple[TrajectoryPoint, ...]
    evaluations: int
    wall_seconds: float
    message: str = ""
    binding_constraints: tuple[str, ...] = field(default=())
    budget: Budget | None = None  # the budget in force
    budget_source: str = "given"  # "given" (by the caller) or "default" (the solver's)

    @property
    def cost_usd(self) -> float:
        ok = self.evaluation is not None and self.solution_status != SolutionStatus.NONE
        return self.evaluation.cost_usd if ok else math.inf  # type: ignore[union-attr]

    @property
    def gap(self) -> float | None:
        """Relative gap to the proven lower bound, where there is one."""
        if self.lower_bound_usd is None or not math.isfinite(self.cost_usd):
            return None
        return max(self.cost_usd - self.lower_bound_usd, 0.0) / max(self.cost_usd, 1e-300)

    def to_dict(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "solver": self.solver,
            "seed": self.seed,
            "options": self.options,
            "problem": self.problem,
            "solver_status": str(self.solver_status),
            "solution_status": str(self.solution_status),
            "feasible": self.solution_status != SolutionStatus.NONE,
            "cost_usd": ev.cost_usd if ev else None,  # of the returned plan, feasible or not
            "cost_gb_s": ev.cost_gb_s if ev else None,
            "latency_s": ev.latency_s if ev else None,
            "throughput_tokens_per_s": ev.throughput_tokens_per_s if ev else None,
            "violations": ev.violations if ev else None,
            "lower_bound_usd": self.lower_bound_usd,
            "gap": self.gap,
            "evaluations": self.evaluations,
            "budget": None if self.budget is None else {
                "evaluations": self.budget.evaluations, "seconds": self.budget.seconds,
                "source": self.budget_source,
            },
            "solve_seconds": self.wall_seconds,
            "message": self.message,
            "binding_constraints": list(self.binding_constraints),
            "trajectory": [
                {"evaluations": t.evaluations, "seconds": t.seconds, "cost_usd": t.cost_usd}
                for t in self.trajectory
            ],
        }


@dataclass
class Outcome:
    """What a solver's hook may say beyond the tracker's record (exact solvers mostly)."""

    status: SolverStatus | None = None
    lower_bound_usd: float | None = None
    proven_optimal: bool = False
    message: str = ""
    binding_constraints: tuple[str, ...] = ()


class Solver(ABC):
    """Base of every solver. Subclasses set ``name``, ``tags``, ``default_options`` and
    implement ``_solve(problem, tracker)``, pricing plans through ``tracker.evaluate``."""

    name: ClassVar[str] = ""
    tags: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules this solver needs
    default_options: ClassVar[dict[str, Any]] = {}
    default_budget: ClassVar[Budget] = Budget(evaluations=2000, seconds=60.0)

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.default_options) - {"objective", "weight"})
        if unknown:
            allowed = ", ".join(sorted({*self.default_options, "objective", "weight"}))
            raise InputError(f"solver {self.name}", unknown[0], f"unknown option; allowed: {allowed}")
        for key, value in options.items():
            expected = _option_kind(self.default_options.get(key))
            if expected is not None and not _is_kind(value, expected):
                raise InputError(f"solver {self.name}", key, f"{value!r}; allowed: {expected}")
        self.seed = int(seed)
        self.options = {**self.default_options, **options}
        objective = self.options.pop("objective", "cheapest")
        if objective not in OBJECTIVES:
            raise InputError(f"solver {self.name}", "objective", f"{objective!r}; allowed: {', '.join(OBJECTIVES)}")
        self.objective = Objective(objective, float(self.options.pop("weight", 0.5)))
        self.rng = np.random.default_rng(self.seed)
        self._suggested: list[DeploymentPlan] = []

    def suggest(self, *plans: DeploymentPlan) -> Solver:
        """Seed this solver with starting plans: the warm-start hook (Nevergrad's ``suggest``).

        Every later :meth:`solve` prices the suggested plans first, in order, through the
        tracker: they count against the budget like any evaluation, and the result is never
        worse than the best of them that the budget reached. Searchers also start from them:
        ``tracker.suggested`` (a :class:`PricedPlans`) holds the priced plans when ``_solve``
        begins; ``AskTellSolver`` tells them to ``_tell``, bayes-egreedy trains its surrogate
        on them and searches around the best, Nevergrad ``suggest``s them, Optuna adds them as
        finished trials. A plan must fit the problem it is solved on (``moeopt.plan.check_plan``:
        an :class:`~moeopt.errors.InputError` otherwise). Returns the solver, so calls chain.
        The hook carries plans from one solver to another without either importing the other.

        Example: give a searcher greedy's plan (or any plan file, ``load_plan``)::

            >>> from moeopt.problem import load_problem
            >>> from moeopt.registry import make_solver
            >>> problem = load_problem("bert-moe-4")
            >>> start = make_solver("greedy").solve(problem).plan
            >>> result = (make_solver("nevergrad", seed=0).suggest(start)
            ...           .solve(problem, Budget(evaluations=64)))
            >>> result.cost_usd <= start.predicted["cost_usd"]
            True
        """
        for plan in plans:
            if not isinstance(plan, DeploymentPlan):
                raise TypeError(f"suggest() takes DeploymentPlan objects, not {type(plan).__name__}")
        self._suggested.extend(plans)
        return self

    @property
    def suggested(self) -> tuple[DeploymentPlan, ...]:
        """The plans given to :meth:`suggest`, in order."""
        return tuple(self._suggested)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the optional dependencies import here, and if not, why."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        return (not missing, f"missing: {', '.join(missing)}" if missing else "")

    def solve(
        self,
        problem: DeploymentProblem,
        budget: Budget | None = None,
        evaluator: Evaluator = evaluate_batch,
    ) -> SolveResult:
        """Run the solver within ``budget``: a given budget is used as given (a None field is
        unbounded); None means the solver's ``default_budget``, which the result reports."""
        source = "default" if budget is None else "given"
        budget = self.default_budget if budget is None else budget
        self.rng = np.random.default_rng(self.seed)  # same seed, same plan, on every call
        tracker = Tracker(problem, budget, self.objective, evaluator)
        outcome = Outcome()
        try:
            tracker.suggested = self._price_suggested(problem, tracker)
            outcome = self._solve(problem, tracker) or Outcome()
        except BudgetExhausted:
            pass
        except InputError:
            raise
        except Exception as exc:  # a solver bug is a result, not a crash of the comparison
            outcome = Outcome(
                status=SolverStatus.ERROR,
                message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
            )
        return self._result(problem, tracker, outcome, source)

    def _price_suggested(self, problem: DeploymentProblem, tracker: Tracker) -> PricedPlans | None:
        """Price the suggested plans in order (chunks of 64, so a seconds budget is checked)."""
        if not self._suggested:
            return None
        from moeopt.plan import check_plan

        for i, plan in enumerate(self._suggested):
            check_plan(plan, problem, f"suggested plan {i}")
        parts: list[PricedPlans] = []
        for start in range(0, len(self._suggested), 64):
            arrays = PlanArrays.from_plans(self._suggested[start : start + 64], problem)
            if tracker.exhausted():
                break
            batch, score, violation = tracker.evaluate(arrays)
            parts.append(PricedPlans(_take(arrays, len(batch)), batch, score, violation))
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        from moeopt.evaluate import concat

        return PricedPlans(
            _concat_arrays([p.plans for p in parts]),
            concat([p.batch for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.violation for p in parts]),
        )

    def _result(self, problem: DeploymentProblem, tracker: Tracker, outcome: Outcome,
                budget_source: str = "given") -> SolveResult:
        feasible = tracker.seen_feasible
        if outcome.status is not None:
            status = outcome.status
        elif tracker.out_of_time():
            status = SolverStatus.TIME_LIMIT
        elif tracker.remaining_evaluations() == 0:
            status = SolverStatus.BUDGET
        else:
            status = SolverStatus.COMPLETED
        if not feasible:
            solution = SolutionStatus.NONE
        elif outcome.proven_optimal:
            solution = SolutionStatus.PROVEN_OPTIMAL
        else:
            solution = SolutionStatus.FEASIBLE
        binding = outcome.binding_constraints
        if not feasible and not binding and tracker.best_eval is not None:
            binding = tuple(tracker.best_eval.broken())
        message = outcome.message
        if not feasible and not message and binding:
            message = f"no feasible plan found; binding: {', '.join(binding)}"
        if budget_source == "default" and status in (SolverStatus.BUDGET, SolverStatus.TIME_LIMIT):
            said = f"stopped by {self.name}'s default budget ({describe_budget(tracker.budget)}); " \
                "give a budget to change it"
            message = f"{said}. {message}" if message else said
        info = {"name": self.name, "seed": self.seed}
        plan = tracker.best_plan
        if plan is not None and tracker.best_eval is not None:
            ev = tracker.best_eval
            plan = DeploymentPlan(
                plan.problem_name, plan.problem_fingerprint, plan.layers,
                predicted={"cost_usd": ev.cost_usd, "cost_gb_s": ev.cost_gb_s,
                           "latency_s": ev.latency_s,
                           "throughput_tokens_per_s": ev.throughput_tokens_per_s},
                solver=info,
            )
        return SolveResult(
            solver=self.name,
            seed=self.seed,
            options={**self.options, "objective": self.objective.kind},
            problem=problem.name,
            plan=plan,
            evaluation=tracker.best_eval,
            solver_status=status,
            solution_status=solution,
            lower_bound_usd=outcome.lower_bound_usd,
            trajectory=tuple(tracker.trajectory),
            evaluations=tracker.evaluations,
            wall_seconds=tracker.elapsed(),
            message=message,
            binding_constraints=binding,
            budget=tracker.budget,
            budget_source=budget_source,
        )

    @abstractmethod
    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        """Search, pricing every candidate with ``tracker.evaluate``; use ``self.rng``."""


class AskTellSolver(Solver):
    """Black-box search over :class:`moeopt.space.PlanSpace`: the base runs the budget loop.

    Subclasses implement ``_start(space)``, ``_ask(n) -> int array (n, dims)`` and
    ``_tell(x, score, violation)``; optionally ``_converged()``.
    """

    batch_size: ClassVar[int] = 32

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        from moeopt.space import PlanSpace

        space = PlanSpace.of(problem)
        self._start(space)
        if tracker.suggested is not None:  # the warm start: priced already, told first
            s = tracker.suggested
            self._tell(space.encode(s.plans), s.score, s.violation)
        while not tracker.exhausted():
            x = space.clip(self._ask(self.batch_size))
            left = tracker.remaining_evaluations()
            if left is not None:
                x = x[:left]
            _, score, violation = tracker.evaluate(space.decode(x))
            self._tell(x, score, violation)
            if self._converged():
                break
        return None

    @abstractmethod
    def _start(self, space: Any) -> None: ...

    @abstractmethod
    def _ask(self, n: int) -> np.ndarray: ...

    @abstractmethod
    def _tell(self, x: np.ndarray, score: np.ndarray, violation: np.ndarray) -> None: ...

    def _converged(self) -> bool:
        return False


def _option_kind(default: Any) -> str | None:
    """What a user's value for an option must be, judged by its default (None: anything)."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, numbers.Real):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list | tuple):
        return "a list"
    return None


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool | np.bool_)
    if kind == "a number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "a string":
        return isinstance(value, str)
    return isinstance(value, list | tuple | np.ndarray)
