"""The paper's Bayesian optimization with a multi-dimensional epsilon-greedy acquisition (Alg. 2).

One iteration tau: candidates are drawn around the best plans seen (each dimension d of the
PlanSpace vector is re-drawn with probability eps_d, kept with 1 - eps_d, after epsilon-shotgun),
a Gaussian process on the log-cost of every evaluated plan (infeasible plans penalised by their
violation) ranks them by expected improvement, and the best batch is priced. The schedule is
eps_tau = eps_0 / (1 + rho*tau), boosted by (1 + rho'*tau) on the dimensions of the experts whose
memory (rho1) or payload (rho2) constraint broke in the iteration's deployment (rho3 otherwise),
rho3 < rho2 < rho1 < rho. The paper's replicate step (n_new = ceil(M_real / M)) repairs that
deployment for the next batch. Stops when the best cost moves less than zeta over lambda
iterations. Hyperparameters and why: docs/bayes-egreedy.md.

>>> from moeopt.problem import load_problem
>>> r = BayesEGreedySolver(seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=400))
>>> r.solution_status.value
'feasible'
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from cost_models import lambda_model as lm
from moeopt.evaluate import EvaluationBatch, expert_breaks, violation_scales
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, Tracker
from moeopt.space import PlanSpace

# -- the epsilon schedule ----------------------------------------------------------------------


def epsilon(
    eps0: np.ndarray | float, tau: int, rho: float, rho_prime: np.ndarray | float
) -> np.ndarray:
    """eps_tau = eps_0 / (1 + rho*tau), then boosted by (1 + rho'*tau), capped at 1.

    As in Alg. 2 the boost applies to the decayed eps of this iteration only: the next
    iteration starts again from eps_0, so the effective decay per dimension is
    (1 + rho'*tau) / (1 + rho*tau) (Theorem 2's slowest rate uses rho' = rho1).
    """
    eps = np.asarray(eps0, dtype=float) / (1.0 + rho * tau) * (1.0 + np.asarray(rho_prime) * tau)
    return np.minimum(eps, 1.0)


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


# -- structured initial design (shared with the Nevergrad warm start) ------------------------


def structured_design(space: PlanSpace, rng: np.random.Generator) -> np.ndarray:
    """Plans a search should see first: the feasible region can be too narrow to hit at random.

    Load-aware plans first (replicas = ceil(max load / cap) per expert for caps on a geometric
    grid), then uniform plans (one memory size and replica count everywhere), each at every
    memory size and method (pipelined at three degrees). Each group is shuffled by ``rng``.
    """
    p = space.problem
    C, L = space.cells, p.layers
    up = space.upper
    n_mem, n_rep, n_beta = int(up[0]), int(up[C]), int(up[-1])
    variants = []  # (method index, beta index)
    for a in range(int(up[2 * C])):
        is_piped = space.method_options[a] == lm.PIPELINED_STORAGE
        betas = sorted({n_beta // 4, n_beta // 2, (3 * n_beta) // 4}) if is_piped else [n_beta // 2]
        variants += [(a, b) for b in betas]
    peak = p.popularity.loads.max(axis=0).reshape(C).astype(float)  # heaviest batch per expert
    top = max(peak.max(), 1.0)
    caps = np.unique(np.ceil(top / np.geomspace(1, 4 * n_rep, 10)))
    # Rows are keyed by (memory, method, beta, replica vector id): equal rows have equal keys,
    # so duplicates are dropped on the small keys (np.unique over full rows of 30,000 columns
    # took 4.5 s on deepseek-v3, most of an 8 s budget).
    rep_ids: dict[bytes, int] = {}
    rep_vectors: list[np.ndarray] = []

    def rep_id(reps: np.ndarray) -> int:
        reps = reps.astype(np.int64)
        key = reps.tobytes()
        if key not in rep_ids:
            rep_ids[key] = len(rep_vectors)
            rep_vectors.append(reps)
        return rep_ids[key]

    load_aware_reps = [rep_id(np.clip(np.ceil(peak / cap), 1, n_rep) - 1) for cap in caps]
    uniform_reps = [rep_id(np.full(C, g)) for g in range(n_rep)]
    load_aware, uniform = [], []
    for mem in range(n_mem):
        for a, b in variants:
            load_aware += [(mem, a, b, r) for r in load_aware_reps]
            uniform += [(mem, a, b, r) for r in uniform_reps]
    groups = [np.asarray(g, dtype=np.int64) for g in (load_aware, uniform)]
    keys = np.concatenate([g[rng.permutation(len(g))] for g in groups])
    _, first = np.unique(keys, axis=0, return_index=True)
    rows = [
        np.concatenate([np.full(C, mem), rep_vectors[r], np.full(L, a), np.full(L, b)])
        for mem, a, b, r in keys[np.sort(first)]
    ]
    return space.clip(np.asarray(rows, dtype=np.int64).reshape(len(rows), -1))


# -- the solver ----------------------------------------------------------------------------


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


class BayesEGreedySolver(Solver):
    """Gaussian-process BO with one epsilon per PlanSpace dimension (the paper's Alg. 2)."""

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
        "batch_size": 32,
        "candidates": 512,
        "global_fraction": 0.1,  # candidates drawn uniformly from the whole space
        "init_fraction": 0.2,  # share of the evaluation budget for the structured design
        "init_random": 32,  # uniform random plans in the first batch
        "train_best": 160,  # GP training set: the best plans ...
        "train_recent": 64,  # ... and the most recent ones
        "refit_every": 4,  # re-optimise the GP kernel every k iterations
        "single_eps": False,  # ablation: one shared epsilon
        "surrogate": True,  # ablation: False picks candidates at random (no GP)
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
        dims = space.dims
        eps0 = np.full(dims, min(0.5, o["eps0_changes"] / dims))
        xs: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        slacks: list[np.ndarray] = []
        seen: set[bytes] = set()

        def price(x: np.ndarray) -> np.ndarray:
            x = space.clip(x)
            fresh = []
            for i, row in enumerate(x):
                if row.tobytes() not in seen:
                    seen.add(row.tobytes())
                    fresh.append(i)
            x = x[fresh]
            left = tracker.remaining_evaluations()
            if left is not None:
                x = x[:left]
            if len(x) == 0:
                return x
            batch, score, _ = tracker.evaluate(space.decode(x))
            xs.append(x)
            scores.append(score)
            slacks.append(slack(batch, problem))
            return x

        # Initial design: structured plans (up to init_fraction of the budget) and random ones.
        design = structured_design(space, self.rng)
        budget = tracker.budget.evaluations
        n_init = len(design) if budget is None else max(int(o["init_fraction"] * budget), 1)
        design = np.concatenate([space.sample(self.rng, int(o["init_random"])), design[:n_init]])
        chunk = 64  # small enough that a time budget is checked often on large problems
        for start in range(0, len(design), chunk):
            if tracker.exhausted():
                break
            price(design[start : start + chunk])

        models: tuple[Any, Any] | None = None
        history: list[float] = []
        rho_p = np.full(dims, o["rho3"])
        repair: np.ndarray | None = None
        merged: np.ndarray | None = None
        idle = 0
        fit_seconds = 0.0  # slowest surrogate step so far: not started when time is short
        tau = 0
        while not tracker.exhausted():
            tau += 1
            X, S = np.concatenate(xs), np.concatenate(slacks)
            Y = _log_score(np.concatenate(scores))
            rank = np.lexsort((Y, np.maximum(S, 0.0)))  # feasible by cost, then least violating
            eps = epsilon(eps0, tau, o["rho"], rho_p)
            if o["single_eps"]:
                eps = np.full(dims, float(epsilon(eps0[0], tau, o["rho"], rho_p.max())))
            cand = self._candidates(space, X[rank[:8]], eps, int(o["candidates"]))
            cand = np.asarray([c for c in cand if c.tobytes() not in seen]).reshape(-1, dims)
            q = int(o["batch_size"])
            if len(cand) == 0:
                cand = space.sample(self.rng, q)
            left_s = tracker.remaining_seconds()
            in_time = left_s is None or left_s > 2.0 * fit_seconds  # else pick at random
            if o["surrogate"] and len(cand) > q and in_time:
                t0 = time.perf_counter()
                refit = models is None or tau % int(o["refit_every"]) == 1
                idx = self._training_set(Y, S, rank)
                scale = np.maximum(space.upper - 1, 1)
                span = SpanEmbedding.of(X[idx] / scale)
                models = (
                    self._fit(span.coords, Y[idx], refit, models and models[0].kernel_),
                    self._fit(span.coords, S[idx], refit, models and models[1].kernel_),
                    span,
                )
                feasible = S <= 0
                best = float(Y[feasible].min()) if feasible.any() else None
                pick = np.argsort(-self._acquisition(models, cand / scale, best))[:q]
                fit_seconds = max(fit_seconds, time.perf_counter() - t0) if refit else fit_seconds
            else:
                pick = self.rng.permutation(len(cand))[:q]
            extra = [e for e in (repair, merged) if e is not None]
            x = price(np.concatenate([*extra, cand[pick]]))
            if len(x) == 0:  # nothing new to price: a tiny space may be used up
                idle += 1
                if idle >= 10 or len(seen) >= space.size():
                    break
                continue
            idle = 0
            merged = self._merge(X[rank[0]], Y[rank[0]], S[rank[0]], x, scores[-1], slacks[-1])
            # The iteration's deployment is its best plan: localise what broke on it.
            s, y = slacks[-1], _log_score(scores[-1])
            best_row = x[np.lexsort((y, np.maximum(s, 0.0)))[0]][None]
            broken = broken_cells(space, best_row)
            rho_p = rho_prime(space, broken, o["rho1"], o["rho2"], o["rho3"])
            repair = self._replicate(space, best_row, broken)
            history.append(tracker.best_key[1])
            if tracker.seen_feasible and self._stalled(history):
                break

    def _training_set(self, Y: np.ndarray, S: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """The best ``train_best`` plans and the latest ``train_recent``: keeps the GP small."""
        n, o = len(Y), self.options
        recent = np.arange(max(n - int(o["train_recent"]), 0), n)
        return np.unique(np.concatenate([rank[: int(o["train_best"])], recent]))

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

    def _fit(self, coords: np.ndarray, y: np.ndarray, optimize: bool, kernel: Any = None) -> Any:
        """Matern-5/2 GP with one length scale (an ARD kernel on 1,500 dimensions is too slow
        to fit each iteration) on :class:`SpanEmbedding` coordinates; hyperparameters
        re-optimised every ``refit_every`` iterations."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        if kernel is None or optimize:
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
                length_scale=1.0, length_scale_bounds=(1e-2, 1e3), nu=2.5
            ) + WhiteKernel(1e-2, (1e-6, 1.0))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            normalize_y=True,
            optimizer="fmin_l_bfgs_b" if optimize else None,
            random_state=int(self.rng.integers(2**31)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # L-BFGS chatter on flat likelihoods
            gp.fit(coords, y)
        return gp

    def _acquisition(
        self, models: tuple[Any, Any, SpanEmbedding], z: np.ndarray, best: float | None
    ) -> np.ndarray:
        """Expected improvement of log cost times the probability of feasibility (slack <= 0);
        before any feasible plan, the probability of feasibility alone. ``z``: scaled candidates."""
        from scipy.stats import norm

        z = models[2].apply(z)
        mu_s, sd_s = models[1].predict(z, return_std=True)
        pof = norm.cdf(-mu_s / np.maximum(sd_s, 1e-9))
        if best is None:
            return pof
        mu, sd = models[0].predict(z, return_std=True)
        sd = np.maximum(sd, 1e-9)
        u = (best - mu) / sd
        return ((best - mu) * norm.cdf(u) + sd * norm.pdf(u)) * pof


@dataclass(frozen=True)
class SpanEmbedding:
    """Exact coordinates of points in the span of the GP's training points.

    Why: the kernel is isotropic, so it sees only distances, and n training points span at most
    n - 1 dimensions. Coordinates in that span, plus one coordinate for a new point's distance
    from it, keep every training-training and point-training distance exact while the GP's
    kernel works on n + 1 columns instead of every plan dimension (about 30,000 on deepseek-v3,
    where fitting on raw plans took 8 s).
    """

    mean: np.ndarray  # (dims,)
    basis: np.ndarray  # (dims, r) orthonormal
    coords: np.ndarray  # (n, r + 1) the training points' own coordinates

    @classmethod
    def of(cls, z: np.ndarray) -> SpanEmbedding:
        mean = z.mean(axis=0)
        zc = z - mean
        lam, u = np.linalg.eigh(zc @ zc.T)  # Gram matrix: n x n, cheap for n << dims
        keep = lam > max(float(lam.max(initial=0.0)), 1.0) * 1e-10
        basis = (zc.T @ u[:, keep]) / np.sqrt(lam[keep])
        span = cls(mean, basis, np.zeros((len(z), int(keep.sum()) + 1)))
        return cls(mean, basis, span.apply(z))

    def apply(self, z: np.ndarray) -> np.ndarray:
        zc = z - self.mean
        inside = zc @ self.basis
        outside = np.maximum((zc * zc).sum(axis=1) - (inside * inside).sum(axis=1), 0.0)
        return np.concatenate([inside, np.sqrt(outside)[:, None]], axis=1)


class BayesSingleEpsSolver(BayesEGreedySolver):
    """Ablation: one epsilon shared by every dimension (boosted by the largest rho')."""

    name = "bayes-single-eps"
    default_options: ClassVar[dict[str, Any]] = {
        **BayesEGreedySolver.default_options,
        "single_eps": True,
    }


class BayesRandomSolver(BayesEGreedySolver):
    """Ablation: the same epsilon-greedy candidates, picked at random (no GP surrogate)."""

    name = "bayes-random"
    default_options: ClassVar[dict[str, Any]] = {
        **BayesEGreedySolver.default_options,
        "surrogate": False,
    }
