r"""AIME 2024 (I and II): 30 problems whose answers are integers 0-999.

Answers go through `is_equivalent`: integers compare exactly without sympy (`025` == `25`); a
model that writes an expression (`\frac{50}{2}`) still gets math-verify's judgement.
"""

from __future__ import annotations

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import RULES

TASK = Task(
    name="aime24",
    summary="AIME 2024: 30 competition problems, integer answers 0-999",
    rules=RULES["math"],
    question_field="problem",
    answer_field="answer",
    id_field="id",
    data_file="aime24.jsonl",
    hub=HubSource("HuggingFaceH4/aime_2024", split="train"),
)
