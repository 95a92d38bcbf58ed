"""OpenAIModel against a scripted OpenAI-compatible server (httpx.MockTransport): milliseconds,
no sockets. The real-server tests are in test_openai_http_server.py."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ponder.core.errors import BackendError, UnknownName
from ponder.core.protocols import LanguageModel
from ponder.core.types import GenerationRequest, SamplingParams, user
from ponder.models.openai_http import OpenAIModel

URL = "http://testserver/v1"


class Server:
    """A scripted server: answers `text` for every choice (or choice k `texts[k]`), records
    every request body. Its tokens are whitespace words (`/tokenize`, when `tokenize`; vLLM's
    `token_ids` on each choice, when `token_ids`). `reasoning` is a chat choice's thinking,
    split off by the server into its message's (or stream deltas') `reasoning_field`.

    `n_supported=False` returns one choice whatever `n` is (as many servers do); `faults` is a
    list of things to do instead of answering, consumed one per request: an int status code or
    an exception to raise; `delay` is seconds to wait before answering."""

    def __init__(self, *, text: str = "four", n_supported: bool = True,
                 faults: list[Any] | None = None, models: tuple[str, ...] = ("m",),
                 choice: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                 tokenize: bool = False, texts: tuple[str, ...] = (), token_ids: bool = False,
                 delay: float = 0.0, reasoning: str | None = None,
                 reasoning_field: str = "reasoning_content") -> None:
        self.text, self.n_supported, self.faults = text, n_supported, list(faults or [])
        self.reasoning, self.reasoning_field = reasoning, reasoning_field
        self.models, self.choice, self.tokenize = models, choice or {}, tokenize
        self.texts, self.token_ids, self.delay = texts, token_ids, delay
        self.usage = usage if usage is not None else {"prompt_tokens": 7, "completion_tokens": 2}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        with self.lock:
            self.calls.append((path, body))
            fault = self.faults.pop(0) if self.faults and path != "/v1/models" else None
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, int):
            headers = {"Retry-After": "0"} if fault == 429 else {}
            return httpx.Response(fault, json={"error": {"message": f"fault {fault}"}},
                                  headers=headers)
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})
        if path == "/tokenize":
            if not self.tokenize:
                return httpx.Response(404)
            return httpx.Response(200, json={"tokens": body["prompt"].split()})
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if body.get("model") not in self.models:
            return httpx.Response(404, json={"error": {"message": "model not found"}})
        n = body.get("n", 1) if self.n_supported else 1
        chat = path.endswith("chat/completions")
        choices = [{"index": k, **self.content(k, chat), "finish_reason": "stop", **self.choice}
                   for k in range(n)]
        time.sleep(self.delay)
        if body.get("stream"):
            events = sse(choices, chat, self.usage, self.reasoning_field)
            return httpx.Response(200, stream=httpx.ByteStream(b"".join(events)))
        return httpx.Response(200, json={"choices": choices, "usage": self.usage})

    def content(self, k: int, chat: bool) -> dict[str, Any]:
        text = self.texts[k] if self.texts else self.text
        said = {self.reasoning_field: self.reasoning} if self.reasoning is not None else {}
        out = ({"message": {"role": "assistant", "content": text, **said}} if chat
               else {"text": text})
        return out | ({"token_ids": list(range(len(text.split())))} if self.token_ids else {})


def sse(choices: list[dict[str, Any]], chat: bool, usage: dict[str, Any],
        reasoning_field: str = "reasoning_content") -> Iterator[bytes]:
    """The choices as server-sent events, one word per chunk (a chat's reasoning first, as
    vLLM sends it), then the usage."""
    for c in choices:
        said = c["message"].get(reasoning_field) if chat else None
        for w, word in enumerate((said or "").split(" ") if said is not None else []):
            delta = {"delta": {reasoning_field: word if w == 0 else " " + word}}
            yield f"data: {json.dumps({'choices': [{'index': c['index'], **delta}]})}\n\n".encode()
        words = (c["message"]["content"] if chat else c["text"]).split(" ")
        for w, word in enumerate(words):
            piece = word if w == 0 else " " + word
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            last = w == len(words) - 1
            chunk = {"index": c["index"], **delta, "finish_reason": "stop" if last else None}
            if last:  # logprobs, stop_reason, ... ride on the last chunk
                chunk |= {k: v for k, v in c.items() if k not in ("message", "text")}
            yield f"data: {json.dumps({'choices': [chunk]})}\n\n".encode()
    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def make(server: Callable[[httpx.Request], httpx.Response], **kw: Any) -> OpenAIModel:
    kw.setdefault("model", "m")
    return OpenAIModel(URL, transport=httpx.MockTransport(server), backoff=0.0, **kw)


def chat(**params: Any) -> GenerationRequest:
    return GenerationRequest(SamplingParams(**params), messages=user("2+2?"))


def raw(**params: Any) -> GenerationRequest:
    return GenerationRequest(SamplingParams(**params), prefix="<|im_start|>user\n2+2?")


def test_implements_the_protocol() -> None:
    assert isinstance(make(Server()), LanguageModel)


# ---- request bodies ----------------------------------------------------------------------

BODIES = [
    pytest.param(chat(), "/v1/chat/completions",
                 {"model": "m", "messages": [{"role": "user", "content": "2+2?"}], "n": 1,
                  "max_tokens": 512, "temperature": 0.0, "top_p": 1.0},
                 ["prompt", "top_k", "seed", "stop", "logprobs", "ignore_eos", "stream"],
                 id="chat-defaults"),
    pytest.param(raw(temperature=0.7, top_p=0.9, top_k=20, max_tokens=9, stop=("\n",), seed=3,
                     ignore_eos=True),
                 "/v1/completions",
                 {"prompt": "<|im_start|>user\n2+2?", "temperature": 0.7, "top_p": 0.9,
                  "top_k": 20, "max_tokens": 9, "stop": ["\n"], "seed": 3, "ignore_eos": True},
                 ["messages"], id="raw-all-params"),
    pytest.param(chat(logprobs=3), "/v1/chat/completions",
                 {"logprobs": True, "top_logprobs": 3}, [], id="chat-logprobs"),
    pytest.param(raw(logprobs=0), "/v1/completions", {"logprobs": 0}, ["top_logprobs"],
                 id="raw-logprobs"),
]


@pytest.mark.parametrize(("request_", "path", "expected", "absent"), BODIES)
def test_request_body(request_: GenerationRequest, path: str, expected: dict[str, Any],
                      absent: list[str]) -> None:
    server = Server()
    make(server).generate([request_])
    [(called, body)] = server.calls
    assert called == path
    assert {k: body[k] for k in expected} == expected
    assert not set(absent) & set(body)


def test_model_defaults_to_the_first_served_one() -> None:
    server = Server(models=("served-a", "served-b"))
    model = make(server, model=None)
    assert (model.model, model.name) == ("served-a", "served-a")
    assert model.generate([chat()])[0][0].text == "four"


def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_API_KEY", "sk-test")
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return Server()(request)

    make(server).generate([chat()])
    assert seen == ["Bearer sk-test"]


# ---- n and concurrency -------------------------------------------------------------------

def test_n_is_sent_once_when_the_server_supports_it() -> None:
    server = Server()
    out = make(server).generate([chat(n=3, temperature=1.0)])
    assert [c.text for c in out[0]] == ["four"] * 3
    assert [b["n"] for p, b in server.calls if p == "/v1/chat/completions"] == [3]


def test_n_fallback_sends_the_rest_as_single_requests_with_offset_seeds() -> None:
    server = Server(n_supported=False)
    model = make(server)
    out = model.generate([chat(n=3, temperature=1.0, seed=5)])
    assert len(out[0]) == 3
    assert [(b["n"], b["seed"]) for _, b in server.calls] == [(3, 5), (1, 6), (1, 7)]
    server.calls.clear()
    model.generate([chat(n=2, temperature=1.0, seed=5)])  # remembered: singles straight away
    assert sorted((b["n"], b["seed"]) for _, b in server.calls) == [(1, 5), (1, 6)]


def test_n_fallback_when_the_server_refuses_n_with_400() -> None:
    server = Server(faults=[400])
    out = make(server).generate([chat(n=2, temperature=1.0)])
    assert len(out[0]) == 2
    assert [b["n"] for _, b in server.calls] == [2, 1, 1]


def test_all_requests_and_samples_of_one_call_are_in_flight_together() -> None:
    # The server ignores n: the n=3 request comes back with one choice, and its two missing
    # samples must go out while the other request is still in flight (a barrier of 3 breaks,
    # failing the test, if these three single requests are sent one after another).
    barrier = threading.Barrier(3, timeout=5)
    inner = Server(n_supported=False)

    def server(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["n"] == 1:
            barrier.wait()
        return inner(request)

    out = make(server, concurrency=4).generate([chat(n=3, temperature=1.0), chat()])
    assert [len(o) for o in out] == [3, 1]


def test_generate_works_inside_an_event_loop_and_its_worker_threads() -> None:
    model = make(Server())

    async def main() -> tuple[str, str]:
        in_thread = await asyncio.to_thread(model.generate, [chat()])  # as FastAPI runs it
        in_loop = model.generate([chat()])  # blocking, but no nested asyncio.run
        return in_thread[0][0].text, in_loop[0][0].text

    assert asyncio.run(main()) == ("four", "four")


# ---- retries and errors ------------------------------------------------------------------

RETRIED = [
    pytest.param([503, 503], id="503"),
    pytest.param([429], id="429-retry-after"),
    pytest.param([httpx.ConnectError("refused")], id="connect-error"),
    pytest.param([httpx.ReadTimeout("slow")], id="timeout"),
]


@pytest.mark.parametrize("faults", RETRIED)
def test_transient_failures_are_retried(faults: list[Any]) -> None:
    server = Server(faults=faults)
    assert make(server).generate([chat()])[0][0].text == "four"
    assert len(server.calls) == len(faults) + 1


FAILED = [
    pytest.param([503] * 9, 4, "503 from http://testserver/v1/chat/completions after 4 attempts",
                 id="503-exhausted"),
    pytest.param([httpx.ConnectError("[Errno 111] Connection refused")] * 9, 4,
                 "cannot reach http://testserver/v1 (connection refused); start the server",
                 id="connect-exhausted"),
    pytest.param([httpx.ReadTimeout("slow")] * 9, 4, "timed out after 600s", id="timeout"),
    pytest.param([400], 1, "400 from http://testserver/v1/chat/completions: fault 400",
                 id="400-not-retried"),
    pytest.param([401], 1, "401 from http://testserver/v1/chat/completions: set PONDER_API_KEY",
                 id="401"),
    pytest.param([422], 1, "422 from", id="422-not-retried"),
]


@pytest.mark.parametrize(("faults", "attempts", "message"), FAILED)
def test_failures_raise_one_line_errors(faults: list[Any], attempts: int, message: str) -> None:
    server = Server(faults=faults)
    with pytest.raises(BackendError) as err:
        make(server, max_retries=3).generate([chat()])
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert len(server.calls) == attempts


def test_retries_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ponder.models.openai_http")
    make(Server(faults=[503])).generate([chat()])
    assert "retry 1 of 3" in caplog.text


def test_404_names_the_served_models() -> None:
    server = Server(models=("a", "b"))
    with pytest.raises(BackendError, match=r"^404 model 'x' not served; served models: a, b$"):
        make(server, model="x").generate([chat()])


def test_404_on_a_wrong_path_says_to_check_the_url() -> None:
    model = OpenAIModel("http://testserver/api", model="m", backoff=0.0,
                        transport=httpx.MockTransport(Server()))
    with pytest.raises(BackendError, match="no such endpoint; check the base URL"):
        model.generate([chat()])


def test_unreachable_server_at_construction() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(BackendError, match=r"cannot reach http://testserver/v1 \(connection "
                                           r"refused\); start the server or check the URL"):
        make(refuse, model=None)


# ---- streaming and cancellation ----------------------------------------------------------

def test_streamed_deltas_concatenate_to_the_text() -> None:
    server = Server(text="two plus two is four")
    deltas: dict[tuple[int, int], list[str]] = {}
    out = make(server).generate([chat(n=2, temperature=1.0), raw()],
                                on_text=lambda r, i, d: deltas.setdefault((r, i), []).append(d))
    assert all(b["stream"] for p, b in server.calls if p.endswith("completions"))
    assert {k: "".join(v) for k, v in deltas.items()} == {
        (0, 0): "two plus two is four", (0, 1): "two plus two is four",
        (1, 0): "two plus two is four"}
    assert [c.text for c in out[0] + out[1]] == ["two plus two is four"] * 3
    assert out[1][0].prompt_tokens == 7 and out[1][0].completion_tokens == 2


def test_should_stop_closes_the_stream() -> None:
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                chunk = {"choices": [{"index": 0, "delta": {"content": " word"}}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
        finally:
            closed.set()

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/chat/completions":
            return httpx.Response(404)  # no /tokenize: token counts are estimated
        return httpx.Response(200, stream=_Stream(endless()))

    seen: list[str] = []
    out = make(server).generate([chat()], on_text=lambda r, i, d: seen.append(d),
                                should_stop=lambda: len(seen) >= 3)
    assert (out[0][0].finish_reason, out[0][0].text) == ("cancelled", " word word word")
    assert closed.is_set()


@pytest.mark.parametrize(("first", "calls"), [
    pytest.param({"role": "assistant"}, 2, id="before-any-text-retried"),
    pytest.param({"content": "Two"}, 1, id="after-text-not-retried"),
])
def test_a_stream_that_breaks(first: dict[str, str], calls: int) -> None:
    def broken() -> Iterator[bytes]:
        yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': first}]})}\n\n".encode()
        raise httpx.ReadError("connection reset by peer")

    inner, seen = Server(), []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_Stream(broken())) if len(seen) == 1 else inner(request)

    model = make(server)
    if calls == 1:  # the delta already went out to on_text: retrying would repeat it
        with pytest.raises(BackendError, match=r"dropped the connection \(connection reset"):
            model.generate([chat()], on_text=lambda r, i, d: None)
    else:
        assert model.generate([chat()], on_text=lambda r, i, d: None)[0][0].text == "four"
    assert len(seen) == calls


def test_should_stop_before_sending_sends_nothing() -> None:
    server = Server()
    out = make(server).generate([chat(n=2)], should_stop=lambda: True)
    assert [c.finish_reason for c in out[0]] == ["cancelled", "cancelled"]
    assert server.calls == []


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.chunks.close()  # type: ignore[attr-defined]


# ---- responses: logprobs, usage, finish reasons, stop strings ------------------------------

CHAT_LOGPROBS = {"content": [
    {"token": "fo", "logprob": -0.5, "top_logprobs": [{"token": "fo", "logprob": -0.5},
                                                      {"token": "fi", "logprob": -1.5}]},
    {"token": "ur", "logprob": -0.25, "top_logprobs": [{"token": "ur", "logprob": -0.25}]},
]}
RAW_LOGPROBS = {"tokens": ["fo", "ur"], "token_logprobs": [-0.5, -0.25],
                "top_logprobs": [{"fo": -0.5, "fi": -1.5}, {"ur": -0.25}], "text_offset": [0, 2]}


@pytest.mark.parametrize(("request_", "logprobs"), [
    pytest.param(chat(logprobs=2), CHAT_LOGPROBS, id="chat"),
    pytest.param(raw(logprobs=2), RAW_LOGPROBS, id="raw"),
])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_logprobs_are_parsed(request_: GenerationRequest, logprobs: dict[str, Any],
                             stream: bool) -> None:
    [[c]] = make(Server(choice={"logprobs": logprobs})).generate(
        [request_], on_text=(lambda r, i, d: None) if stream else None)
    assert c.token_logprobs == [-0.5, -0.25]
    assert c.top_logprobs == [{"fo": -0.5, "fi": -1.5}, {"ur": -0.25}]


def test_usage_is_spread_over_the_choices() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 9,
             "prompt_tokens_details": {"cached_tokens": 4}}
    out = make(Server(usage=usage)).generate([chat(n=3, temperature=1.0)])[0]
    assert [c.prompt_tokens for c in out] == [10, 10, 10]  # each sample saw the whole prompt
    assert [c.cached_tokens for c in out] == [4, 4, 4]
    assert sum(c.completion_tokens for c in out) == 9


WORDS = ("one two three", "one two three four five", "one", "one two three four five six seven")
COUNTS = [
    # llama-server answers n=4 with four choices and a usage that counts one of them:
    pytest.param(WORDS, 3, {"tokenize": True}, [3, 5, 1, 7], id="counts-one/server-tokenize"),
    pytest.param(WORDS, 3, {"token_ids": True}, [3, 5, 1, 7], id="counts-one/token-ids"),
    pytest.param(WORDS, 3, {}, [math.ceil(len(t) / 4) for t in WORDS],
                 id="counts-one/estimate-4-chars"),
    # vLLM sums over the choices: its total is kept, split as the choices' own counts say
    # (here it counts one token more than the words, as a server counting EOS would).
    pytest.param(WORDS, 17, {"tokenize": True}, [3, 5, 1, 8], id="sums/server-tokenize"),
    pytest.param(("a b c d e f", "tremendously"), 7, {"tokenize": True}, [6, 1],
                 id="sums/not-by-text-length"),
]


@pytest.mark.parametrize(("texts", "total", "server", "expected"), COUNTS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_completion_tokens_are_each_choices_own(texts: tuple[str, ...], total: int,
                                                server: dict[str, Any], expected: list[int],
                                                stream: bool) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": total}
    out = make(Server(texts=texts, usage=usage, **server)).generate(
        [chat(n=len(texts), temperature=1.0)], on_text=(lambda r, i, d: None) if stream else None)
    assert [c.text for c in out[0]] == list(texts)
    assert [c.completion_tokens for c in out[0]] == expected
    assert [c.prompt_tokens for c in out[0]] == [7] * len(texts)  # the prompt, once per sample


def test_seconds_are_the_calls_wall_time_shared_by_its_choices() -> None:
    model = make(Server(delay=0.05))
    [out] = model.generate([chat(n=4, temperature=1.0)])
    assert len({c.seconds for c in out}) == 1  # one call, shared equally
    assert 0.05 <= sum(c.seconds or 0.0 for c in out) < 1.0
    # A server that ignores n: each sample is a call of its own, with its own wall time.
    [out] = make(Server(delay=0.05, n_supported=False)).generate([chat(n=3, temperature=1.0)])
    assert all((c.seconds or 0.0) >= 0.05 for c in out)


def test_missing_usage_is_counted() -> None:
    [[c]] = make(Server(text="a b c d", usage={}, tokenize=True)).generate([raw()])
    assert c.completion_tokens == 4  # from the server's /tokenize: whitespace words here


@pytest.mark.parametrize(("choice", "finish", "stop_string", "text"), [
    pytest.param({"finish_reason": "length"}, "length", None, "four", id="length"),
    pytest.param({"finish_reason": "stop"}, "stop", None, "four", id="eos"),
    pytest.param({"finish_reason": "stop", "stop_reason": "\n"}, "stop", "\n", "four",
                 id="vllm-stop-reason"),
    pytest.param({"text": "four\nfive"}, "stop", "\n", "four", id="stop-ignored-by-server"),
])
def test_finish_reasons_and_stop_strings(choice: dict[str, Any], finish: str,
                                         stop_string: str | None, text: str) -> None:
    [[c]] = make(Server(choice=choice)).generate([raw(stop=("\n",))])
    assert (c.finish_reason, c.stop_string, c.text) == (finish, stop_string, text)


# ---- native thinkers: reasoning split off by the server, or here ---------------------------

def streams(stream: bool) -> tuple[dict[str, Any], list[str]]:
    """generate's keyword arguments (an `on_text` when streaming) and the deltas it gets."""
    deltas: list[str] = []
    return ({"on_text": lambda r, i, d: deltas.append(d)} if stream else {}), deltas


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_reasoning_the_server_splits_off(field: str, stream: bool) -> None:
    server = Server(text="\n\nIt is 4.", reasoning="2 plus 2 makes 4.", reasoning_field=field)
    kw, deltas = streams(stream)
    [[c]] = make(server).generate([chat()], **kw)
    assert (c.reasoning, c.text) == ("2 plus 2 makes 4.", "It is 4.")  # the reply's \n\n dropped
    assert "".join(deltas) == ("<think>2 plus 2 makes 4.</think>\n\nIt is 4." if stream else "")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_thinking_cut_off_by_the_budget_is_all_reasoning(stream: bool) -> None:
    server = Server(text="", reasoning="Let me", choice={"finish_reason": "length"})
    kw, deltas = streams(stream)
    [[c]] = make(server).generate([chat()], **kw)
    assert (c.reasoning, c.text, c.finish_reason) == ("Let me", "", "length")
    assert "".join(deltas) == ("<think>Let me" if stream else "")


