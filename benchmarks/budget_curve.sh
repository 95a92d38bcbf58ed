#!/usr/bin/env bash
# Issue 24's budget curve: GSM8K test, first 30 (the first 100 did not fit: ~2,900 tokens a
# question over these seven schemes, ~2 h of this CPU), default model (the 0.5B), thinking format
# (budget forcing, ponder/schemes/forcing.py): greedy chains whose thinking is cut at 128, 256 and
# 512 tokens, and extended with one and two "Wait"s (up to 1024), against self-consistency over
# 2 and 4 budget-forced chains (256 thinking tokens each, temperature 0.7), and against the
# stored plain chains of docs/results/search_gsm8k100.db (cot, self-consistency@4/@8), all read
# at equal tokens (`ponder report --equal-tokens`). After the thinking, "Final answer: \boxed{"
# is forced, as s1 forces "Final Answer:": the 0.5B does not think natively, and left to itself
# its reply after </think> often restates nothing (an answer boxed in the thinking is not read).
# Resumable: run it again to continue; the database is kept in docs/results/budget_curve.db.
# The doc's "### Reading" section is written by hand after a run; this script keeps it.
# A smoke run: LIMIT=2 OUT=/tmp/smoke.db benchmarks/budget_curve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/budget_curve.db}
kept=docs/results/budget_curve.db
if [[ -z ${OUT:-} ]]; then
  if [[ ! -s $out && -s $kept ]]; then mkdir -p "$(dirname "$out")" && cp "$kept" "$out"; fi
  trap '[[ -s $out ]] && .venv/bin/python benchmarks/keep_run.py "$out" "$kept"' EXIT
fi
resume=$([[ -s $out ]] && echo --resume || true)
L='lead_in="\n</think>\n\nFinal answer: \\boxed{"'
schemes="budget:budget=128:$L,budget:budget=256:$L,budget:budget=512:$L"
schemes+=",budget:budget=1024:waits=1:$L,budget:budget=1024:waits=2:$L"
schemes+=",self-consistency@2:budget=256:$L,self-consistency@4:budget=256:$L"
.venv/bin/ponder eval gsm8k --data ../shared/data --limit "${LIMIT:-30}" --model default \
  --concurrency 4 --schemes "$schemes" --out "$out" $resume
[[ -n ${OUT:-} ]] && exit 0
doc=docs/results/budget_curve.md
reading=$(sed -n '/^### Reading/,$p' "$doc" 2>/dev/null || true)
{
  echo "## Budget forcing against self-consistency at equal tokens (GSM8K test, first ${LIMIT:-30})"
  echo
  echo "Written by \`benchmarks/budget_curve.sh\` (see its header for the settings)."
  echo
  .venv/bin/ponder report "$out" docs/results/search_gsm8k100.db --positions ":${LIMIT:-30}" --markdown \
    --equal-tokens --plot docs/results/budget_curve.png
  echo
  echo "![accuracy against tokens](budget_curve.png)"
  [[ -z $reading ]] || printf '\n%s\n' "$reading"
} > "$doc.tmp" && mv "$doc.tmp" "$doc"
echo "→ $doc"
