"""How big each experiment runs: the full reproduction, or ``--quick`` (the CI smoke run)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from moeopt.builtin_problems import PAPER_PROBLEMS

#: The paper's regime: throughput targets relative to the LambdaML-style plan's throughput.
#: 0.8124 = 1 - 0.1876, the paper's largest throughput loss against LambdaML.
PAPER_RATIO = 1.0 - 0.1876
PAPER_PROFILE = "paper-lambda"


@dataclass(frozen=True)
class MiniLMSetup:
    """A converted all-MiniLM-L6-v2 MoE and the trace profiled from it (moeopt.models)."""

    experts: int
    top_k: int
    calibration_tokens: int  # corpus tokens that fit the gates (never profiled)
    tokens: int  # tokens profiled after them


@dataclass(frozen=True)
class Config:
    """Every size the experiments use; :meth:`full` and :meth:`quick` are the two presets."""

    quick: bool
    profile: str | None = None  # the "ours" column: a profile name or file (None: built-in)
    measure: bool = True  # run the measured experiments on the local backend
    recalibrate: bool = False  # measure this machine again for the local predictions
    seed: int = 0
    only: tuple[str, ...] = ()  # experiment names to run (empty: all)
    # -- the model experiments --
    regime_problems: tuple[str, ...] = PAPER_PROBLEMS
    overall_problems: tuple[str, ...] = ("bert-moe-4", "gpt2-moe-4")  # Fig. 14's models
    regime_ratios: tuple[float, ...] = (PAPER_RATIO, 0.9, 1.0)
    sweep_ratios: tuple[float, ...] = (0.5, 0.6, 0.7, PAPER_RATIO, 0.9, 1.0, 1.1)
    greedy_seconds: float = 20.0
    ilp_seconds: float = 10.0  # exact MILP after greedy, for a bound (0: greedy only)
    # Fig. 12: deployment algorithms (the paper: monolithic 180 s, ODS 60 s)
    algorithms_problem: str = "bert-moe-4"
    algorithms_ratios: tuple[float, ...] = (PAPER_RATIO, 1.0, 1.25, 1.5)
    algorithms_paper_ratios: tuple[float, ...] = (PAPER_RATIO,)  # under paper-lambda
    monolithic_seconds: float = 60.0
    ods_seconds: float = 60.0
    random_draws: int = 5
    # Fig. 14 and beyond: held-out batches drawn like the problem's own (another seed)
    heldout_batches: int = 8
    oracle_seconds: float = 10.0  # per held-out batch
    latency_batches: int = 100  # the paper tests on 100 batches
    # MiniLM: the predictors (Fig. 10) and Alg. 2 (Fig. 13) on a real model's routing
    bo_setup: MiniLMSetup = MiniLMSetup(8, 1, 8000, 41_000)
    predictor_setups: tuple[MiniLMSetup, ...] = (
        MiniLMSetup(4, 1, 8000, 41_000),
        MiniLMSetup(4, 2, 8000, 41_000),
        MiniLMSetup(16, 1, 8000, 41_000),
    )
    predictor_batch: int = 10_240  # the paper's metric is per 10,240-token batch
    predictor_folds: int = 4
    bo_batch: int = 5_120  # 41,000 tokens: 4 profile, 2 learning, 2 test batches
    bo_q: int = 1000
    bo_iterations: int = 40
    bo_seeds: tuple[int, ...] = (0, 1, 2)
    bo_time_margin: float = 0.01
    # measured on the local backend
    measured_layers: int = 2
    measured_tokens: tuple[int, ...] = (256, 2560)
    measured_requests: int = 3
    measured_warmup: int = 1
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def full(cls, **changes: object) -> Config:
        return dataclasses.replace(cls(quick=False), **changes)

    @classmethod
    def quick_preset(cls, **changes: object) -> Config:
        """About two minutes: tiny budgets, model-only (no local backend)."""
        small = MiniLMSetup(4, 1, 2000, 8_192)
        return dataclasses.replace(
            cls(quick=True),
            measure=False,
            regime_problems=("bert-moe-4", "gpt2-moe-4"),
            regime_ratios=(PAPER_RATIO, 1.0),
            sweep_ratios=(0.6, PAPER_RATIO, 1.0),
            greedy_seconds=5.0,
            ilp_seconds=0.0,
            algorithms_ratios=(PAPER_RATIO,),
            algorithms_paper_ratios=(),
            monolithic_seconds=5.0,
            ods_seconds=5.0,
            random_draws=3,
            heldout_batches=2,
            oracle_seconds=2.0,
            latency_batches=20,
            bo_setup=small,
            predictor_setups=(),
            predictor_batch=2_048,
            bo_batch=2_048,
            bo_q=200,
            bo_iterations=3,
            bo_seeds=(0,),
            **changes,
        )

    def wants(self, experiment: str) -> bool:
        return not self.only or experiment in self.only

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
