"""`math`: any question read as a math problem (`ponder solve --task math "..."`; the default
was this until the chat task, ponder/tasks/chat.py).

No dataset of its own: it asks with the boxed chain-of-thought prompt, reads the final answer
with `extract_answer` and judges it with `is_equivalent`; the content shown is the answer.
`task.load(path)` still reads any JSONL with `question` / `answer` fields.
"""

from __future__ import annotations

from ponder.tasks.base import Task
from ponder.tasks.rules import RULES

TASK = Task(
    name="math",
    summary="any question; boxed final answer, math-verify equivalence",
    rules=RULES["math"],
)
