#!/usr/bin/env bash
# Issue 4's measurement, part 1: Game of 24, Tree-of-Thoughts' test slice (records 900-999 of
# game24.jsonl), default model: chain schemes against tree search at stated budgets.
# Every scheme asks ToT's chain-of-thought prompt (its five worked puzzles as earlier chat turns;
# ponder/tasks/game24.py), so steps are lines "a op b = c (left: ...)", which beam and MCTS's
# rule scorer replays exactly (each step must use numbers still left, be right, and leave
# numbers that can still make 24). Resumable: run it again to continue.
# Budgets (completion tokens per puzzle, all calls counted, judge and value calls included):
# chains 512 each; beam/mcts/tot 8192 (caps: each stops earlier once it has answers); a
# beam/MCTS step is one line, at most 64 tokens. ToT keeps 3 states a depth with one 64-token
# value reply per state (the paper keeps 5 and asks 3 replies of up to 96 tokens per state: by
# the settings' arithmetic several times this cap). --share-samples: best-of-n@8 scores
# self-consistency@8's chains. A smoke run on puzzles outside the test slice:
# START=0 LIMIT=3 OUT=/tmp/smoke.db PLOT=/tmp/smoke.png benchmarks/search_game24.sh
# cache_prompts=128: each expansion continues its parent's kept KV only while the parent is still
# held; beam@4 keeps 16 children a depth, and 8 questions run at once, so the default 8 holders
# would evict most parents before they are expanded (4 GB of KV at n_ctx 2048: 160 streams).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/search_game24.db}
resume=$([[ -s $out ]] && echo --resume || true)
uptime
.venv/bin/ponder eval game24 --data ../shared/data/game24.jsonl --start "${START:-900}" --limit "${LIMIT:-100}" \
  --model default --model-arg n_seq_max=32 --model-arg n_ctx=2048 --model-arg cache_prompts=128 --concurrency 8 --share-samples \
  --schemes "cot:max_tokens=512,self-consistency@8:max_tokens=512,best-of-n@8:max_tokens=512,beam@4:expansions=4:scorer=rule:max_tokens=64:token_budget=8192,mcts@32:scorer=rule:max_tokens=64:token_budget=8192,tot:n=3:n_evaluate=1:value_tokens=64:token_budget=8192" \
  --seeds 1 --out "$out" $resume
uptime
.venv/bin/ponder report "$out" --markdown --plot "${PLOT:-docs/results/search_game24.png}"
