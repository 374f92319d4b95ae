"""Compiled inner loops of the exact solver (numba), for inputs where numpy's all-pairs arrays
cost seconds.

Why a compiled loop: the mu-dominance front (:func:`solvers._ilp_bounds._mu_front`) asks, for
each state in value order, whether any earlier survivor dominates it. numpy can only answer
that for blocks of pairs at once and pays for every pair; a loop stops at the first dominator
and skips survivors dearer than the state. On the 32x8 top-2 trace problem one layer's pricing
spent 14.5 s in numpy fronts and 0.27 s in this loop, with identical results.

Importing numba and loading its compiled cache costs about half a second, so the caller uses
this module only above a size where that pays (imported lazily).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np


def _jit(fn: Callable | None = None, **options: object) -> Callable:
    """numba.njit with its on-disk cache when numba finds a writable cache folder (the package's
    ``__pycache__`` or the user's cache), else compiled in memory in each process."""
    def wrap(f: Callable) -> Callable:
        try:
            return numba.njit(cache=True, nogil=True, **options)(f)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, **options)(f)

    return wrap if fn is None else wrap(fn)


@_jit
def mu_front_sweep(c: np.ndarray, hT: np.ndarray, start: int, stop: int, surv: np.ndarray,
                   m: int, keep: np.ndarray) -> int:  # pragma: no cover - compiled
    """States ``start..stop-1`` (sorted by value) against the ``m`` survivors in ``surv``:
    state j is kept (appended to ``surv``, ``keep[j]`` set) when no survivor i has
    ``c[i] + sum_b max(hT[b, i] - hT[b, j], 0) <= c[j]``. Returns the new survivor count.

    The sum runs over batches in order and is added to ``c[i]`` last, as the numpy front does,
    so both give the same floats. A survivor dearer than ``c[j]`` cannot dominate (the sum is
    at least 0); the most recent survivors are tried first (nearest in value)."""
    B = hT.shape[0]
    for j in range(start, stop):
        cj = c[j]
        dominated = False
        for q in range(m - 1, -1, -1):
            i = surv[q]
            ci = c[i]
            if ci > cj:
                continue
            s = 0.0
            for b in range(B):
                d = hT[b, i] - hT[b, j]
                if d > 0.0:
                    s += d
            if ci + s <= cj:
                dominated = True
                break
        if not dominated:
            keep[j] = True
            surv[m] = j
            m += 1
    return m


@_jit(inline="always")
def _fits(opt_lat: np.ndarray, slow: np.ndarray, k: int, i: int) -> bool:  # pragma: no cover
    """Option k finishes within state i's slowest finish on every batch."""
    for b in range(slow.shape[1]):  # noqa: SIM110 - numba compiles loops, not generators
        if opt_lat[k, b] > slow[i, b]:
            return False
    return True


@_jit
def expand_states(cost: np.ndarray, slow: np.ndarray, opt_cost: np.ndarray, opt_lat: np.ndarray,
                  add: np.ndarray, base: np.ndarray, mu: np.ndarray, billed_step: float,
                  start: float, compute: float, cold: float, billed_price: float, rest: float,
                  limit: float):  # pragma: no cover - compiled
    """One expert of the pricing DP: every state (``cost``, ``slow`` (S, B)) with every option
    (``opt_cost``, ``opt_lat`` (K, B)). Among the options that leave a state's latency as it
    is, only the cheapest (the first on ties). Returns (state, option, cost, slowest finish,
    batch prices) of the candidates whose value (cost + sum of batch prices) plus ``rest``
    may be at most ``limit``, in (state, option) order: a superset, by a 1e-9 relative
    margin, of what the exact numpy test keeps (the caller applies that test).

    Batch prices are :func:`solvers._ilp_bounds._batch_prices` operation for operation:
    ``mu_b * (add_b + max(base_b, s_b))``, plus when ``billed_step > 0`` the non-MoE function's
    billed wait ``ceil((lat - start + compute + cold) / step - 1e-9) * step * billed_price``."""
    S, B = slow.shape
    K = opt_cost.shape[0]
    cap = limit + 1e-9 * abs(limit)
    n = 0
    si = np.empty(0, dtype=np.int64)
    for rnd in range(2):  # count, then fill
        if rnd == 1:
            si = np.empty(n, dtype=np.int64)
            ki = np.empty(n, dtype=np.int64)
            cc = np.empty(n)
            ss = np.empty((n, B))
            hh = np.empty((n, B))
            n = 0
        s = np.empty(B)
        h = np.empty(B)
        for i in range(S):
            # the cheapest option that fits under the state's latency
            fit_k = -1
            fit_c = np.inf
            for k in range(K):
                if _fits(opt_lat, slow, k, i):
                    ck = cost[i] + opt_cost[k]
                    if ck < fit_c:
                        fit_c = ck
                        fit_k = k
            for k in range(K):
                if k != fit_k and _fits(opt_lat, slow, k, i):
                    continue
                c = cost[i] + opt_cost[k]
                value = c
                for b in range(B):
                    x = slow[i, b] if slow[i, b] >= opt_lat[k, b] else opt_lat[k, b]
                    s[b] = x
                    lat = add[b] + (base[b] if base[b] >= x else x)
                    hb = lat * mu[b]
                    if billed_step > 0.0:
                        billed = np.ceil((lat - start + compute + cold) / billed_step - 1e-9) * billed_step
                        hb = hb + billed * billed_price
                    h[b] = hb
                    value += hb
                if value + rest <= cap:
                    if rnd == 1:
                        si[n] = i
                        ki[n] = k
                        cc[n] = c
                        for b in range(B):
                            ss[n, b] = s[b]
                            hh[n, b] = h[b]
                    n += 1
    return si, ki, cc, ss, hh
