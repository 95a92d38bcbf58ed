"""Function calling (issue 25): the Hermes tool-call parser, table-driven; the server on the
scripted fake offering tools, answering with calls (whole and streamed, field by field),
taking the tool results back, and refusing bad tools with a 400; the HTTP backend passing
tools on and reading a server's parsed calls. Milliseconds each."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ponder.core.tool_calls import for_template, hermes, parse
from ponder.core.types import GenerationRequest, user
from ponder.models.fake import ScriptedModel
from ponder.models.openai_http import OpenAIModel
from ponder.serve.app import create_app
from ponder.tasks import get_task

NAMES = {"get_weather", "get_time"}
PARIS = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
ROME = '{"name": "get_time", "arguments": {"city": "Rome"}}'


def block(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


# -- the parser: (text, calls as (name, arguments), text left outside, refused) ---------------

CASES = [
    pytest.param("It is sunny in Paris.", [], "It is sunny in Paris.", False, id="no-call"),
    pytest.param(block(PARIS), [("get_weather", {"city": "Paris"})], "", False, id="one-call"),
    pytest.param(f"{block(PARIS)}\n{block(ROME)}",
                 [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Rome"})], "", False,
                 id="two-calls"),
    pytest.param(f"Let me check.\n{block(PARIS)}\nOne moment.",
                 [("get_weather", {"city": "Paris"})], "Let me check.\n\nOne moment.", False,
                 id="text-around-the-call"),
    pytest.param(block('{"name": "get_weather", "arguments": {"city": }}'), [], None, True,
                 id="malformed-json"),
    pytest.param(block('{"name": "get_stock", "arguments": {}}'), [], None, True,
                 id="unknown-name"),
    pytest.param(block('{"name": "get_weather", "arguments": ["Paris"]}'), [], None, True,
                 id="arguments-not-an-object"),
    pytest.param(block('{"arguments": {"city": "Paris"}}'), [], None, True, id="no-name"),
    pytest.param(f"{block(PARIS)}\n{block('not json')}", [], None, True,
                 id="one-bad-call-refuses-all"),
    pytest.param(block('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}'),
                 [("get_weather", {"city": "Paris"})], "", False, id="arguments-as-json-text"),
    pytest.param(block('{"name": "get_time"}'), [("get_time", {})], "", False,
                 id="arguments-absent"),
    pytest.param(block(PARIS + "}"), [("get_weather", {"city": "Paris"})], "", False,
                 id="repaired-stray-brace"),
    pytest.param(block(PARIS + " and then I wait"), [("get_weather", {"city": "Paris"})], "",
                 False, id="repaired-trailing-text"),
    pytest.param(f"<tool_call>\n{PARIS}", [("get_weather", {"city": "Paris"})], "", False,
                 id="last-block-unclosed"),
    pytest.param(f"<think>Maybe {block(PARIS)}? No.</think>It is sunny.", [], None, False,
                 id="call-inside-the-thinking-is-not-a-call"),
    pytest.param(f"<think>I need the weather.</think>\n{block(PARIS)}",
                 [("get_weather", {"city": "Paris"})], "<think>I need the weather.</think>",
                 False, id="call-after-the-thinking"),
    pytest.param(f"<think>Maybe {block(PARIS)}", [], None, False,
                 id="thinking-never-closed-has-no-call"),
    pytest.param(PARIS, [("get_weather", {"city": "Paris"})], "", False, id="bare-json-call"),
    pytest.param(f"```json\n{PARIS}\n```\n", [("get_weather", {"city": "Paris"})], "", False,
                 id="fenced-json-call"),
    pytest.param(f"The call would be {PARIS}", [], None, False, id="json-in-text-is-text"),
    pytest.param('{"name": "get_stock", "arguments": {}}', [], None, False,
                 id="bare-json-of-no-tool-is-text"),
]


@pytest.mark.parametrize(("text", "calls", "outside", "refused"), CASES)
def test_parse(text: str, calls: list[tuple[str, dict[str, Any]]], outside: str | None,
               refused: bool) -> None:
    parsed = parse(text, NAMES)
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == calls
    assert parsed.text == (text if outside is None else outside)
    assert (parsed.error is not None) == refused
    if refused:  # one line that says which call and why
        assert parsed.error is not None and parsed.error.startswith("tool call ")
        assert "\n" not in parsed.error


def test_a_written_call_reads_back_and_templates_get_objects() -> None:
    [call] = parse(hermes("get_weather", '{"city": "Paris"}'), NAMES).calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    [rendered] = for_template([turn])
    assert rendered["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert turn["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # not mutated


# -- the server on the fake ---------------------------------------------------------------------

URL = "/v1/chat/completions"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
CALLS = f"Let me look.\n{block(PARIS)}"


def serve(*script: str) -> tuple[TestClient, ScriptedModel]:
    model = ScriptedModel(list(script))
    app = create_app({"fake": model}, get_task("chat").problem)
    return TestClient(app, raise_server_exceptions=False), model


def post(c: TestClient, **body: Any) -> Any:
    return c.post(URL, json={"model": "fake", "messages": ASK, "tools": [WEATHER, TIME],
                             **body})


def test_a_call_ends_the_turn_with_tool_calls() -> None:
    c, model = serve(CALLS)
    response = post(c)
    assert response.status_code == 200, response.text
    body = response.json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] == "Let me look."
    assert "reasoning_content" not in message  # nothing was thought apart from the reply
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) > len("call_")
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert body["ponder"]["scheme"] == "cot" and "tool_call_error" not in body["ponder"]
    # the tools reached the model, rendered into its prompt
    [[request]] = model.calls
    assert request.tools == (WEATHER, TIME)
    assert '"get_weather"' in model.render_chat(request.messages or (), tools=request.tools)
    # the calls and the text around them are the content's tokens; nothing is reasoning
    usage = body["usage"]
    assert usage["completion_tokens"] == model.count_tokens(CALLS)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_calls_alone_have_null_content_and_thinking_stays_reasoning() -> None:
    c, _ = serve(f"<think>Paris, so get_weather.</think>{block(PARIS)}\n{block(ROME)}")
    [choice] = post(c).json()["choices"]
    message = choice["message"]
    assert message["content"] is None
    assert message["reasoning_content"] == "Paris, so get_weather."
    assert [t["function"]["name"] for t in message["tool_calls"]] == ["get_weather", "get_time"]
    assert len({t["id"] for t in message["tool_calls"]}) == 2


def events(response: Any) -> list[Any]:
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_a_streamed_call_arrives_in_deltas() -> None:
    c, _ = serve(f"<think>Paris.</think>Let me look.\n{block(PARIS)}")
    with c.stream("POST", URL, json={"model": "fake", "messages": ASK, "tools": [WEATHER],
                                     "stream": True}) as response:
        assert response.status_code == 200
        chunks = events(response)
    assert chunks[-1] == "[DONE]"
    deltas = [ch["choices"][0]["delta"] for ch in chunks[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks[:-1])
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert {"reasoning_content": "Paris."} in deltas and {"content": "Let me look."} in deltas
    pieces = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert pieces[0] == [{"index": 0, "id": pieces[0][0]["id"], "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]
    assert pieces[0][0]["id"].startswith("call_")
    assert pieces[1] == [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]
    assert len(pieces) == 2
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls",
                                        "logprobs": None}


def test_the_official_client_reads_the_calls_whole_and_streamed() -> None:
    openai = pytest.importorskip("openai")
    c, _ = serve(CALLS)
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=c)
    reply = client.chat.completions.create(model="fake", messages=ASK, tools=[WEATHER])
    [call] = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    with client.chat.completions.stream(model="fake", messages=ASK, tools=[WEATHER]) as s:
        final = s.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_the_tool_results_come_back_and_are_rendered() -> None:
    c, model = serve("It is 18 degrees and sunny in Paris.")
    call = {"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "18 C, sunny"}]
    response = post(c, messages=messages)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == "It is 18 degrees and sunny in Paris."
    [[request]] = model.calls
    *_, question, called, result = request.messages or ()
    assert question["role"] == "user" and question["content"] == ASK[0]["content"]
    assert called == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert result == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_abc",
                      "name": "get_weather"}
    prompt = model.render_chat(request.messages or (), tools=request.tools)
    assert hermes("get_weather", '{"city": "Paris"}') in prompt and "18 C, sunny" in prompt


def test_tool_choice_none_offers_nothing_and_reads_no_call() -> None:
    c, model = serve(CALLS)
    [choice] = post(c, tool_choice="none").json()["choices"]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert "<tool_call>" in choice["message"]["content"]
    assert model.calls[0][0].tools == ()


@pytest.mark.parametrize(("choice", "offered", "asked"), [
    pytest.param("required", [WEATHER, TIME], "one of the functions", id="required"),
    pytest.param({"type": "function", "function": {"name": "get_weather"}}, [WEATHER],
                 "the function get_weather", id="named"),
])
def test_a_required_call_is_asked_for(choice: Any, offered: list[Any], asked: str) -> None:
    c, model = serve(CALLS)
    assert post(c, tool_choice=choice).json()["choices"][0]["finish_reason"] == "tool_calls"
    [[request]] = model.calls
    assert list(request.tools) == offered
    system = (request.messages or ())[0]
    assert system["role"] == "system" and asked in system["content"]


@pytest.mark.parametrize("choice", [None, "required"])
def test_no_parallel_calls_asks_for_one_and_returns_the_first(choice: Any) -> None:
    two = f"{block(PARIS)}\n{block(ROME)}"
    c, model = serve(two, two)
    extra = {} if choice is None else {"tool_choice": choice}
    [choice_out] = post(c, parallel_tool_calls=False, **extra).json()["choices"]
    [call] = choice_out["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    system = (model.calls[0][0].messages or ())[0]
    assert system["role"] == "system" and "at most one function call" in system["content"]
    assert len(post(c).json()["choices"][0]["message"]["tool_calls"]) == 2  # the default: all
    assert post(c, parallel_tool_calls="no").status_code == 400


def test_a_malformed_call_is_returned_as_text() -> None:
    text = "Let me look.\n" + block('{"name": "get_stock", "arguments": {}}')
    c, _ = serve(text)
    body = post(c).json()
    [choice] = body["choices"]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == text
    assert "unknown function 'get_stock'" in body["ponder"]["tool_call_error"]


def test_with_tools_the_chain_runs_once_unless_a_scheme_is_named() -> None:
    c, model = serve(CALLS)
    assert post(c, reasoning_effort="high").json()["ponder"]["scheme"] == "cot"
    body = post(c, ponder={"scheme": "self-consistency@2"}).json()
    assert body["ponder"]["scheme"] == "self-consistency"
    assert all(r.tools == (WEATHER, TIME) for r in model.calls[-1])


def _fn(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": function}


@pytest.mark.parametrize(("body", "param"), [
    pytest.param({"tools": [{"type": "retrieval", "function": {"name": "f"}}]},
                 "tools[0].type", id="type-not-function"),
    pytest.param({"tools": [_fn(name="get weather")]}, "tools[0].function.name",
                 id="name-with-a-space"),
    pytest.param({"tools": [_fn(name="f" * 65)]}, "tools[0].function.name", id="name-too-long"),
    pytest.param({"tools": [_fn(name="")]}, "tools[0].function.name", id="name-empty"),
    pytest.param({"tools": [_fn(name="f", parameters=["city"])]}, "tools[0].function.parameters",
                 id="parameters-not-an-object"),
    pytest.param({"tools": [_fn(name="f"), _fn(name="f")]}, "tools[1].function.name",
                 id="duplicate-names"),
    pytest.param({"tools": "get_weather"}, "tools", id="tools-not-a-list"),
    pytest.param({"tools": [WEATHER], "tool_choice": {"type": "function",
                                                      "function": {"name": "get_time"}}},
                 "tool_choice.function.name", id="choice-names-no-tool"),
    pytest.param({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice",
                 id="choice-unknown"),
    pytest.param({"tool_choice": "required"}, "tool_choice", id="required-without-tools"),
    pytest.param({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_x",
                                      "content": "18 C"}]},
                 "messages[1].tool_call_id", id="result-of-no-call"),
    pytest.param({"messages": [*ASK, {"role": "tool", "content": "18 C"}]},
                 "messages[1].tool_call_id", id="result-without-an-id"),
    pytest.param({"messages": [*ASK, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]},
                 "messages[1].tool_calls[0].function.arguments", id="arguments-not-text"),
])
def test_bad_tools_are_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    c, model = serve(CALLS)
    request = {"model": "fake", "messages": ASK, **body}
    response = c.post(URL, json=request)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert "\n" not in error["message"]
    assert model.calls == []


# -- the HTTP backend -----------------------------------------------------------------------

def _upstream(bodies: list[dict[str, Any]]) -> httpx.MockTransport:
    """A server that parses calls itself: whole, or in stream deltas (arguments in pieces)."""
    call = {"id": "u1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        body = json.loads(request.content)
        bodies.append(body)
        usage = {"prompt_tokens": 9, "completion_tokens": 12}
        if not body.get("stream"):
            return httpx.Response(200, json={"usage": usage, "choices": [{
                "index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]})
        pieces = [{"tool_calls": [{"index": 0, "id": "u1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}]
        chunks = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in pieces]
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        chunks.append({"choices": [], "usage": usage})
        data = b"".join(f"data: {json.dumps(ch)}\n\n".encode() for ch in chunks)
        return httpx.Response(200, stream=httpx.ByteStream(data + b"data: [DONE]\n\n"))

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_the_http_backend_sends_tools_and_writes_back_the_calls(streamed: bool) -> None:
    bodies: list[dict[str, Any]] = []
    model = OpenAIModel("http://up/v1", transport=_upstream(bodies), backoff=0)
    shown: list[str] = []
    request = GenerationRequest(messages=user("Weather in Paris?"), tools=(WEATHER,))
    [[completion]] = model.generate(
        [request], on_text=(lambda _r, _s, d: shown.append(d)) if streamed else None)
    assert bodies[0]["tools"] == [WEATHER]
    assert "tool_choice" not in bodies[0] and "parallel_tool_calls" not in bodies[0]  # defaults
    assert completion.text == "\n" + hermes("get_weather", '{"city": "Paris"}')
    [call] = parse(completion.text, NAMES).calls
    assert json.loads(call.arguments) == {"city": "Paris"}
    if streamed:
        assert "".join(shown) == completion.text
    model.close()


@pytest.mark.parametrize(("body", "sent"), [
    pytest.param({"tool_choice": "required"}, {"tool_choice": "required"}, id="required"),
    pytest.param({"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
                 {"tool_choice": "required"}, id="named-is-required-of-the-one-offered"),
    pytest.param({"parallel_tool_calls": False}, {"parallel_tool_calls": False}, id="one-call"),
    pytest.param({"tool_choice": "auto"}, {}, id="auto-is-the-servers-default"),
])
def test_an_upstream_server_is_asked_what_the_client_asked(body: dict[str, Any],
                                                          sent: dict[str, Any]) -> None:
    bodies: list[dict[str, Any]] = []
    upstream = OpenAIModel("http://up/v1", transport=_upstream(bodies), backoff=0)
    app = create_app({"up": upstream}, get_task("chat").problem)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post(URL, json={"model": "up", "messages": ASK, "tools": [WEATHER, TIME],
                                     **body})
    assert response.status_code == 200, response.text
    [first] = [b for b in bodies if "messages" in b]  # (the rest count tokens)
    assert {k: first[k] for k in ("tool_choice", "parallel_tool_calls") if k in first} == sent
    upstream.close()


# A Qwen2.5-like template, cut to what it does with tools and calls.
QWEN_LIKE = (
    "{% if tools %}<|im_start|>system\n# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}"
    "{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{{ m.content }}\n</tool_response><|im_end|>\n{% else %}<|im_start|>{{ m.role }}\n"
    "{{ m.content }}{% for c in m.tool_calls or [] %}\n<tool_call>\n{\"name\": \""
    "{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}\n"
    "</tool_call>{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_template_renders_the_tools_and_the_earlier_calls_as_objects() -> None:
    model = OpenAIModel("http://up/v1", model="m", chat_template=QWEN_LIKE,
                        transport=_upstream([]))
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    prompt = model.render_chat([*ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
                                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}],
                               tools=[WEATHER])
    assert '"name": "get_weather"' in prompt.split("</tools>")[0]  # the tool, offered
    assert hermes("get_weather", '{"city": "Paris"}') in prompt  # not a quoted string
    assert "<tool_response>\n18 C\n</tool_response>" in prompt
    assert "<tools>" not in model.render_chat(ASK)
    model.close()

