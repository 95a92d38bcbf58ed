"""The server on the scripted fake: response fields, usage, reasoning handling, streaming,
errors in OpenAI's shape, the queue, and the effort table. Milliseconds each."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ponder.core.errors import BackendError, DataError, UnknownName
from ponder.core.reasoning import get_parser
from ponder.models.fake import ASSISTANT, ScriptedModel
from ponder.schemes.effort import EFFORTS, THINKING_EFFORTS
from ponder.serve.app import create_app
from ponder.serve.commands import load_effort_table, parse_model_args, parse_models
from ponder.serve.protocol import EFFORT_LEVELS
from ponder.tasks import get_task

CHAIN = "Six sevens.\n\nSo \\boxed{42}."
URL = "/v1/chat/completions"
ASK = [{"role": "user", "content": "What is 6 * 7?"}]


def client(model: Any = None, **kw: Any) -> TestClient:
    app = create_app({"fake": model or ScriptedModel([CHAIN])}, get_task("math").problem, **kw)
    return TestClient(app, raise_server_exceptions=False)


def ask(c: TestClient, **body: Any) -> Any:  # starlette's TestClient response
    return c.post(URL, json={"model": "fake", "messages": ASK, **body})


def events(response: Any) -> list[Any]:
    """The SSE stream as parsed chunks, [DONE] as the string itself."""
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_completion_fields() -> None:
    body = ask(client()).json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "fake" and isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "42", "reasoning_content": CHAIN}
    assert body["ponder"]["scheme"] == "cot" and body["ponder"]["answers"] == ["42"]


def test_usage_counts_every_thinking_token() -> None:
    """reasoning_tokens = every generated token (the discarded chains' too);
    completion_tokens = reasoning_tokens + the content's tokens."""
    model = ScriptedModel([CHAIN, "Hmm.\n\nSo \\boxed{41}.", CHAIN])
    body = ask(client(model), ponder={"scheme": "self-consistency@3"}).json()
    generated = sum(model.count_tokens(t) for t in (CHAIN, "Hmm.\n\nSo \\boxed{41}.", CHAIN))
    usage = body["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == generated
    assert usage["completion_tokens"] == generated + model.count_tokens("42")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    prompt = model.render_chat(model.calls[0][0].messages or ())
    assert usage["prompt_tokens"] == 3 * model.count_tokens(prompt)  # each chain saw the prompt


def test_earlier_reasoning_never_reaches_the_model() -> None:
    model = ScriptedModel([CHAIN])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "SECRET-A two and two",
         "reasoning": "SECRET-B"},
        {"role": "user", "content": [{"type": "text", "text": "And 6 * 7?"}]},
    ]
    default = ScriptedModel([CHAIN])  # the default effort writes its chain from a raw prompt
    assert client(default).post(URL, json={"model": "fake", "messages": messages}).is_success
    assert all("SECRET" not in (r.prefix or "") for call in default.calls for r in call)
    assert client(model).post(URL, json={"model": "fake", "messages": messages,
                                          "ponder": {"scheme": "cot"}}).status_code == 200
    [[request]] = model.calls
    sent = request.messages or ()
    assert "SECRET" not in json.dumps(sent) and "SECRET" not in model.render_chat(sent)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"].startswith("Be brief.") and "boxed" in sent[0]["content"]
    assert sent[2]["content"] == "4" and sent[3]["content"] == "And 6 * 7?"


def test_include_reasoning_false_omits_it_but_counts_it() -> None:
    c = client()
    body = ask(c, ponder={"include_reasoning": False}).json()
    assert "reasoning_content" not in body["choices"][0]["message"]
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    with c.stream("POST", URL, json={"model": "fake", "messages": ASK, "stream": True,
                                     "ponder": {"include_reasoning": False}}) as r:
        chunks = events(r)
    assert "reasoning_content" not in json.dumps(chunks)


def test_finish_reason_length_when_the_budget_runs_out() -> None:
    model = ScriptedModel(["let me think " * 50])
    body = ask(client(model), max_completion_tokens=20).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 20
    assert ask(client(model), max_tokens=20).json()["choices"][0]["finish_reason"] == "length"


def test_stop_cuts_the_content_not_the_reasoning() -> None:
    model = ScriptedModel(["so \\boxed{42 apples}"])
    message = ask(client(model), stop=[" "]).json()["choices"][0]["message"]
    assert message["content"] == "42" and message["reasoning_content"] == "so \\boxed{42 apples}"


def test_n_runs_independent_schemes_with_their_own_seeds() -> None:
    model = ScriptedModel([CHAIN])
    body = ask(client(model), n=2, seed=5, temperature=0.5).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert sorted(call[0].params.seed or 0 for call in model.calls) == [5, 6]


