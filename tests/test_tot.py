"""Tree of Thoughts on the scripted fake, and Game of 24's gold-free checks on the real puzzles.

The fake plays ToT's Game of 24 prompts for "4 4 6 8": from each state it proposes a good step
and bad ones, and values states as a sensible model would, so BFS and DFS have one path to find:
4 + 8 = 12 (left: 4 6 12) -> 6 - 4 = 2 (left: 2 12) -> 2 * 12 = 24 (left: 24) -> the answer.
"""

from __future__ import annotations

import operator
import re
from fractions import Fraction
from pathlib import Path

import pytest
from test_tree import Ledger

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Result
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme, tot
from ponder.tasks import Record, get_task
from ponder.tasks.game24 import (
    ALIVE,
    ARITHMETIC,
    DEAD_END,
    LEFT_LIST,
    NOT_LEFT,
    can_make,
    is_step,
    numbers_left,
    replay,
)
from ponder.verifiers import extract_answer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found at {DATA}")

PUZZLE = "4 4 6 8"
ANSWER = "(6 - 4) * (4 + 8) = 24"
PROPOSALS = {  # numbers left -> the fake's reply to ToT's propose prompt
    "4 4 6 8": "Possible next steps:\n1. 4 + 8 = 12 (left: 4 6 12)\n2. 4 - 4 = 0 (left: 0 6 8)\n"
               "3. 6 - 4 - 1 = 1 (left: 1 1)\n4. 4 * 4 = 16 (left: 6 8 16)\n"
               "5. 4 + 8 = 12 (left: 4 6 12)",  # a duplicate, dropped
    "4 6 12": "6 - 4 = 2 (left: 2 12)\n4 + 6 = 10 (left: 10 12)",
    "2 12": "2 * 12 = 24 (left: 24)\n2 + 12 = 14 (left: 14)",
}
VALUES = {"4 6 12": "sure", "2 12": "sure", "24": "sure", "6 8 16": "likely"}


def user_text(prompt: str) -> str:
    return prompt.split("<|user|>\n", 1)[1].split("\n<|assistant|>\n", 1)[0].strip()


def script(prompt: str, i: int) -> str:
    content = user_text(prompt)
    if prompt.rstrip().endswith("(left: 24)"):  # the CoT prompt with the steps: the answer
        return f"Answer: {ANSWER}\nInput: 1 2 3 4\nSteps:\n"
    if content.endswith("Possible next steps:"):
        return PROPOSALS.get(content.split("Input: ")[-1].split("\n")[0], "")
    if content.endswith("Judge:"):  # the last-step prompt
        return "sure"
    numbers = content.split("\n")[-1]  # ToT's value prompt: the numbers on its last line
    # the verdict, then (as small models do) the next few-shot example: the first line counts
    return f"{numbers} ...\n{VALUES.get(numbers, 'impossible')}\n1 3 3\nimpossible"


def value_inputs(model: ScriptedModel) -> list[str]:
    """The numbers of every value prompt the model was asked."""
    return [user_text(r.prefix or "").split("\n")[-1] for call in model.calls for r in call
            if "Evaluate if given numbers" in (r.prefix or "")]


def problem() -> Problem:
    return get_task("game24").problem(Record(id="p", question=PUZZLE, gold=PUZZLE))


def solve(model: ScriptedModel, **settings: object) -> Result:
    return get_scheme("tot", **settings)(problem(), model=model)  # type: ignore[arg-type]


def chosen(result: Result) -> list[str]:
    return [result.trace.nodes[i].text for i in result.trace.chosen]


BEST_PATH = ["4 + 8 = 12 (left: 4 6 12)\n", "6 - 4 = 2 (left: 2 12)\n",
             "2 * 12 = 24 (left: 24)\n", f"Answer: {ANSWER}\n"]


@pytest.mark.parametrize("search", ["bfs", "dfs"])
@pytest.mark.parametrize("rule_check", [True, False])
def test_tot_finds_a_correct_expression(search: str, rule_check: bool) -> None:
    model = ScriptedModel(script)
    result = solve(model, search=search, rule_check=rule_check)
    assert result.answer == ANSWER and problem().verify is not None
    assert problem().verify(result.answer)
    assert chosen(result) == BEST_PATH and result.finish_reason == "stop"
    nodes = [result.trace.nodes[i] for i in result.trace.chosen]
    assert [n.meta.get("left") for n in nodes] == ["4 6 12", "2 12", "24", None]
    assert [n.depth for n in nodes] == [1, 2, 3, 4]
    assert result.trace.meta["found"] is (search == "dfs" or rule_check)


