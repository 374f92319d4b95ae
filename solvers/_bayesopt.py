"""Bayesian-optimisation pieces shared by bayes-egreedy and the paper's Alg. 2 (bo-popularity).

The paper's decaying multi-dimensional epsilon schedule (:func:`epsilon`); one Gaussian-process
kernel for both (constant x Matern-5/2 + white noise, targets normalised; scikit-learn);
expected improvement for minimisation and the probability of feasibility of a constraint
modelled as a signed slack (<= 0 feasible). :class:`SpanEmbedding` lets an isotropic kernel
work on n + 1 columns instead of every plan dimension.

>>> import numpy as np
>>> x = np.linspace(0, 1, 8)[:, None]
>>> gp = fit_gp(x, (x[:, 0] - 0.3) ** 2, seed=0)
>>> mu, sd = gp.predict(np.array([[0.3], [0.9]]), return_std=True)
>>> ei = expected_improvement(mu, sd, best=0.0)
>>> bool(ei[0] > ei[1])
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def matern_kernel(length_scale: float | np.ndarray = 1.0) -> Any:
    """Constant x Matern(nu = 5/2) + white noise; an array ``length_scale`` gives ARD."""
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=length_scale, length_scale_bounds=(1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-2, (1e-6, 1.0))


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    optimize: bool = True,
    kernel: Any = None,
    length_scale: float | np.ndarray = 1.0,
) -> Any:
    """A fitted ``GaussianProcessRegressor`` (normalised targets).

    ``optimize`` fits a fresh kernel's hyperparameters by L-BFGS on the marginal likelihood;
    without it ``kernel`` (a previous fit's ``kernel_``) is used as is, which is what makes a
    refit cheap between hyperparameter updates.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor

    if kernel is None or optimize:
        kernel = matern_kernel(length_scale)
    gp = GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=True,
        optimizer="fmin_l_bfgs_b" if optimize else None,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # L-BFGS chatter on flat likelihoods
        gp.fit(x, y)
    return gp


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(best - f, 0)] for f ~ N(mu, sd^2): minimisation."""
    from scipy.stats import norm  # scipy.stats takes ~2 s to import: only when used

    sd = np.maximum(sd, 1e-12)
    u = (best - mu) / sd
    return (best - mu) * norm.cdf(u) + sd * norm.pdf(u)


def probability_of_feasibility(mu_slack: np.ndarray, sd_slack: np.ndarray) -> np.ndarray:
    """P(slack <= 0) for slack ~ N(mu, sd^2)."""
    from scipy.stats import norm

    return norm.cdf(-mu_slack / np.maximum(sd_slack, 1e-12))


@dataclass(frozen=True)
class SpanEmbedding:
    """Exact coordinates of points in the span of the GP's training points.

    Why: an isotropic kernel sees only distances, and n training points span at most n - 1
    dimensions. Coordinates in that span, plus one coordinate for a new point's distance from
    it, keep every training-training and point-training distance exact while the kernel works
    on n + 1 columns instead of every plan dimension (about 30,000 on deepseek-v3, where
    fitting on raw plans took 8 s).
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
