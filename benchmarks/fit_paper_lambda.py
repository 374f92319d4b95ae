"""Fit the built-in ``paper-lambda`` profile to the paper's one absolute figure and write it.

The paper (Fig. 2): GPT-2 MoE, every Lambda function at 3,008 MB, no replicas, 10,240 tokens,
serves 22.9 tokens/s. Our default constants predict about ten times that for the LambdaML-style
plan on ``gpt2-moe-4``. Holding the published network and platform constants, the one constant
we fit is the effective compute rate of a Lambda vCPU running the paper's PyTorch stack (it
also sets the non-MoE functions' rate, which derives from it): the figure is end-to-end and
compute dominates it; no published figure pins that rate for their stack.

    python benchmarks/fit_paper_lambda.py            # prints the fit
    python benchmarks/fit_paper_lambda.py --write    # writes cost_models/data/profiles/paper-lambda.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moeopt.baselines import lambdaml_plan
from moeopt.builtin_problems import builtin_problem
from moeopt.evaluate import evaluate

TARGET_TOKENS_PER_S = 22.9
PROBLEM = "gpt2-moe-4"
OUT = Path(__file__).resolve().parents[1] / "cost_models" / "data" / "profiles" / "paper-lambda.toml"


def throughput(rate: float) -> float:
    base = builtin_problem(PROBLEM)
    problem = base.with_constants(
        base.constants.with_overrides({"flops_per_second_per_vcpu": rate}, "fit")
    )
    return evaluate(problem, lambdaml_plan(problem)).throughput_tokens_per_s


def fit() -> float:
    lo, hi = 1e7, 1e12  # FLOP/s per vCPU; throughput rises with the rate
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if throughput(mid) < TARGET_TOKENS_PER_S else (lo, mid)
    return (lo * hi) ** 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    default = builtin_problem(PROBLEM).constants.flops_per_second_per_vcpu
    rate = fit()
    print(f"default: {default:.4g} FLOP/s per vCPU -> {throughput(default):.1f} tokens/s")
    print(f"fitted:  {rate:.4g} FLOP/s per vCPU -> {throughput(rate):.2f} tokens/s "
          f"(target {TARGET_TOKENS_PER_S})")
    if args.write:
        OUT.write_text(
            "# The paper-lambda profile: the built-in constants with one constant fitted to the\n"
            "# paper's one absolute figure. Regenerate: python benchmarks/fit_paper_lambda.py --write\n"
            "[profile]\n"
            'name = "paper-lambda"\n'
            f'fitted_to = "{PROBLEM}: the LambdaML-style plan (every expert at 3,072 MB, the paper\'s '
            f'menu option nearest its 3,008 MB; no replicas; storage) serves {TARGET_TOKENS_PER_S} '
            'tokens/s on 10,240 tokens (the paper, Fig. 2)"\n'
            'assumption = "the gap to our default constants is compute efficiency: the paper\'s '
            "Lambda functions (Python 3.8, eager PyTorch, container images, 2024) ran an expert FFN "
            "and the non-MoE blocks at this effective rate per vCPU; network, storage and platform "
            'constants keep their published values (cost_models/data/constants.toml)"\n'
            "\n[constants]\n"
            f"flops_per_second_per_vcpu = {rate:.6g}\n"
        )
        print(f"written {OUT}")


if __name__ == "__main__":
    main()
