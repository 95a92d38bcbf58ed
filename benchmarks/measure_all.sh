#!/usr/bin/env bash
# The long CPU measurements of docs/results/, one after another, each resumable.
# All done and reported: the GSM8K test-200 chain grid (gsm8k_test200.sh, ~17 h of CPU on 2
# cores; docs/results/gsm8k_test200.md), Game of 24's test slice (search_game24.sh, ~2 h;
# docs/results/search_game24.md) and tree search on the first 100 GSM8K questions
# (search_gsm8k100.sh, ~7 h of model time over four sessions; docs/results/search_gsm8k100.md),
# which keeps its database in the repository between sessions (benchmarks/keep_run.py). A script
# listed below carries on where it stopped when run again after a kill or a reboot (a finished
# one only reports):
#   (nohup benchmarks/measure_all.sh > runs/measure_all.log 2>&1 &)
# flock: one measurement at a time on this machine (benchmarks take the same lock), so that
# seconds per question are not shared with anything else ponder runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
for script in search_gsm8k100; do
  echo "== $script $(date -Is)"
  flock /tmp/ponder-bench.lock "benchmarks/$script.sh" > "runs/$script.log" 2>&1
done
echo "== done $(date -Is)"
