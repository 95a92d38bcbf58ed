#!/usr/bin/env bash
# Issue 3's measurement: GSM8K test, first 200 questions, the embedded default model, six schemes,
# two seeds. Resumable: run it again (same command) to continue after a kill or a reboot.
#
# --share-samples: the sampled schemes of a question and seed draw from one pool of seeded
#   samples (docs/eval.md), so the grid generates 16 chains per question and seed, not up to 52.
# --concurrency 12 with n_seq_max=32: twelve questions decode together (a question's schemes add
#   samples 4, 4, then 8 at a time, each batch waiting for its longest chain; with 6 questions
#   the first 30 minutes measured ~50 completion tok/s, about 17 sequences live on average).
# n_ctx=1024: a GSM8K prompt (< 250 tokens) plus a 512-token chain fits.
# adaptive@16:give_up_after=4 (adaptive that stops when its first four chains scatter; chosen
#   on train questions, ponder/schemes/adaptive.py) joined the grid on 2026-11-22 with 113
#   questions done: it draws only from the stored pools, so it cost no generation there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gsm8k_test200.db}
resume=$([[ -s $out ]] && echo --resume || true)
uptime
.venv/bin/ponder eval gsm8k --split test --data ../shared/data/gsm8k_test.jsonl --limit 200 \
  --model default --model-arg n_seq_max=32 --model-arg n_ctx=1024 \
  --schemes cot,self-consistency@4,self-consistency@8,self-consistency@16,adaptive@16,best-of-n@8,adaptive@16:give_up_after=4 \
  --seeds 2 --max-tokens 512 --share-samples --concurrency 12 --out "$out" $resume
uptime
.venv/bin/ponder report "$out" --markdown --plot docs/results/gsm8k_test200.png
