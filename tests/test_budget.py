"""Budget forcing (s1) on the scripted fake: the thinking cut at its budget, early ends replaced
by "Wait", what is forced and marked so, the answer read from the reply, the run's budget and
usage; and once on a real model (slow)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import (
    Completion,
    GenerationRequest,
    Message,
    Node,
    Result,
    unforced,
    user,
)
from ponder.models.fake import ASSISTANT, ScriptedModel, tokenize
from ponder.schemes import get_scheme, settings

END = "</think>"
LEAD_IN = "\n</think>\n\n"


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="q", messages=user("What is 6 * 7?"), extract=boxed)


def written(prompt: str) -> str:
    """What the chain holds so far: the prefix after the chat prompt."""
    return prompt.rsplit(ASSISTANT, 1)[1]


def script(thinking: Callable[[str], str],
           reply: str = "so \\boxed{42}") -> Callable[[str, int], str]:
    """A model's script: it continues its thinking with `thinking(chain so far)` and, once the
    chain holds `</think>`, writes `reply`."""
    def write(prompt: str, _i: int) -> str:
        so_far = written(prompt)
        return reply if END in so_far else so_far + thinking(so_far)
    return write


def thinker(thinking: Callable[[str], str], reply: str = "so \\boxed{42}") -> ScriptedModel:
    return ScriptedModel(script(thinking, reply))


def words(n: int) -> str:
    return "".join(f" w{i}" for i in range(n))


def forced_texts(node: Node) -> list[str]:
    return [node.text[a:b] for a, b in node.forced]


def calls(model: ScriptedModel) -> list[GenerationRequest]:
    return [request for call in model.calls for request in call]


def solve(spec: str, model: ScriptedModel, **kw: Any) -> tuple[Result, Node]:
    result = get_scheme(spec)(PROBLEM, model=model, **kw)
    [node] = result.trace.nodes
    assert result.trace.chosen == [0]
    return result, node


# -- the budget ends the thinking -----------------------------------------------------------

def test_thinking_stops_exactly_at_the_budget_then_the_end_is_forced() -> None:
    model = thinker(lambda _: words(100) + " " + END + " never reached")
    result, node = solve("budget:budget=10", model)
    assert len(tokenize(result.reasoning)) == 10 == node.meta["thinking_tokens"]
    assert result.reasoning == words(10).strip()
    assert forced_texts(node) == ["<think>\n", LEAD_IN]
    assert node.text == "<think>\n" + words(10) + LEAD_IN + "so \\boxed{42}"
    assert node.meta == {"waits": 0, "budget_forced": True, "thinking_tokens": 10}
    think, reply = calls(model)
    assert (think.params.max_tokens, think.params.stop) == (10, (END,))
    assert reply.prefix is not None and reply.prefix.endswith(words(10) + LEAD_IN)
    assert reply.params.max_tokens == 256 and reply.params.stop == ()
    assert (result.answer, result.content, result.finish_reason) == ("42", "so \\boxed{42}",
                                                                     "stop")


def test_the_budget_counts_the_thinking_over_every_call() -> None:
    """Early ends until the chain holds two Waits, then a long thought the budget cuts: the
    thinking tokens of all three calls add up to the budget."""
    model = thinker(lambda so_far: " a b c\n" + END if so_far.count("Wait") < 2
                    else words(100))
    result, node = solve("budget:budget=20:waits=5", model)
    assert node.meta == {"waits": 2, "budget_forced": True, "thinking_tokens": 20}
    assert [r.params.max_tokens for r in calls(model)] == [20, 16, 12, 256]
    assert forced_texts(node) == ["<think>\n", "Wait", "Wait", LEAD_IN]
    assert result.usage.reasoning_tokens == 20


# -- early ends and "Wait" ------------------------------------------------------------------

@pytest.mark.parametrize("waits", [1, 2, 3])
def test_an_early_end_is_replaced_by_wait_k_times(waits: int) -> None:
    model = thinker(lambda so_far: f" step {so_far.count('Wait')} done\n{END}\n\nignored")
    result, node = solve(f"budget:waits={waits}", model)
    assert forced_texts(node) == ["<think>\n"] + ["Wait"] * waits  # the last end was sampled
    assert node.meta == {"waits": waits, "budget_forced": False,
                         "thinking_tokens": 4 * (waits + 1)}
    for (a, b) in node.forced[1:]:
        assert node.text[a - 1] == "\n" and node.text[b:].startswith(" step")
    assert node.text.count(END) == 1 and not any(a <= node.text.index(END) < b
                                                 for a, b in node.forced)
    assert result.reasoning.count("Wait") == waits
    assert result.reasoning.endswith(f"step {waits} done")
    assert len(calls(model)) == waits + 2 and result.answer == "42"


def test_with_no_waits_an_early_end_is_kept_as_written() -> None:
    model = thinker(lambda _: f" quick\n{END}")
    result, node = solve("budget", model)
    assert forced_texts(node) == ["<think>\n"]  # nothing else was inserted
    assert node.text == f"<think>\n quick\n{END}so \\boxed{{42}}"
    assert node.meta == {"waits": 0, "budget_forced": False, "thinking_tokens": 2}
    [_, reply] = calls(model)
    assert reply.prefix is not None and reply.prefix.endswith(f"quick\n{END}")  # no lead-in
    assert (result.reasoning, result.content) == ("quick", "so \\boxed{42}")


@pytest.mark.parametrize(("waits", "forced"), [
    pytest.param(0, ["<think>\n", LEAD_IN], id="ended-by-lead-in"),
    pytest.param(1, ["<think>\n", "\nWait", LEAD_IN], id="wait-on-a-new-line"),
])
def test_an_end_of_turn_inside_the_thinking_is_an_early_end(waits: int,
                                                             forced: list[str]) -> None:
    model = thinker(lambda _: " I think it is 41.")  # never closes its thinking
    _, node = solve(f"budget:waits={waits}", model)
    assert forced_texts(node) == forced
    assert node.meta["budget_forced"] is False and node.meta["waits"] == waits


def test_the_stream_shows_the_thinking_as_the_chain_holds_it() -> None:
    seen: list[str] = []
    model = thinker(lambda so_far: f" step {so_far.count('Wait')}\n{END}")
    result = get_scheme("budget:waits=1")(PROBLEM, model=model,
                                           on_text=lambda _r, _s, delta: seen.append(delta))
    assert "Wait" in seen and "".join(seen).strip() == result.reasoning
    assert "boxed" not in "".join(seen)  # the reply is the content, not streamed as reasoning


# -- the answer comes from the reply --------------------------------------------------------

@pytest.mark.parametrize(("reply", "answer", "content"), [
    pytest.param("so \\boxed{2}", "2", "so \\boxed{2}", id="reply-answers"),
    pytest.param("  I cannot say.\n", None, "I cannot say.", id="reply-without-answer"),
])
def test_the_answer_is_read_from_the_reply_only(reply: str, answer: str | None,
                                                content: str) -> None:
    model = thinker(lambda _: f" it is \\boxed{{1}}\n{END}", reply=reply)
    result, node = solve("budget", model)
    assert "\\boxed{1}" in result.reasoning and "\\boxed{1}" not in result.content
    assert (result.answer, node.answer, result.content) == (answer, answer, content)
    assert result.finish_reason == "stop"


def test_a_reply_cut_at_reply_tokens_finishes_with_length() -> None:
    model = thinker(lambda _: f" ok\n{END}", reply=words(50) + " \\boxed{3}")
    result, node = solve("budget:reply_tokens=5", model)
    assert result.finish_reason == node.finish_reason == "length" and result.answer is None
    assert result.content == words(5).strip()



# -- inside the voting schemes --------------------------------------------------------------

def voter(answers: Sequence[str], thought: str = "the sum is \\boxed{1}") -> ScriptedModel:
    """Chain i thinks `thought` (a boxed 1: never the answer) and replies `answers[i]`; it
    reads which chain it is from the request's sample number."""
    def write(prompt: str, i: int) -> str:
        so_far = written(prompt)
        return f"so \\boxed{{{answers[i]}}}" if END in so_far else f" {thought}\n{END}"
    return ScriptedModel(write)


