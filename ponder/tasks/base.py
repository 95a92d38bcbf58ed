r"""A task: where its questions come from, how they are asked, and how answers are judged.

A `Task` is data, not a class hierarchy: a source (JSONL field names, a Hugging Face hub copy,
or a function that generates rows), a prompt, and `Rules` (extract / check / key,
ponder/tasks/rules.py). Each benchmark file builds one; `jsonl_task` builds one from any JSONL
file and a field mapping, so users add tasks without writing code. `task.problem(record)` turns
a question into the `Problem` that schemes read.

The prompt follows Qwen2.5-Math's recommended chain-of-thought prompt: the system message
"Please reason step by step, and put your final answer within \boxed{}." and the question as the
user message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.problem import Problem, Reply
from ponder.core.types import Message, user
from ponder.tasks.rules import RULES, Rules

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_CHECKER = "math"  # how a task file's answers are judged unless told


def as_text(value: Any) -> str | None:
    """A gold value as a string (JSON numbers and bools included); None stays None."""
    return None if value is None else str(value).strip()


def _same(question: str) -> str:
    return question


def _bind(check: Callable[[str, str], bool] | None,
          question: str) -> Callable[[str], bool] | None:
    """A task's (question, text) check as the problem's text -> bool check."""
    return None if check is None else functools.partial(check, question)


@dataclass(frozen=True)
class Record:
    """One question of a task. `row` keeps the raw record (solution, level, ...) for reports."""

    id: str
    question: str
    gold: str | None
    row: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class HubSource:
    """Where the task lives on the Hugging Face hub. `rename` maps hub columns to the local
    JSONL's names, so one reader serves both."""

    path: str
    split: str
    config: str | None = None
    rename: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    rules: Rules
    question_field: str = "question"
    answer_field: str | None = "answer"  # None: a task without gold answers
    id_field: str | None = None  # None: ids are "<name>-<line index>"
    gold_of: Callable[[Any], str | None] = as_text  # raw answer value -> gold (GSM8K: after ####)
    prompt: Callable[[str], str] = _same  # question -> user message (Game of 24 words it)
    instruction: str = BOXED_INSTRUCTION  # the system message
    # Worked examples, asked and answered as earlier turns of the chat: (user, assistant) pairs
    shots: tuple[tuple[str, str], ...] = ()
    step_delimiter: str = "\n\n"  # where tree schemes cut a chain into steps
    data_file: str | None = None  # the file's name in a data directory, e.g. gsm8k_test.jsonl
    path: Path | None = None  # where `load()` reads when given no source (jsonl_task sets it)
    hub: HubSource | None = None  # where `load()` reads otherwise
    # Rows made by code instead of read (arith): limit -> raw rows. `load()` with no source and
    # no `path` uses it in place of the hub
    generate: Callable[[int | None], Iterable[Mapping[str, Any]]] | None = None
    # Checks that need no gold answer, where the task has them (Game of 24 does), each taking
    # (question, text): is this answer right? can these steps so far still succeed?
    verify: Callable[[str, str], bool] | None = None
    partial: Callable[[str, str], bool] | None = None
    # How a chosen chain reads as a reply for the user (the chat task); None: the answer is it
    reply: Callable[[str], Reply] | None = None

    # --- answers: what schemes and evaluation call ----------------------------------------------

    def render(self, question: str) -> tuple[Message, ...]:
        """The chat prompt for one question: the system message, the worked examples as earlier
        turns, then the question."""
        shots = [m for q, a in self.shots for m in ({"role": "user", "content": q},
                                                     {"role": "assistant", "content": a})]
        return user(self.prompt(question), system=self.instruction or None, before=shots)

    def extract(self, text: str) -> str | None:
        return self.rules.extract(text)

    def check(self, pred: str, gold: str) -> bool:
        return self.rules.check(pred, gold)

    def key(self, answer: str) -> str:
        return self.rules.key(answer)

    def problem(self, item: Record | str) -> Problem:
        """What a scheme needs to solve one question (a record or a free-form question)."""
        record = item if isinstance(item, Record) else Record(id="", question=item, gold=None)
        question = record.question
        return Problem(question=question, messages=self.render(question),
                       extract=self.rules.extract, key=self.rules.key,
                       step_delimiter=self.step_delimiter,
                       verify=_bind(self.verify, question), partial=_bind(self.partial, question),
                       id=record.id or None, gold=record.gold, reply=self.reply)

    # --- data -----------------------------------------------------------------------------------

    def load(self, source: str | Path | None = None, *, limit: int | None = None) -> list[Record]:
        """Records from a JSONL file, from a directory holding `data_file`, or with no source
        from the task's own `path`, else its `generate`, else the Hugging Face hub. `limit` keeps
        the first records, in file order."""
        source = source if source is not None else self.path
        if source is None:
            rows: Iterable[Mapping[str, Any]] = (
                self.generate(limit) if self.generate is not None else self._hub_rows())
        else:
            path = Path(source)
            if path.is_dir():
                if self.data_file is None:
                    raise DataError(f"task {self.name!r} has no default file name; "
                                    f"pass the JSONL file itself, not the directory {path}")
                path = path / self.data_file
            rows = read_jsonl(path)
        records = []
        for index, row in enumerate(rows):
            if limit is not None and index >= limit:
                break
            records.append(self.record(index, row))
        return records

    def record(self, index: int, row: Mapping[str, Any]) -> Record:
        """One raw row as a `Record`; a missing field is a one-line DataError naming the fix."""
        for role, wanted in (("question", self.question_field), ("answer", self.answer_field),
                             ("id", self.id_field)):
            if wanted is not None and wanted not in row:
                fix = (f"name its {role} column: --field {role}=COLUMN" if self.path else
                       f"give {self.name}'s own data, or the file as a task with --field")
                raise DataError(f"{self.name} record {index} has no field {wanted!r} (it has: "
                                f"{', '.join(sorted(row))}); {fix}")
        gold = self.gold_of(row[self.answer_field]) if self.answer_field else None
        rid = str(row[self.id_field]) if self.id_field else f"{self.name}-{index}"
        return Record(id=rid, question=str(row[self.question_field]), gold=gold, row=row)

    def _hub_rows(self) -> Iterable[Mapping[str, Any]]:
        """The hub copy through `datasets` (imported only here: most users never need it)."""
        if self.hub is None:
            raise DataError(f"task {self.name!r} has no Hugging Face hub copy; "
                            "pass the path of a JSONL file")
        try:
            import datasets
        except ImportError:
            raise DataError(f"loading {self.name!r} from the Hugging Face hub needs `pip install "
                            "datasets`; or pass the path of a JSONL file") from None
        hub = self.hub
        try:
            table = datasets.load_dataset(hub.path, hub.config, split=hub.split)
        except Exception as e:  # network, auth, renamed repo: one line, with the offline fix
            raise DataError(f"could not load {hub.path} ({hub.split}) from the hub: {e}; "
                            "or pass the path of a local JSONL copy") from e
        return ({hub.rename.get(k, k): v for k, v in row.items()} for row in table)


