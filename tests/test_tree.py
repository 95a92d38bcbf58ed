"""Tree schemes on the scripted fake: a tree whose best path is known, step scorers, budgets.

The fake writes, from a prefix whose path has d steps, child i as the step "d{d}c{i}" (steps end
with a blank line); at depth 3 it writes an answer instead. `SCORES` marks the good steps, so
every scheme has one best path to find: d0c3 -> d1c2 -> d2c1 -> \\boxed{7}.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate
from ponder.core.types import Completion
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.schemes.tree import AGGREGATIONS
from ponder.verifiers import extract_answer

ANSWERS = ["3", "5", "7", "9"]
SCORES = {"d0c3": 0.9, "d1c2": 0.9, "d2c1": 0.9, "\\boxed{7}": 1.0}


def path_of(prompt: str) -> str:
    return prompt.split("<|assistant|>\n", 1)[1]


def script(prompt: str, i: int) -> str:
    depth = path_of(prompt).count("\n\n")
    if depth == 3:
        return f"so the answer is \\boxed{{{ANSWERS[i % 4]}}}"
    return f"d{depth}c{i % 4}\n\nmore text that a stop string cuts off"


def step_scorer(prompts: Sequence[str], completions: Sequence[str], *,
                steps: Sequence[Sequence[str]], **kw: Any) -> list[float | None]:
    """The score of each path's last step: 0.9 for the good ones, 0.1 for others."""
    out: list[float | None] = []
    for path in steps:
        last = path[-1]
        out.append(next((v for k, v in SCORES.items() if k in last), 0.1))
    return out


PROBLEM = Problem(question="q", messages=({"role": "user", "content": "q"},),
                  extract=extract_answer)
BEST_PATH = ["d0c3\n\n", "d1c2\n\n", "d2c1\n\n", "so the answer is \\boxed{7}"]


def chosen_texts(result) -> list[str]:
    return [result.trace.nodes[i].text for i in result.trace.chosen]


@pytest.mark.parametrize("spec", ["beam@1:expansions=4", "beam@2:expansions=4",
                                  "beam@2:expansions=4:selection=vote"])
def test_beam_finds_the_best_path(spec: str) -> None:
    model = ScriptedModel(script)
    result = get_scheme(spec)(PROBLEM, model=model, scorer=step_scorer)
    assert result.answer == "7"
    assert chosen_texts(result) == BEST_PATH
    # every expansion of a depth is one batched call; the root gets n x expansions children
    n = int(spec.split("@")[1].split(":")[0])
    assert [sum(r.params.n for r in call) for call in model.calls][:2] == [n * 4, n * 4]
    assert all(len(call) == (1 if i == 0 else n) for i, call in enumerate(model.calls))


def test_beam_values_aggregate_step_scores() -> None:
    result = get_scheme("beam@1:expansions=4:aggregate=prod")(
        PROBLEM, model=ScriptedModel(script), scorer=step_scorer)
    leaf = result.trace.nodes[result.trace.chosen[-1]]
    assert leaf.value == pytest.approx(0.9 * 0.9 * 0.9 * 1.0)
    assert [result.trace.nodes[i].depth for i in result.trace.chosen] == [1, 2, 3, 4]


class Ledger(ScriptedModel):
    """Records, for each call, the tokens it may write and the tokens written before it."""

    def __init__(self, script: Callable[[str, int], str] = script) -> None:
        super().__init__(script)
        self.used = 0
        self.asks: list[tuple[int, int]] = []

    def generate(self, requests, **kw):  # type: ignore[no-untyped-def]
        self.asks.append((sum(r.params.n * r.params.max_tokens for r in requests), self.used))
        out = super().generate(requests, **kw)
        self.used += sum(c.completion_tokens for cs in out for c in cs)
        return out


