#!/usr/bin/env bash
# Issue 4's measurement, part 2: GSM8K test, first 100, default model: step-level search guided
# by the policy as its own judge, against the chain schemes at about its cost, all in one file.
# Chains (one seed, 512 tokens a chain; --share-samples: self-consistency@4, @8 and best-of-n@8
# score one pool of 8 seeded samples a question): cot (greedy), self-consistency@4/@8,
# best-of-n@8. Search budgets (completion tokens per question, judge and value calls included)
# near self-consistency@8's spend (~2,400): beam@4 with 2 expansions a beam (8 new steps a
# depth) and mcts@16 (3 children an expansion) capped at 4096, tot (3 states kept, 3 sampled
# steps each, one 48-token value reply per state) at 6144: ToT's own settings (5 states x 5 steps
# of ~50 tokens, 3 value replies of up to 96 tokens each) could spend up to ~8,000 tokens a depth
# (an estimate from the settings), so a GSM8K chain of 5-8 steps would not finish. A tree step is
# at most 256 tokens (the tree schemes' default, written out so that --max-tokens, the chains'
# 512, does not apply to it).
# Resumable: run it again to continue. The database is kept in the repository
# (docs/results/search_gsm8k100.db, by benchmarks/keep_run.py, whenever this script ends): with
# no working copy in runs/, the run starts from the kept one, so a new machine loses only what
# was not committed. To end a session: kill -USR1 the `ponder eval` process (it finishes the
# questions in flight), wait for this script to end, commit the kept copy.
# A smoke run: LIMIT=3 OUT=/tmp/smoke.db benchmarks/search_gsm8k100.sh
# cache_prompts=128: each expansion continues its parent's kept KV only while the parent is still
# held; beam@4 keeps 16 children a depth, and 8 questions run at once, so the default 8 holders
# would evict most parents before they are expanded (4 GB of KV at n_ctx 2048: 160 streams).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/search_gsm8k100.db}
kept=docs/results/search_gsm8k100.db
if [[ -z ${OUT:-} ]]; then
  if [[ ! -s $out && -s $kept ]]; then mkdir -p "$(dirname "$out")" && cp "$kept" "$out"; fi
  # however the run ends (finished, drained by kill -USR1, or failed), refresh the kept copy
  trap '[[ -s $out ]] && .venv/bin/python benchmarks/keep_run.py "$out" "$kept"' EXIT
fi
resume=$([[ -s $out ]] && echo --resume || true)
uptime
.venv/bin/ponder eval gsm8k --split test --data ../shared/data/gsm8k_test.jsonl --limit "${LIMIT:-100}" \
  --model default --model-arg n_seq_max=32 --model-arg n_ctx=2048 --model-arg cache_prompts=128 --concurrency 8 \
  --max-tokens 512 --share-samples \
  --schemes "cot,self-consistency@4,self-consistency@8,best-of-n@8,beam@4:expansions=2:max_tokens=256:token_budget=4096,mcts@16:max_tokens=256:token_budget=4096,tot:generator=sample:n=3:n_generate=3:n_evaluate=1:value_tokens=48:max_depth=8:max_tokens=256:token_budget=6144" \
  --seeds 1 --out "$out" $resume
uptime
.venv/bin/ponder report "$out" --markdown --baseline self-consistency@8
