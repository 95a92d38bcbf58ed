"""The questions a run works on: a task's records, sliced, each with a gold answer and its own id.

    records = load_questions(get_task("gsm8k"), data=Path("data/gsm8k_train.jsonl"),
                             split="train", limit=200)

Evaluation (`ponder eval`), distillation (`ponder distill`) and GRPO (`ponder train grpo`) all
read their questions here, so a bad file fails the same way in each: one line naming what is
wrong and what to do (DataError for the file's contents, ConfigError for a bad option).
`Task.load` (base.py) reads; this adds what a run needs of what was read.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ponder.core.errors import ConfigError, DataError
from ponder.tasks.base import Record, Task

TEST_SPLIT = "test"  # what a task's `data_file` holds, and so what a data directory stands for


def load_questions(task: Task, *, split: str, data: str | Path | None = None, start: int = 0,
                   limit: int | None = None, gold: bool = True) -> list[Record]:
    """Questions `start` to `start + limit` of `task`, from `data` (a JSONL file, or a directory
    holding the task's test file), else from the task's own source (its file, its generator, or
    its hub copy's `split`).

    Raises a one-line error where the slice is empty, where `gold` is asked for and a question
    has no gold answer, where two questions share an id, and where `data` is a directory but
    `split` is not the test split: the directory would silently give the test questions."""
    if start < 0:
        raise ConfigError("start", start, "use 0 or a positive question index")
    if limit is not None and limit < 1:
        raise ConfigError("limit", limit, "use a positive number of questions")
    if data is not None and Path(data).is_dir() and split != TEST_SPLIT:
        wanted = "training" if split == "train" else f"{split!r} split's"
        raise ConfigError("data", str(data), f"a directory stands for the task's test file; give "
                          f"the {wanted} JSONL file itself, e.g. data/{task.name}_{split}.jsonl")
    if data is None and task.path is None and task.hub is not None:
        task = replace(task, hub=replace(task.hub, split=split))
    loaded = task.load(data, limit=None if limit is None else start + limit)
    records = loaded[start:]
    source = data or task.path or (f"its {split} split" if task.hub else "its source")
    if not loaded:
        raise DataError(f"{task.name!r} has no questions in {source}; give a JSONL file with "
                        "one question per line")
    if not records:
        raise DataError(f"{task.name!r} has {len(loaded)} questions in {source}, none from "
                        f"question {start} on; start before question {len(loaded)}")
    missing = [r.id for r in records if r.gold is None] if gold else []
    if missing and task.answer_field is None:
        raise DataError(f"{task.name!r} has no gold answers to check against; use a task, or a "
                        "task file with an answer column")
    if missing:
        raise DataError(f"{len(missing)} of {len(records)} questions of {task.name!r} have no "
                        f"gold answer (first: {missing[0]!r}); fill in their "
                        f"{task.answer_field!r} field, or leave them out")
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            fix = ("map --field id= to a unique column, or leave it out to number the rows"
                   if task.path else f"give each row its own {task.id_field!r}")
            raise DataError(f"{task.name!r} has the question id {record.id!r} twice; {fix}")
        seen.add(record.id)
    return records
