"""Cascade and route (ponder/schemes/cascade.py) on scripted fakes: escalation happens exactly
when the cheap answers disagree, each model is metered apart, the decision is in the trace."""

from __future__ import annotations

import re

import pytest

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import user
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="q", messages=user("What is 6 * 7?"), extract=boxed)


def answers(*values: str, name: str = "small") -> ScriptedModel:
    """Sample i answers values[i] (the last one over and over)."""
    return ScriptedModel(lambda _p, i: f"So \\boxed{{{values[min(i, len(values) - 1)]}}}",
                         name=name)


@pytest.mark.parametrize(("small", "accept", "escalated"), [
    pytest.param(("42", "42", "42", "42"), 0.75, False, id="all-agree"),
    pytest.param(("42", "42", "42", "41"), 0.75, False, id="three-of-four-is-enough"),
    pytest.param(("42", "42", "42", "41"), 1.0, True, id="three-of-four-is-not-all"),
    pytest.param(("42", "41", "40", "39"), 0.75, True, id="scattered"),
    pytest.param(("42", "42", "41", "41"), 0.5, False, id="a-tie-at-half"),
])
def test_it_escalates_exactly_when_the_cheap_answers_disagree(
        small: tuple[str, ...], accept: float, escalated: bool) -> None:
    cheap, big = answers(*small), answers("7", name="big")
    result = get_scheme(f"cascade@4:accept={accept}:seed=1")(
        PROBLEM, model=cheap, roles={"fallback": big})
    meta = result.trace.meta
    assert meta["escalated"] is escalated and meta["threshold"] == accept
    assert meta["agreement"] == max(small.count(a) for a in small) / 4
    assert len(big.calls) == (1 if escalated else 0)
    assert result.answer == ("7" if escalated else "42")
    by_model = {(p.role, p.model): p.completion_tokens for p in result.usage.by_role}
    assert set(by_model) == ({("policy", "small"), ("fallback", "big")} if escalated
                             else {("policy", "small")})
    assert sum(by_model.values()) == result.usage.completion_tokens


def test_the_escalated_run_is_in_the_trace_after_the_cheap_answers() -> None:
    cheap, big = answers("1", "2", "3", "4"), answers("7", name="big")
    result = get_scheme("cascade@4:then=self-consistency@3")(
        PROBLEM, model=cheap, roles={"fallback": big})
    nodes = result.trace.nodes
    assert [n.role for n in nodes] == ["policy"] * 4 + ["fallback"] * 3
    assert [n.meta.get("rung") for n in nodes] == [1] * 4 + [2] * 3
    assert result.trace.chosen == [4] and nodes[4].answer == "7"


def test_without_a_fallback_model_the_policy_thinks_more() -> None:
    cheap = ScriptedModel([f"\\boxed{{{a}}}" for a in ("1", "2", "5", "5", "5", "6")],
                          name="small")  # handed out in order: 1, 2; then 5, 5, 5, 6
    result = get_scheme("cascade@2:then=self-consistency@4")(PROBLEM, model=cheap)
    assert result.trace.meta["escalated"] and result.answer == "5"
    assert [p.role for p in result.usage.by_role] == ["policy", "fallback"]
    assert {p.model for p in result.usage.by_role} == {"small"}


def test_route_answers_directly_when_two_direct_answers_agree() -> None:
    easy = ScriptedModel(["\\boxed{42}"])
    result = get_scheme("route")(PROBLEM, model=easy)
    assert not result.trace.meta["escalated"] and result.answer == "42"
    [call] = easy.calls
    assert call[0].params.n == 2 and call[0].params.max_tokens == 64
    assert "Give only the final answer" in str(call[0].messages)
    # --max-tokens bounds the chains of the next rung, not the direct answers
    easy = ScriptedModel(["\\boxed{42}"])
    get_scheme("route", max_tokens=512)(PROBLEM, model=easy)
    assert easy.calls[0][0].params.max_tokens == 64

    hard = ScriptedModel(lambda p, i: f"\\boxed{{{i}}}" if "Give only" in p
                         else "Let me think.\n\nSo \\boxed{9}")
    result = get_scheme("route")(PROBLEM, model=hard)
    assert result.trace.meta["escalated"] and result.answer == "9"
    assert result.trace.meta["cheap"] == "direct" and result.trace.meta["agreement"] == 0.5


