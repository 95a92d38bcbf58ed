#!/usr/bin/env bash
# Issue 4's measurement, part 2: GSM8K test, first 100, default model: chain schemes against
# step-level search guided by the policy as its own judge, at comparable budgets (completion
# tokens per question, judge calls included): chains 512 each, search 4096.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/search_gsm8k100.db}
resume=$([[ -s $out ]] && echo --resume || true)
uptime
.venv/bin/ponder eval gsm8k --data ../shared/data/gsm8k_test.jsonl --limit 100 \
  --model default --model-arg n_seq_max=32 --model-arg n_ctx=2048 --concurrency 4 \
  --schemes "cot:max_tokens=512,self-consistency@8:max_tokens=512,best-of-n@8:max_tokens=512,beam@4:expansions=4:token_budget=4096,mcts@16:token_budget=4096,tot:generator=sample:max_depth=8:token_budget=4096" \
  --seeds 1 --out "$out" $resume
uptime
.venv/bin/ponder report "$out" --markdown --plot docs/results/search_gsm8k100.png
