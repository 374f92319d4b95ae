"""The paper's learning loop (Alg. 2): Bayesian optimization over Q key-value pairs of the table.

One trial (iteration tau) of PAPER.md 3.4-3.5: write the Q pairs' values into the profiled
(layer, token id, attention id) -> expert table Omega, re-predict the per-batch loads d[e,i] of
the learning batches from their token ids, plan with the ``ilp`` solver in ODS mode on those
predicted loads, then deploy on the same batches' REAL loads: localise per expert whether the
real load broke the memory constraint (rho1), the payload constraint of a direct layer (rho2)
or neither (rho3), replicate as Alg. 2 does (n_new = ceil(M_real / M) or ceil(R D_in / D_p)),
and bill. The multi-dimensional epsilon-greedy search (one eps per pair, the schedule of
``solvers.bayes.epsilon``) proposes the next values around the best trial, a Gaussian process
over the pair values ranks the proposals, and the loop stops when the best cost moves less
than zeta over lambda trials. Choices and what is simplified: docs/popularity.md, "Learning".
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moeopt.evaluate import Evaluation, evaluate_batch, expert_breaks
from moeopt.model import ServiceLevel
from moeopt.plan import DeploymentPlan, PlanArrays
from moeopt.popularity.loads import Popularity
from moeopt.popularity.predictors import Predictor
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, total_violation
from solvers.bayes import epsilon

ACQUISITIONS = ("egreedy", "single-eps", "random")


@dataclass(frozen=True)
class LearningConfig:
    """Alg. 2's constants. The paper gives only Q = 1000 and rho3 < rho2 < rho1 < rho."""

    q: int = 1000  # Q key-value pairs
    mu: float = 0.5  # split: pairs [0, mu Q) are profiled mappings adjusted within L, the rest new
    alpha: float | None = None  # misprediction threshold, tokens per replica (None: 5% of mean)
    eps0_changes: float = 8.0  # eps_0 = changes / Q: about this many pairs move per proposal
    rho: float = 0.1
    rho1: float = 0.08  # the real load broke memory
    rho2: float = 0.05  # ... broke the payload of a direct layer
    rho3: float = 0.02  # mispredicted, constraints held
    lambda_iters: int = 10  # lambda: trials the best may stall ...
    zeta: float = 1e-3  # ... by less than this relative change
    max_iterations: int = 40
    candidates: int = 128  # epsilon-greedy proposals the GP ranks per trial
    acquisition: str = "egreedy"  # or the ablations "single-eps", "random"
    replicate: bool = True  # Alg. 2's replicate step on the real loads
    spread: bool = True  # new-key pairs dealt over (layer, expert), see select_pairs
    time_margin: float = 0.0  # plan to (1 - margin) x the time limit (ours, not the paper's)
    penalty: float = 10.0  # score = cost * (1 + penalty * violation) when infeasible
    ilp_seconds: float = 20.0
    time_limit_s: float | None = None  # stop after the trial that crosses it
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.rho3 < self.rho2 < self.rho1 < self.rho:
            raise ValueError("need 0 < rho3 < rho2 < rho1 < rho (PAPER.md 3.5)")
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition {self.acquisition!r}; allowed: {', '.join(ACQUISITIONS)}")
        if self.q < 1 or not 0 <= self.mu <= 1:
            raise ValueError("need q >= 1 and 0 <= mu <= 1")
        if not 0 <= self.time_margin < 1:
            raise ValueError("need 0 <= time_margin < 1")


@dataclass(frozen=True, eq=False)
class KeyValuePairs:
    """The Q pairs {z_q, v_q}: cell (key row, expert) of the table and its value bounds.

    Pairs [0, explore_from) are profiled mappings (count > 0), adjusted only when their token
    id is in L; pairs [explore_from, Q) are mappings never profiled (count 0): new keys.
    """

    key: np.ndarray  # (Q,) row of the predictor's key table
    expert: np.ndarray  # (Q,)
    layer: np.ndarray  # (Q,)
    token: np.ndarray  # (Q,) token id f1
    attention: np.ndarray  # (Q,) attention id f3
    cap: np.ndarray  # (Q,) largest value: the key's total profiled count
    initial: np.ndarray  # (Q,) v_0, the profiled counts
    explore_from: int

    @property
    def q(self) -> int:
        return len(self.key)