@pytest.mark.parametrize("spec", ["self-consistency@3:budget=50",
                                  "adaptive@3:batch=3:budget=50",
                                  "best-of-n@3:budget=50:scorer=uniform"])
def test_voting_schemes_force_every_chain_and_vote_on_the_replies(spec: str) -> None:
    model = voter(["7", "8", "7"])
    result = get_scheme(spec)(PROBLEM, model=model)
    nodes = result.trace.nodes
    assert [n.answer for n in nodes] == ["7", "8", "7"]  # the boxed 1 in the thinking: no vote
    assert result.answer == "7" and result.trace.meta["votes"] == {"7": 2, "8": 1}
    assert all(forced_texts(n) == ["<think>\n"] and n.text.count(END) == 1 for n in nodes)
    # one batched call thinks for all three chains, one more writes all three replies
    think, reply = model.calls
    assert len(think) == len(reply) == 3
    assert all(r.params.stop == (END,) and r.params.max_tokens == 50 for r in think)
    assert [r.params.first_sample for r in think] == [0, 1, 2]
    # every chain's thinking is reasoning; the replies' tokens are metered apart from it
    reply_tokens = 3 * len(tokenize("so \\boxed{7}"))
    assert result.usage.completion_tokens - result.usage.reasoning_tokens == reply_tokens