def test_stream_chunks_follow_openai() -> None:
    with client().stream("POST", URL, json={"model": "fake", "messages": ASK, "stream": True,
                                            "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = events(r)
    assert chunks[-1] == "[DONE]"
    *body, usage, _ = chunks
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in body[1:]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning == CHAIN and len([d for d in deltas if "reasoning_content" in d]) > 1
    assert deltas[-2] == {"content": "42"} and deltas[-1] == {}
    assert body[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    with client().stream("POST", URL, json={"model": "fake", "messages": ASK, "stream": True}) as r:
        assert not any("usage" in c for c in events(r)[:-1])


def test_stream_search_reports_progress_then_the_chosen_chain() -> None:
    model = ScriptedModel(["step " * 30 + "\\boxed{7}"], delay_per_token=0.005)
    json_body = {"model": "fake", "messages": ASK, "stream": True,
                 "ponder": {"scheme": "self-consistency@2"}}
    with client(model).stream("POST", URL, json=json_body) as r:
        chunks = events(r)[:-1]
    progress = [c["ponder"]["reasoning_tokens"] for c in chunks if "ponder" in c]
    assert progress and progress == sorted(progress)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert [d for d in deltas if "reasoning_content" in d] == [
        {"reasoning_content": "step " * 30 + "\\boxed{7}"}]
    assert deltas[-2] == {"content": "7"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": None}, "model", id="missing-model"),
        pytest.param({"messages": []}, "messages", id="empty-messages"),
        pytest.param({"messages": "hi"}, "messages", id="messages-not-a-list"),
        pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
                     id="content-wrong-type"),
        pytest.param({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role",
                     id="unsupported-role"),
        pytest.param({"messages": [*ASK, {"role": "assistant", "content": "4"}]}, "messages",
                     id="last-turn-not-user"),
        pytest.param({"messages": [{"role": "user", "content": " "}]}, "messages[0].content",
                     id="empty-question"),
        pytest.param({"n": 0}, "n", id="n-zero"),
        pytest.param({"n": "two"}, "n", id="n-not-int"),
        pytest.param({"temperature": -0.1}, "temperature", id="temperature-negative"),
        pytest.param({"top_p": 0}, "top_p", id="top-p-zero"),
        pytest.param({"max_completion_tokens": 0}, "max_completion_tokens", id="budget-zero"),
        pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", id="too-many-stops"),
        pytest.param({"stream": "maybe"}, "stream", id="stream-not-bool"),
        pytest.param({"reasoning_effort": "extreme"}, "reasoning_effort", id="unknown-effort"),
        pytest.param({"ponder": {"scheme": "tree-of-thought"}}, "ponder.scheme",
                     id="unknown-scheme"),
        pytest.param({"ponder": {"scheme": "cot@3"}}, "ponder.scheme", id="cot-with-n"),
        pytest.param({"ponder": {"scheme": "adaptive@x"}}, "ponder.scheme", id="bad-at-n"),
        pytest.param({"ponder": {"scheme": "best-of-n:n=1e3"}}, "ponder.scheme",
                     id="spec-setting-type"),
        pytest.param({"ponder": {"scheme": "adaptive:beam=2"}}, "ponder.scheme",
                     id="spec-setting-unknown"),
        pytest.param({"ponder": {"scheme": "adaptive", "scheme_args": {"batch": "4"}}},
                     "ponder.scheme_args.batch", id="scheme-arg-type"),
        pytest.param({"ponder": {"scheme": "adaptive", "scheme_args": {"confidence": 2}}},
                     "ponder.scheme_args.confidence", id="scheme-arg-range"),
        pytest.param({"ponder": {"scheme_args": {"beam": 2}}}, "ponder.scheme_args.beam",
                     id="scheme-arg-unknown"),
    ],
)
def test_bad_input_is_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    request = {k: v for k, v in {"model": "fake", "messages": ASK, **body}.items()
               if v is not None}
    r = client().post(URL, json=request)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_malformed_json_is_400() -> None:
    r = client().post(URL, content=b'{"model": "fake",', headers={"content-type":
                                                                   "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_unknown_fields_are_ignored() -> None:
    assert ask(client(), frequency_penalty=0.5, user="someone", logit_bias={}).status_code == 200


def test_api_key() -> None:
    c = client(api_key="sesame")
    assert ask(c).status_code == 401 and ask(c).json()["error"]["code"] == "invalid_api_key"
    assert c.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    good = {"Authorization": "Bearer sesame"}
    assert c.post(URL, json={"model": "fake", "messages": ASK}, headers=good).status_code == 200
    assert c.get("/v1/models", headers=good).json()["data"][0]["id"] == "fake"
    assert c.get("/v1/models/fake", headers=good).json()["id"] == "fake"
    assert c.get("/health").status_code == 200


def test_unknown_model_and_route_are_404() -> None:
    r = client().post(URL, json={"model": "gpt-9", "messages": ASK})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    assert client().get("/v1/models/gpt-9").json()["error"]["code"] == "model_not_found"
    assert client().get("/v2/nothing").json()["error"]["message"] == "Not Found"


class Broken(ScriptedModel):
    def __init__(self, error: Exception) -> None:
        super().__init__([CHAIN])
        self.error = error

    def generate(self, requests: Any, **kw: Any) -> Any:
        raise self.error


def test_backend_failure_is_502_and_a_bug_is_500_in_openai_shape() -> None:
    r = ask(client(Broken(BackendError("upstream down"))))
    assert r.status_code == 502 and "upstream down" in r.json()["error"]["message"]
    r = ask(client(Broken(RuntimeError("oops"))))
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    body = {"model": "fake", "messages": ASK, "stream": True}
    with client(Broken(BackendError("upstream down"))).stream("POST", URL, json=body) as r:
        chunks = events(r)
    assert r.status_code == 200 and chunks[-1]["error"]["code"] == "backend_error"


def test_full_queue_is_503() -> None:
    async def scenario() -> list[int]:
        slow = ScriptedModel(["word " * 40 + "\\boxed{1}"], delay_per_token=0.01)
        app = create_app({"fake": slow}, get_task("math").problem, max_concurrency=1,
                         max_queue=1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {"model": "fake", "messages": ASK}
            first = [asyncio.create_task(c.post(URL, json=body)) for _ in range(2)]
            while (await c.get("/health")).json()["admitted"] < 2:
                await asyncio.sleep(0.005)
            third = await c.post(URL, json=body)
            assert third.json()["error"]["code"] == "queue_full"
            assert third.headers["retry-after"] == "1"
            return [third.status_code] + [(await t).status_code for t in first]

    assert asyncio.run(scenario()) == [503, 200, 200]


def test_the_request_takes_exactly_the_table_levels() -> None:
    assert set(EFFORT_LEVELS) == set(EFFORTS)


@pytest.mark.parametrize("level", list(EFFORTS))
def test_effort_levels_map_through_the_table(level: str) -> None:
    model = ScriptedModel([CHAIN])
    body = ask(client(model), reasoning_effort=level).json()
    effort = EFFORTS[level]
    assert body["ponder"]["scheme"] == effort.scheme.partition("@")[0]
    assert model.calls[0][0].params.max_tokens == effort.settings["max_tokens"]


def test_effort_table_file(tmp_path: Path) -> None:
    path = tmp_path / "efforts.json"
    path.write_text(json.dumps({"medium": {"scheme": "self-consistency@2", "max_tokens": 99}}))
    table = load_effort_table(path)
    assert table["medium"].scheme == "self-consistency@2" and table["low"] == EFFORTS["low"]
    model = ScriptedModel([CHAIN])
    ask(client(model, efforts=table), reasoning_effort="medium")
    assert model.calls[0][0].params.n == 2 and model.calls[0][0].params.max_tokens == 99
    for bad, error in [({"ultra": {"scheme": "cot"}}, UnknownName),
                       ({"low": {"max_tokens": 5}}, DataError),
                       ({"low": {"scheme": "cot", "max_tokens": "many"}}, DataError),
                       ({"low": {"scheme": "cot:max_tokens=0.5"}}, DataError)]:
        path.write_text(json.dumps(bad))
        with pytest.raises(error):
            load_effort_table(path)


def test_model_specs_and_args() -> None:
    assert parse_models(["default", "smollm=smollm2-135m", "http://h:1/v1#qwen",
                         "up=http://h:2/v1?a=b#x"]) == {
        "default": "default", "smollm": "smollm2-135m", "qwen": "http://h:1/v1#qwen",
        "up": "http://h:2/v1?a=b#x"}
    assert parse_model_args(["delay_per_token=0.05", "b:script=[\"x\"]", "b:tag=hi"],
                            ["a", "b"]) == {"a": {"delay_per_token": 0.05},
                                            "b": {"delay_per_token": 0.05, "script": ["x"],
                                                  "tag": "hi"}}


def test_openapi_documents_the_request() -> None:
    spec = client().get("/openapi.json").json()
    schema = spec["components"]["schemas"]["ChatRequest"]["properties"]
    assert list(schema)[:3] == ["messages", "model", "n"] and "ponder" in schema
    assert "422" not in spec["paths"][URL]["post"]["responses"]


def test_a_thinking_model_maps_effort_to_a_thinking_budget() -> None:
    """A native thinker (R1's template opens the thinking) gets THINKING_EFFORTS: effort is
    how many tokens it may think; its thinking is the reasoning, its reply the content."""
    def r1(prompt: str, _i: int) -> str:
        after = prompt.rsplit(ASSISTANT, 1)[1]
        return " So \\boxed{42}." if "</think>" in after else " six sevens " * 40 + "</think>"

    assert set(THINKING_EFFORTS) == set(EFFORTS)
    for level, thinking in (("none", 0), ("minimal", 512)):
        model = ScriptedModel(r1, reasoning_parser=get_parser("deepseek-r1"))
        body = ask(client(model), reasoning_effort=level).json()
        assert body["ponder"]["scheme"] == "budget", body
        first = model.calls[0][0]
        assert first.params.max_tokens == (thinking or 1024)  # none: the reply's call only
        assert first.params.temperature == 0.6
        message = body["choices"][0]["message"]
        assert message["content"] == "So \\boxed{42}." and body["ponder"]["answers"] == ["42"]
        assert ("six sevens" in message.get("reasoning_content", "")) == (thinking > 0)
    plain = ScriptedModel([CHAIN])
    assert ask(client(plain), reasoning_effort="low").json()["ponder"]["scheme"] == "cot"
