"""Refine (plan -> judge -> critique -> revise -> execute) and aggregate (merge the k best
chains) on the scripted fake: when they stop, what their prompts hold, budgets, fallbacks."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pytest

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.types import Completion, GenerationRequest, user
from ponder.models.fake import ScriptedModel
from ponder.schemes import Entry, Scheme, aggregate, get_scheme, refine


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="What is 6 * 7?",
                  messages=user("What is 6 * 7?", system="Box your answer."), extract=boxed)


def prompt_of(request: GenerationRequest) -> str:
    assert request.messages is not None
    return "\n".join(m["content"] for m in request.messages)


# -- refine ----------------------------------------------------------------------------------

def plan_script(prompt: str, i: int) -> str:
    """Plans are numbered: the first is "plan v0", the revision of plan vK is "plan vK+1"."""
    shown = re.findall(r"plan v(\d)", prompt)
    if refine.EXECUTE in prompt:
        return f"following plan v{shown[-1]}: 6 * 7 = 42, so \\boxed{{42}}"
    if refine.CRITIQUE in prompt:
        return "the plan forgets to multiply"
    version = int(shown[-1]) + 1 if shown else 0
    return f"1. multiply the numbers (plan v{version})"


class Judge:
    """A plan judge in the Scorer shape: P(accept) of plan version v is scores[v]."""

    def __init__(self, *scores: float | None) -> None:
        self.scores, self.seen = scores, list[str]()

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 **kw: Any) -> list[float | None]:
        self.seen += completions
        return [self.scores[int(re.findall(r"plan v(\d)", c)[-1])] for c in completions]


def run_refine(judge: Judge | None, model: ScriptedModel | None = None,
               **settings: Any) -> tuple[Any, ScriptedModel]:
    model = model or ScriptedModel(plan_script)
    return get_scheme("refine", **settings)(PROBLEM, model=model, scorer=judge), model


def kinds(result: Any) -> list[str]:
    return [result.trace.nodes[i].meta["kind"] for i in result.trace.chosen]


@pytest.mark.parametrize(
    ("scores", "calls", "path"),
    [
        pytest.param((0.9,), 2, ["plan", "execution"], id="accepts-first-plan"),
        pytest.param((0.1, 0.2, 0.8), 6, ["plan", "critique", "revision", "critique",
                                          "revision", "execution"], id="accepts-second-revision"),
        pytest.param((0.5,), 2, ["plan", "execution"], id="accept-threshold-inclusive"),
    ],
)
def test_refine_stops_as_soon_as_the_judge_accepts(scores: tuple[float, ...], calls: int,
                                                   path: list[str]) -> None:
    judge = Judge(*scores)
    result, model = run_refine(judge)
    assert len(model.calls) == calls and len(judge.seen) == len(scores)
    assert kinds(result) == path and result.trace.meta["accepted"]
    assert [result.trace.nodes[i].score for i in result.trace.chosen
            if result.trace.nodes[i].meta["kind"] in ("plan", "revision")] == list(scores)
    assert result.answer == "42"
    final = f"plan v{len(scores) - 1}"
    [execution] = model.calls[-1]
    assert final in prompt_of(execution)  # the execution follows the final plan
    assert f"following {final}" in result.reasoning


@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_refine_revises_up_to_rounds_when_never_accepted(rounds: int) -> None:
    judge = Judge(0.1, 0.1, 0.1, 0.1, None)
    result, model = run_refine(judge, rounds=rounds)
    assert len(model.calls) == 1 + 2 * rounds + 1
    assert len(judge.seen) == rounds + 1
    assert result.trace.meta == {"revisions": rounds, "accepted": False}
    assert f"plan v{rounds}" in prompt_of(model.calls[-1][0])
    assert [n.parent for n in result.trace.nodes] == [None, *range(len(result.trace.nodes) - 1)]


def test_refine_unsure_judge_counts_as_no() -> None:
    result, _ = run_refine(Judge(None, None), rounds=1)
    assert kinds(result) == ["plan", "critique", "revision", "execution"]


def test_refine_prompts_hold_the_plan_and_critique() -> None:
    _, model = run_refine(Judge(0.1, 0.9))
    plan, critique, revision, execution = (prompt_of(call[0]) for call in model.calls)
    assert refine.PLAN in plan and "6 * 7" in plan and "Box your answer" not in plan
    assert "plan v0" in critique and refine.CRITIQUE in critique
    assert "plan v0" in revision and "forgets to multiply" in revision
    assert execution.startswith("Box your answer.")  # the task's own prompt, plan appended
    assert "plan v1" in execution and "plan v0" not in execution


def test_refine_reasoning_labels_each_part() -> None:
    result, _ = run_refine(Judge(0.1, 0.9))
    parts = [p.split(":\n")[0] for p in result.reasoning.split("\n\n")]
    assert parts == ["Plan", "Critique", "Revised plan", "Solution"]


@pytest.mark.parametrize(
    ("budget", "revisions", "path"),
    [
        pytest.param(1000, 3, ["plan"] + ["critique", "revision"] * 3 + ["execution"], id="all"),
        pytest.param(52, 1, ["plan", "critique", "revision", "execution"], id="one-round"),
        pytest.param(35, 0, ["plan", "execution"], id="plan-only"),
        pytest.param(25, None, ["execution"], id="no-plan-solves-directly"),
        pytest.param(12, None, ["execution"], id="short-execution"),
    ],
)
def test_refine_keeps_the_budget_and_the_execution(budget: int, revisions: int | None,
                                                   path: list[str]) -> None:
    # plans are 6 words here, critiques 5, solutions 10; a round needs 10 + 10 + 20 left
    result, model = run_refine(Judge(0.0, 0.0, 0.0, 0.0), plan_tokens=10, critique_tokens=10,
                               max_tokens=20, token_budget=budget)
    assert result.usage.completion_tokens <= budget
    assert kinds(result) == path
    assert result.trace.meta.get("revisions") == revisions
    assert model.calls[-1][0].params.max_tokens == min(20, budget - sum(
        n.tokens for n in result.trace.nodes[:-1]))


def test_refine_default_judge_reads_top_logprobs_and_is_metered() -> None:
    model = JudgingModel(plan_script, p_yes=0.8)
    result, _ = run_refine(None, model=model)
    assert kinds(result) == ["plan", "execution"]
    judge_call = model.calls[1][0]
    assert judge_call.params.max_tokens == 1 and judge_call.params.logprobs == 20
    assert refine.QUESTION in prompt_of(judge_call) and "plan v0" in prompt_of(judge_call)
    assert result.trace.nodes[0].score == pytest.approx(0.8)
    assert result.usage.model_calls == 3  # plan, judge, execution: all through the run
    assert result.usage.reasoning_tokens == sum(n.tokens for n in result.trace.nodes) + 1


def test_refine_default_judge_rejects_an_unlikely_plan() -> None:
    model = JudgingModel(plan_script, p_yes=0.2)
    result, _ = run_refine(None, model=model, rounds=2)
    assert result.trace.meta == {"revisions": 2, "accepted": False}


class JudgingModel(ScriptedModel):
    """The fake, with top logprobs for one-token judge calls: P(Yes) = p_yes."""

    def __init__(self, script: Any, p_yes: float) -> None:
        super().__init__(script)
        self.top = {"Yes": math.log(p_yes), "No": math.log(1 - p_yes), "Maybe": -9.0}

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        if requests[0].params.logprobs != 20:
            return super().generate(requests, on_text=on_text, should_stop=should_stop)
        self.calls.append(list(requests))
        return [[Completion("Yes", completion_tokens=1, top_logprobs=[self.top])]
                for _ in requests]


@pytest.mark.parametrize(("settings", "param"),
                         [({"n": 2}, "n"), ({"rounds": -1}, "rounds"), ({"accept": 1.5}, "accept"),
                          ({"plan_tokens": 0}, "plan_tokens")])
def test_refine_config_errors(settings: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError) as err:
        refine.Config(**settings)
    assert err.value.param == param


# -- aggregate -------------------------------------------------------------------------------

CANDIDATES = ["cand0 says \\boxed{40}", "cand1 says \\boxed{42}", "cand2 says \\boxed{41}",
              "cand3 says \\boxed{43}"]


def merge_script(merged: str) -> ScriptedModel:
    return ScriptedModel(lambda prompt, i: merged if "candidate solutions" in prompt
                         else CANDIDATES[i % 4])


def scorer_of(scores: dict[str, float | None]) -> Any:
    def scorer(prompts: Sequence[str], completions: Sequence[str],
               **kw: Any) -> list[float | None]:
        assert all("candidate solutions" not in p for p in prompts)  # scored as solutions
        return [scores.get(c.split()[0].rstrip(":")) for c in completions]
    return scorer


SCORES = {"cand0": 0.2, "cand1": 0.9, "cand2": 0.5, "cand3": 0.7, "merged": 0.95}


def run_aggregate(merged: str, scores: dict[str, float | None] = SCORES,
                  **settings: Any) -> tuple[Any, ScriptedModel]:
    model = merge_script(merged)
    result = get_scheme("aggregate", **settings)(PROBLEM, model=model, scorer=scorer_of(scores))
    return result, model


def test_aggregate_merges_the_top_k() -> None:
    result, model = run_aggregate("merged: \\boxed{42.0}")
    assert [len(call) for call in model.calls] == [1, 1] and model.calls[0][0].params.n == 4
    merge_prompt = prompt_of(model.calls[1][0])
    for i, expected in [(1, True), (3, True), (2, True), (0, False)]:
        assert (CANDIDATES[i] in merge_prompt) == expected
    assert merge_prompt.index("cand1") < merge_prompt.index("cand3") < merge_prompt.index("cand2")
    merged = result.trace.nodes[-1]
    assert merged.meta["sources"] == [1, 3, 2] and merged.parent is None
    assert result.trace.chosen == [merged.id] == [4]
    assert result.answer == "42.0" and merged.score == 0.95
    assert result.trace.meta == {"candidates": 4, "merged": True}


@pytest.mark.parametrize(
    ("merged", "scores"),
    [
        pytest.param("merged but no answer", SCORES, id="merged-without-answer"),
        pytest.param("merged: \\boxed{41}", {**SCORES, "merged": 0.5}, id="merged-scores-lower"),
        pytest.param("merged: \\boxed{41}", {**SCORES, "merged": None}, id="merged-unscorable"),
    ],
)
def test_aggregate_falls_back_to_the_best_candidate(merged: str,
                                                    scores: dict[str, float | None]) -> None:
    result, _ = run_aggregate(merged, scores)
    assert result.answer == "42" and result.trace.chosen == [1]
    assert result.trace.meta["merged"] is False
    assert result.reasoning == CANDIDATES[1]


def test_aggregate_ranks_answered_candidates_first() -> None:
    model = ScriptedModel(lambda prompt, i: "merged: \\boxed{7}" if "candidate solutions"
                          in prompt else ["cand0 no answer", *CANDIDATES[1:]][i % 4])
    result = get_scheme("aggregate", k=2)(
        PROBLEM, model=model, scorer=scorer_of({**SCORES, "cand0": 0.99}))
    assert result.trace.nodes[-1].meta["sources"] == [1, 3]


def test_aggregate_default_scorer_asks_for_logprobs() -> None:
    # confidence here is exp(-1 / words): the 7-word merge outscores the 3-word candidates
    model = ScriptedModel(lambda prompt, i: "merged: so the answer is \\boxed{42}"
                          if "candidate solutions" in prompt else CANDIDATES[i % 4],
                          logprob=lambda t: -1.0)
    result = get_scheme("aggregate")(PROBLEM, model=model)
    assert [call[0].params.logprobs for call in model.calls] == [0, 0]
    assert result.answer == "42"


@pytest.mark.parametrize(
    ("budget", "candidates", "merges"),
    [
        pytest.param(None, 4, 1, id="default-pays-for-n-plus-merge"),
        pytest.param(50, 1, 1, id="one-candidate-and-the-merge"),
        pytest.param(70, 2, 1, id="two-candidates-and-the-merge"),
        pytest.param(30, 1, 1, id="a-short-candidate-leaves-enough-to-merge"),
        pytest.param(20, 1, 0, id="one-candidate-no-merge"),
        pytest.param(10, 0, 0, id="nothing"),
    ],
)
def test_aggregate_keeps_the_budget(budget: int | None, candidates: int, merges: int) -> None:
    result, model = run_aggregate("merged: \\boxed{42}", max_tokens=20, token_budget=budget)
    assert result.usage.completion_tokens <= (budget or 100)
    assert sum(n.meta["kind"] == "candidate" for n in result.trace.nodes) == candidates
    assert sum(n.meta["kind"] == "merged" for n in result.trace.nodes) == merges
    assert len(model.calls) == (candidates > 0) + merges


def test_aggregate_config() -> None:
    assert aggregate.Config(n=8, max_tokens=100).token_budget == 900
    with pytest.raises(ConfigError) as err:
        aggregate.Config(k=0)
    assert err.value.param == "k"


@pytest.mark.parametrize("name", ["refine", "aggregate"])
def test_runs_as_a_table_entry_on_the_fake(name: str) -> None:
    """What tests/test_schemes.py asks of every table entry, before they are registered."""
    module = {"refine": refine, "aggregate": aggregate}[name]
    scheme = Scheme(name, Entry(module.run, module.Config, ""), module.Config())
    model = ScriptedModel(["step one.\n\nso \\boxed{42}"], logprob=lambda t: -1.0)
    result = scheme(PROBLEM, model=model)
    assert result.answer == "42" and result.trace.scheme == name