def test_without_reasoning_from_the_server_nothing_changes() -> None:
    [[c]] = make(Server(text="<think>hm</think>4")).generate([chat()])  # and no parser
    assert (c.reasoning, c.text) == (None, "<think>hm</think>4")


@pytest.mark.parametrize(("parser", "text", "reasoning", "reply"), [
    pytest.param("deepseek-r1", "2 plus 2.</think>\n\nIt is 4.", "2 plus 2.", "It is 4.",
                 id="deepseek-r1"),
    pytest.param("deepseek-r1", "2 plus", "2 plus", "", id="deepseek-r1-never-closed"),
    pytest.param("qwen3", "<think>\n2 plus 2.\n</think>\n\nIt is 4.", "\n2 plus 2.\n",
                 "It is 4.", id="qwen3"),
    pytest.param("qwen3", "It is 4.", None, "It is 4.", id="qwen3-thinking-off"),
    pytest.param("think", "Well, <think>2 plus 2.</think> 4.", "2 plus 2.", "Well, 4.",
                 id="think"),
])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_reasoning_parser_splits_what_the_server_leaves_whole(
        parser: str, text: str, reasoning: str | None, reply: str, stream: bool) -> None:
    kw, deltas = streams(stream)
    [[c]] = make(Server(text=text), reasoning_parser=parser).generate([chat()], **kw)
    assert (c.reasoning, c.text) == (reasoning, reply)
    assert "".join(deltas) == (text if stream else "")  # streamed as the model wrote it


