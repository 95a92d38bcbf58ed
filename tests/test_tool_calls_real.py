"""Function calling for real (issue 25): `ponder serve --model default` (the embedded
Qwen2.5-Coder-0.5B-Instruct GGUF, whose own template renders the tools) driven by the official
`openai` client with a `get_weather(city)` tool. The first answer must be well formed: a call
to get_weather whose arguments are a JSON object naming Paris, or a text reply (which one is
printed: run with -s to see it); the tool's result sent back then gets a text reply.

Measured (greedy): the 0.5B writes its call as a fenced `json` block, not in <tool_call> tags,
which core/tool_calls.py reads as a call (a reply that is one call object and nothing else);
given the result, it echoes the call and the result as its text reply. Slow: a real model on
CPU, under a minute."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ponder.serve.process import serving

pytestmark = [pytest.mark.slow, pytest.mark.server]
openai = pytest.importorskip("openai")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {
        "type": "string", "description": "The city, e.g. London"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with serving("--model", "default", "--model-arg", "n_ctx=2048",
                 "--model-arg", "n_seq_max=2") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=300, max_retries=0)


def test_get_weather_is_called_or_answered_then_the_result_is_used(client: Any) -> None:
    first = client.chat.completions.create(model="default", messages=ASK, tools=[WEATHER],
                                           max_completion_tokens=256)
    [choice] = first.choices
    message = choice.message
    if not message.tool_calls:  # a text reply is well formed too; say which it was
        print(f"\nthe 0.5B answered in text: {message.content!r}")
        assert choice.finish_reason in ("stop", "length") and message.content
        return
    called = [(c.function.name, c.function.arguments) for c in message.tool_calls]
    print(f"\nthe 0.5B called: {called}, content {message.content!r}")
    assert choice.finish_reason == "tool_calls"
    [call] = message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict) and "paris" in json.dumps(arguments).lower()

    result = {"role": "tool", "tool_call_id": call.id,
              "content": json.dumps({"city": "Paris", "temperature_c": 18, "sky": "sunny"})}
    turn = {"role": "assistant", "content": message.content,
            "tool_calls": [call.model_dump(include={"id", "type", "function"})]}
    final = client.chat.completions.create(model="default", messages=[*ASK, turn, result],
                                           tools=[WEATHER], max_completion_tokens=256)
    [choice] = final.choices
    print(f"then: {choice.finish_reason}, {choice.message.content!r}")
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert choice.message.content and choice.message.content.strip()
