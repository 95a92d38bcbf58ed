"""`load_questions`: the one loader evaluation, distillation and GRPO read their questions with.

One table of bad inputs, each a one-line error that says what to do, then the good cases: the
slice asked for, a directory standing for the test file, gold answers only when asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ponder.core.errors import ConfigError, DataError
from ponder.tasks import Record, load_questions, resolve_task


def line(question: str, answer: str | None = "so #### 42", **extra: Any) -> str:
    """One JSONL row in GSM8K's layout (the gold answer is what follows ####)."""
    return json.dumps({"question": question, "answer": answer, **extra}) + "\n"


GOOD = line("q0", "#### 1") + line("q1", "#### 2") + line("q2", "#### 3")


@dataclass(frozen=True)
class Case:
    """Files to write under a temporary folder, and how `load_questions` is called: `task` is a
    task name or, ending in .jsonl, one of the files as a task of its own (read through
    `fields`, as `ponder eval FILE --field ...` reads it); `data` is the path given, relative to
    the folder ("." is the folder itself; None: the task's own file)."""

    files: dict[str, str]
    task: str = "gsm8k"
    fields: dict[str, str] = field(default_factory=dict)
    data: str | None = "questions.jsonl"
    split: str = "test"
    settings: dict[str, Any] = field(default_factory=dict)


def load(tmp_path: Path, case: Case) -> list[Record]:
    for name, text in case.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    spec = str(tmp_path / case.task) if case.task.endswith(".jsonl") else case.task
    task = resolve_task(spec, fields=case.fields)
    data = None if case.data is None else tmp_path / case.data
    return load_questions(task, split=case.split, data=data, **case.settings)


ERRORS = [
    pytest.param(Case({"questions.jsonl": GOOD + line("q3", "no hashes, no gold")}),
                 DataError, r"1 of 4 questions of 'gsm8k' have no gold answer \(first: "
                 r"'gsm8k-3'\); fill in their 'answer' field", id="missing-gold"),
    pytest.param(Case({"questions.jsonl": line("a", uid="7") + line("b", uid="7")},
                      task="questions.jsonl", fields={"id": "uid"}, data=None),
                 DataError, r"question id '7' twice; map --field id= to a unique column",
                 id="duplicate-ids-in-a-task-file"),
    pytest.param(Case({"questions.jsonl": json.dumps({"problem": "p", "answer": "1",
                                                      "unique_id": "x"}) + "\n"
                                          + json.dumps({"problem": "q", "answer": "2",
                                                        "unique_id": "x"}) + "\n"},
                      task="math500"),
                 DataError, r"question id 'x' twice; give each row its own 'unique_id'",
                 id="duplicate-ids-in-a-named-task"),
    pytest.param(Case({"gsm8k_test.jsonl": GOOD}, data=".", split="train"),
                 ConfigError, r"invalid data=.*: a directory stands for the task's test file; "
                 r"give the training JSONL file itself, e.g. data/gsm8k_train.jsonl",
                 id="directory-for-the-train-split"),
    pytest.param(Case({"gsm8k_test.jsonl": GOOD}, data=".", split="validation"),
                 ConfigError, r"give the 'validation' split's JSONL file itself",
                 id="directory-for-another-split"),
    pytest.param(Case({}, data="."), DataError,
                 r"gsm8k_test.jsonl; give the path of a JSONL file",
                 id="directory-without-the-test-file"),
    pytest.param(Case({"questions.jsonl": GOOD + '{"question": "q3", "answ'}),
                 DataError, r"questions.jsonl:4 ends mid-JSON .*: the file was cut short; "
                 r"write or download it again", id="truncated-last-line"),
    pytest.param(Case({"questions.jsonl": GOOD.replace("q1", 'q1"', 1)}),
                 DataError, r"questions.jsonl:2 is not valid JSON .*; fix or delete that line",
                 id="bad-line-in-the-middle"),
    pytest.param(Case({"questions.jsonl": ""}), DataError,
                 r"'gsm8k' has no questions in .*questions.jsonl; give a JSONL file with one "
                 r"question per line", id="empty-file"),
    pytest.param(Case({"questions.jsonl": "\n  \n"}), DataError, r"has no questions in",
                 id="blank-lines-only"),
    pytest.param(Case({"questions.jsonl": GOOD}, settings={"start": 3}), DataError,
                 r"has 3 questions in .*questions.jsonl, none from question 3 on; start "
                 r"before question 3",
                 id="start-past-the-end"),
    pytest.param(Case({"questions.jsonl": "[1, 2]\n"}), DataError,
                 r"questions.jsonl:1 is not a JSON object; write one object per line",
                 id="not-an-object"),
    pytest.param(Case({"questions.jsonl": GOOD}, settings={"limit": 0}), ConfigError,
                 r"invalid limit=0", id="zero-limit"),
    pytest.param(Case({"questions.jsonl": GOOD}, settings={"start": -1}), ConfigError,
                 r"invalid start=-1", id="negative-start"),
]


@pytest.mark.parametrize(("case", "error", "match"), ERRORS)
def test_bad_questions_are_one_line_errors(tmp_path: Path, case: Case,
                                           error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        load(tmp_path, case)
    assert type(info.value) is error and "\n" not in str(info.value)


GOOD_CASES = [
    pytest.param(Case({"questions.jsonl": GOOD}), ["gsm8k-0", "gsm8k-1", "gsm8k-2"],
                 id="the-whole-file"),
    pytest.param(Case({"questions.jsonl": GOOD}, settings={"start": 1, "limit": 1}),
                 ["gsm8k-1"], id="a-slice"),
    pytest.param(Case({"questions.jsonl": GOOD.rstrip("\n")}), ["gsm8k-0", "gsm8k-1", "gsm8k-2"],
                 id="no-newline-after-the-last-line"),
    pytest.param(Case({"gsm8k_test.jsonl": GOOD}, data="."), ["gsm8k-0", "gsm8k-1", "gsm8k-2"],
                 id="a-directory-holding-the-test-file"),
    pytest.param(Case({"questions.jsonl": line("a", uid="u1") + line("b", uid="u2")},
                      task="questions.jsonl", fields={"id": "uid"}, data=None, split="train"),
                 ["u1", "u2"],
                 id="a-task-file-with-ids"),
    pytest.param(Case({"questions.jsonl": GOOD + line("q3", None)}, settings={"gold": False}),
                 ["gsm8k-0", "gsm8k-1", "gsm8k-2", "gsm8k-3"], id="gold-not-required"),
]


@pytest.mark.parametrize(("case", "ids"), GOOD_CASES)
def test_good_questions_load_in_file_order(tmp_path: Path, case: Case, ids: list[str]) -> None:
    records = load(tmp_path, case)
    assert [r.id for r in records] == ids
    if case.settings.get("gold", True):
        assert all(r.gold is not None for r in records)


def test_the_slice_keeps_the_file_positions(tmp_path: Path) -> None:
    records = load(tmp_path, Case({"questions.jsonl": GOOD}, settings={"start": 1}))
    assert [(r.question, r.gold) for r in records] == [("q1", "2"), ("q2", "3")]
