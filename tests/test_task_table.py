"""The task table, `jsonl_task` and loading (local JSONL files and a faked hub)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.problem import Problem
from ponder.tasks import RULES, TASKS, Record, Task, get_task, jsonl_task, resolve_task

# --- the task table ---------------------------------------------------------------------------

# (question, gold, a correct completion) per task; the default serves the math-like tasks
SAMPLES = {"game24": ("1 2 3 4", "1 2 3 4", r"so \boxed{(1 + 2 + 3) \times 4}"),
           "strategyqa": ("Is 4 even?", "Yes", r"4 = 2 * 2. \boxed{Yes}")}
DEFAULT_SAMPLE = ("What is 2 + 2?", "4", r"2 + 2 = \boxed{4}.")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_renders_reads_and_builds_a_problem(name: str) -> None:
    task = get_task(name)
    question, gold, completion = SAMPLES.get(name, DEFAULT_SAMPLE)
    messages = task.render(question)
    assert messages[-1] == {"role": "user", "content": task.prompt(question)}
    shots = [m for q, a in task.shots for m in ({"role": "user", "content": q},
                                                 {"role": "assistant", "content": a})]
    assert list(messages[-1 - len(shots):-1]) == shots  # worked examples: earlier turns
    if name == "game24":  # Tree of Thoughts' chain-of-thought prompt, five worked puzzles
        assert len(shots) == 10 and "obtain 24" in messages[0]["content"]
    elif task.instruction:
        assert "\\boxed{}" in messages[0]["content"] and len(messages) == 2
    else:  # arith: no system message, as GRPO trains on it
        assert len(messages) == 1
    problem = task.problem(Record(id="q1", question=question, gold=gold))
    assert isinstance(problem, Problem) and problem.messages == messages
    assert (problem.id, problem.gold, problem.step_delimiter) == ("q1", gold, task.step_delimiter)
    answer = problem.extract(completion)
    assert answer is not None and task.check(answer, gold)
    assert problem.key(answer) == task.key(answer)
    assert not task.check("7", gold)


def test_math_is_the_free_form_default() -> None:
    problem = get_task("math").problem("What is half of one?")
    assert problem.id is None and problem.gold is None
    assert problem.key(r"\dfrac{1}{2}") == problem.key("0.5")


def test_unknown_task_lists_the_valid_names() -> None:
    with pytest.raises(UnknownName) as err:
        get_task("gsm9k")
    assert str(err.value) == ("unknown task 'gsm9k'; valid names: "
                              "aime24, arith, chat, game24, gsm8k, math, math500, strategyqa")


# --- loading ----------------------------------------------------------------------------------

@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "capitals.jsonl"
    rows = [{"id": "a", "q": "Is Paris the capital of France?", "gold": True},
            {"id": "b", "q": "Is Lyon the capital of France?", "gold": False},
            {"id": "c", "q": "Is Rome in Spain?", "gold": "No"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    return path


def test_jsonl_task_from_a_field_mapping(qa_file: Path) -> None:
    task = jsonl_task(qa_file, question_field="q", answer_field="gold", id_field="id",
                      checker="yesno")
    records = task.load()
    assert [(r.id, r.gold) for r in records] == [("a", "True"), ("b", "False"), ("c", "No")]
    assert task.name == "capitals" and task.check("Yes", records[0].gold or "")
    assert not task.check("Yes", records[1].gold or "")
    assert [r.id for r in task.load(qa_file, limit=2)] == ["a", "b"]


@pytest.mark.parametrize("checker", sorted(RULES))
def test_jsonl_task_checkers(checker: str, qa_file: Path) -> None:
    task = jsonl_task(qa_file, question_field="q", answer_field="gold", checker=checker)
    assert task.rules is RULES[checker] and task.load()[0].id == "capitals-0"


def test_jsonl_task_errors_are_one_line(qa_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownName, match="valid names: exact, math, numeric, yesno"):
        jsonl_task(qa_file, checker="fuzzy")
    with pytest.raises(DataError, match=r"no field 'question' .*it has: gold, id, q"):
        jsonl_task(qa_file).load()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "ok", "answer": "1"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.jsonl:2 is not valid JSON"):
        jsonl_task(broken).load()
    with pytest.raises(DataError, match="no data file"):
        get_task("gsm8k").load(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no Hugging Face hub copy"):
        get_task("math").load()


def test_resolve_task_reads_a_jsonl_file_through_a_field_mapping(qa_file: Path) -> None:
    task = resolve_task(str(qa_file), fields={"question": "q", "answer": "gold", "id": "id"},
                        checker="yesno")
    assert task.name == "capitals" and task.rules is RULES["yesno"] and task.path == qa_file
    assert [(r.id, r.question, r.gold) for r in task.load()] == [
        (r.id, r.question, r.gold)
        for r in jsonl_task(qa_file, question_field="q", answer_field="gold", id_field="id",
                            checker="yesno").load()]
    assert resolve_task(str(qa_file)).rules is RULES["math"]  # the default checker
    assert resolve_task("gsm8k") is get_task("gsm8k")


def test_an_instruction_replaces_the_system_message(qa_file: Path) -> None:
    assert resolve_task("gsm8k", instruction="").render("Q?") == (
        {"role": "user", "content": "Q?"},)
    messages = resolve_task(str(qa_file), instruction="Answer Yes or No.").render("Q?")
    assert messages[0] == {"role": "system", "content": "Answer Yes or No."}


@pytest.mark.parametrize(
    ("spec", "settings", "error", "message"),
    [
        pytest.param("gsm8k", {"fields": {"question": "q"}}, ConfigError,
                     "gsm8k has its own fields", id="mapping-on-a-named-task"),
        pytest.param("gsm8k", {"checker": "exact"}, ConfigError, "its own fields and checker",
                     id="checker-on-a-named-task"),
        pytest.param("QA", {"fields": {"gold": "g"}}, ConfigError,
                     "map question=COLUMN, answer=COLUMN or id=COLUMN", id="unknown-field"),
        pytest.param("QA", {"checker": "fuzzy"}, UnknownName, "valid names: exact, math",
                     id="unknown-checker"),
        pytest.param("missing.jsonl", {}, DataError, "no task file at missing.jsonl",
                     id="missing-file"),
        pytest.param("gsm9k", {}, UnknownName, r"strategyqa, or a \.jsonl file of questions$",
                     id="unknown-name"),
    ],
)
def test_resolve_task_errors_name_the_fix(qa_file: Path, spec: str, settings: dict[str, Any],
                                          error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_task(str(qa_file) if spec == "QA" else spec, **settings)


@pytest.fixture
def fake_datasets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """A stand-in `datasets` module: the hub code path runs without a network."""
    calls: list[tuple[Any, ...]] = []

    def load_dataset(path: str, name: str | None = None, *, split: str) -> list[dict[str, Any]]:
        calls.append((path, name, split))
        return [{"Puzzles": "4 4 6 8", "Rank": 7, "Solved rate": "90%"}]

    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    yield calls


def test_hub_rows_are_renamed_into_the_local_schema(fake_datasets: list[tuple[Any, ...]]) -> None:
    [record] = get_task("game24").load()
    assert fake_datasets == [("test-time-compute/game-of-24", None, "train")]
    assert (record.id, record.question, record.gold) == ("7", "4 4 6 8", "4 4 6 8")
    get_task("gsm8k").load(limit=0)
    assert fake_datasets[-1] == ("openai/gsm8k", "main", "test")


def test_a_task_is_plain_data() -> None:
    task = get_task("gsm8k")
    assert isinstance(task, Task) and task.data_file == "gsm8k_test.jsonl"
    assert task.hub is not None and task.hub.path == "openai/gsm8k"
