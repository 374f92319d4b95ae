"""Greedy: cheapest feasible options first, then buy back latency where it costs least.

1. Every expert takes its cheapest feasible (memory, replicas) under each method (and each
   pipeline degree); each layer takes its cheapest method.
2. While the time limit is broken: every layer proposes speeding up its bottleneck (every
   expert slower than a faster level takes its cheapest option at that level, under every
   method). All proposals are priced in one batch; the moves that buy the most seconds per
   dollar are taken, at most one per layer, until they cover the time over the limit.
   Stops when feasible or when nothing is faster. Before this, a fallback is priced: every
   layer at one shared bottleneck time (a grid of 24 times, each expert its cheapest option
   within it), so a problem whose first start is far too slow for step 2's budget (32-layer
   Mixtral at 20,000 evaluations) still ends feasible: step 2 gives up after half the budget
   when the fallback is feasible.
3. Then spend the slack: propose slowing each layer's bottleneck to cheaper levels and take
   the feasible proposal that saves the most, until nothing saves; from step 2's plan, then
   from the fallback while budget is left. The cheapest plan priced on the way wins.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cost_models import lambda_model as lm
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, Tracker
from solvers._options import ExpertOptions, expert_options

PRICE_CHUNK = 64  # plans priced per call, so the seconds budget is checked between chunks


class GreedySolver(Solver):
    name = "greedy"
    tags = frozenset({"constructive", "deterministic"})
    default_options: ClassVar[dict[str, Any]] = {"pipeline_degrees": (64, 256, 1024)}
    default_budget: ClassVar[Budget] = Budget(evaluations=500_000, seconds=60.0)

    def _variants(self, problem: DeploymentProblem) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for name in problem.methods:
            m = lm.METHODS.index(name)
            betas = self.options["pipeline_degrees"] if m == lm.PIPELINED_STORAGE else (1,)
            out += [(m, float(b)) for b in betas]
        return out

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        L, E = problem.layers, problem.experts
        variants = self._variants(problem)
        tables = [[expert_options(problem, layer, m, b) for (m, b) in variants] for layer in range(L)]

        # State: per layer a variant and per expert (memory index, replica index).
        (choice, mem, rep), _ = _cheapest_state(tables)
        state_eval = tracker.evaluate(self._arrays(problem, variants, [(choice, mem, rep)]))
        violated = state_eval[0].violations["time_limit"][0] > 0
        fallback = self._shared_bottleneck_start(problem, variants, tables, tracker) if violated else None
        left = tracker.remaining_evaluations()
        while violated and not tracker.exhausted():
            now = tracker.remaining_evaluations()
            if fallback is not None and left is not None and now is not None and now < left / 2:
                break  # leave step 3 half the budget to improve the fallback
            proposals, layers_of = [], []
            for layer in range(L):
                table = tables[layer][choice[layer]]
                bottleneck = table.time_s[np.arange(E), mem[layer], rep[layer]].max()
                for v, other in enumerate(tables[layer]):
                    for target in _levels(other, bottleneck):
                        m, g = other.cheapest(target)
                        if not other.feasible[np.arange(E), m, g].all():
                            continue
                        c2, m2, r2 = choice.copy(), mem.copy(), rep.copy()
                        c2[layer], m2[layer], r2[layer] = v, m, g
                        proposals.append((c2, m2, r2))
                        layers_of.append(layer)
            if not proposals:
                break
            cost, latency, _ = self._price(problem, variants, proposals, tracker)
            if not len(cost):
                break
            current_cost = state_eval[0].cost_usd[0]
            current_lat = state_eval[0].latency_s[0]
            gain = current_lat - latency
            extra = np.maximum(cost - current_cost, 1e-12)
            value = np.where(gain > 1e-9, gain / extra, -np.inf)
            if not np.isfinite(value.max()):
                break
            # Layers add up, so take the best move of several layers at once, best value
            # first, until their summed gain covers the time still over the limit.
            needed = state_eval[0].violations["time_limit"][0]
            taken: set[int] = set()
            covered = 0.0
            for p in np.argsort(-value):
                if not np.isfinite(value[p]) or covered >= needed:
                    break
                layer = layers_of[p]
                if layer in taken:
                    continue
                taken.add(layer)
                covered += gain[p]
                choice[layer], mem[layer], rep[layer] = (
                    proposals[p][0][layer], proposals[p][1][layer], proposals[p][2][layer]
                )
            state_eval = tracker.evaluate(self._arrays(problem, variants, [(choice, mem, rep)]))
            violated = state_eval[0].violations["time_limit"][0] > 0
        # 3. Spend the slack from step 2's plan, then (budget left) from the fallback too.
        starts = [] if violated else [(choice, mem, rep)]
        if fallback is not None:
            starts.append(fallback)
        for state in starts:
            if tracker.exhausted():
                break
            self._spend_slack(problem, variants, tables, tracker, state)
        return None  # the tracker holds the cheapest feasible plan priced on the way

    def _spend_slack(
        self,
        problem: DeploymentProblem,
        variants: list[tuple[int, float]],
        tables: list[list[ExpertOptions]],
        tracker: Tracker,
        state: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Slow down whichever layer saves the most money and stays feasible, until none does."""
        L, E = problem.layers, problem.experts
        choice, mem, rep = state
        state_eval = tracker.evaluate(self._arrays(problem, variants, [(choice, mem, rep)]))
        while not tracker.exhausted():
            proposals = []
            for layer in range(L):
                table = tables[layer][choice[layer]]
                bottleneck = table.time_s[np.arange(E), mem[layer], rep[layer]].max()
                for v, other in enumerate(tables[layer]):
                    for target in _levels(other, bottleneck * 1.6, floor_at=bottleneck):
                        m, g = other.cheapest(target)
                        if other.feasible[np.arange(E), m, g].all():
                            c2, m2, r2 = choice.copy(), mem.copy(), rep.copy()
                            c2[layer], m2[layer], r2[layer] = v, m, g
                            proposals.append((c2, m2, r2))
            if not proposals:
                break
            cost, _, feasible = self._price(problem, variants, proposals, tracker)
            if not len(cost):
                break
            saving = np.where(feasible, state_eval[0].cost_usd[0] - cost, -np.inf)
            best = int(np.argmax(saving))
            if not saving[best] > 1e-12:
                break
            choice, mem, rep = proposals[best]
            state_eval = tracker.evaluate(self._arrays(problem, variants, [(choice, mem, rep)]))

    def _shared_bottleneck_start(
        self,
        problem: DeploymentProblem,
        variants: list[tuple[int, float]],
        tables: list[list[ExpertOptions]],
        tracker: Tracker,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The cheapest feasible plan whose layers all share one bottleneck time, from a grid."""
        fastest = max(min(_fastest(t) for t in layer) for layer in tables)
        slowest = max((_cheapest_bottleneck(t) for layer in tables for t in layer), default=0.0)
        if not np.isfinite(fastest) or tracker.exhausted():
            return None
        states = []
        for target in np.geomspace(fastest, max(slowest, fastest * 1.01), 24):
            state, complete = _cheapest_state(tables, target)
            if complete:
                states.append(state)
        if not states:
            return None
        batch, _, _ = tracker.evaluate(self._arrays(problem, variants, states))
        cost = np.where(batch.feasible, batch.cost_usd, np.inf)
        best = int(np.argmin(cost))
        return states[best] if np.isfinite(cost[best]) else None

    def _price(
        self,
        problem: DeploymentProblem,
        variants: list[tuple[int, float]],
        states: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        tracker: Tracker,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cost, latency, feasible) of the states, priced in chunks so a time budget holds
        within a round: one round on deepseek-v3 is ~1,450 plans of 58 x 256 experts, seconds."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, len(states), PRICE_CHUNK):
            if tracker.exhausted():
                break
            batch, _, _ = tracker.evaluate(self._arrays(problem, variants, states[start:start + PRICE_CHUNK]))
            parts.append((batch.cost_usd, batch.latency_s, batch.feasible))
        if not parts:
            empty = np.zeros(0)
            return empty, empty, empty.astype(bool)
        return tuple(np.concatenate(col) for col in zip(*parts, strict=True))  # type: ignore[return-value]

    @staticmethod
    def _arrays(
        problem: DeploymentProblem,
        variants: list[tuple[int, float]],
        states: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> PlanArrays:
        menu = np.asarray(problem.memory_options, dtype=float)
        return PlanArrays(
            memory_mb=np.stack([menu[m] for _, m, _ in states]),
            replicas=np.stack([r + 1 for _, _, r in states]),
            method=np.stack([[variants[v][0] for v in c] for c, _, _ in states]),
            pipeline_degree=np.stack([[variants[v][1] for v in c] for c, _, _ in states]),
        )


def _cheapest_state(
    tables: list[list[ExpertOptions]], target: float = np.inf
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
    """Per layer the variant whose experts, each at its cheapest option within ``target``
    seconds, cost least; and whether every layer had such a variant (else its state is 0s)."""
    L, E = len(tables), len(tables[0][0].cost_usd)
    choice, mem, rep = np.zeros(L, dtype=int), np.zeros((L, E), dtype=int), np.zeros((L, E), dtype=int)
    experts = np.arange(E)
    complete = True
    for layer in range(L):
        best = np.inf
        for v, table in enumerate(tables[layer]):
            m, g = table.cheapest(target)
            ok = table.feasible[experts, m, g] & (table.time_s[experts, m, g] <= target)
            total = table.cost_usd[experts, m, g].sum() if ok.all() else np.inf
            if total < best:
                best, choice[layer], mem[layer], rep[layer] = total, v, m, g
        complete &= bool(np.isfinite(best))
    return (choice, mem, rep), complete


def _fastest(table: ExpertOptions) -> float:
    """The layer's smallest achievable bottleneck under this variant (inf if an expert fits nowhere)."""
    times = np.where(table.feasible, table.time_s, np.inf)
    return float(times.reshape(len(times), -1).min(axis=1).max())


def _cheapest_bottleneck(table: ExpertOptions) -> float:
    """The layer's bottleneck when every expert takes its cheapest option (0 if one fits nowhere)."""
    m, g = table.cheapest()
    experts = np.arange(len(m))
    if not table.feasible[experts, m, g].all():
        return 0.0
    return float(table.time_s[experts, m, g].max())


def _levels(table: ExpertOptions, below: float, floor_at: float | None = None) -> list[float]:
    """Target worst-batch times under ``below`` (and over ``floor_at``): the nearest level, and
    levels about 3%, 10%, 25% and 50% further away, so one step can be small or large."""
    times = np.where(table.feasible, table.time_s, np.inf)
    floor = _fastest(table)  # the slowest expert's best
    if floor_at is not None:
        floor = max(floor, floor_at + 1e-9)
    levels = np.unique(times[(times < below - 1e-9) & (times >= floor)])
    if not len(levels):
        return []
    if floor_at is not None:  # slowing down: nearest level first, then larger steps
        picks = {float(levels[0])}
        for f in (1.03, 1.1, 1.25, 1.5):
            above = levels[levels >= floor_at * f]
            picks.add(float(above[0]) if len(above) else float(levels[-1]))
        return sorted(picks)
    picks = {float(levels[-1])}
    for f in (0.97, 0.9, 0.75, 0.5):
        under = levels[levels <= below * f]
        picks.add(float(under[-1]) if len(under) else float(levels[0]))
    return sorted(picks, reverse=True)