def test_forced_chains_in_a_vote_are_each_cut_at_their_own_budget() -> None:
    model = thinker(lambda _: words(100))
    result = get_scheme("self-consistency@2:budget=10:reply_tokens=5")(PROBLEM, model=model)
    assert all(forced_texts(n) == ["<think>\n", LEAD_IN] for n in result.trace.nodes)
    reply = len(tokenize("so \\boxed{42}"))
    assert result.usage.completion_tokens == 2 * (10 + reply)
    assert result.usage.reasoning_tokens == 2 * 10
    assert get_scheme("self-consistency@2:budget=10:reply_tokens=5").config.token_budget == 30


def test_a_native_thinkers_boxed_thought_is_not_its_answer() -> None:
    """Without forcing, a chain written in tags (a native thinker's) votes with its reply."""
    model = ScriptedModel(lambda _p, i: f"<think>\\boxed{{1}}</think>answer \\boxed{{{i}}}")
    result = get_scheme("self-consistency@3")(PROBLEM, model=model)
    assert [n.answer for n in result.trace.nodes] == ["0", "1", "2"]
    cut = ScriptedModel(lambda _p, _i: "<think>it is \\boxed{1} but")
    assert get_scheme("self-consistency@2")(PROBLEM, model=cut).answer is None


# -- the run's budget and usage --------------------------------------------------------------

@pytest.mark.parametrize(("spec", "thinking", "reply"), [
    pytest.param("budget:budget=30:reply_tokens=10", 30, 10, id="default-pays-both"),
    pytest.param("budget:budget=30:reply_tokens=10:token_budget=25", 15, 10,
                 id="small-run-budget-cuts-the-thinking"),
    pytest.param("budget:budget=30:reply_tokens=10:token_budget=8", 0, 8,
                 id="no-room-to-think"),
])
def test_the_run_budget_is_never_exceeded(spec: str, thinking: int, reply: int) -> None:
    model = thinker(lambda _: words(100), reply=words(100))
    scheme = get_scheme(spec)
    result, node = solve(spec, model)
    assert scheme.config.token_budget is not None
    assert result.usage.completion_tokens == thinking + reply <= scheme.config.token_budget
    assert all(r.params.max_tokens <= scheme.config.token_budget for r in calls(model))
    assert node.meta["thinking_tokens"] == thinking and node.meta["budget_forced"] is True
    assert len(calls(model)) == (2 if thinking else 1)


def test_usage_splits_the_thinking_from_the_reply() -> None:
    model = thinker(lambda so_far: " a b" + END if "Wait" not in so_far else " c d e",
                    reply="the reply is \\boxed{7}")
    result, node = solve("budget:waits=1", model)
    usage = result.usage
    assert usage.reasoning_tokens == node.meta["thinking_tokens"] == 2 + 3
    assert usage.completion_tokens - usage.reasoning_tokens == 4  # the reply, as content
    assert usage.completion_tokens == node.tokens and usage.model_calls == 3
    assert [(p.role, p.completion_tokens) for p in usage.by_role] == [("policy", 9)]
    assert result.reasoning == "a b\nWait c d e"
    assert get_scheme("budget").config.token_budget == 1024 + 256


def test_cancellation_ends_the_run_between_calls() -> None:
    model = thinker(lambda _: f" a\n{END}")
    result, node = solve("budget:waits=3", model, should_stop=lambda: len(model.calls) >= 1)
    assert len(model.calls) == 1 and result.finish_reason == "cancelled"
    assert result.answer is None and node.meta["waits"] == 0


# -- a template that opens the thinking itself -----------------------------------------------

class OpensThinking(ScriptedModel):
    """A chat template that ends by opening the thinking, as DeepSeek-R1's does."""

    def __init__(self, opening: str, script: Callable[[str, int], str]) -> None:
        super().__init__(script)
        self.opening = opening

    def render_chat(self, messages: Sequence[Message], *,
                    add_generation_prompt: bool = True) -> str:
        return super().render_chat(messages, add_generation_prompt=add_generation_prompt) + (
            self.opening if add_generation_prompt else "")


@pytest.mark.parametrize("opening", ["<think>\n", "<think>"])
def test_a_prompt_that_opens_the_thinking_gets_no_second_opening(opening: str) -> None:
    model = OpensThinking(opening, script(lambda _: words(20)))
    result, node = solve("budget:budget=5", model)
    prefix = calls(model)[0].prefix
    assert prefix == model.render_chat(PROBLEM.messages) and prefix.count("<think>") == 1
    assert forced_texts(node) == [LEAD_IN] and not node.text.startswith("<think>")
    assert result.reasoning == words(5).strip()


