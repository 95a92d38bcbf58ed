#!/usr/bin/env bash
# Issue 2's measurement: the chain schemes as `ponder solve` runs them, on the first 50 GSM8K
# *train* problems, default model, 512 tokens a chain. Resumable: run it again to continue.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gsm8k_train50.db}
resume=$([[ -s $out ]] && echo --resume || true)
uptime
.venv/bin/ponder eval gsm8k --split train --data ../shared/data/gsm8k_train.jsonl --limit 50 \
  --model default --schemes cot,self-consistency@8 --seeds 1 --max-tokens 512 --out "$out" $resume
uptime
.venv/bin/ponder report "$out" --markdown
