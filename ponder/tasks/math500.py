r"""MATH-500 (Lightman et al. 2023, "Let's Verify Step by Step"): 500 competition problems.

Gold answers are LaTeX (`\frac{14}{3}`, `\left( 3, \frac{\pi}{2} \right)`, intervals, matrices),
so answers are judged with math-verify behind a numeric fast path (`is_equivalent`).
"""

from __future__ import annotations

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import RULES

TASK = Task(
    name="math500",
    summary="MATH-500: 500 competition problems (LaTeX answers, math-verify)",
    rules=RULES["math"],
    question_field="problem",
    answer_field="answer",
    id_field="unique_id",
    data_file="math500_test.jsonl",
    hub=HubSource("HuggingFaceH4/MATH-500", split="test"),
)