def test_a_raw_prefix_is_not_parsed() -> None:
    # A raw prefix continues a chain mid-thought: its text cannot be split on its own.
    model = make(Server(text="so 4.</think>Done"), reasoning_parser="deepseek-r1")
    [[c]] = model.generate([raw()])
    assert (c.reasoning, c.text) == (None, "so 4.</think>Done")


def test_the_servers_split_wins_over_the_parser() -> None:
    model = make(Server(text="It is 4.", reasoning="2+2"), reasoning_parser="deepseek-r1")
    [[c]] = model.generate([chat()])
    assert (c.reasoning, c.text) == ("2+2", "It is 4.")


def test_the_parser_is_reachable_from_model_args() -> None:
    from ponder.cli_args import parse_model_args
    from ponder.models.catalog import load_model

    args = parse_model_args(["reasoning_parser=deepseek-r1"])
    model = load_model(f"{URL}#m", **args, transport=httpx.MockTransport(Server(text="a</think>b")))
    assert isinstance(model, OpenAIModel)
    [[c]] = model.generate([chat()])
    assert (c.reasoning, c.text) == ("a", "b")


def test_an_unknown_parser_is_a_one_line_error() -> None:
    with pytest.raises(UnknownName, match=r"^unknown reasoning parser 'r2'; valid names: "
                                          r"deepseek-r1, qwen3, think$"):
        make(Server(), reasoning_parser="r2")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("total", "expected"), [
    pytest.param(4, [4, 6], id="counts-one"),  # llama-server: the usage counts one choice
    pytest.param(12, [5, 7], id="sums"),  # vLLM: summed, and split as the choices' own counts
])
def test_reasoning_tokens_are_counted(stream: bool, total: int, expected: list[int]) -> None:
    # Each choice counts its reasoning, end tag and reply: "a b c d</think>four" is 4 words.
    server = Server(texts=("four", "four five six"), reasoning="a b c d", tokenize=True,
                    usage={"prompt_tokens": 7, "completion_tokens": total})
    kw, _ = streams(stream)
    [out] = make(server).generate([chat(n=2, temperature=1.0)], **kw)
    assert [(c.reasoning, c.text) for c in out] == [("a b c d", "four"),
                                                    ("a b c d", "four five six")]
    assert [c.completion_tokens for c in out] == expected