@pytest.mark.parametrize("budget", [8, 20, 40])
def test_beam_never_starts_a_step_its_budget_cannot_finish(budget: int) -> None:
    model = Ledger()
    result = get_scheme(f"beam@2:expansions=4:max_tokens=8:token_budget={budget}")(
        PROBLEM, model=model, scorer=step_scorer)
    assert model.asks and all(asked <= budget - before for asked, before in model.asks)
    assert result.usage.completion_tokens == model.used <= budget


def test_beam_uses_keep_kv_prefixes_of_the_parent_path() -> None:
    model = ScriptedModel(script)
    get_scheme("beam@1:expansions=2")(PROBLEM, model=model, scorer=step_scorer)
    second = model.calls[1][0]
    assert second.keep_kv and second.prefix is not None
    assert second.prefix.endswith("<|assistant|>\nd0c1\n\n") or second.prefix.endswith("d0c0\n\n")
    assert second.params.stop == ("\n\n",)


@pytest.mark.parametrize(("name", "scores", "expected"), [
    ("last", [0.2, 0.9, 0.5], 0.5),
    ("min", [0.2, 0.9, 0.5], 0.2),
    ("prod", [0.2, 0.9, 0.5], 0.09),
    ("mean", [0.2, 0.9, 0.5], 1.6 / 3),
])
def test_step_score_aggregations(name: str, scores: list[float], expected: float) -> None:
    assert math.isclose(AGGREGATIONS[name](scores), expected)


def test_bad_tree_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="aggregate"):
        get_scheme("beam:aggregate=median")
    with pytest.raises(ConfigError, match="expansions"):
        get_scheme("beam:expansions=0")


class YesNo(ScriptedModel):
    """Answers every judge question with top logprobs Yes 0.6, ' no' 0.2, 'Maybe' 0.2."""

    def generate(self, requests, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(list(requests))
        top = {"Yes": math.log(0.6), " no": math.log(0.2), "Maybe": math.log(0.2)}
        return [[Completion(text="Yes", top_logprobs=[top], completion_tokens=1)]
                for _ in requests]


def test_judge_continues_the_policy_conversation_and_reads_p_yes() -> None:
    from ponder.scorers.judge import StepJudge, yes_probability
    model = YesNo(script)
    scores = StepJudge(model).score([Candidate("p", "d0c3\n\n", ("d0c3\n\n",), PROBLEM)])
    assert scores == [pytest.approx(0.75)]  # 0.6 / (0.6 + 0.2)
    [request] = model.calls[0]
    assert request.messages is not None
    assert request.messages[:-1] == (*PROBLEM.messages,
                                     {"role": "assistant", "content": "d0c3\n\n"})
    assert request.messages[-1]["role"] == "user" and "Yes or No" in request.messages[-1]["content"]
    assert request.params.max_tokens == 1 and request.params.logprobs == 20
    # the judge's text starts with the policy's prompt + path: the backend's prefix cache reuses it
    judged = model.render_chat(request.messages)
    assert judged.startswith(model.render_chat(PROBLEM.messages) + "d0c3\n\n")
    assert yes_probability({"Maybe": -0.1}) is None


def numbered_steps(prompt: str, i: int) -> str:
    steps = ["Janet's ducks lay 16 eggs a day.", "She eats 3 and bakes with 4, so 9 are left.",
             "At $2 each she makes 9 * 2 = 18 dollars. The answer is \\boxed{18}."]
    return steps[path_of(prompt).count("\n\n")] + "\n\nmore"


@pytest.mark.parametrize("spec", ["beam@1:expansions=1", "mcts@4:expansions=1",
                                  "tot:generator=sample:n=1:n_generate=1:n_evaluate=1"])
def test_a_number_mid_chain_is_not_the_answer(spec: str) -> None:
    # GSM8K reads a chain without a stated answer by its last number; a step such as "16 eggs"
    # must not end the path with the answer 16.
    from ponder.tasks import get_task

    problem = get_task("gsm8k").problem("How much does Janet make a day?")
    result = get_scheme(spec)(problem, model=ScriptedModel(numbered_steps),
                              scorer=lambda p, c, **kw: [0.5] * len(c))
    assert result.answer == "18"
    assert len(result.trace.chosen) == 3