@dataclass(frozen=True)
class Feedback:
    """What the real loads said about one deployment (per batch j, layer e, expert i)."""

    mispredicted: np.ndarray  # (J, L, E) |r - R_real| > alpha
    memory: np.ndarray  # (J, L, E) branch (i): real minimal memory above the configured one
    payload: np.ndarray  # (J, L, E) branch (ii): direct layer, real payload above D_p
    n_new: np.ndarray  # (L, E) replication factor, worst batch


@dataclass(frozen=True)
class Trial:
    """One deployment: plan on predicted loads, (replicated) plan billed on real loads."""

    planned: DeploymentPlan | None  # ODS on the predicted loads
    plan: DeploymentPlan | None  # after the replicate step: what is billed
    evaluation: Evaluation | None  # on the real loads
    score: float  # cost if feasible, else cost * (1 + penalty * violation); inf: no plan
    feedback: Feedback | None

    @property
    def cost_usd(self) -> float:
        return self.evaluation.cost_usd if self.evaluation else math.inf

    @property
    def feasible(self) -> bool:
        return bool(self.evaluation and self.evaluation.feasible)


@dataclass(frozen=True)
class IterationRecord:
    """One trial of the loop, for the record."""

    tau: int
    cost_usd: float
    score: float
    feasible: bool
    violations: dict[str, float]
    best_score: float  # of the best trial so far (feasible first)
    mispredicted_experts: int  # (batch, layer, expert) cells with |r - R| > alpha
    memory_broken: int
    payload_broken: int
    replicated_experts: int
    limited_tokens: int  # |L|: distinct token ids of mispredicted batches
    eps_mean: float
    eps_max: float
    eps_boosted: int  # pairs whose eps was boosted (rho' > 0)
    pairs_changed: int  # pairs whose value differs from the profiled one
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class LearningResult:
    """The learned table (as a predictor), its deployment, and the trials that led there."""

    predictor: Predictor
    pairs: KeyValuePairs
    values: np.ndarray  # (Q,) the best trial's values
    trial: Trial  # the best trial (plan, evaluation on the learning batches' real loads)
    records: tuple[IterationRecord, ...]
    best_tau: int
    stopped: str  # "converged", "max_iterations" or "time_limit"

    @property
    def plan(self) -> DeploymentPlan | None:
        return self.trial.plan


# ---- the table ---------------------------------------------------------------------------------


def _check_table(predictor: Predictor) -> None:
    if not hasattr(predictor, "key_counts"):
        raise TypeError(f"{predictor.name} has no profiled key-value table; use bayes or token-id")