def test_a_stop_string_the_server_ignored_cuts_the_reasoning() -> None:
    [[c]] = make(Server(text="c", reasoning="a\nb")).generate([chat(stop=("\n",))])
    assert (c.reasoning, c.text, c.finish_reason, c.stop_string) == ("a", "", "stop", "\n")


# ---- chat rendering and token counting ----------------------------------------------------

def test_render_chat_defaults_to_chatml() -> None:
    assert make(Server()).render_chat(user("hi")) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_render_chat_with_a_template() -> None:
    pytest.importorskip("jinja2")
    template = ("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}[assistant] {% endif %}")
    model = make(Server(), chat_template=template)
    assert model.render_chat(user("hi", system="be brief")) == (
        "[system] be brief\n[user] hi\n[assistant] ")


@pytest.mark.parametrize(("tokenize", "expected"), [
    pytest.param(True, 3, id="server-tokenize"),
    pytest.param(False, 4, id="estimate-4-chars"),
])
def test_count_tokens(tokenize: bool, expected: int) -> None:
    server = Server(tokenize=tokenize)
    model = make(server)
    assert model.count_tokens("one two three") == expected
    assert model.count_tokens("one two three") == expected
    probes = [p for p, _ in server.calls if "tokenize" in p]
    assert len(probes) == (3 if tokenize else 2)  # probed once; unsupported is remembered
