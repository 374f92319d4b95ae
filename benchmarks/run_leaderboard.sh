#!/bin/sh
# Record the full suite on this machine and regenerate benchmarks/LEADERBOARD.md (about 15 min
# on 2 cores). Resumable: runs already in the results file are skipped; to record afresh,
# move benchmarks/results/full.jsonl, benchmarks/results/plans and the references away first.
# `python -m moeopt.bench.cli X` is `moeopt X` (the same click commands).
set -e
cd "$(dirname "$0")/.."
python -m moeopt.bench.cli bench --suite full --jobs 2 --out benchmarks/results \
    --references benchmarks/references/best_known.json
python -m moeopt.bench.cli leaderboard benchmarks/results/full.jsonl \
    --references benchmarks/references/best_known.json \
    --md benchmarks/LEADERBOARD.md --html benchmarks/results/leaderboard.html \
    --command "sh benchmarks/run_leaderboard.sh    # runs these two:
moeopt bench --suite full --jobs 2 --out benchmarks/results --references benchmarks/references/best_known.json
moeopt leaderboard benchmarks/results/full.jsonl --references benchmarks/references/best_known.json --md benchmarks/LEADERBOARD.md --html benchmarks/results/leaderboard.html"
if [ -x /usr/bin/chromium ]; then
    python benchmarks/render_check.py benchmarks/results/leaderboard.html --png /tmp/leaderboard.png
fi
