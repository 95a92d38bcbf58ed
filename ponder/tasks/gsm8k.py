"""GSM8K (Cobbe et al. 2021): grade-school word problems with integer answers.

The gold answer is the text after the solution's `####`, thousands commas removed (the official
harness). Answers are judged as numbers (ponder/tasks/rules.py "numeric"): the stated final
answer, or failing that the last number in the completion.
"""

from __future__ import annotations

from typing import Any

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import RULES


def gold_after_hashes(solution: Any) -> str | None:
    """'... so she makes $18.\\n#### 1,018' -> '1018'."""
    if solution is None or "####" not in str(solution):
        return None
    return str(solution).rsplit("####", 1)[1].strip().replace(",", "")


TASK = Task(
    name="gsm8k",
    summary="GSM8K test: 1,319 grade-school word problems, integer answers",
    rules=RULES["numeric"],
    question_field="question",
    answer_field="answer",
    gold_of=gold_after_hashes,
    data_file="gsm8k_test.jsonl",
    hub=HubSource("openai/gsm8k", split="test", config="main"),
)
