"""The task table: every benchmark ponder knows, by name (one file per task).

`get_task("gsm8k")` returns a `Task`; an unknown name's error lists the valid ones. `arith` is
generated, not read (ponder/tasks/arith.py). Tasks from other JSONL files need no code:
`ponder eval questions.jsonl --field question=problem --field answer=solution --checker math`
(`resolve_task` below), or in Python `jsonl_task(path, question_field=..., answer_field=...,
checker="numeric" | "math" | "exact" | "yesno")`. `load_questions` (records.py) gives a run
its slice of a task's questions, each with a gold answer and its own id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.tasks import aime, arith, chat, freeform, game24, gsm8k, math500, strategyqa
from ponder.tasks.base import (
    BOXED_INSTRUCTION,
    DEFAULT_CHECKER,
    HubSource,
    Record,
    Task,
    jsonl_task,
    read_jsonl,
)
from ponder.tasks.records import load_questions
from ponder.tasks.rules import RULES, Rules

TASKS: dict[str, Task] = {
    task.name: task
    for task in (chat.TASK, freeform.TASK, gsm8k.TASK, math500.TASK, aime.TASK, game24.TASK,
                 strategyqa.TASK, arith.TASK)
}
DEFAULT_TASK = "chat"  # what `ponder solve` and `ponder serve` read a question as
FIELDS = ("question", "answer", "id")  # what a JSONL task's field mapping may name


def resolve_task(spec: str, *, fields: Mapping[str, str] | None = None,
                 checker: str | None = None, instruction: str | None = None) -> Task:
    """A task by name, or a JSONL file of questions read through a field mapping (fields:
    question/answer/id -> the file's column; checker: a `RULES` name, default math).
    `instruction` replaces the system message of either ("" for none)."""
    fields = dict(fields or {})
    if spec in TASKS:
        if fields or checker:
            option, value = (("field", ",".join(f"{k}={v}" for k, v in fields.items()))
                             if fields else ("checker", checker or ""))
            raise ConfigError(option, value, f"{spec} has its own fields and checker; a "
                              "mapping is for a task given as a JSONL file")
        task = TASKS[spec]
    elif spec.endswith(".jsonl") or Path(spec).is_file():
        for key in fields:
            if key not in FIELDS:
                raise ConfigError("field", key, "map question=COLUMN, answer=COLUMN or id=COLUMN")
        if not Path(spec).is_file():
            raise DataError(f"no task file at {spec}; give a JSONL file of questions or a task "
                            f"name ({', '.join(sorted(TASKS))})")
        task = jsonl_task(spec, question_field=fields.get("question", "question"),
                          answer_field=fields.get("answer", "answer"), id_field=fields.get("id"),
                          checker=checker or DEFAULT_CHECKER)
    else:
        raise UnknownName("task", spec, TASKS, also="or a .jsonl file of questions")
    return task if instruction is None else replace(task, instruction=instruction)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownName("task", name, TASKS) from None


__all__ = [
    "BOXED_INSTRUCTION", "DEFAULT_TASK", "FIELDS", "RULES", "TASKS", "HubSource", "Record", "Rules",
    "Task", "get_task", "jsonl_task", "load_questions", "read_jsonl", "resolve_task",
]