def read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """Rows of a JSONL file, lazily; blank lines are skipped, a bad line names its number and
    says what to do (a last line cut off mid-JSON says the file was cut short)."""
    if not path.is_file():
        raise DataError(f"no data file at {path}; give the path of a JSONL file")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):  # the last line, and no newline ends it
                    raise DataError(f"{path}:{number} ends mid-JSON ({e.msg}): the file was cut "
                                    "short; write or download it again") from None
                raise DataError(f"{path}:{number} is not valid JSON ({e.msg}); fix or delete "
                                "that line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number} is not a JSON object; write one object per "
                                "line")
            yield row


def jsonl_task(
    path: str | Path,
    *,
    question_field: str = "question",
    answer_field: str | None = "answer",
    checker: str = DEFAULT_CHECKER,
    id_field: str | None = None,
    name: str | None = None,
    instruction: str = BOXED_INSTRUCTION,
) -> Task:
    """A task from any JSONL file and a field mapping, no code needed. `checker` is one of
    numeric, math, exact, yesno (see ponder/tasks/rules.py); `task.load()` reads `path`."""
    if checker not in RULES:
        raise UnknownName("checker", checker, RULES)
    path = Path(path)
    if path.is_dir():
        raise ConfigError("path", str(path), "give the JSONL file, not a directory")
    return Task(name=name or path.stem, summary=f"questions from {path.name}", rules=RULES[checker],
                question_field=question_field, answer_field=answer_field, id_field=id_field,
                instruction=instruction, data_file=path.name, path=path)
