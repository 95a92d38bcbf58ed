"""Issue 26's results page: several models, one reasoner, on GSM8K test (first 100).

Reads the stores benchmarks/models_gsm8k.sh keeps in docs/results/ and the 0.5B's stored pools:

* the 0.5B alone: cot, self-consistency@4 and @8 (docs/results/search_gsm8k100.db);
* the 1.5B alone: cot (models_gsm8k_big.db);
* route and plan-execute, run live with both models (models_gsm8k_roles.db);
* cascades over reasoning chains, replayed without generating (ponder/eval/cascade_fit.py): the
  0.5B's first n chains of each stored pool of 8 vote, and a question whose top answer falls
  short of the threshold takes the 1.5B's stored cot row. The threshold of each n is fitted on
  the first 50 *train* questions (the 0.5B's pools in gsm8k_train50.db against the 1.5B's cot in
  models_gsm8k_train.db), the cheapest in model seconds within 1 point of the 1.5B alone.

Writes docs/results/models_gsm8k.md and .png (accuracy against model seconds per question).

    .venv/bin/python benchmarks/models_doc.py
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ponder.core.files import write_text_atomic
from ponder.eval.cascade_fit import choose, fit, replay
from ponder.eval.report import (
    SchemeSummary,
    paired_difference,
    plot,
    summarize,
    to_markdown,
    wilson,
)
from ponder.eval.runner import task_of
from ponder.eval.store import Row, Store

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
SMALL, BIG = "0.5B", "1.5B"
LIMIT = 100


def rows_of(path: Path, rename: dict[str, str], traces: bool = False) -> list[Row]:
    with Store.read(path) as store:
        return [replace(r, scheme=rename[r.scheme]) for r in store.rows(traces=traces)
                if r.scheme in rename and r.position < LIMIT]


def fitted(n: int) -> float:
    """The threshold fitted on the train questions for a cascade of n cheap chains."""
    with Store.read(RESULTS / "gsm8k_train50.db") as store:
        task = task_of(store.meta())
        pools = [r for r in store.rows(traces=True) if r.scheme == "self-consistency@8"]
    strong = rows_of(RESULTS / "models_gsm8k_train.db", {"cot": "cot"})
    points, alone = fit(pools, strong, n, task.key, task.check)
    return choose(points, alone).threshold


def cascade(n: int, threshold: float, pools: list[Row], strong: list[Row]) -> list[Row]:
    """Each test question's replayed cascade@n, as a row (the strong row's, its outcome and
    cost replaced)."""
    with Store.read(RESULTS / "search_gsm8k100.db") as store:
        task = task_of(store.meta())
    by_q = {r.question_id: r for r in strong}
    out = []
    for pool in pools:
        if (big := by_q.get(pool.question_id)) is None:
            continue
        cheap = replay(pool, n, task.key, task.check)
        kept = cheap.agreement >= threshold
        out.append(replace(
            big, scheme=f"cascade@{n}:accept={threshold:.2f} (replayed)",
            correct=int(cheap.correct if kept else big.correct),
            completion_tokens=cheap.tokens + (0 if kept else big.completion_tokens),
            model_seconds=(cheap.seconds or 0) + (0 if kept else big.model_seconds or 0),
            by_role=None, trace="{}"))
    return out


def small_line(summaries: list[SchemeSummary], seconds: float) -> str:
    """The 0.5B's accuracy read off its own line (cot, self-consistency@4, @8) at `seconds`,
    linearly in log seconds, as `ponder report --equal-tokens` reads tokens."""
    line = sorted((s for s in summaries if s.scheme.startswith(SMALL)),
                  key=lambda s: s.mean_seconds)
    xs = [math.log(s.mean_seconds) for s in line]
    x = math.log(seconds)
    if x <= xs[0] or x >= xs[-1]:
        end = line[0] if x <= xs[0] else line[-1]
        return f"{end.accuracy:.0%} (its {end.scheme.removeprefix(SMALL + ' ')}, the line's end)"
    i = next(k for k in range(1, len(xs)) if x <= xs[k])
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    acc = line[i - 1].accuracy + t * (line[i].accuracy - line[i - 1].accuracy)
    return (f"{acc:.1%} (between its {line[i - 1].scheme.removeprefix(SMALL + ' ')} and "
            f"{line[i].scheme.removeprefix(SMALL + ' ')})")


def main() -> None:
    small = rows_of(RESULTS / "search_gsm8k100.db",
                    {"cot": f"{SMALL} cot", "self-consistency@4": f"{SMALL} self-consistency@4",
                     "self-consistency@8": f"{SMALL} self-consistency@8"})
    big = rows_of(RESULTS / "models_gsm8k_big.db", {"cot": f"{BIG} cot",
                                                    "self-consistency@4":
                                                    f"{BIG} self-consistency@4"})
    roles_db = RESULTS / "models_gsm8k_roles.db"
    with Store.read(roles_db) as store:
        live_schemes = sorted({r.scheme for r in store.rows(traces=False)})
    live = rows_of(roles_db, {s: s for s in live_schemes})
    pools = rows_of(RESULTS / "search_gsm8k100.db", {"self-consistency@8": "pool"}, traces=True)
    big_cot = [r for r in big if r.scheme == f"{BIG} cot"]
    thresholds = {n: fitted(n) for n in (2, 4, 8)}
    replayed = [r for n, t in thresholds.items() for r in cascade(n, t, pools, big_cot)]
    rows = small + big + live + replayed
    order = [f"{SMALL} cot", f"{SMALL} self-consistency@4", f"{SMALL} self-consistency@8",
             f"{BIG} cot", f"{BIG} self-consistency@4", *live_schemes,
             *sorted({r.scheme for r in replayed})]
    summaries = summarize(rows, order=order, baseline=f"{BIG} cot")
    plot(summaries, RESULTS / "models_gsm8k.png", "GSM8K test, first 100: 0.5B, 1.5B and both",
         axis="seconds")
    base = next(s for s in summaries if s.scheme == f"{BIG} cot")
    lines = ["# Several models, one reasoner: GSM8K test (first 100)", "",
             "Written by `benchmarks/models_doc.py` from the stores of "
             "`benchmarks/models_gsm8k.sh` (see both headers). Qwen2.5-Coder 0.5B and 1.5B "
             "Instruct, Q4_K_M, llama.cpp in-process on 2 cores, 512 tokens a chain, greedy "
             "where a scheme is greedy; seconds are model seconds.", "",
             to_markdown(summaries, {"task": "gsm8k", "split": "test", "model": "several"},
                         "wilson"), "",
             "## Against the 1.5B's cot: accuracy and seconds", "",
             "| scheme | right | 95% CI | Δ vs 1.5B cot (points, paired) | model s/q "
             "| share of the 1.5B's seconds |", "|---|---:|---|---:|---:|---:|"]
    by_scheme: dict[str, list[Row]] = {}
    for r in rows:
        by_scheme.setdefault(r.scheme, []).append(r)
    for s in summaries:
        low, high = wilson(s.correct, s.rows)
        paired = paired_difference(by_scheme[s.scheme], by_scheme[base.scheme])
        delta = ("—" if s is base or paired is None else
                 f"{100 * paired[0]:+.1f} [{100 * paired[1]:+.0f}, {100 * paired[2]:+.0f}]")
        lines.append(f"| {s.scheme} | {s.correct}/{s.rows} | {low:.0%}–{high:.0%} | {delta} | "
                     f"{s.mean_seconds:.2f} | {s.mean_seconds / base.mean_seconds:.0%} |")
    lines += ["", "At equal seconds, the 0.5B alone (its line read in log seconds, as "
              "`ponder report --equal-tokens` reads tokens):", ""]
    for sch in (*live_schemes, *sorted({r.scheme for r in replayed})):
        s = next(x for x in summaries if x.scheme == sch)
        lines.append(f"* {sch}: {s.accuracy:.0%} at {s.mean_seconds:.1f} s; the 0.5B there: "
                     f"{small_line(summaries, s.mean_seconds)}; the 1.5B's cot: "
                     f"{base.accuracy:.0%} at {base.mean_seconds:.1f} s")
    lines += ["", "Thresholds fitted on train (first 50 questions; `ponder fit-cascade "
              "docs/results/gsm8k_train50.db docs/results/models_gsm8k_train.db "
              "--cheap-scheme self-consistency@8 --n N`): "
              + ", ".join(f"cascade@{n}: accept={t:.2f}" for n, t in thresholds.items()) + ".",
              "", "![accuracy against seconds](models_gsm8k.png)"]
    doc = RESULTS / "models_gsm8k.md"
    reading = doc.read_text().partition("\n## Reading")[2] if doc.exists() else ""
    text = "\n".join(lines) + "\n" + (f"\n## Reading{reading}" if reading else "")
    write_text_atomic(doc, text)
    print(text)


if __name__ == "__main__":
    main()