def select_pairs(
    predictor: Predictor, token_ids: np.ndarray, q: int, mu: float, spread: bool = True
) -> KeyValuePairs:
    """The Q pairs that matter for ``token_ids``.

    Profiled pairs (the first mu Q): keys ranked by how often their token occurs in
    ``token_ids`` times the key's profiled count (its weight in the posterior), their largest
    cells first. New keys (the rest): cells never profiled. With ``spread`` they are dealt
    round-robin over (layer, expert), rarest tokens first, so every expert has pairs that can
    move a few tokens onto it (an expert predicted empty gets the smallest memory, and any real
    token then breaks it); their cap is the token's whole profiled count, enough to flip it.
    Without ``spread``: the empty cells of the top keys, capped at the key's count.
    """
    _check_table(predictor)
    p: Any = predictor
    counts = p.key_counts
    vocab, freq = np.unique(np.asarray(token_ids, dtype=np.int64), return_counts=True)
    tok = p.tokens[p.key_row]
    pos = np.minimum(np.searchsorted(vocab, tok), len(vocab) - 1)
    occurs = np.where(vocab[pos] == tok, freq[pos], 0)
    total = counts.sum(axis=1)
    weight = occurs * total
    keys = np.argsort(-weight, kind="stable")
    keys = keys[weight[keys] > 0]
    if len(keys) == 0:
        raise ValueError("no profiled key has a token id of the learning batches")
    e = counts.shape[1]
    order = np.argsort(-counts[keys], axis=1, kind="stable")  # experts by count, per key
    cell_key = np.repeat(keys, e)
    cell_exp = order.ravel()
    filled = counts[cell_key, cell_exp] > 0
    old = np.flatnonzero(filled)
    new = np.flatnonzero(~filled)
    if spread and len(new):
        group = p.key_layer[cell_key[new]] * e + cell_exp[new]
        by = np.lexsort((-total[cell_key[new]], occurs[cell_key[new]], group))
        start = np.searchsorted(group[by], group[by], side="left")
        rank = np.arange(len(by)) - start  # rank within its (layer, expert) group
        new = new[by][np.lexsort((group[by], rank))]
    n_old = min(len(old), max(round(mu * q), q - len(new)))
    n_new = min(len(new), q - n_old)
    pick = np.concatenate([old[:n_old], new[:n_new]])
    k, x = cell_key[pick], cell_exp[pick]
    cap = total[k].astype(float)
    if spread:
        cap[n_old:] = p.token_count[p.key_row[k[n_old:]]]
    return KeyValuePairs(
        key=k,
        expert=x,
        layer=p.key_layer[k],
        token=tok[k],
        attention=p.key_attn[k],
        cap=np.maximum(cap, 1.0),
        initial=counts[k, x].copy(),
        explore_from=int(n_old),
    )


def with_values(predictor: Predictor, pairs: KeyValuePairs, values: np.ndarray) -> Predictor:
    """A copy of the predictor whose table holds ``values`` at the pairs (Alg. 2 line 2)."""
    _check_table(predictor)
    counts = predictor.key_counts.copy()  # type: ignore[attr-defined]
    counts[pairs.key, pairs.expert] = values
    return predictor.with_key_counts(counts)  # type: ignore[attr-defined]


# ---- one deployment ----------------------------------------------------------------------------


def plan_ods(
    problem: DeploymentProblem, loads: np.ndarray, seconds: float = 20.0, seed: int = 0
) -> DeploymentPlan | None:
    """The ``ilp`` solver in ODS mode (the paper's Alg. 1) on the given per-batch loads."""
    from solvers.ilp import IlpSolver

    target = problem.with_popularity(Popularity(loads=loads, source="predicted"))
    result = IlpSolver(seed=seed, mode="ods").solve(target, Budget(evaluations=100, seconds=seconds))
    return result.plan


def feedback(
    problem: DeploymentProblem,
    plan: DeploymentPlan,
    predicted: np.ndarray,
    real: np.ndarray,
    alpha: float,
) -> Feedback:
    """Alg. 2 line 5 per batch and expert: misprediction, then exactly one of the branches
    memory short (i), payload exceeded on a direct layer (ii), or neither (iii); the memory
    need and payload come from the evaluator's own formulas (cost_models.lambda_model)."""
    a = PlanArrays.from_plans([plan], problem)
    y = a.replicas[0].astype(float)  # (L, E)
    r = np.ceil(predicted / y)
    big_r = np.ceil(real / y)
    br = expert_breaks(
        problem, big_r, a.method[0][None, :, None], a.pipeline_degree[0][None, :, None], a.memory_mb[0]
    )
    memory = br.memory
    payload = br.payload & ~memory
    n_new = np.where(memory, br.memory_factor, np.where(payload, br.payload_factor, 1.0))
    return Feedback(np.abs(r - big_r) > alpha, memory, payload, n_new.max(axis=0).astype(np.int64))


def replicate(problem: DeploymentProblem, plan: DeploymentPlan, n_new: np.ndarray) -> DeploymentPlan:
    """Alg. 2's replicate step: replicas x n_new per expert, capped at G."""
    a = PlanArrays.from_plans([plan], problem)
    reps = np.minimum(a.replicas * n_new[None], problem.max_replicas)
    return PlanArrays(a.memory_mb, reps, a.method, a.pipeline_degree, a.group, a.arm64).plan(
        0, problem
    )


