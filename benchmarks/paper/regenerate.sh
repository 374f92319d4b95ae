#!/bin/sh
# Regenerate the committed reproduction (REPORT.md, results.json, the plots) from the repository
# root, on a quiet machine: the measured experiments share the cores with everything else.
# --recalibrate measures this machine again first (the local predictions use that calibration).
set -e
cd "$(dirname "$0")/../.."
exec nice -n -19 moeopt reproduce --recalibrate --out benchmarks/paper "$@"