@pytest.mark.parametrize("search", ["bfs", "dfs"])
def test_rule_check_prunes_dead_ends_without_asking_the_model(search: str) -> None:
    model = ScriptedModel(script)
    result = solve(model, search=search)
    pruned = {n.meta["left"]: n for n in result.trace.nodes if n.meta.get("rule") == "dead end"}
    assert {"1 1", "0 6 8"} <= set(pruned)
    assert all(n.value == 0.0 for n in pruned.values())
    asked = value_inputs(model)
    assert "1 1" not in asked and "0 6 8" not in asked and "4 6 12" in asked
    # without the rule the model values them (and says "impossible")
    model = ScriptedModel(script)
    result = solve(model, search=search, rule_check=False)
    assert "1 1" in value_inputs(model)
    dead = next(n for n in result.trace.nodes if n.meta.get("left") == "1 1")
    assert dead.value == pytest.approx(3 * 0.001)


def test_values_follow_tot_and_are_asked_once_per_prompt() -> None:
    model = ScriptedModel(script)
    result = solve(model, rule_check=False, n_evaluate=3)
    by_left = {n.meta.get("left"): n for n in result.trace.nodes}
    first = [n.text for n in result.trace.nodes if n.depth == 1]
    assert first == [f"{s}\n" for s in ("4 + 8 = 12 (left: 4 6 12)", "4 - 4 = 0 (left: 0 6 8)",
                                        "6 - 4 - 1 = 1 (left: 1 1)", "4 * 4 = 16 (left: 6 8 16)")]
    assert by_left["4 6 12"].value == 60.0  # 3 x sure (the first verdict line of each reply)
    assert by_left["6 8 16"].value == 3.0  # 3 x likely
    assert by_left["10 12"].value == pytest.approx(0.003)  # 3 x impossible
    asked = value_inputs(model)
    assert asked.count("4 6 12") == 1  # the duplicate proposal was dropped, the value cached


def test_bfs_batches_each_depth_into_one_call() -> None:
    model = ScriptedModel(script)
    solve(model, rule_check=False, n=2)
    kinds = [["value" if re.search("Evaluate if|Judge:", r.prefix or "") else "propose"
              for r in call] for call in model.calls]
    assert all(len(set(k)) == 1 for k in kinds)  # a call proposes or values, never both
    assert [k[0] for k in kinds] == ["propose", "value"] * 4
    assert [len(k) for k in kinds][::2] == [1, 2, 2, 2]  # the frontier: at most n = 2 states
    values = model.calls[1]
    assert all(r.params.n == 3 for r in values)


@pytest.mark.parametrize("search", ["bfs", "dfs"])
@pytest.mark.parametrize("budget", [10, 100, 400, 1000])
def test_tot_never_starts_a_call_its_budget_cannot_finish(search: str, budget: int) -> None:
    model = Ledger(script)
    result = solve(model, search=search, token_budget=budget, max_tokens=64, value_tokens=16)
    assert all(asked <= budget - before for asked, before in model.asks)
    assert result.usage.completion_tokens == model.used <= budget
    if budget >= 1000:
        assert result.answer == ANSWER


def test_generic_problems_sample_steps_and_value_them() -> None:
    """Another task: the task's own prompt continued step by step (generator=sample), states
    valued with the generic value prompt."""

    def generic(prompt: str, i: int) -> str:
        if "Evaluate if the partial solution" in prompt:
            return "impossible" if "bad" in prompt.split("Solution so far:")[1] else "sure"
        path = prompt.split("<|assistant|>\n", 1)[1]  # the fake continues what is written
        if path.count("\n\n") == 2:
            return path + "so \\boxed{7}"
        return path + ("a good step" if i == 1 else "a bad step") + "\n\nmore"

    q = Problem(question="q?", messages=({"role": "user", "content": "q?"},),
                extract=extract_answer)
    for search in ("bfs", "dfs"):
        result = get_scheme("tot", search=search, generator="sample", n_generate=3)(
            q, model=ScriptedModel(generic))
        assert result.answer == "7"
        assert chosen(result) == ["a good step\n\n", "a good step\n\n", "so \\boxed{7}"]
        assert result.trace.meta["prompts"] == "generic"


