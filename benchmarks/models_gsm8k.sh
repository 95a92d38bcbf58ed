#!/usr/bin/env bash
# Issue 26's measurement: several models, one reasoner. GSM8K test, first 100 (LIMIT), greedy
# where a scheme is greedy, 512 tokens a chain, 4 questions at once; seconds are model seconds
# (a batched step's time shared among its sequences), as in every other results page here.
#
#   train   the 1.5B's cot on the first 50 *train* questions: the strong rung's rows that
#           `ponder fit-cascade` fits thresholds with, against the 0.5B's stored
#           self-consistency@8 pools of docs/results/gsm8k_train50.db (PHASE=train)
#   big     the 1.5B alone: cot (and self-consistency@4 with BIG_SC=1) (PHASE=big)
#   roles   the 0.5B as policy with the 1.5B as fallback and planner, live: route (two direct
#           answers of the 0.5B, else the 1.5B's cot) and plan-execute (the 1.5B plans, the
#           0.5B executes); ROLE_SCHEMES adds others, e.g. cascade@4:cheap=direct (PHASE=roles)
#
# The 0.5B's cot and self-consistency@8 are the stored rows of docs/results/search_gsm8k100.db
# (same prompt, same 512 tokens). The cascades over reasoning chains are replayed from those
# stored pools of 8 and the 1.5B's cot rows (`ponder fit-cascade --n K`: the first K chains of
# each pool, the threshold fitted on the train phase), which is what the live cascade computes
# on greedy rows. Every phase resumes from its kept copy in docs/results/.
# A smoke run: LIMIT=2 OUT_DIR=/tmp/smoke PHASE=roles benchmarks/models_gsm8k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${LIMIT:-100}
phase=${PHASE:-all}
dir=${OUT_DIR:-runs}
mkdir -p "$dir"
common=(--model-arg n_ctx=2048 --concurrency 4 --max-tokens 512)
train=(gsm8k --split train --data ../shared/data/gsm8k_train.jsonl)
test=(gsm8k --split test --data ../shared/data/gsm8k_test.jsonl)
# the schemes run live with both roles (the chain cascades are replayed, see above)
ROLE_SCHEMES=${ROLE_SCHEMES:-"route,plan-execute"}

# run NAME EVAL-ARGS...: one resumable store runs/NAME.db, kept as docs/results/NAME.db
run() {
  local name=$1 out=$dir/$1.db kept=docs/results/$1.db
  shift
  if [[ -z ${OUT_DIR:-} && ! -s $out && -s $kept ]]; then cp "$kept" "$out"; fi
  local resume=()
  [[ -s $out ]] && resume=(--resume)
  local rc=0
  .venv/bin/ponder eval "$@" "${common[@]}" --out "$out" "${resume[@]}" || rc=$?
  if [[ -z ${OUT_DIR:-} && -s $out ]]; then .venv/bin/python benchmarks/keep_run.py "$out" "$kept"; fi
  return $rc
}

if [[ $phase == all || $phase == train ]]; then
  run models_gsm8k_train "${train[@]}" --limit 50 --model qwen-1.5b --schemes cot
fi
if [[ $phase == all || $phase == big ]]; then
  run models_gsm8k_big "${test[@]}" --limit "$limit" --model qwen-1.5b \
    --schemes "cot${BIG_SC:+,self-consistency@4}"
fi
if [[ $phase == all || $phase == roles ]]; then
  run models_gsm8k_roles "${test[@]}" --limit "$limit" --model default \
    --model fallback=qwen-1.5b --model planner=qwen-1.5b --schemes "$ROLE_SCHEMES"
fi
