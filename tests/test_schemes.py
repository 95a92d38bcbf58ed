"""Schemes on the scripted fake: votes, ties, adaptive stopping, budgets, the table."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from ponder.core.errors import ConfigError, UnknownName
from ponder.core.problem import Problem
from ponder.core.types import user
from ponder.models.fake import ScriptedModel
from ponder.schemes import SCHEMES, get_scheme, parse_spec, settings
from ponder.schemes.adaptive import leader_probability


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="q", messages=user("What is 6 * 7?"), extract=boxed,
                  key=lambda a: a.strip().rstrip(".0") or "0")


def chains(*answers: str | None) -> list[str]:
    return [f"step one.\n\nso \\boxed{{{a}}}" if a is not None else "I am not sure."
            for a in answers]


def test_cot_takes_one_greedy_chain() -> None:
    model = ScriptedModel(chains("42"))
    result = get_scheme("cot")(PROBLEM, model=model)
    assert result.answer == "42"
    assert result.content == "42"
    assert "step one" in result.reasoning
    [[request]] = model.calls
    assert request.params.n == 1 and request.params.greedy
    assert result.usage.model_calls == 1
    assert result.usage.completion_tokens == result.usage.reasoning_tokens > 0
    assert result.trace.chosen == [0]


@pytest.mark.parametrize(
    ("answers", "expected", "votes"),
    [
        pytest.param(["1", "2", "2"], "2", {"2": 2, "1": 1}, id="plain-majority"),
        pytest.param(["3", "5", "5", "3"], "3", {"3": 2, "5": 2}, id="tie-first-sampled-wins"),
        pytest.param(["7", None, None], "7", {"7": 1}, id="chains-without-answer-abstain"),
        pytest.param(["18", "18.00", "19"], "18", {"18": 2, "19": 1}, id="keys-group-forms"),
    ],
)
def test_self_consistency_votes(answers: list[str | None], expected: str,
                                votes: dict[str, int]) -> None:
    model = ScriptedModel(chains(*answers))
    result = get_scheme(f"self-consistency@{len(answers)}")(PROBLEM, model=model)
    assert result.answer == expected
    assert result.trace.meta["votes"] == votes
    assert len(model.calls) == 1 and model.calls[0][0].params.n == len(answers)
    winner = result.trace.nodes[result.trace.chosen[-1]]
    assert winner.answer is not None and PROBLEM.key(winner.answer) == PROBLEM.key(expected)


def test_self_consistency_without_any_answer_reports_length_when_truncated() -> None:
    model = ScriptedModel(["word " * 50])
    result = get_scheme("self-consistency@3", max_tokens=10)(PROBLEM, model=model)
    assert result.answer is None
    assert result.finish_reason == "length"


@pytest.mark.parametrize(
    ("v1", "v2", "expected"),
    [
        pytest.param(4, 0, 31 / 32, id="4-0"),
        pytest.param(3, 1, 13 / 16, id="3-1"),
        pytest.param(0, 0, 0.5, id="no-votes"),
        pytest.param(2, 2, 0.5, id="even"),
    ],
)
def test_leader_probability_is_the_beta_tail(v1: int, v2: int, expected: float) -> None:
    assert leader_probability(v1, v2) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answers", "calls", "samples"),
    [
        pytest.param(["9"] * 16, 1, 4, id="unanimous-first-batch-stops"),
        pytest.param(["9", "9", "9", "8"] + ["9"] * 12, 2, 8, id="3-1-then-7-1-stops"),
        pytest.param(["1", "2", "3", "4"] * 4, 4, 16, id="never-decided-uses-all"),
    ],
)
def test_adaptive_stops_when_decided(answers: list[str], calls: int, samples: int) -> None:
    model = ScriptedModel(chains(*answers))
    result = get_scheme("adaptive@16", batch=4)(PROBLEM, model=model)
    assert len(model.calls) == calls
    assert result.trace.meta["samples"] == samples == len(result.trace.nodes)
    assert result.usage.model_calls == calls


@pytest.mark.parametrize(
    ("answers", "settings", "samples", "gave_up"),
    [
        pytest.param(["1", "2", "3", "4"] * 4, {"give_up_after": 4}, 4, True,
                     id="all-different-gives-up"),
        pytest.param(["1", "1", "2", "3"] * 4, {"give_up_after": 4}, 4, True,
                     id="two-of-four-gives-up"),
        pytest.param(["1", "1", "2", "3"] * 4, {"give_up_after": 4, "give_up_votes": 1}, 16,
                     False, id="two-of-four-is-enough-at-give_up_votes-1"),
        pytest.param(["9", "9", "9", "8"] + ["9"] * 12, {"give_up_after": 4}, 8, False,
                     id="three-of-four-draws-on-then-decides"),
        pytest.param(["1", "2", "3", "4"] * 4, {"give_up_after": 8}, 8, True,
                     id="gives-up-only-after-give_up_after"),
        pytest.param(["1", "2", "3", "4"] * 4, {}, 16, False, id="off-by-default"),
    ],
)
def test_adaptive_gives_up_on_a_scattered_vote(answers: list[str], settings: dict[str, int],
                                               samples: int, gave_up: bool) -> None:
    model = ScriptedModel(chains(*answers))
    result = get_scheme("adaptive@16", **settings)(PROBLEM, model=model)
    assert result.trace.meta["samples"] == samples == len(result.trace.nodes)
    assert result.trace.meta["gave_up"] is gave_up
    assert result.trace.meta["decided"] is (samples == 8 and not gave_up)


def test_adaptive_batches_continue_one_sample_sequence() -> None:
    """Batch b asks for samples 4b.. of the one seed: the chains self-consistency@n draws."""
    model = ScriptedModel(chains("1", "2", "3", "4"))
    get_scheme("adaptive@8", batch=4, seed=3)(PROBLEM, model=model)
    params = [call[0].params for call in model.calls]
    assert [(p.seed, p.first_sample, p.n) for p in params] == [(3, 0, 4), (3, 4, 4)]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [pytest.param("plain", "5", id="plain-takes-top-score"),
     pytest.param("weighted", "3", id="weighted-sums-scores")],
)
def test_best_of_n_selection(selection: str, expected: str) -> None:
    texts = [f"{i}: \\boxed{{{a}}}" for i, a in enumerate("3335")]
    model = ScriptedModel(texts)
    scores = {texts[0]: 0.4, texts[1]: 0.35, texts[3]: 0.7}

    def scorer(prompts: list[str], completions: list[str], **kw: object) -> list[float | None]:
        return [scores.get(c) for c in completions]  # the third chain is unscorable

    result = get_scheme("best-of-n@4", selection=selection)(PROBLEM, model=model, scorer=scorer)
    assert result.answer == expected
    assert [n.score for n in result.trace.nodes] == [0.4, 0.35, None, 0.7]


def test_best_of_n_default_scorer_asks_for_logprobs() -> None:
    texts = chains("1", "2")
    model = ScriptedModel(texts, logprob=lambda t: -1.0 if "{2}" in t else -50.0)
    result = get_scheme("best-of-n@2", selection="plain")(PROBLEM, model=model)
    assert model.calls[0][0].params.logprobs == 0
    assert result.answer == "2"


@pytest.mark.parametrize(
    ("spec", "settings", "chains_run"),
    [pytest.param("self-consistency@4", {}, 2, id="sc-pays-for-two-full-chains"),
     pytest.param("best-of-n@4", {}, 2, id="bon-pays-for-two-full-chains"),
     pytest.param("adaptive@8", {"batch": 2}, 3, id="adaptive-spends-what-short-chains-left")],
)
def test_token_budget_is_never_exceeded(spec: str, settings: dict[str, int],
                                        chains_run: int) -> None:
    model = ScriptedModel(["a b c d e f g h i j \\boxed{1}"])  # 11 tokens a chain
    scheme = get_scheme(spec, max_tokens=20, token_budget=50, **settings)
    result = scheme(PROBLEM, model=model)
    assert result.usage.completion_tokens <= 50
    assert len(result.trace.nodes) == chains_run


def test_budget_smaller_than_one_chain_samples_nothing() -> None:
    model = ScriptedModel(chains("1"))
    result = get_scheme("self-consistency@4", max_tokens=100, token_budget=10)(
        PROBLEM, model=model)
    assert model.calls == [] and result.answer is None and result.finish_reason == "length"


def test_every_scheme_in_the_table_runs_on_the_fake() -> None:
    for name in SCHEMES:
        model = ScriptedModel(chains("42"), logprob=lambda t: -1.0)
        result = get_scheme(name)(PROBLEM, model=model)
        assert result.answer == "42", name
        assert result.trace.scheme == name
        assert result.usage.seconds >= 0


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_setting_of_every_scheme_has_help(name: str) -> None:
    rows = settings(name)
    assert [r.name for r in rows] == [f.name for f in fields(SCHEMES[name].config)]
    assert [r.name for r in rows if not r.help] == []


def test_a_setting_takes_the_nearest_comment() -> None:
    by_name = {r.name: r.help for r in settings("beam")}
    assert by_name["n"] == "beams kept"  # beam's own, over TreeConfig's and SchemeConfig's
    assert by_name["max_tokens"] == "most tokens of one step"  # TreeConfig's
    assert by_name["top_p"].startswith("nucleus sampling")  # SchemeConfig's
    assert {r.name: r.help for r in settings("refine")}["n"].startswith("always 1")


def test_cancellation_stops_adaptive_between_batches() -> None:
    model = ScriptedModel(chains("1", "2", "3", "4"))
    result = get_scheme("adaptive@16")(PROBLEM, model=model,
                                       should_stop=lambda: len(model.calls) >= 1)
    assert len(model.calls) == 1
    assert result.finish_reason == "cancelled"


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param("majority", UnknownName, id="unknown-name"),
        pytest.param("self-consistency@0", ConfigError, id="zero-samples"),
        pytest.param("self-consistency@x", ConfigError, id="not-a-number"),
        pytest.param("cot@4", ConfigError, id="cot-is-one-chain"),
    ],
)
def test_bad_scheme_specs(spec: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        get_scheme(spec)


def test_unknown_scheme_lists_valid_names() -> None:
    with pytest.raises(UnknownName) as err:
        get_scheme("majority")
    assert "self-consistency" in str(err.value) and "best-of-n" in str(err.value)


@pytest.mark.parametrize(
    ("override", "param"),
    [({"temperature": -1.0}, "temperature"), ({"max_tokens": 0}, "max_tokens"),
     ({"top_p": 0.0}, "top_p"), ({"token_budget": -5}, "token_budget"),
     ({"batch": 99}, "batch"), ({"beam_width": 3}, "beam_width"),
     ({"give_up_after": 17}, "give_up_after"),
     ({"give_up_after": 4, "give_up_votes": 4}, "give_up_votes")],
)
def test_config_errors_name_the_parameter(override: dict[str, object], param: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_scheme("adaptive@16", **override)
    assert err.value.param == param


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        pytest.param("cot", ("cot", None, {}), id="bare"),
        pytest.param("self-consistency@8", ("self-consistency", 8, {}), id="at-n"),
        pytest.param("adaptive@16:temperature=0.3:batch=8",
                     ("adaptive", 16, {"temperature": 0.3, "batch": 8}), id="settings"),
        pytest.param("best-of-n:selection=plain", ("best-of-n", None, {"selection": "plain"}),
                     id="text-value"),
    ],
)
def test_parse_spec(spec: str, parsed: tuple[str, int | None, dict[str, object]]) -> None:
    assert parse_spec(spec) == parsed


def test_spec_settings_reach_the_config() -> None:
    scheme = get_scheme("adaptive@16:temperature=0.3:batch=8", temperature=0.9)
    assert (scheme.config.n, scheme.config.temperature, scheme.config.batch) == (16, 0.3, 8)


@pytest.mark.parametrize("spec", ["adaptive@4:batch", "adaptive@4:batch=x", "cot:=3",
                                  "best-of-n:n=1e3", "self-consistency@2:max_tokens=0.5",
                                  "best-of-n:selection=3", "adaptive:temperature=hot"])
def test_bad_spec_settings(spec: str) -> None:
    with pytest.raises(ConfigError):
        get_scheme(spec)


def test_direct_answers_without_reasoning() -> None:
    model = ScriptedModel(["\\boxed{42}"])
    result = get_scheme("direct")(PROBLEM, model=model)
    assert result.answer == "42" and result.reasoning == ""
    assert result.usage.reasoning_tokens == 0 < result.usage.completion_tokens
    [[request]] = model.calls
    assert request.messages is not None
    assert "final answer" in request.messages[0]["content"]
    assert request.messages[-1]["content"] == "What is 6 * 7?"


def test_spec_values_may_hold_colons() -> None:
    from ponder.schemes import parse_spec
    assert parse_spec("beam@4:scorer=prm:runs/prm/final:aggregate=min") == (
        "beam", 4, {"scorer": "prm:runs/prm/final", "aggregate": "min"})
    with pytest.raises(ConfigError):
        parse_spec("beam@4:scorer")