def test_a_budget_of_zero_ends_the_thinking_at_once() -> None:
    """reasoning_effort "none" for a thinking model: no thinking, the reply at once."""
    model = thinker(lambda _: words(100))
    result, node = solve("budget:budget=0", model)
    assert len(calls(model)) == 1  # the reply's call only: no thinking call
    assert forced_texts(node) == ["<think>\n", LEAD_IN] and result.reasoning == ""
    assert result.answer == "42" and result.usage.reasoning_tokens == 0


# -- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "param"), [
    ("budget:budget=-1", "budget"),
    ("self-consistency@2:budget=64:tools=python", "tools"),
    ("cot:tools=bash", "tools"),
    ("budget:waits=-1", "waits"),
    ("budget:wait= ", "wait"),
    ("budget:lead_in=Answer:", "lead_in"),
    ("budget:reply_tokens=0", "reply_tokens"),
    ("budget@2", "n"),
])
def test_bad_settings_name_the_parameter(spec: str, param: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_scheme(spec)
    assert err.value.param == param


def test_ponder_schemes_budget_lists_its_settings() -> None:
    shown = CliRunner().invoke(app, ["schemes", "budget"])
    assert shown.exit_code == 0, shown.output
    names = [ln.split()[0] for ln in shown.stdout.splitlines() if ln.startswith("  ") and
             ln.split()]
    for setting in ("budget", "waits", "wait", "lead_in", "reply_tokens", "token_budget"):
        assert setting in names
    assert all(row.help for row in settings("budget"))
    assert "s1" in shown.stdout and "budget forcing" in shown.stdout.lower()


# -- a real model ------------------------------------------------------------------------------

REAL = [
    pytest.param("A baker makes 12 cakes a day for 5 days. She sells 40 of them and gives away "
                 "half of the rest. How many cakes are left?", True, id="math-task"),
    # asked plainly, SmolLM2 ends its turn after a sentence (13 of 32 tokens, greedy)
    pytest.param("What is the capital of France?", False, id="ends-early"),
]


@pytest.fixture(scope="module")
def smol() -> Any:
    from test_llamacpp import small_model  # skips where llama.cpp or the model is missing

    with small_model(n_ctx=1024, n_seq_max=2) as lm:
        yield lm


@pytest.mark.slow
@pytest.mark.parametrize(("question", "math"), REAL)
def test_budget_forcing_on_a_real_model(smol: Any, question: str, math: bool) -> None:
    from ponder.core.wrap import Wrapper
    from ponder.tasks import get_task

    seen: list[tuple[bool, Completion]] = []  # (thinking call?, completion) per call

    class Recorded(Wrapper):
        def generate(self, requests: Sequence[GenerationRequest],
                     **kw: Any) -> list[list[Completion]]:
            out = super().generate(requests, **kw)
            seen.extend((END in r.params.stop, c)
                        for r, cs in zip(requests, out, strict=True) for c in cs)
            return out

    problem = (get_task("math").problem(question) if math else
               Problem(question=question, messages=user(question), extract=boxed))
    scheme = get_scheme("budget:budget=32:waits=1:reply_tokens=48", seed=7)
    result = scheme(problem, model=Recorded(smol))
    [node] = result.trace.nodes
    thought = sum(c.completion_tokens for thinking, c in seen if thinking)
    assert node.meta["thinking_tokens"] == thought
    if node.meta["budget_forced"]:
        assert thought == 32
    else:
        assert node.meta["waits"] == 1 and thought < 32
    if not math:
        assert node.meta["waits"] == 1  # it ended early: one forced Wait
    # the forced spans hold exactly what ponder inserted, in order: the opening, the waits,
    # and the lead-in wherever ponder ended the thinking (always, when the budget did)
    texts = forced_texts(node)
    assert texts[0] == "<think>\n"
    ended = texts[-1] == LEAD_IN
    assert ended or not node.meta["budget_forced"]
    waits = texts[1:-1] if ended else texts[1:]
    assert waits == [t for t in waits if t in ("Wait", "\nWait")]
    assert len(waits) == node.meta["waits"]
    # what is not forced is what the model sampled, call after call
    sampled = "".join(c.text for _, c in seen)
    kept = "".join(node.text[a:b] for a, b in unforced(node.forced, len(node.text)))
    assert kept.replace(END, "") == sampled.replace(END, "")  # (a sampled end is put back)
    # usage: every sampled token, the thinking as reasoning, the reply as content
    usage = result.usage
    assert usage.completion_tokens == node.tokens == sum(c.completion_tokens for _, c in seen)
    assert usage.reasoning_tokens == thought
    assert 0 < usage.completion_tokens - usage.reasoning_tokens <= 48
    assert usage.completion_tokens <= 32 + 48 and usage.model_calls == len(seen)