@pytest.mark.parametrize(("spec", "param"), [
    ("cascade:then=nothing", "then"),
    ("cascade:then=cascade", "then"),
    ("cascade:accept=0", "accept"),
    ("cascade:cheap=guess", "cheap"),
])
def test_a_bad_rung_is_a_one_line_error(spec: str, param: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_scheme(spec)
    assert err.value.param == param and "\n" not in str(err.value)


def test_the_cheap_rung_keeps_its_budget() -> None:
    cheap = ScriptedModel(lambda _p, i: " w" * 50 + f" \\boxed{{{i}}}")
    result = get_scheme("cascade@4:max_tokens=20:token_budget=40:then=cot")(
        PROBLEM, model=cheap)
    first_rung = [n for n in result.trace.nodes if n.meta.get("rung") == 1]
    assert len(first_rung) == 2 and all(n.tokens <= 20 for n in first_rung)


# -- plan-execute -----------------------------------------------------------------------------

def test_the_plan_reaches_the_executors_prompt_and_each_model_is_metered_apart() -> None:
    planner = ScriptedModel(["1. Multiply 6 by 7.\n2. Box it."], name="big")
    executor = ScriptedModel(lambda p, i: "Following the plan: \\boxed{42}" if "Multiply 6 by 7"
                             in p else "\\boxed{0}", name="small")
    result = get_scheme("plan-execute@3:temperature=0.7")(
        PROBLEM, model=executor, roles={"planner": planner, "executor": executor})
    assert result.answer == "42" and result.trace.meta["votes"] == {"42": 3}
    [plan, *executions] = result.trace.nodes
    assert plan.role == "planner" and [n.role for n in executions] == ["executor"] * 3
    assert all(n.parent == plan.id for n in executions)
    [[asked]] = planner.calls
    assert "numbered steps" in str(asked.messages) and asked.params.temperature == 0.0
    [[run]] = executor.calls
    assert run.params.n == 3 and "Solve the problem by following this plan" in str(run.messages)
    costs = {(p.role, p.model) for p in result.usage.by_role}
    assert costs == {("planner", "big"), ("executor", "small")}
    assert get_scheme("plan-execute@3").config.token_budget == 384 + 3 * 1024


# -- reasoning_effort "auto" through the server ------------------------------------------------

def test_the_server_runs_auto_across_two_models() -> None:
    from fastapi.testclient import TestClient

    from ponder.serve.app import create_app
    from ponder.tasks import get_task

    small = answers("1", "2", "3", "4")
    big = ScriptedModel(["Carefully.\n\nSo \\boxed{42}."], name="big")
    app = create_app({"small": small, "big": big}, get_task("math").problem,
                     roles={"fallback": "big"})
    with TestClient(app) as client:
        body = client.post("/v1/chat/completions", json={
            "model": "small", "reasoning_effort": "auto",
            "messages": [{"role": "user", "content": "What is 6 * 7?"}]}).json()
    assert body["ponder"]["scheme"] == "cascade" and body["ponder"]["answers"] == ["42"]
    costs = {(p["role"], p["model"]) for p in body["ponder"]["by_role"]}
    assert costs == {("policy", "small"), ("fallback", "big")}
    assert len(small.calls) == 1 and len(big.calls) == 1


@pytest.mark.parametrize(("items", "message"), [
    (["fallback"], "ROLE=NAME"),
    (["policy=big"], "ROLE=NAME"),
    (["fallback=huge"], "hosts"),
])
def test_a_bad_server_role_is_a_one_line_error(items: list[str], message: str) -> None:
    from ponder.serve.commands import parse_roles

    with pytest.raises(ConfigError, match=message):
        parse_roles(items, ["small", "big"])


def test_a_model_that_cannot_continue_raw_text_keeps_its_effort_to_chat_requests() -> None:
    """The default effort's calc rounds continue raw prefixes; an HTTP model whose template
    ponder does not have gets the table without tools."""
    from ponder.schemes.effort import EFFORTS, table_for

    local = ScriptedModel(["x"])
    assert table_for(local)["low"].settings.get("tools") == "calc"
    local.raw_prefix = False
    low = table_for(local)["low"]
    assert low.scheme == EFFORTS["low"].scheme and "tools" not in low.settings


# -- fitting the threshold from stored rows ----------------------------------------------------

def test_the_threshold_is_fitted_from_stored_rows_without_generating() -> None:
    """Four questions, gold 7, pools of 4 chains of 10 tokens (2 s of model time a pool): the
    votes are 4-0, 3-1, 2-2 (8 sampled first: the tie goes to it, wrong) and 1-1-1-1 (wrong);
    the strong rung gets all right at 100 tokens and 3 s. accept=0.75 keeps the first two and
    escalates two: 4/4 right at 40 + 2 x 100 / 4 tokens. The first 2 chains of the same pools
    fit cascade@2."""
    import json as json_

    from test_eval import row

    from ponder.core.types import Trace
    from ponder.eval.cascade_fit import choose, fit

    def pool(answers: str) -> str:
        trace = Trace(scheme="self-consistency")
        for a in answers:
            trace.add(f"so {a}", tokens=10, answer=a)
        return json_.dumps(trace.to_dict())

    cheap = []
    for q, answers in enumerate(("7777", "7877", "8787", "1234")):
        r = row(q, "self-consistency@4", 0, 0, 40)
        r.gold, r.trace, r.model_seconds = "7", pool(answers), 2.0
        cheap.append(r)
    strong = [row(q, "cot", 0, 1, 100) for q in range(4)]
    for r in strong:
        r.model_seconds = 3.0

    def check(answer: str, gold: str) -> bool:
        return answer == gold

    points, alone = fit(cheap, strong, 4, str.strip, check)
    by = {p.threshold: p for p in points}
    assert alone == 1.0
    assert by[0.75].accuracy == 1.0 and by[0.75].escalated == 0.5
    assert by[0.75].tokens == 40 + 2 * 100 / 4 and by[0.75].seconds == 2.0 + 2 * 3.0 / 4
    assert by[0.25].accuracy == 0.5 and by[1.0].escalated == 0.75
    assert choose(points, strong_accuracy=1.0).threshold == 0.75
    two = {p.threshold: p for p in fit(cheap, strong, 2, str.strip, check)[0]}
    assert two[1.0].escalated == 0.75 and two[1.0].tokens == 20 + 3 * 100 / 4  # only 77 agrees
    assert two[1.0].seconds == 1.0 + 3 * 3.0 / 4  # half the chains: half the pool's seconds
    with pytest.raises(Exception, match="share no question"):
        fit(cheap, [row(9, "cot", 0, 1, 100)], 4, str.strip, check)
    with pytest.raises(Exception, match="fewer than 8"):
        fit(cheap, strong, 8, str.strip, check)
