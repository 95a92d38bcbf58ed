"""Issue 28's results page: the 1.5B's verified chains distilled into the 0.5B (the loop once).

Reads what benchmarks/distill_gsm8k.sh leaves: the student's greedy cot rows on GSM8K test
(docs/results/distill_gsm8k_student.db), the base 0.5B's stored cot rows on the same questions
(docs/results/search_gsm8k100.db), the teacher's rows on train (models_gsm8k_train.db), the
training log (runs/distill_gsm8k/student/train_log.jsonl) and the decode speeds
(runs/distill_gsm8k/decode_speed.md). Writes docs/results/distill_gsm8k.md.

    .venv/bin/python benchmarks/distill_doc.py
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ponder.core.files import write_text_atomic
from ponder.eval.report import summarize, to_markdown
from ponder.eval.store import Row, Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
RUN = ROOT / "runs" / "distill_gsm8k"


def rows_of(path: Path, scheme: str, name: str, limit: int | None = None) -> list[Row]:
    with Store.read(path) as store:
        return [replace(r, scheme=name) for r in store.rows(traces=False)
                if r.scheme == scheme and (limit is None or r.position < limit)]


def answered(path: Path) -> tuple[int, int]:
    """(rows whose reply held an answer, rows): whether the student closes its thinking."""
    with Store.read(path) as store:
        rows = list(store.rows(traces=False))
    return sum(r.answer is not None for r in rows), len(rows)


def main() -> None:
    student = rows_of(RESULTS / "distill_gsm8k_student.db", "cot", "student (0.5B distilled) cot")
    limit = 1 + max(r.position for r in student)
    base = rows_of(RESULTS / "search_gsm8k100.db", "cot", "base 0.5B cot", limit)
    teacher = rows_of(RESULTS / "models_gsm8k_train.db", "cot", "teacher")
    summaries = summarize(base + student, order=["base 0.5B cot"], baseline="base 0.5B cot")
    log = [json.loads(line) for line in (RUN / "student" / "train_log.jsonl").open()]
    steps = [e for e in log if "loss" in e]
    seconds = sum(e.get("seconds", 0) for e in steps)
    with_answer, rows = answered(RESULTS / "distill_gsm8k_student.db")
    lines = [
        "# Distillation on GSM8K: the 1.5B's verified chains into the 0.5B", "",
        "Written by `benchmarks/distill_doc.py` after `benchmarks/distill_gsm8k.sh` (the loop "
        "as ponder commands; see its header).", "",
        f"* **Teacher**: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, greedy cot on the first "
        f"{len(teacher)} GSM8K *train* questions: {sum(r.correct for r in teacher)} right "
        "(the store's check), each right, complete chain one example in the thinking format "
        "(`--format think`).",
        f"* **Student**: Qwen2.5-Coder-0.5B-Instruct (the embedded Q4_K_M, dequantised), LoRA "
        f"r=16 on every projection, {len(steps)} steps of 4 examples, "
        f"loss {steps[0]['loss']:.3f} → {steps[-1]['loss']:.3f}, {seconds / 60:.0f} min on "
        "2 CPU cores; merged and exported to GGUF q8_0 (`--export gguf:q8_0`).",
        f"* **Test**: greedy cot on GSM8K test, first {limit}, 512 tokens; the base is the "
        "embedded Q4_K_M's stored cot rows on the same questions (same prompt). The student "
        f"closed its thinking with an answer in the reply on {with_answer} of {rows}.", "",
        to_markdown(summaries, {"task": "gsm8k", "split": "test", "model": "0.5B"}, "wilson"),
        "", "## Decode speed (benchmarks/decode_speed.py)", "",
        (RUN / "decode_speed.md").read_text().strip(), ""]
    doc = RESULTS / "distill_gsm8k.md"
    reading = doc.read_text().partition("\n## Reading")[2] if doc.exists() else ""
    text = "\n".join(lines) + (f"\n## Reading{reading}" if reading else "")
    write_text_atomic(doc, text)
    print(text)


if __name__ == "__main__":
    main()
