"""What the experiments share in one run: the configuration, the profiles compared, and the
optima and traces already computed (so a plan solved once is the same plan everywhere)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moeopt.problem import DeploymentProblem
from reproduce.config import PAPER_PROFILE, PAPER_RATIO, Config
from reproduce.solving import Optimum, optimum, problem_at, with_ratio


def profile_label(profile: str | None) -> str:
    """How a profile is named in tables: 'default' for the built-in constants."""
    if profile is None:
        return "default"
    return Path(profile).stem if ("/" in profile or profile.endswith((".json", ".toml"))) else profile


@dataclass
class Context:
    cfg: Config
    out: Path
    lab: Any = None  # reproduce.measure.LocalLab when measuring
    optima: dict[tuple[str, str, float], tuple[DeploymentProblem, Optimum]] = field(default_factory=dict)
    traces: dict[Any, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def profiles(self) -> dict[str, str | None]:
        """Label -> profile: ours (the run's profile) first, then the paper-fitted one."""
        ours = profile_label(self.cfg.profile)
        out: dict[str, str | None] = {ours: self.cfg.profile}
        if ours != PAPER_PROFILE:
            out[PAPER_PROFILE] = PAPER_PROFILE
        return out

    @property
    def ours(self) -> str:
        return next(iter(self.profiles))

    def regime(self, label: str, name: str, ratio: float) -> tuple[DeploymentProblem, Optimum]:
        """The optimum of ``name`` under profile ``label`` at ``ratio`` x LambdaML's throughput
        (cached: Fig. 14, the cluster and beyond reuse the regime's plans). greedy everywhere;
        the exact MILP's bound too at the paper's ratio, where the claims are read."""
        key = (label, name, round(ratio, 6))
        if key not in self.optima:
            problem = with_ratio(problem_at(name, self.profiles[label]), ratio)
            seconds = self.cfg.ilp_seconds if abs(ratio - PAPER_RATIO) < 1e-9 else 0.0
            self.optima[key] = (problem, optimum(problem, self.cfg.greedy_seconds, seconds, self.cfg.seed))
        return self.optima[key]