def deploy(
    predictor: Predictor,
    problem: DeploymentProblem,
    token_ids: np.ndarray,
    real: np.ndarray,
    config: LearningConfig,
) -> Trial:
    """Predict the batches' loads, plan with ODS, (replicate,) bill on the real loads."""
    bs = problem.workload.tokens_per_batch
    predicted = predictor.predict_loads(token_ids, bs)
    if predicted.shape != real.shape:
        raise ValueError(f"predicted loads {predicted.shape} but real loads {real.shape}")
    target = problem
    if config.time_margin:
        target = problem.with_slo(ServiceLevel(problem.slo.time_limit_s * (1 - config.time_margin)))
    planned = plan_ods(target, predicted, config.ilp_seconds, config.seed)
    if planned is None:
        return Trial(None, None, None, math.inf, None)
    alpha = _alpha(problem, config)
    fb = feedback(problem, planned, predicted, real, alpha)
    plan = replicate(problem, planned, fb.n_new) if config.replicate else planned
    ev, score = bill(problem, plan, real, config.penalty)
    return Trial(planned, plan, ev, score, fb)


def bill(
    problem: DeploymentProblem, plan: DeploymentPlan, real: np.ndarray, penalty: float = 10.0
) -> tuple[Evaluation, float]:
    """Cost of ``plan`` on the real loads, and the score BO minimises (cost if feasible)."""
    target = problem.with_popularity(Popularity(loads=real, source="real"))
    batch = evaluate_batch(target, PlanArrays.from_plans([plan], target))
    ev = batch[0]
    if ev.feasible:
        return ev, ev.cost_usd
    violation = float(total_violation(batch, target)[0])
    if not (math.isfinite(ev.cost_usd) and math.isfinite(violation)):
        return ev, math.inf
    return ev, ev.cost_usd * (1.0 + penalty * violation)


def oracle(
    problem: DeploymentProblem, real: np.ndarray, config: LearningConfig | None = None
) -> Trial:
    """The paper's oracle baseline: ODS on the real loads themselves."""
    config = config or LearningConfig()
    plan = plan_ods(problem, real, config.ilp_seconds, config.seed)
    if plan is None:
        return Trial(None, None, None, math.inf, None)
    ev, score = bill(problem, plan, real, config.penalty)
    return Trial(plan, plan, ev, score, None)


def _alpha(problem: DeploymentProblem, config: LearningConfig) -> float:
    if config.alpha is not None:
        return float(config.alpha)
    mean = problem.workload.tokens_per_batch * problem.model.top_k / problem.experts
    return 0.05 * mean


# ---- the loop ----------------------------------------------------------------------------------


def _batch_tokens(token_ids: np.ndarray, batch_size: int, batches: int) -> list[np.ndarray]:
    return [np.unique(token_ids[j * batch_size : (j + 1) * batch_size]) for j in range(batches)]


