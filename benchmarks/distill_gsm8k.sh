#!/usr/bin/env bash
# Issue 28's measurement, the loop once as ponder commands (docs/results/distill_gsm8k.md):
#
#   1. sample  the 1.5B teacher's greedy cot on the first TRAIN (150) GSM8K *train* questions,
#              through ponder eval's store (resumable; the same store as issue 26's fit,
#              benchmarks/models_gsm8k.sh PHASE=train)
#   2. label   each chain by the task's check (the store's `correct`); and the outcome
#              verifier trained on the 0.5B's own labelled pools of 8 (docs/results/gsm8k_train50.db,
#              ponder train verifier)
#   3. distil  the verified chains into the 0.5B, in the thinking format, LoRA (ponder distill
#              --from the store: nothing generated again), exported to GGUF (q8_0 and q4_k_m)
#   4. search  the student greedy on GSM8K test first LIMIT (100), paired against the base 0.5B's
#              stored cot rows (docs/results/search_gsm8k100.db), and its decode speed against
#              the base GGUF's (benchmarks/decode_speed.py); with SEARCH=N, also the student's
#              best-of-n@4 scored by the verifier on the first N test questions
#
# Each step skips what it finds done. A smoke run: TRAIN=4 LIMIT=2 DIR=/tmp/d benchmarks/distill_gsm8k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
train=${TRAIN:-150}
limit=${LIMIT:-100}
dir=${DIR:-runs/distill_gsm8k}
mkdir -p "$dir"
store=${STORE:-runs/models_gsm8k_train.db}
kept=docs/results/models_gsm8k_train.db

# 1. sample (and 2. label: ponder eval checks every chain against the gold answer)
if [[ -z ${STORE:-} && ! -s $store && -s $kept ]]; then cp "$kept" "$store"; fi
resume=()
[[ -s $store ]] && resume=(--resume)
.venv/bin/ponder eval gsm8k --split train --data ../shared/data/gsm8k_train.jsonl --limit "$train" \
  --model qwen-1.5b --schemes cot --model-arg n_ctx=2048 --concurrency 4 --max-tokens 512 \
  --out "$store" "${resume[@]}"
[[ -z ${STORE:-} ]] && .venv/bin/python benchmarks/keep_run.py "$store" "$kept"

# 2. train the verifier on the teacher's labelled chains
[[ -s $dir/verifier.json ]] ||
  .venv/bin/ponder train verifier docs/results/gsm8k_train50.db --out "$dir/verifier.json"

# 3. distil: the verified chains, in the thinking format, into the 0.5B
if [[ ! -s $dir/student.gguf ]]; then
  .venv/bin/ponder distill gsm8k --data ../shared/data/gsm8k_train.jsonl --limit "$train" \
    --from "$store" --scheme cot --keep 1 --format think --student default --lora \
    --epochs "${EPOCHS:-1}" --lr "${LR:-2e-4}" --batch-size 4 --max-length 768 \
    --out "$dir" --overwrite --export gguf:q8_0
fi
[[ -s $dir/student-q4_k_m.gguf ]] ||
  .venv/bin/ponder export "$dir/student" --to "$dir/student-q4_k_m.gguf" --quant q4_k_m

# 4. the student, greedy, on the test questions the base model's stored cot rows answered
out=$dir/student_test.db
resume=()
[[ -s $out ]] && resume=(--resume)
.venv/bin/ponder eval gsm8k --split test --data ../shared/data/gsm8k_test.jsonl --limit "$limit" \
  --model "$dir/student.gguf" --schemes cot --model-arg n_ctx=2048 --concurrency 4 \
  --max-tokens 512 --out "$out" "${resume[@]}"
[[ -z ${DIR:-} ]] && .venv/bin/python benchmarks/keep_run.py "$out" docs/results/distill_gsm8k_student.db
.venv/bin/python benchmarks/decode_speed.py default "$dir/student.gguf" "$dir/student-q4_k_m.gguf" \
  > "$dir/decode_speed.md"
cat "$dir/decode_speed.md"
if [[ -n ${SEARCH:-} ]]; then
  out=$dir/student_search.db
  resume=()
  [[ -s $out ]] && resume=(--resume)
  .venv/bin/ponder eval gsm8k --split test --data ../shared/data/gsm8k_test.jsonl --limit "$SEARCH" \
    --model "$dir/student.gguf" --schemes "best-of-n@4:scorer=verifier:$dir/verifier.json" \
    --model-arg n_ctx=2048 --concurrency 4 --max-tokens 512 --out "$out" "${resume[@]}"
  [[ -z ${DIR:-} ]] && .venv/bin/python benchmarks/keep_run.py "$out" docs/results/distill_gsm8k_search.db
fi
