"""The paper's Bayesian optimization with a multi-dimensional epsilon-greedy acquisition (Alg. 2).

One iteration tau: candidates are drawn around the best plans seen (each dimension d of the
PlanSpace vector is re-drawn with probability eps_d, kept with 1 - eps_d, after epsilon-shotgun),
a surrogate ranks them by expected improvement times the probability of feasibility, and the
best batch is priced. The schedule is eps_tau = eps_0 / (1 + rho*tau), boosted by (1 + rho'*tau)
on the dimensions of the experts whose memory (rho1) or payload (rho2) constraint broke in the
iteration's deployment (rho3 otherwise), rho3 < rho2 < rho1 < rho. The paper's replicate step
(n_new = ceil(M_real / M)) repairs that deployment for the next batch. Stops when the best cost
moves less than zeta over lambda iterations.

Added on top of the paper (each can be switched off; docs/bayes-egreedy.md says what each buys):
the warm start walks the Lagrangian path of the per-layer cost-vs-time curves
(:mod:`solvers.layer_curves`) to the time limit; half the candidates move layers along their
curves (one epsilon per layer, same schedule); the surrogate is the cost model's per-expert
estimate plus Gaussian processes on per-layer features (:mod:`solvers._bayes_surrogate`); the
improving moves of a batch are merged. Plans given to ``Solver.suggest`` are trained on and
searched around like the design.

>>> from moeopt.problem import load_problem
>>> r = BayesEGreedySolver(seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=200))
>>> r.solution_status.value
'feasible'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from moeopt.evaluate import EvaluationBatch, expert_breaks, violation_scales
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, Tracker
from moeopt.space import PlanSpace, structured_design
from solvers._bayes_surrogate import Observed, PlanSurrogate
from solvers._bayesopt import epsilon, expected_improvement, probability_of_feasibility
from solvers.layer_curves import ExpertEstimate, LayerCurves, expert_estimate

# -- the epsilon schedule (solvers._bayesopt.epsilon) and what boosts it -------------------------


@dataclass(frozen=True)
class BrokenCells:
    """Per (plan, layer, expert): which of the paper's localisable constraints broke."""

    memory: np.ndarray  # (n, L, E) bool
    payload: np.ndarray  # (n, L, E) bool
    memory_factor: np.ndarray  # (n, L, E) ceil(M_real / M): the paper's n_new for memory
    payload_factor: np.ndarray  # (n, L, E) ceil(R*Din / D_p): n_new for payload


def broken_cells(space: PlanSpace, x: np.ndarray) -> BrokenCells:
    """Localise memory and payload violations to experts, with the evaluator's formulas.

    evaluate.py reports only the worst violation of a plan; the paper boosts eps of the
    experts that broke, so the per-expert memory need and payload are recomputed here.
    """
    problem, x = space.problem, np.atleast_2d(x)
    arrays = space.decode(x)
    loads = problem.popularity.loads.astype(float)  # (B, L, E)
    r_max = np.ceil(loads[None] / arrays.replicas[:, None]).max(axis=1)  # (n, L, E)
    br = expert_breaks(
        problem, r_max, arrays.method[:, :, None], arrays.pipeline_degree[:, :, None], arrays.memory_mb
    )
    return BrokenCells(br.memory, br.payload, br.memory_factor, br.payload_factor)


def rho_prime(
    space: PlanSpace, broken: BrokenCells, rho1: float, rho2: float, rho3: float
) -> np.ndarray:
    """rho' per dimension for one plan: rho1 where memory broke, rho2 where payload broke.

    A broken expert maps to its memory and replica dimensions and to its layer's method and
    pipeline-degree dimensions (both change the memory need and the payload).
    """
    L, E, C = space.problem.layers, space.problem.experts, space.cells
    out = np.full(space.dims, rho3)
    for mask, rho in ((broken.payload[0], rho2), (broken.memory[0], rho1)):  # rho1 wins ties
        cells = mask.reshape(C)
        layers = mask.reshape(L, E).any(axis=1)
        for start, hit in ((0, cells), (C, cells), (2 * C, layers), (2 * C + L, layers)):
            seg = out[start : start + len(hit)]
            seg[hit] = np.maximum(seg[hit], rho)
    return out


