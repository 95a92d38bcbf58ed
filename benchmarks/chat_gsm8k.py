"""The new default against the old one on GSM8K: `ponder solve` at the default effort (`low`)
with the chat task's prompt and answer reading, against the stored greedy cot of the GSM8K
task's boxed prompt, on the same first 100 test questions. Writes docs/results/chat_gsm8k.md.

    .venv/bin/python benchmarks/chat_gsm8k.py [--limit 100] [--concurrency 4]

Each question is asked as `ponder solve` asks it (the chat task: "reason step by step; box a
single short final answer, otherwise do not"), its answer read as `ponder solve` reads it (from
the reply only, no last-number fallback), and judged with GSM8K's numeric check against the
gold answer. The old default's rows are the `cot` rows of docs/results/search_gsm8k100.db
(the GSM8K task's prompt, graded the same way, with GSM8K's last-number fallback). The paired
difference is over the same questions, with a 95% bootstrap interval over questions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ponder.eval.report import wilson
from ponder.eval.store import Store, cpu_model
from ponder.models.catalog import load_model
from ponder.schemes import get_scheme
from ponder.schemes.effort import effort
from ponder.tasks import get_task, load_questions

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
STORED = ROOT / "docs" / "results" / "search_gsm8k100.db"
OUT = ROOT / "docs" / "results" / "chat_gsm8k.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()

    import numpy as np

    gsm8k, chat = get_task("gsm8k"), get_task("chat")
    records = load_questions(gsm8k, split="test", data=DATA, limit=args.limit)
    with Store.read(STORED) as store:
        old = {r.question_id: r.correct for r in store.rows(traces=False) if r.scheme == "cot"}
    model = load_model(args.model)
    level = effort("low")  # the default effort, as `ponder solve` reads it
    scheme = get_scheme(level.scheme, **level.settings)

    def solve(record):  # type: ignore[no-untyped-def]
        result = scheme(chat.problem(record.question), model=model)
        ok = result.answer is not None and gsm8k.check(result.answer, record.gold)
        return record.id, int(ok), result.answer, result.usage.completion_tokens

    started = time.monotonic()
    with ThreadPoolExecutor(args.concurrency) as pool:
        rows = list(pool.map(solve, records))
    minutes = (time.monotonic() - started) / 60
    model.close()

    new = {q: ok for q, ok, _, _ in rows}
    both = [q for q in new if q in old]
    diff = np.array([new[q] - old[q] for q in both], dtype=float)
    rng = np.random.default_rng(0)
    boot = diff[rng.integers(0, len(diff), size=(10_000, len(diff)))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    right_new, right_old = sum(new[q] for q in both), sum(old[q] for q in both)
    lo_n, hi_n = wilson(right_new, len(both))
    lo_o, hi_o = wilson(right_old, len(both))
    tokens = sum(t for *_, t in rows) / len(rows)
    unanswered = sum(a is None for _, _, a, _ in rows)
    lines = [
        f"# The new default on GSM8K (chat task, `{scheme.name}` with "
        f"{', '.join(f'{k}={v}' for k, v in level.settings.items())})",
        "",
        f"`.venv/bin/python benchmarks/chat_gsm8k.py --limit {args.limit} --concurrency "
        f"{args.concurrency}`: GSM8K test, first {len(both)} questions, model `{args.model}`, "
        f"{cpu_model()}, {os.cpu_count()} cores, {minutes:.0f} min.",
        "",
        "| default | prompt | accuracy | Wilson 95% | tokens/q |",
        "|---|---|---:|---|---:|",
        f"| new (`ponder solve`, chat task) | reason step by step; box a single short answer "
        f"| {right_new}/{len(both)} | {lo_n:.1%}–{hi_n:.1%} | {tokens:.0f} |",
        f"| old (`cot` of docs/results/search_gsm8k100.db) | GSM8K's boxed prompt | "
        f"{right_old}/{len(both)} | {lo_o:.1%}–{hi_o:.1%} | — |",
        "",
        f"Paired difference, new − old: {100 * diff.mean():+.1f} points, 95% bootstrap interval "
        f"[{100 * low:+.1f}, {100 * high:+.1f}] over the {len(both)} questions; new right and "
        f"old wrong on {int((diff > 0).sum())}, the reverse on {int((diff < 0).sum())}. The new "
        f"default stated no answer on {unanswered} questions (it reads the reply only, with no "
        "last-number fallback).",
        "",
    ]
    OUT.write_text("\n".join(lines))
    (OUT.with_suffix(".jsonl")).write_text("".join(
        json.dumps({"id": q, "correct": ok, "answer": a, "tokens": t}) + "\n"
        for q, ok, a, t in rows))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
