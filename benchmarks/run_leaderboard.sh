#!/bin/sh
# Record both tracks on this machine and regenerate benchmarks/LEADERBOARD.md (about 35 min on
# 2 cores). Resumable: runs already in a results file are skipped; to record afresh, move
# benchmarks/results/*.jsonl, benchmarks/results/plans and the references away first.
# `python -m moeopt.bench.cli X` is `moeopt X` (the same click commands).
#   full:         every instance of the full suite at its budget (20,000 evaluations, 8 s)
#   small-budget: the paper's five problems at 200 evaluations, the black-box solvers (issue 15)
set -e
cd "$(dirname "$0")/.."
FULL=ilp,greedy,bayes-egreedy,nevergrad,optuna-tpe,optuna-cmaes,optuna-gp,exhaustive,eplb,lambdaml
SMALL=bayes-egreedy,nevergrad,optuna-tpe,optuna-cmaes,optuna-gp
REFS=benchmarks/references/best_known.json
python -m moeopt.bench.cli bench --suite full --solvers $FULL --jobs 2 --out benchmarks/results --references $REFS
python -m moeopt.bench.cli bench --suite small-budget --solvers $SMALL --jobs 2 --out benchmarks/results --references $REFS
python -m moeopt.bench.cli leaderboard benchmarks/results/full.jsonl --references $REFS \
    --md benchmarks/LEADERBOARD.md --html benchmarks/results/leaderboard.html \
    --command "sh benchmarks/run_leaderboard.sh    # runs these:
moeopt bench --suite full --solvers $FULL --jobs 2 --out benchmarks/results --references $REFS
moeopt bench --suite small-budget --solvers $SMALL --jobs 2 --out benchmarks/results --references $REFS
moeopt leaderboard benchmarks/results/full.jsonl --references $REFS --md benchmarks/LEADERBOARD.md
moeopt leaderboard benchmarks/results/small-budget.jsonl --references $REFS --md benchmarks/LEADERBOARD-small-budget.md"
# The small-budget track is scored against the same references (ilp's proven optima from the
# full track) and appended to LEADERBOARD.md as its own section.
python -m moeopt.bench.cli leaderboard benchmarks/results/small-budget.jsonl --references $REFS \
    --md benchmarks/LEADERBOARD-small-budget.md --html benchmarks/results/leaderboard-small-budget.html \
    --command "sh benchmarks/run_leaderboard.sh"
{
    printf '\n# Small-budget track: 200 evaluations per run\n\n'
    printf 'The paper'"'"'s five problems, five seeds, every black-box solver stopped by its 200th evaluation\n'
    printf '(`benchmarks/suites/small-budget`). Score 0 is the best known cost (ilp'"'"'s proven optimum from the\n'
    printf 'full track), 1 is random search at the same 200 evaluations.\n'
    sed -e '1,/^## About this run/d' -e 's/^#/##/' benchmarks/LEADERBOARD-small-budget.md | sed '1s/^/\n### About this run\n/'
} >> benchmarks/LEADERBOARD.md
rm benchmarks/LEADERBOARD-small-budget.md
if [ -x /usr/bin/chromium ]; then
    python benchmarks/render_check.py benchmarks/results/leaderboard.html --png /tmp/leaderboard.png
fi