def boosts(
    pairs: KeyValuePairs, fb: Feedback, batch_tokens: list[np.ndarray], config: LearningConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(rho' per pair, pair in L) from one deployment's feedback.

    A profiled pair is in L when its token id occurs in a batch with a mispredicted expert of
    the pair's layer (|r - R| > alpha, or a broken memory or payload constraint, which no
    correct prediction would have caused); its rho' is the largest branch (rho1 > rho2 > rho3)
    among those experts.
    Applied once per trial (Alg. 2 may compound it per batch and expert; Theorem 2 assumes the
    once-per-trial rate). New-key pairs are never boosted (Alg. 2 boosts eps_{1:mu Q} only).
    """
    branch = np.where(fb.memory, config.rho1, np.where(fb.payload, config.rho2, config.rho3))
    off = fb.mispredicted | fb.memory | fb.payload  # a broken constraint is a misprediction too
    per_layer = np.where(off, branch, 0.0).max(axis=2)  # (J, L)
    rho_p = np.zeros(pairs.q)
    in_l = np.zeros(pairs.q, dtype=bool)
    for j, toks in enumerate(batch_tokens):
        present = np.isin(pairs.token, toks)
        r = per_layer[j, pairs.layer]
        hit = present & (r > 0)
        in_l |= hit
        rho_p = np.where(hit, np.maximum(rho_p, r), rho_p)
    profiled = np.arange(pairs.q) < pairs.explore_from
    return np.where(profiled, rho_p, 0.0), in_l | ~profiled


def propose(
    rng: np.random.Generator,
    base: np.ndarray,
    pairs: KeyValuePairs,
    eps: np.ndarray,
    allowed: np.ndarray,
    n: int,
) -> np.ndarray:
    """Epsilon-shotgun around ``base``: pair q is re-drawn with probability eps_q (x a radius
    0.5-4 per proposal), only where ``allowed``; a re-drawn value halves or doubles, or jumps
    to any other integer in [0, cap_q]. At least one allowed pair moves."""
    q = pairs.q
    w = np.where(allowed, eps, 0.0)
    if w.sum() <= 0:
        w = np.where(allowed, 1.0, 0.0) if allowed.any() else np.ones(q)
    scale = rng.choice([0.5, 1.0, 2.0, 4.0], size=(n, 1))
    move = (rng.random((n, q)) < np.minimum(w * scale, 1.0)) & (w > 0)
    none = np.flatnonzero(~move.any(axis=1))
    move[none, rng.choice(q, len(none), p=w / w.sum())] = True
    cap = pairs.cap[None]
    cur = np.broadcast_to(base, (n, q))
    seed_val = rng.integers(1, np.maximum(cap // 4, 1) + 1, size=(n, q))
    step = np.where(cur > 0, np.rint(cur * rng.choice([0.5, 2.0], size=(n, q))), seed_val)
    jump = np.floor(rng.random((n, q)) * (cap + 1))
    new = np.clip(np.where(rng.random((n, q)) < 0.5, step, jump), 0, cap)
    new = np.where(new == cur, np.where(cur < cap, cur + 1, cur - 1), new)  # a move moves
    return np.where(move, new, cur)


def _log(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.maximum(y, 1e-300))
    finite = np.isfinite(out)
    worst = out[finite].max() if finite.any() else 0.0
    return np.where(finite, out, worst + 1.0)


def _rank(
    X: np.ndarray, y: np.ndarray, cand: np.ndarray, cap: np.ndarray, seed: int
) -> np.ndarray:
    """Expected improvement of log score under a GP over the pair values (scaled by cap)."""
    from scipy.stats import norm
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(1.0, (1e-2, 1e3), nu=2.5) + WhiteKernel(
        1e-2, (1e-6, 1.0)
    )
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
    target = _log(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp.fit(X / cap, target)
    mu, sd = gp.predict(cand / cap, return_std=True)
    sd = np.maximum(sd, 1e-9)
    best = float(target.min())
    u = (best - mu) / sd
    return (best - mu) * norm.cdf(u) + sd * norm.pdf(u)


def _best(scores: list[float], feasible: list[bool]) -> int:
    """The best trial: feasible first (a barely infeasible plan can score below a feasible
    one under the penalty), then by score."""
    return int(np.lexsort((np.asarray(scores), ~np.asarray(feasible)))[0])


def learn(
    predictor: Predictor,
    problem: DeploymentProblem,
    token_ids: np.ndarray,
    real: np.ndarray,
    config: LearningConfig | None = None,
) -> LearningResult:
    """Alg. 2 on the learning batches: ``token_ids`` (their tokens, known before inference)
    and ``real`` (their real per-batch loads, (J, layers, experts)). Trial 1 is the profiled
    table itself, i.e. the No-BO deployment."""
    from threadpoolctl import threadpool_limits

    config = config or LearningConfig()
    token_ids = np.asarray(token_ids, dtype=np.int64)
    real = np.asarray(real)
    rng = np.random.default_rng(config.seed)
    bs = problem.workload.tokens_per_batch
    pairs = select_pairs(predictor, token_ids, config.q, config.mu, config.spread)
    batch_tokens = _batch_tokens(token_ids, bs, real.shape[0])
    eps0 = np.full(pairs.q, min(0.5, config.eps0_changes / pairs.q))
    values = pairs.initial.copy()
    xs: list[np.ndarray] = []
    ys: list[float] = []
    feasible: list[bool] = []
    trials: list[Trial] = []
    records: list[IterationRecord] = []
    best_hist: list[float] = []
    stopped = "max_iterations"
    start = time.perf_counter()
    for tau in range(1, config.max_iterations + 1):
        t0 = time.perf_counter()
        trial = deploy(with_values(predictor, pairs, values), problem, token_ids, real, config)
        xs.append(values.copy())
        ys.append(trial.score)
        feasible.append(trial.feasible)
        trials.append(trial)
        best = _best(ys, feasible)
        best_hist.append(ys[best])
        if trial.feedback is not None:
            rho_p, in_l = boosts(pairs, trial.feedback, batch_tokens, config)
        else:  # no plan at all: explore everywhere, as if memory broke
            rho_p = np.where(np.arange(pairs.q) < pairs.explore_from, config.rho1, 0.0)
            in_l = np.ones(pairs.q, dtype=bool)
        if config.acquisition == "single-eps":
            eps = np.full(pairs.q, float(epsilon(eps0[0], tau, config.rho, rho_p.max())))
        elif config.acquisition == "random":
            eps = eps0
        else:
            eps = epsilon(eps0, tau, config.rho, rho_p)
        fb = trial.feedback
        ev = trial.evaluation
        records.append(
            IterationRecord(
                tau=tau,
                cost_usd=trial.cost_usd,
                score=trial.score,
                feasible=trial.feasible,
                violations=dict(ev.violations) if ev else {},
                best_score=best_hist[-1],
                mispredicted_experts=int(fb.mispredicted.sum()) if fb else 0,
                memory_broken=int(fb.memory.sum()) if fb else 0,
                payload_broken=int(fb.payload.sum()) if fb else 0,
                replicated_experts=int((fb.n_new > 1).sum()) if fb and config.replicate else 0,
                limited_tokens=len(np.unique(pairs.token[: pairs.explore_from][in_l[: pairs.explore_from]])),
                eps_mean=float(eps.mean()),
                eps_max=float(eps.max()),
                eps_boosted=int((rho_p > 0).sum()) if config.acquisition != "random" else 0,
                pairs_changed=int((values != pairs.initial).sum()),
                seconds=time.perf_counter() - t0,
            )
        )
        lam = config.lambda_iters
        if len(best_hist) > lam and math.isfinite(best_hist[-1]):
            old, new = best_hist[-1 - lam], best_hist[-1]
            if abs(old - new) <= config.zeta * abs(old):
                stopped = "converged"
                break
        if tau == config.max_iterations:
            break
        if config.time_limit_s is not None and time.perf_counter() - start >= config.time_limit_s:
            stopped = "time_limit"
            break
        # Update the pairs (Alg. 2 line 8): eps-GS over the history, GP-ranked.
        X, y = np.stack(xs), np.asarray(ys)
        if config.acquisition == "random":  # ablation: random adjustments of the profiled table
            values = propose(rng, pairs.initial, pairs, eps, np.ones(pairs.q, bool), 1)[0]
            continue
        allowed = in_l
        cand = propose(rng, X[best], pairs, eps, allowed, config.candidates)
        if len(xs) >= 2:
            with threadpool_limits(1):
                ei = _rank(X, y, cand, pairs.cap, int(rng.integers(2**31)))
            values = cand[int(np.argmax(ei))]
        else:
            values = cand[0]
    best_i = _best(ys, feasible)
    learned = with_values(predictor, pairs, xs[best_i])
    return LearningResult(
        predictor=learned,
        pairs=pairs,
        values=xs[best_i],
        trial=trials[best_i],
        records=tuple(records),
        best_tau=best_i + 1,
        stopped=stopped,
    )