def _log_score(score: np.ndarray) -> np.ndarray:
    """Log of the objective; NaN/inf become the worst finite value + 1 (the GP needs finite
    targets, and such plans are never the answer: the tracker ranks them last)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.maximum(score, 1e-300))
    finite = np.isfinite(y)
    worst = y[finite].max() if finite.any() else 0.0
    return np.where(finite, y, worst + 1.0)


def slack(batch: EvaluationBatch, problem: DeploymentProblem) -> np.ndarray:
    """One signed number per plan, <= 0 iff feasible: the largest named violation, each in
    units of its limit (s over the time limit per s of limit, MB over per GB, ...).

    The second GP models this; unlike tracker.evaluate's summed positive part it is smooth
    on both sides of the boundary, which is what a probability of feasibility needs.
    """
    scale = violation_scales(problem)
    parts = [
        np.clip(np.nan_to_num(v / scale[k], nan=1.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        for k, v in batch.violations.items()
    ]
    out = np.max(parts, axis=0)
    return np.where(np.isfinite(batch.cost_usd), out, np.maximum(out, 1e-3))


class _History:
    """Every plan priced in this run, row-aligned: what the surrogate and the elites read."""

    def __init__(self, space: PlanSpace, curves: LayerCurves | None) -> None:
        self.space, self.curves = space, curves
        self.x: list[np.ndarray] = []
        self.k: list[np.ndarray] = []  # curve positions (or -1 without curves)
        self.est: list[ExpertEstimate] = []
        self.arrays: list[PlanArrays] = []
        self.cost: list[np.ndarray] = []
        self.latency: list[np.ndarray] = []
        self.layer_latency: list[np.ndarray] = []
        self.score: list[np.ndarray] = []
        self.slack: list[np.ndarray] = []
        self.feasible: list[np.ndarray] = []
        self.seen: set[bytes] = set()

    def __len__(self) -> int:
        return sum(len(s) for s in self.score)

    def add(self, x: np.ndarray, k: np.ndarray | None, batch: EvaluationBatch, score: np.ndarray) -> None:
        problem = self.space.problem
        arrays = self.space.decode(x)
        est = expert_estimate(problem, arrays)
        if k is None:
            k = (
                self.curves.locate(arrays, est.bottleneck_s)
                if self.curves is not None
                else np.full((len(x), problem.layers), -1)
            )
        self.x.append(x)
        self.k.append(k)
        self.est.append(est)
        self.arrays.append(arrays)
        self.cost.append(batch.cost_usd)
        self.latency.append(batch.latency_s)
        self.layer_latency.append(batch.layer_latency_s)
        self.score.append(score)
        self.slack.append(slack(batch, problem))
        self.feasible.append(batch.feasible & np.isfinite(score))
        self.seen.update(row.tobytes() for row in x)

    def observed(self) -> Observed:
        est = ExpertEstimate(
            *(np.concatenate([getattr(e, f) for e in self.est]) for f in ExpertEstimate.__dataclass_fields__)
        )
        return Observed(
            x=np.concatenate(self.x),
            estimate=est,
            method=np.concatenate([a.method for a in self.arrays]),
            beta=np.concatenate([a.pipeline_degree for a in self.arrays]),
            cost=np.concatenate(self.cost),
            latency=np.concatenate(self.latency),
            layer_latency=np.concatenate(self.layer_latency),
            score=np.concatenate(self.score),
            feasible=np.concatenate(self.feasible),
        )

    def rank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rank, log score, slack): feasible plans by score first, then least violating."""
        y = _log_score(np.concatenate(self.score))
        s = np.concatenate(self.slack)
        return np.lexsort((y, np.maximum(s, 0.0))), y, s


