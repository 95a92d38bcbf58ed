"""The task table: every benchmark ponder knows, by name (one file per task).

`get_task("gsm8k")` returns a `Task`; an unknown name's error lists the valid ones. `arith` is
generated, not read (ponder/tasks/arith.py). Tasks from other JSONL files need no code:
`jsonl_task(path, question_field=..., answer_field=..., checker="numeric" | "math" | "exact" |
"yesno")`.
"""

from __future__ import annotations

from ponder.core.errors import UnknownName
from ponder.tasks import aime, arith, freeform, game24, gsm8k, math500, strategyqa
from ponder.tasks.base import BOXED_INSTRUCTION, HubSource, Record, Task, jsonl_task, read_jsonl
from ponder.tasks.rules import RULES, Rules

TASKS: dict[str, Task] = {
    task.name: task
    for task in (freeform.TASK, gsm8k.TASK, math500.TASK, aime.TASK, game24.TASK,
                 strategyqa.TASK, arith.TASK)
}
DEFAULT_TASK = "math"


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownName("task", name, TASKS) from None


__all__ = [
    "BOXED_INSTRUCTION", "DEFAULT_TASK", "RULES", "TASKS", "HubSource", "Record", "Rules", "Task",
    "get_task", "jsonl_task", "read_jsonl",
]
