#!/usr/bin/env bash
# Issue 25's tools measurement: GSM8K test, first 100, default model (the 0.5B), greedy cot with
# tools inside the chain (ponder/schemes/tooluse.py): `calc` (each result checked as it is
# written; a wrong right side replaced by the exact value) and `python+calc` (also: every
# ```python block the chain closes runs in the sandbox and its real output is inserted), against
# the stored greedy cot rows of docs/results/search_gsm8k100.db (same prompt, same 512 tokens a
# chain), paired on the same questions. Resumable; kept in docs/results/tools_gsm8k.db.
# Self-consistency@8 with calc (1 h 58 min): SCHEMES=self-consistency@8:tools=calc benchmarks/tools_gsm8k.sh
# A smoke run: LIMIT=2 OUT=/tmp/smoke.db benchmarks/tools_gsm8k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/tools_gsm8k.db}
kept=docs/results/tools_gsm8k.db
if [[ -z ${OUT:-} ]]; then
  if [[ ! -s $out && -s $kept ]]; then mkdir -p "$(dirname "$out")" && cp "$kept" "$out"; fi
  trap '[[ -s $out ]] && .venv/bin/python benchmarks/keep_run.py "$out" "$kept"' EXIT
fi
resume=$([[ -s $out ]] && echo --resume || true)
.venv/bin/ponder eval gsm8k --data ../shared/data/gsm8k_test.jsonl --limit "${LIMIT:-100}" \
  --model default --model-arg n_ctx=2048 --concurrency 4 --max-tokens 512 \
  --schemes "${SCHEMES:-cot:tools=calc,cot:tools=python+calc}" --out "$out" $resume
[[ -n ${OUT:-} ]] && exit 0
doc=docs/results/tools_gsm8k.md
reading=$(sed -n '/^### Reading/,$p' "$doc" 2>/dev/null || true)  # written by hand: kept
{
  echo "## Tools inside the chain, GSM8K test (first ${LIMIT:-100}), default model"
  echo
  echo "Written by \`benchmarks/tools_gsm8k.sh\` (see its header); the cot rows are the stored"
  echo "ones of docs/results/search_gsm8k100.db."
  echo
  .venv/bin/ponder report "$out" docs/results/search_gsm8k100.db --positions ":${LIMIT:-100}" \
    --markdown
  [[ -z $reading ]] || printf '\n%s\n' "$reading"
} > "$doc.tmp" && mv "$doc.tmp" "$doc"
echo "→ $doc"