@pytest.mark.parametrize(("setting", "value"), [
    ("search", "astar"), ("generator", "vote"), ("n_evaluate", 0), ("n_generate", 0),
    ("value_tokens", 0),
])
def test_bad_tot_settings_are_config_errors(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        tot.Config(**{setting: value})  # type: ignore[arg-type]


# --- Game of 24's gold-free checks ------------------------------------------------------------

PARTIAL = [
    ("puzzle-itself", "4 4 6 8", "", ALIVE),
    ("good-step", "4 4 6 8", "4 + 8 = 12 (left: 4 6 12)\n", ALIVE),
    ("dead-end", "4 4 6 8", "4 - 4 = 0 (left: 0 6 8)\n", DEAD_END),
    ("one-one", "4 4 6 8", "... (left: 1 1)\n", LEFT_LIST),
    ("reached", "4 4 6 8", "Steps:\n4 + 8 = 12 (left: 4 6 12)\n6 - 4 = 2 (left: 2 12)\n"
     "2 * 12 = 24 (left: 24)\n", ALIVE),
    ("prose-between", "4 4 6 8", "4 + 8 = 12 (left: 4 6 12)\nso\n6 - 4 = 2 (left: 2 12)\n", ALIVE),
    ("unicode-operators", "4 4 6 8", "6 − 4 = 2 (left: 2 4 8)\n8 − 2 = 6 (left: 4 6)\n"
     "6 × 4 = 24 (left: 24)\n", ALIVE),
    ("a-number-not-left", "4 5 6 10", "10 / 2 = 5 (left: 5 6 10)\n", NOT_LEFT),
    ("wrong-arithmetic", "4 4 6 9", "9 - 6 = 3.5 (left: 3.5 4 4)\n", ARITHMETIC),
    ("wrong-left-list", "4 5 6 10", "5 + 4 = 9 (left: 5 6 9)\n", LEFT_LIST),
    ("number-used-up", "4 4 6 8", "4 + 8 = 12 (left: 4 6 12)\n8 + 6 = 14 (left: 4 14)\n", NOT_LEFT),
    ("steps-from-nowhere", "4 4 6 8", "a\nb\n2 * 12 = 24 (left: 24)\n", NOT_LEFT),
    ("left-without-a-step", "4 4 6 8", "(left: 4 6 12)\n", LEFT_LIST),
    ("divide-by-zero", "4 4 6 8", "4 - 4 = 0 (left: 0 6 8)\n6 / 0 = 6\n", ARITHMETIC),
    ("fractions", "3 3 8 8", "8 / 3 = 8/3 (left: 3 8 8/3)\n", ALIVE),
    ("exact-not-rounded", "3 3 8 8", "8 / 3 = 2.67 (left: 3 8 2.67)\n", ARITHMETIC),
    ("negative", "1 2 3 9", "1 - 2 = -1 (left: 3 9 -1)\n", ALIVE),  # 3 * (9 + -1) = 24
    ("too-many-numbers", "4 4 6 8", "(left: 4 4 6 8 1)\n", LEFT_LIST),
    ("no-numbers", "4 4 6 8", "(left: )\n", LEFT_LIST),
    ("unsolvable-puzzle", "1 1 1 1", "", DEAD_END),
]


@pytest.mark.parametrize(("puzzle", "text", "expected"), [pytest.param(*row[1:], id=row[0])
                                                         for row in PARTIAL])
def test_game24_partial(puzzle: str, text: str, expected: str) -> None:
    p = get_task("game24").problem(puzzle)
    assert replay(puzzle, text) == expected
    assert p.partial is not None and p.partial(text) is (expected == ALIVE)


def test_is_step() -> None:
    assert is_step("4 + 8 = 12 (left: 4 6 12)\n") and is_step("6 × 4 = 24")
    assert not is_step("Steps:\n") and not is_step("Answer: (6 - 4) * (4 + 8) = 24")
    assert not is_step("Answer: 4 * 6 = 24")


def test_other_tasks_have_no_gold_free_checks() -> None:
    p = get_task("gsm8k").problem("What is 2 + 2?")
    assert p.verify is None and p.partial is None


def test_numbers_left_and_can_make() -> None:
    assert numbers_left("1 + 2 = 3 (left: 3 3 4)\n3 + 3 = 6 (Left: 4 6)") == "4 6"
    assert numbers_left("no steps") is None
    assert can_make([4, 6]) and can_make([3, 3, 8, 8]) and not can_make([1, 1])


OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def tot_split() -> list[Record]:
    return [r for r in get_task("game24").load(DATA) if r.row["tot_test_split"]]


@needs_data
def test_verify_and_partial_on_the_tot_test_puzzles() -> None:
    records = tot_split()
    assert len(records) == 100
    task = get_task("game24")
    for record in records:
        p = task.problem(record)
        assert p.verify is not None and p.partial is not None
        solution = record.row["reference_solution"]
        assert p.verify(solution) and p.verify(f"{solution} = 24"), record.id
        assert not p.verify(f"({solution}) * 1"), record.id  # a number the puzzle lacks
        assert p.partial(""), record.id  # every puzzle of the set can be solved
        assert p.partial(f"(left: {record.question})") and not p.partial("(left: 23)")


@needs_data
def test_partial_follows_the_reference_solution_step_by_step() -> None:
    """The first operation of each reference solution leaves numbers that can still make 24."""
    for record in tot_split():
        p = get_task("game24").problem(record)
        assert p.partial is not None
        numbers = [int(n) for n in record.question.split()]
        inner = re.search(r"\((\d+) ([-+*/]) (\d+)\)", record.row["reference_solution"])
        if inner is None:
            continue
        a, op, b = int(inner[1]), inner[2], int(inner[3])
        numbers.remove(a)
        numbers.remove(b)
        result = OPERATIONS[op](Fraction(a), Fraction(b))
        left = " ".join(map(str, [*numbers, result]))  # a fraction as "8/3"
        assert p.partial(f"{a} {op} {b} = {result} (left: {left})\n"), (record.id, left)
