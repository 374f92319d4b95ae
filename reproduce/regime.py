"""The paper's regime: cost against the LambdaML-style plan at throughput targets set relative
to its throughput, and the calibration point (the paper's one absolute figure, Fig. 2).

The paper: cost at least 43.41 % below LambdaML with at most 18.76 % lower throughput. Here each
paper model is solved at ``ratio x`` LambdaML's throughput for a sweep of ratios; the saving at
0.8124 (= 1 - 0.1876) is the first claim, and the throughput loss at which the saving first
reaches 43.41 % (interpolated along the sweep) the second.
"""

from __future__ import annotations

from typing import Any

from reproduce.config import PAPER_RATIO
from reproduce.context import Context
from reproduce.solving import lambdaml, problem_at

PAPER_LAMBDAML_SAVING = 0.4341
PAPER_THROUGHPUT_LOSS = 0.1876
PAPER_GPT2_TOKENS_PER_S = 22.9


def calibration_point(ctx: Context) -> dict[str, Any]:
    """GPT-2 MoE, every function at the paper's LambdaML memory, 10,240 tokens: tokens/s."""
    out: dict[str, Any] = {"paper_tokens_per_s": PAPER_GPT2_TOKENS_PER_S, "profiles": {}}
    for label, prof in ctx.profiles.items():
        p = problem_at("gpt2-moe-4", prof)
        ev = lambdaml(p)
        out["profiles"][label] = {
            "tokens_per_s": ev.throughput_tokens_per_s,
            "latency_s": ev.latency_s,
            "cost_usd": ev.cost_usd,
            "flops_per_second_per_vcpu": p.constants.flops_per_second_per_vcpu,
            "ratio_to_paper": ev.throughput_tokens_per_s / PAPER_GPT2_TOKENS_PER_S,
        }
    return out


def compute_floor_usd(problem: Any) -> float:
    """The experts' compute alone, in USD per batch, at any memory size: Lambda's vCPUs grow
    with memory, so U(m) x m is the same for every m up to one vCPU and no smaller above it
    (``multi_vcpu_efficiency`` <= 1): no plan pays less for it (x86, before the 1 ms
    rounding). What a plan can save against LambdaML is at most the rest of LambdaML's bill."""
    c, m = problem.constants, problem.model
    assignments = problem.workload.tokens_per_batch * m.top_k * m.moe_layers
    seconds_at_one_vcpu = assignments * m.expert_flops_per_token / c.flops_per_second_per_vcpu
    floor_gb_s = seconds_at_one_vcpu * c.lambda_mb_per_vcpu / 1024
    return floor_gb_s * c.lambda_price_x86_64_usd_per_gb_s


def loss_for_saving(rows: list[dict[str, Any]], target: float) -> float | None:
    """The throughput loss at which the saving first reaches ``target``, interpolated between
    the sweep's points (ratios high to low); None when no ratio of the sweep reaches it."""
    ok = [r for r in rows if r["saving"] is not None]
    ok.sort(key=lambda r: -r["ratio"])  # from the fastest target to the slowest
    for hi, lo in zip([None, *ok], ok, strict=False):
        if lo["saving"] < target:
            continue
        if hi is None:  # already at the fastest target
            return lo["throughput_loss"]
        w = (target - hi["saving"]) / (lo["saving"] - hi["saving"])
        return hi["throughput_loss"] + w * (lo["throughput_loss"] - hi["throughput_loss"])
    return None


def regime(ctx: Context, progress: Any = None) -> dict[str, Any]:
    cfg = ctx.cfg
    ratios = sorted({*cfg.regime_ratios, *cfg.sweep_ratios}, reverse=True)
    out: dict[str, Any] = {"ratios": ratios, "paper_ratio": PAPER_RATIO,
                           "table_ratios": list(cfg.regime_ratios), "profiles": {}}
    for label in ctx.profiles:
        per: dict[str, Any] = {}
        for name in cfg.regime_problems:
            base = problem_at(name, ctx.profiles[label])
            lm = lambdaml(base)
            rows = []
            for ratio in ratios:
                problem, opt = ctx.regime(label, name, ratio)
                ev = opt.evaluation
                feasible = opt.feasible and ev is not None
                rows.append({
                    "ratio": ratio,
                    "target_tokens_per_s": problem.slo.throughput_target(problem.workload.tokens_per_batch),
                    **opt.to_dict(),
                    "saving": 1 - opt.cost_usd / lm.cost_usd if feasible else None,
                    "saving_bound": 1 - opt.lower_bound_usd / lm.cost_usd
                    if opt.lower_bound_usd is not None else None,
                    "throughput_loss": 1 - ev.throughput_tokens_per_s / lm.throughput_tokens_per_s
                    if feasible else None,
                })
                if progress:
                    progress()
            per[name] = {
                "lambdaml": {"cost_usd": lm.cost_usd, "tokens_per_s": lm.throughput_tokens_per_s,
                             "latency_s": lm.latency_s,
                             "compute_floor_usd": compute_floor_usd(base)},
                "rows": rows,
                "loss_for_paper_saving": loss_for_saving(rows, PAPER_LAMBDAML_SAVING),
            }
        out["profiles"][label] = per
    return out


def at_ratio(rows: list[dict[str, Any]], ratio: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(r["ratio"] - ratio))