class BayesEGreedySolver(Solver):
    """Bayesian optimization with one epsilon per dimension (the paper's Alg. 2), warm-started
    on the Lagrangian path of the layer curves, with a per-layer surrogate."""

    name = "bayes-egreedy"
    tags = frozenset({"black-box", "bayesian", "paper", "objectives"})
    requires = ("sklearn",)
    default_budget: ClassVar[Budget] = Budget(evaluations=2000, seconds=60.0)
    default_options: ClassVar[dict[str, Any]] = {
        "eps0_changes": 1.0,  # eps_0 = changes / dims: about 1 dimension moves per candidate
        "rho": 0.1,
        "rho1": 0.08,  # memory broke
        "rho2": 0.05,  # payload broke
        "rho3": 0.02,  # otherwise
        "lambda_iters": 20,  # lambda: iterations the best may stall ...
        "zeta": 1e-4,  # ... by less than this relative change before stopping
        "batch_size": 16,
        "candidates": 1024,
        "global_fraction": 0.05,  # candidates drawn uniformly from the whole space
        "layer_curves": True,  # ours: Lagrangian-path warm start and moves along layer curves
        "layer_fraction": 0.5,  # share of candidates that move layers along their curves
        "layer_eps0_changes": 1.5,  # eps_0 per layer = this / layers
        "design_batch": 16,  # Lagrangian path points priced per warm-start round ...
        "design_rounds": 3,  # ... narrowing in on the time limit each round (the third: a point or two)
        "init_fraction": 0.2,  # without layer curves: share of the budget for the structured design
        "init_random": 32,  # without layer curves: uniform random plans in the first batch
        "train_best": 160,  # surrogate training set: the best plans ...
        "train_recent": 64,  # ... and the most recent ones
        "refit_every": 4,  # re-optimise the GP kernels every k iterations
        "single_eps": False,  # ablation: one shared epsilon
        "surrogate": True,  # ablation: False picks candidates at random (no surrogate)
    }

    # -- helpers --
    def _check(self) -> None:
        o = self.options
        if not (0 < o["rho3"] < o["rho2"] < o["rho1"] < o["rho"]):
            from moeopt.errors import InputError

            raise InputError(f"solver {self.name}", "rho", "need 0 < rho3 < rho2 < rho1 < rho")

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        self._check()
        import sklearn.gaussian_process  # noqa: F401  (load its BLAS before limiting threads)

        with threadpool_limits(1):  # BLAS threads fight over 2 cores: 10x slower GP fits
            self._loop(problem, tracker)
        return None

    def _loop(self, problem: DeploymentProblem, tracker: Tracker) -> None:
        o = self.options
        space = PlanSpace.of(problem)
        dims, L = space.dims, problem.layers
        curves = None
        if o["layer_curves"]:
            try:
                curves = LayerCurves.of(problem)
            except ValueError:  # an expert fits no option in some layer: search without curves
                curves = None
        hist = _History(space, curves)

        def price(x: np.ndarray, k: np.ndarray | None = None) -> np.ndarray:
            x = space.canonical(x)
            keep, fresh = [], set()
            for i, row in enumerate(x):
                key = row.tobytes()
                if key not in hist.seen and key not in fresh:
                    fresh.add(key)
                    keep.append(i)
            left = tracker.remaining_evaluations()
            if left is not None:
                keep = keep[:left]
            if not keep:
                return x[:0]
            x = x[keep]
            batch, score, _ = tracker.evaluate(space.decode(x))
            hist.add(x, None if k is None else k[keep], batch, score)
            return x

        self._warm_start(space, tracker, hist, price)
        if curves is not None:

            def price_path(k: np.ndarray) -> np.ndarray:
                x = space.encode(curves.plans(k))
                done = price(x, k)
                ok = dict(zip((r.tobytes() for r in done), hist.feasible[-1], strict=True)) if len(done) else {}
                return np.asarray([int(ok.get(r.tobytes(), -1)) for r in x])

            if not tracker.exhausted():
                curves.walk_to_limit(price_path, int(o["design_batch"]), int(o["design_rounds"]))
        else:
            design = structured_design(space, self.rng)
            budget = tracker.budget.evaluations
            n_init = len(design) if budget is None else max(int(o["init_fraction"] * budget), 1)
            design = np.concatenate([space.sample(self.rng, int(o["init_random"])), design[:n_init]])
            for start in range(0, len(design), 64):  # a time budget is checked between chunks
                if tracker.exhausted():
                    break
                price(design[start : start + 64])

        surrogate = PlanSurrogate(problem, int(self.rng.integers(2**31)))
        eps0 = np.full(dims, min(0.5, o["eps0_changes"] / dims))
        eps0_layer = np.full(L, min(0.5, o["layer_eps0_changes"] / L))
        history: list[float] = []
        rho_p = np.full(dims, o["rho3"])
        repair: np.ndarray | None = None
        merged: np.ndarray | None = None
        idle = 0
        fit_seconds = 0.0  # slowest surrogate step so far: not started when time is short
        tau = 0
        while not tracker.exhausted() and len(hist):
            tau += 1
            rank, Y, S = hist.rank()
            X, K = np.concatenate(hist.x), np.concatenate(hist.k)
            eps = epsilon(eps0, tau, o["rho"], rho_p)
            if o["single_eps"]:
                eps = np.full(dims, float(epsilon(eps0[0], tau, o["rho"], rho_p.max())))
            n_pool = self._pool_size(problem)
            n_layer = int(o["layer_fraction"] * n_pool) if curves is not None else 0
            parts = [self._candidates(space, X[rank[:8]], eps, n_pool - n_layer)]
            if curves is not None:
                layer_rho = rho_p[2 * space.cells : 2 * space.cells + L]  # a layer's method dim
                eps_layer = epsilon(eps0_layer, tau, o["rho"], layer_rho)
                if o["single_eps"]:
                    eps_layer = np.full(L, float(epsilon(eps0_layer[0], tau, o["rho"], rho_p.max())))
                k_new = self._layer_moves(curves, K[rank[:8]], eps_layer, n_layer)
                parts.append(space.encode(curves.plans(k_new)))
            cand = space.canonical(np.concatenate(parts))
            _, first = np.unique(cand, axis=0, return_index=True)
            cand = cand[np.sort(first)]
            cand = cand[[c.tobytes() not in hist.seen for c in cand]]
            q = int(o["batch_size"])
            if len(cand) == 0:
                cand = space.sample(self.rng, q)
            left_s = tracker.remaining_seconds()
            in_time = left_s is None or left_s > 2.0 * fit_seconds  # else pick at random
            if o["surrogate"] and len(cand) > q and in_time:
                t0 = time.perf_counter()
                refit = tau % int(o["refit_every"]) == 1
                idx = self._training_set(Y, S, rank)
                surrogate.fit(hist.observed(), idx, refit)
                pick = self._acquire(surrogate, space, cand, Y, S, q)
                fit_seconds = max(fit_seconds, time.perf_counter() - t0)
            else:
                pick = self.rng.permutation(len(cand))[:q]
            extra = [e for e in (repair, merged) if e is not None]
            x = price(np.concatenate([*extra, cand[pick]]))
            if len(x) == 0:  # nothing new to price: a tiny space may be used up
                idle += 1
                if idle >= 10 or len(hist.seen) >= space.size():
                    break
                continue
            idle = 0
            merged = self._merge(X[rank[0]], Y[rank[0]], S[rank[0]], x, hist.score[-1], hist.slack[-1])
            # The iteration's deployment is its best plan: localise what broke on it.
            s, y = hist.slack[-1], _log_score(hist.score[-1])
            best_row = x[np.lexsort((y, np.maximum(s, 0.0)))[0]][None]
            broken = broken_cells(space, best_row)
            rho_p = rho_prime(space, broken, o["rho1"], o["rho2"], o["rho3"])
            repair = self._replicate(space, best_row, broken)
            history.append(tracker.best_key[1])
            if tracker.seen_feasible and self._stalled(history):
                break

    def _warm_start(self, space: PlanSpace, tracker: Tracker, hist: _History, price: Any) -> None:
        """Plans given to ``suggest`` (priced by the base already): kept as observations where
        the plan vector is exactly the plan priced; a grouped or off-menu plan's nearest vector
        is priced instead."""
        s = tracker.suggested
        if s is None:
            return
        x = space.encode(s.plans)
        exact = _same_plans(space.decode(x), s.plans)
        if exact.any():
            batch = _rows_of(s.batch, exact)
            hist.add(x[exact], None, batch, s.score[exact])
        if (~exact).any() and not tracker.exhausted():
            price(x[~exact])

    def _pool_size(self, problem: DeploymentProblem) -> int:
        """Candidates per iteration: fewer on huge problems, where estimating one costs B*L*E."""
        per_plan = problem.popularity.loads.size
        return int(np.clip(4_000_000 // max(per_plan, 1), 64, int(self.options["candidates"])))

    def _acquire(
        self, surrogate: PlanSurrogate, space: PlanSpace, cand: np.ndarray, Y: np.ndarray,
        S: np.ndarray, q: int,
    ) -> np.ndarray:
        """Expected improvement of log score times the probability of feasibility; before any
        feasible plan, the probability of feasibility alone."""
        arrays = space.decode(cand)
        est = expert_estimate(space.problem, arrays)
        pred = surrogate.predict(cand, est, arrays.method, arrays.pipeline_degree)
        pof = probability_of_feasibility(pred.time_slack, pred.time_slack_sd) * pred.known_ok
        feasible = S <= 0
        if feasible.any():
            best = float(Y[feasible].min())
            acq = expected_improvement(pred.log_score, pred.log_score_sd, best) * pof
        else:
            acq = pof
        return np.lexsort((pred.log_score, -acq))[:q]

    def _training_set(self, Y: np.ndarray, S: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """The best ``train_best`` plans and the latest ``train_recent``, best first."""
        n, o = len(Y), self.options
        recent = np.arange(max(n - int(o["train_recent"]), 0), n)
        best = rank[: int(o["train_best"])]
        return np.concatenate([best, recent[~np.isin(recent, best)]])

    def _stalled(self, history: list[float]) -> bool:
        """The best score moved less than zeta (relative) over the last lambda iterations."""
        lam = int(self.options["lambda_iters"])
        if len(history) <= lam:
            return False
        old, new = history[-1 - lam], history[-1]
        return abs(old - new) <= self.options["zeta"] * abs(old)

    def _candidates(
        self, space: PlanSpace, elites: np.ndarray, eps: np.ndarray, n: int
    ) -> np.ndarray:
        """Epsilon-shotgun around the elites: dimension d is re-drawn with probability eps_d.

        70% of candidates start from the incumbent (elites[0]), the rest from the next elites;
        a re-drawn dimension steps +-1 (memory, replicas and degrees are ordinal) or, half the
        time, takes any value. Each candidate scales eps by 0.5, 1, 2 or 4 so one pool holds
        several radii; ``global_fraction`` of the pool is uniform over the whole space.
        """
        upper = space.upper
        n_global = int(self.options["global_fraction"] * n)
        n_local = n - n_global
        parents = np.where(
            self.rng.random(n_local) < 0.7, 0, self.rng.integers(0, len(elites), n_local)
        )
        base = elites[parents]
        scale = self.rng.choice([0.5, 1.0, 2.0, 4.0], size=(n_local, 1))
        explore = self.rng.random(base.shape) < np.minimum(eps * scale, 1.0)
        none = np.flatnonzero(~explore.any(axis=1))  # move at least one dimension
        explore[none, self.rng.choice(space.dims, len(none), p=eps / eps.sum())] = True
        step = self.rng.choice([-1, 1], size=base.shape)
        jump = self.rng.integers(0, upper, size=base.shape)
        moved = np.where(self.rng.random(base.shape) < 0.5, base + step, jump)
        moved = np.where(moved < 0, 1, np.where(moved >= upper, upper - 2, moved))
        local = np.where(explore, moved, base)
        return space.clip(np.concatenate([local, space.sample(self.rng, n_global)]))

    def _layer_moves(
        self, curves: LayerCurves, elites: np.ndarray, eps: np.ndarray, n: int
    ) -> np.ndarray:
        """Epsilon-shotgun on curve positions (ours): layer l moves with probability eps_l (x a
        radius 0.5-4 per candidate), by 1-3 points along its curve (faster or slower) or,
        one time in ten, to any point; at least one layer moves."""
        sizes = curves.sizes
        parents = np.where(self.rng.random(n) < 0.7, 0, self.rng.integers(0, len(elites), n))
        base = elites[parents]
        scale = self.rng.choice([0.5, 1.0, 2.0, 4.0], size=(n, 1))
        move = self.rng.random(base.shape) < np.minimum(eps * scale, 1.0)
        none = np.flatnonzero(~move.any(axis=1))
        move[none, self.rng.choice(len(sizes), len(none), p=eps / eps.sum())] = True
        step = self.rng.choice([-3, -2, -1, 1, 2, 3], size=base.shape)
        jump = self.rng.integers(0, sizes, size=base.shape)
        moved = np.where(self.rng.random(base.shape) < 0.9, base + step, jump)
        return curves.clip(np.where(move, moved, base))

    def _merge(
        self,
        parent: np.ndarray,
        y_parent: float,
        s_parent: float,
        x: np.ndarray,
        score: np.ndarray,
        s: np.ndarray,
    ) -> np.ndarray | None:
        """Combine the moves of a batch: plans holding the changes of the best 1/4, 1/2 and all
        of this batch's candidates that beat the incumbent they were drawn from.

        A batch prices its candidates in parallel, so each improving move is found alone; on
        a 1,500-dimensional space keeping only the best one wastes the others (our addition,
        not in the paper: the paper evaluates one deployment per iteration).
        """
        y = _log_score(score)
        feasible_parent = s_parent <= 0
        better = (s <= 0) & (y < y_parent) if feasible_parent else (np.maximum(s, 0) < s_parent)
        idx = np.flatnonzero(better)
        if len(idx) < 2:
            return None
        idx = idx[np.argsort(y[idx] if feasible_parent else s[idx])]
        out = []
        for k in sorted({max(2, len(idx) // 4), max(2, len(idx) // 2), len(idx)}):
            row = parent.copy()
            for i in idx[:k][::-1]:  # the best move is applied last and wins conflicts
                moved = x[i] != parent
                row[moved] = x[i][moved]
            out.append(row)
        return np.asarray(out)

    def _replicate(self, space: PlanSpace, x: np.ndarray, broken: BrokenCells) -> np.ndarray | None:
        """Alg. 2's replicate step: replicas *= n_new where memory or payload broke."""
        if not (broken.memory.any() or broken.payload.any()):
            return None
        C = space.cells
        factor = np.maximum(broken.memory_factor, broken.payload_factor).reshape(1, C)
        out = x.copy()
        out[:, C : 2 * C] = np.minimum((out[:, C : 2 * C] + 1) * factor, space.upper[C]) - 1
        return out

def _same_plans(a: PlanArrays, b: PlanArrays) -> np.ndarray:
    """Per plan: do two PlanArrays hold the same ungrouped plan?"""
    if b.group is not None or b.arm64 is not None:
        ok = np.ones(a.size, dtype=bool)
        if b.group is not None:
            ok &= (b.group == np.arange(b.group.shape[2])).all(axis=(1, 2))
        if b.arm64 is not None:
            ok &= ~b.arm64.any(axis=(1, 2))
    else:
        ok = np.ones(a.size, dtype=bool)
    same = (
        (a.memory_mb == b.memory_mb).all(axis=(1, 2))
        & (a.replicas == b.replicas).all(axis=(1, 2))
        & (a.method == b.method).all(axis=1)
    )
    piped = a.method == 0
    beta = np.where(piped, a.pipeline_degree == b.pipeline_degree, True).all(axis=1)
    return ok & same & beta


def _rows_of(batch: EvaluationBatch, mask: np.ndarray) -> EvaluationBatch:
    return EvaluationBatch(
        batch.cost_usd[mask], batch.cost_gb_s[mask], batch.latency_s[mask],
        batch.latency_mean_s[mask], batch.layer_latency_s[mask],
        {k: v[mask] for k, v in batch.violations.items()},
        {k: v[mask] for k, v in batch.cost_breakdown_usd.items()},
        batch.tokens_per_batch,
    )


class BayesSingleEpsSolver(BayesEGreedySolver):
    """Ablation: one epsilon shared by every dimension (boosted by the largest rho')."""

    name = "bayes-single-eps"
    default_options: ClassVar[dict[str, Any]] = {
        **BayesEGreedySolver.default_options,
        "single_eps": True,
    }


class BayesRandomSolver(BayesEGreedySolver):
    """Ablation: the same epsilon-greedy candidates, picked at random (no surrogate)."""

    name = "bayes-random"
    default_options: ClassVar[dict[str, Any]] = {
        **BayesEGreedySolver.default_options,
        "surrogate": False,
    }
