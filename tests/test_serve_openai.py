"""The official `openai` client against a real `ponder serve` on SmolLM2-135M (slow: a real
model on CPU). Small token budgets keep each call to a few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ponder.serve.process import serving

pytestmark = [pytest.mark.slow, pytest.mark.server]
openai = pytest.importorskip("openai")
ASK = [{"role": "user", "content": "What is 6 * 7?"}]
BUDGET = 16


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with serving("--model", "smollm=smollm2-135m", "--max-concurrency", "2",
                 "--model-arg", "n_ctx=4096", ready_seconds=180) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=300, max_retries=0)


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[Any]:
    from ponder.models.catalog import load_model

    model = load_model("smollm2-135m", n_ctx=256, n_seq_max=1)
    yield model
    model.close()


def check_usage(usage: Any, contents: list[str], tokenizer: Any, thinks: bool = True) -> None:
    """Every token counted once: completion = reasoning + the content's tokens (the content
    counted again here from the text as shown, which may tokenize a token or two apart from
    the sampled tokens of a reply the chain wrote)."""
    reasoning = usage.completion_tokens_details.reasoning_tokens
    shown = sum(tokenizer.count_tokens(c) for c in contents)
    assert abs(usage.completion_tokens - reasoning - shown) <= 2 * len(contents)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 0
    assert 0 <= reasoning <= usage.completion_tokens
    if not thinks:
        assert reasoning == 0  # effort "none" answers directly


def test_models_are_listed(client: Any) -> None:
    assert [m.id for m in client.models.list()] == ["smollm"]


def test_plain_completion(client: Any, tokenizer: Any) -> None:
    reply = client.chat.completions.create(model="smollm", messages=ASK,
                                           max_completion_tokens=BUDGET)
    [choice] = reply.choices
    assert choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str) and choice.message.content
    # the chat task: reasoning apart from the reply where there is some (a free-form reply,
    # or a chain cut by the budget, is all content)
    assert isinstance(choice.message.model_extra.get("reasoning_content", ""), str)
    assert choice.message.content != choice.message.model_extra.get("reasoning_content")
    assert reply.usage.completion_tokens_details.reasoning_tokens <= BUDGET
    check_usage(reply.usage, [choice.message.content], tokenizer)


def test_streaming(client: Any, tokenizer: Any) -> None:
    stream = client.chat.completions.create(
        model="smollm", messages=ASK, max_completion_tokens=BUDGET, stream=True,
        stream_options={"include_usage": True})
    reasoning, content, finish, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert content and finish in ("stop", "length") and usage is not None
    # re-tokenizing generated text may merge a token or two differently
    assert abs(usage.completion_tokens_details.reasoning_tokens
               - (tokenizer.count_tokens(reasoning) if reasoning else 0)) <= 2
    check_usage(usage, [content], tokenizer)


def test_n_2_is_two_runs(client: Any, tokenizer: Any) -> None:
    reply = client.chat.completions.create(model="smollm", messages=ASK, n=2, seed=1,
                                           temperature=0.8, max_completion_tokens=BUDGET)
    assert [c.index for c in reply.choices] == [0, 1]
    check_usage(reply.usage, [c.message.content for c in reply.choices], tokenizer)


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_each_reasoning_effort(client: Any, tokenizer: Any, effort: str) -> None:
    reply = client.chat.completions.create(model="smollm", messages=ASK, reasoning_effort=effort,
                                           max_completion_tokens=8)
    assert reply.usage.completion_tokens_details.reasoning_tokens <= 8
    check_usage(reply.usage, [reply.choices[0].message.content], tokenizer,
                thinks=effort != "none")


def test_earlier_reasoning_is_dropped(client: Any) -> None:
    """2,000 words of earlier reasoning would be ~2,000 prompt tokens if they were sent."""
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "think " * 2000},
        {"role": "user", "content": "And 6 * 7?"},
    ]
    reply = client.chat.completions.create(model="smollm", messages=messages,
                                           max_completion_tokens=8)
    assert 0 < reply.usage.prompt_tokens < 200


def test_errors_reach_the_client_as_openai_errors(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="smollm", messages=ASK, n=0)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=ASK)
