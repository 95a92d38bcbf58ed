"""A reply after the reasoning, on the fake: how the chat task reads a chain, how free-form
replies are chosen, and that every token is counted once (issue 24)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ponder.core.types import Completion, GenerationRequest
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.serve.app import create_app
from ponder.tasks import get_task
from ponder.tasks.chat import INSTRUCTION, reply

CHAT = get_task("chat")
CODE = "Here is the function:\n\n```python\ndef is_even(n):\n    return n % 2 == 0\n```"
STEPS = "17 * 24 = 17 * 20 + 17 * 4.\n\n340 + 68 = 408.\n\nSo 17 * 24 is \\boxed{408}."


@pytest.mark.parametrize(("chain", "reasoning", "content", "answer"), [
    pytest.param(STEPS, "17 * 24 = 17 * 20 + 17 * 4.\n\n340 + 68 = 408.", "So 17 * 24 is 408.",
                 "408", id="checkable: the last paragraph states it"),
    pytest.param(CODE, "", CODE, None, id="free-form: the chain is the reply"),
    pytest.param("Because of Rayleigh scattering.", "", "Because of Rayleigh scattering.", None,
                 id="one sentence"),
    pytest.param("<think>Maybe \\boxed{1}? No.</think>\n\nIt is \\boxed{2}.",
                 "Maybe \\boxed{1}? No.", "It is 2.", "2",
                 id="native thinker: the answer from the reply only"),
    pytest.param("<think>still thinking about \\boxed{3}", "still thinking about \\boxed{3}", "",
                 None, id="thinking cut off: no reply"),
    pytest.param("\\boxed{7}", "", "7", "7", id="a bare answer"),
])
def test_the_chat_task_reads_a_chain_as_reasoning_and_reply(chain: str, reasoning: str,
                                                            content: str, answer: str | None
                                                            ) -> None:
    assert CHAT.extract(chain) == answer
    assert reply(chain) == type(reply(chain))(reasoning, content)


def test_only_a_single_short_answer_is_asked_for_in_a_box() -> None:
    [system, question] = CHAT.problem("Write a haiku.").messages
    assert system["content"] == INSTRUCTION and "otherwise, do not" in INSTRUCTION
    assert question == {"role": "user", "content": "Write a haiku."}


def test_cot_shows_the_reply_and_counts_every_token_once() -> None:
    model = ScriptedModel([STEPS])
    result = get_scheme("cot")(CHAT.problem("What is 17 * 24?"), model=model)
    assert (result.answer, result.content) == ("408", "So 17 * 24 is 408.")
    assert "340 + 68" in result.reasoning and "So 17" not in result.reasoning
    usage = result.usage
    assert usage.reasoning_tokens + usage.content_tokens == usage.completion_tokens
    assert usage.content_tokens == model.count_tokens("So 17 * 24 is 408.")


def test_a_free_form_chain_is_all_content() -> None:
    result = get_scheme("cot")(CHAT.problem("Write is_even."), model=ScriptedModel([CODE]))
    assert (result.answer, result.reasoning, result.content) == (None, "", CODE)
    assert result.usage.reasoning_tokens == 0
    assert result.usage.content_tokens == result.usage.completion_tokens


class Picker(ScriptedModel):
    """Writes three different replies; as the judge, names the second one."""

    def generate(self, requests: Sequence[GenerationRequest], **kw: Any) -> list[list[Completion]]:
        asked = requests[0].messages or ()
        if asked and "most consistent" in asked[-1]["content"]:
            self.calls.append(list(requests))
            return [[Completion("The most consistent response is Response 2.",
                                completion_tokens=9)]]
        return super().generate(requests, **kw)


@pytest.mark.parametrize("spec", ["self-consistency@3", "adaptive@8:batch=3"])
def test_free_form_replies_are_chosen_by_universal_self_consistency(spec: str) -> None:
    model = Picker(["Reply one.", "Reply two.", "Reply three."])
    result = get_scheme(spec)(CHAT.problem("Say something."), model=model)
    assert result.content == "Reply two." and result.answer is None
    assert result.trace.meta["usc"] == {"choice": 2, "read": True}
    assert len(result.trace.nodes) == 3  # adaptive stops after its first batch: nothing to vote
    [[judged]] = [call for call in model.calls if "most consistent" in
                  (call[0].messages or ())[-1]["content"]]
    assert all(f"Response {i}:\nReply" in (judged.messages or ())[-1]["content"]
               for i in (1, 2, 3))


def test_checkable_answers_are_still_voted_on() -> None:
    chains = ["a\n\n\\boxed{5}", "b\n\n\\boxed{7}", "c\n\n\\boxed{7}"]
    result = get_scheme("self-consistency@3")(CHAT.problem("q"), model=ScriptedModel(chains))
    assert result.answer == "7" and result.content == "7" and "usc" not in result.trace.meta


def test_a_native_thinkers_thinking_is_reasoning_and_never_voted() -> None:
    class Thinker(ScriptedModel):
        def generate(self, requests: Sequence[GenerationRequest],
                     **kw: Any) -> list[list[Completion]]:
            out = super().generate(requests, **kw)
            for cs in out:
                for c in cs:
                    c.reasoning = "I think \\boxed{9}."
            return out

    result = get_scheme("self-consistency@2")(CHAT.problem("q"),
                                              model=Thinker(["It is \\boxed{4}."]))
    assert result.answer == "4" and result.content == "It is 4."
    assert result.reasoning == "I think \\boxed{9}."


def test_the_server_reply_is_content_and_tokens_add_up() -> None:
    model = ScriptedModel([STEPS])
    c = TestClient(create_app({"m": model}, CHAT.problem))
    body = c.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "What is 17 * 24?"}]}).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "So 17 * 24 is 408." and "340 + 68" in message["reasoning_content"]
    usage = body["usage"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning + model.count_tokens(message["content"]) == usage["completion_tokens"]
    assert usage["completion_tokens"] == model.count_tokens(STEPS)
    free = c.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    chunks = [json.loads(line[6:]) for line in free.iter_lines()
              if line.startswith("data: {")]
    shown = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks
                    if ch["choices"])
    thought = "".join(ch["choices"][0]["delta"].get("reasoning_content", "") for ch in chunks
                      if ch["choices"])
    assert shown == "So 17 * 24 is 408." and "So 17" not in thought  # no token sent twice
    assert math.isfinite(usage["total_tokens"])


def test_a_budget_too_small_for_the_scheme_says_so() -> None:
    """OpenAI's usual max_tokens 512 pays for one of self-consistency@8's chains of 512."""
    c = TestClient(create_app({"m": ScriptedModel(["\\boxed{1}"])}, CHAT.problem))
    body = c.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 512,
        "ponder": {"scheme": "self-consistency@8"}}).json()
    assert (body["ponder"]["chains_asked"], body["ponder"]["chains_run"]) == (8, 1)
    enough = c.post("/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "q"}], "n": 2,
        "ponder": {"scheme": "self-consistency@3"}}).json()
    assert (enough["ponder"]["chains_asked"], enough["ponder"]["chains_run"]) == (6, 6)
