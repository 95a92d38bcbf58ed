"""A `LanguageModel` behind an OpenAI-compatible HTTP server: vLLM, SGLang, llama-server,
Ollama, llama-cpp-python's server, OpenAI itself.

Requests with `messages` go to `/chat/completions` (the server applies its own chat template);
a raw `prefix` goes to `/completions` and is continued verbatim. All requests and samples of
one `generate` call run concurrently on a thread pool (`concurrency` in flight) over one shared
`httpx.Client`: plain threads keep `generate` safe to call from any thread, an event loop's
worker threads included, where `asyncio.run` would not be.

Where this departs from a local backend, and why:
  * n > 1 is sent once; if a server returns fewer choices (many ignore `n`; some refuse it with
    a 400) the rest go out at once as single requests with seeds `seed + sample_index`, and
    later calls skip straight to single requests.
  * Cancelling needs a stream to close, so `generate` streams (SSE) whenever `on_text` or
    `should_stop` is given; `should_stop` is polled between chunks.
  * Usage: each completion carries its whole prompt's token count, as local backends report it.
    A response's `completion_tokens` is not taken on trust when it has several choices:
    llama-server (8 slots, n=4) counts one choice in it. Each choice is counted here — its
    token ids or logprob entries where the server sent them, else `count_tokens` on its text —
    and a total that adds up over the choices (vLLM's) is split in proportion to those counts;
    one that does not is replaced by them. A server that reports no usage (some, when
    streaming) gets the counts too.
  * Seconds: the server's compute is not visible, so a completion's `seconds` is the wall time
    of the HTTP call that returned it, shared equally among that call's choices. Concurrent
    calls overlap, so a run's `model_seconds` through HTTP can exceed its wall `seconds`.
  * The API returns text, not token ids: `token_ids` stays empty. `stop_string` is known only
    where the server names it (vLLM's `stop_reason`) or the text had to be cut here.
  * Native thinkers: reasoning that a server splits off (`reasoning_content` or `reasoning`
    on a chat message or stream delta) becomes `Completion.reasoning`, and the content, less
    its leading whitespace (as the parsers drop it), its `text`. A server that leaves
    `<think>...</think>` in the content gets it split here when `reasoning_parser` names a
    parser (ponder/core/reasoning.py: deepseek-r1, qwen3, think), for chat requests only: a raw
    prefix may stop or start mid-thought. Without one, and with no reasoning from the server,
    `reasoning` stays None and the text whole. Streaming, `on_text` gets the text as the model
    wrote it: reasoning the server split off comes inside `<think>...</think>` before the
    content, and text this backend splits comes as it arrived.
  * Tools go to the server with a chat request (its template renders them); calls it parsed
    (`tool_calls`) go back into the text in the Hermes form, where core/tool_calls.py reads them.
  * `render_chat` cannot see the remote template: it uses `chat_template` (a jinja2 string),
    else `tokenizer` (a local Hugging Face tokenizer dir; needs transformers), else ChatML.
    `count_tokens` asks the server's tokenizer (`/tokenize` on vLLM, SGLang and llama-server,
    `/extras/tokenize` on llama-cpp-python) and, if none answers, estimates 4 chars per token.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ponder.core.errors import BackendError, ConfigError, ModelNotFound
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.reasoning import PARSERS, ReasoningParser, get_parser
from ponder.core.types import Completion, FinishReason, GenerationRequest, Message, Tool
from ponder.models._openai_wire import (
    Choice,
    HTTPStatus,
    chat_renderer,
    describe,
    parse_json,
    split_usage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_STATUS = {429, 500, 502, 503, 504}
_RETRY_EXC = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
_TOKENIZE_PATHS = ("/tokenize", "/extras/tokenize")  # under the server root, not under /v1
Emit = Callable[[int, int, str], None]


@dataclass(frozen=True)
class _Job:
    """One HTTP call: `n` samples of request `r`, numbered from `first`."""

    r: int
    first: int
    n: int


class OpenAIModel:
    """See the module docstring. `transport` and `backoff` (the first retry's base delay in
    seconds) exist for tests: an httpx MockTransport, and no waiting."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0, max_retries: int = 3, concurrency: int = 16,
                 name: str | None = None, chat_template: str | None = None,
                 tokenizer: str | None = None, reasoning_parser: str | None = None,
                 transport: httpx.BaseTransport | None = None, backoff: float = 0.5) -> None:
        if timeout <= 0:
            raise ConfigError("timeout", timeout, "use a positive number of seconds")
        if max_retries < 0:
            raise ConfigError("max_retries", max_retries, "use 0 (no retries) or more")
        if concurrency < 1:
            raise ConfigError("concurrency", concurrency, "use at least 1 request in flight")
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        key = api_key or os.environ.get("PONDER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {key}"} if key else {},
            # Generations are long; the connect timeout is what notices a dead host quickly.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="ponder-http")
        self._n_supported = True  # until a server returns fewer choices than asked
        self._usage_warned = False  # logged once: the server's usage counts fewer than its choices
        self._tokenize_path: str | None = None
        self._tokenize_probed = False
        self._probe_lock = threading.Lock()  # worker threads count tokens concurrently
        self._render = chat_renderer(chat_template, tokenizer)
        # a raw prefix is rendered with the server's template only where ponder has it;
        # else ChatML is a guess, and the default effort keeps to chat requests
        self.raw_prefix = chat_template is not None or tokenizer is not None
        self.reasoning_parser = get_parser(reasoning_parser) if reasoning_parser else None
        self.model = model or self._served_models(first_only=True)[0]
        self.name = name or self.model

    # ---- the LanguageModel protocol -----------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        abort = threading.Event()  # set when one call failed, so that the others stop early
        emit_lock = threading.Lock()

        def emit(r: int, i: int, delta: str) -> None:
            if on_text is not None and delta:
                with emit_lock:  # one delta at a time, as a local backend would call it
                    on_text(r, i, delta)

        def stop() -> bool:
            return abort.is_set() or (should_stop is not None and should_stop())

        stream = on_text is not None or should_stop is not None
        parts: list[dict[int, list[Completion]]] = [{} for _ in requests]  # first sample -> part
        pending: dict[Future[list[Completion]], _Job] = {}

        def submit(jobs: Iterable[_Job]) -> None:
            for j in jobs:
                pending[self._pool.submit(self._call, requests[j.r], j, stream, emit, stop)] = j

        submit(_Job(r, 0, req.params.n) for r, req in enumerate(requests))
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    part = parts[job.r][job.first] = fut.result()[: job.n]
                    # Short of n: the server ignored it; fetch the rest now, one by one.
                    submit(_Job(job.r, i, 1) for i in range(job.first + len(part),
                                                            job.first + job.n))
        except BaseException:
            abort.set()
            for fut in pending:
                fut.cancel()
            raise
        return [[c for _, part in sorted(p.items()) for c in part] for p in parts]

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        return self._render(messages, add_generation_prompt, tools)

    def count_tokens(self, text: str) -> int:
        with self._probe_lock:  # once: a server without the endpoint stays without it
            if not self._tokenize_probed:
                self._tokenize_path = next(
                    (p for p in _TOKENIZE_PATHS if self._tokenize(p, "x") is not None), None)
                self._tokenize_probed = True
        count = self._tokenize(self._tokenize_path, text) if self._tokenize_path else None
        return count if count is not None else -(-len(text) // 4)  # ~4 chars per token

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> OpenAIModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one HTTP call per job ----------------------------------------------------------

    def _call(self, req: GenerationRequest, job: _Job, stream: bool, emit: Emit,
              stop: Callable[[], bool]) -> list[Completion]:
        """`job.n` completions; fewer (even none) asks `generate` for single requests."""
        if job.n > 1 and not self._n_supported:
            return []
        chat = req.messages is not None
        url = self.base_url + ("/chat/completions" if chat else "/completions")
        body = self._body(req, job, stream)
        choices: dict[int, Choice] = {}
        began = time.perf_counter()

        def send() -> dict[str, Any] | None:  # the usage; None if cancelled before sending
            nonlocal began
            choices.clear()
            if stop():
                return None
            began = time.perf_counter()  # this attempt's: a retry's backoff is no model time
            if stream:
                return self._stream(url, body, chat, job, choices, emit, stop)
            return self._post(url, body, chat, choices)

        try:
            usage = self._retrying(url, send, lambda: any(c.began for c in choices.values()))
        except HTTPStatus as e:
            if e.status == 400 and job.n > 1:  # some servers refuse n > 1 outright
                log.info("%s refused n=%d (%s); sending single requests", url, job.n, e.detail)
                self._n_supported = False
                return []
            raise self._status_error(e) from None
        except _RETRY_EXC as e:
            raise self._transport_error(e, url) from None
        seconds = time.perf_counter() - began
        if usage is None:
            return [Completion("", finish_reason="cancelled") for _ in range(job.n)]
        if len(choices) < job.n and stop():  # cancelled before these choices began
            for k in range(job.n):
                choices.setdefault(k, Choice(finish="cancelled"))
        if not choices:
            raise BackendError(f"{url} returned no choices; is this an OpenAI-compatible server?")
        if len(choices) < job.n:
            log.info("%s returned %d choices for n=%d; sending single requests from now on",
                     url, len(choices), job.n)
            self._n_supported = False
        return self._completions(req, [choices[k] for k in sorted(choices)], usage, seconds)

    def _retrying(self, url: str, send: Callable[[], T], streamed: Callable[[], bool]) -> T:
        """`send()`, retrying connection errors, timeouts, 429 and 5xx up to `max_retries`
        times with exponential backoff and jitter (so that clients do not retry in step); a
        stream that already delivered text is not retried, as its deltas went out."""
        for attempt in range(self.max_retries + 1):
            try:
                return send()
            except HTTPStatus as e:
                if e.status not in _RETRY_STATUS or attempt == self.max_retries:
                    raise
                error, delay = f"{e.status} {e.detail}", e.retry_after
            except _RETRY_EXC as e:
                if attempt == self.max_retries or streamed():
                    raise
                error, delay = describe(e), None
            if delay is None:
                delay = self.backoff * 2**attempt * (1 + random.random())
            # INFO, as openai-python does: a retry is routine, and the last failure is raised.
            log.info("%s: %s; retry %d of %d in %.2fs", url, error, attempt + 1,
                     self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _body(self, req: GenerationRequest, job: _Job, stream: bool) -> dict[str, Any]:
        """The request body in the OpenAI API's field order; extensions last."""
        p, chat = req.params, req.messages is not None
        body: dict[str, Any] = {"model": self.model}
        if chat:
            body["messages"] = [dict(m) for m in req.messages or ()]
        else:
            body["prompt"] = req.prefix
        if p.logprobs is not None:  # chat: a flag plus a count; completions: the count itself
            body.update({"logprobs": True, "top_logprobs": p.logprobs} if chat
                        else {"logprobs": p.logprobs})
        body.update(max_tokens=p.max_tokens, n=job.n)
        if p.seed is not None:
            # distinct, reproducible seeds for single samples and for later sample ranges
            body["seed"] = p.seed + p.first_sample + job.first
        if p.stop:
            body["stop"] = list(p.stop)
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        body.update(temperature=p.temperature, top_p=p.top_p)
        if chat and req.tools:  # the server renders them with its template, parses the calls
            body["tools"] = list(req.tools)
            if req.tool_choice == "required":
                body["tool_choice"] = "required"
            if not req.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        # Extensions that vLLM, SGLang, llama-server and llama-cpp-python accept:
        if p.top_k:
            body["top_k"] = p.top_k
        if p.ignore_eos:
            body["ignore_eos"] = True
        return body

    def _post(self, url: str, body: dict[str, Any], chat: bool,
              choices: dict[int, Choice]) -> dict[str, Any]:
        response = self._client.post(url, json=body)
        if not response.is_success:
            raise HTTPStatus(response)
        data = parse_json(response.text, url)
        for k, choice in enumerate(data.get("choices") or []):
            choices.setdefault(choice.get("index", k), Choice()).absorb(choice, chat)
        return dict(data.get("usage") or {})

    def _stream(self, url: str, body: dict[str, Any], chat: bool, job: _Job,
                choices: dict[int, Choice], emit: Emit, stop: Callable[[], bool]
                ) -> dict[str, Any]:
        """Read server-sent events until [DONE], or until `stop()`: leaving the `with` block
        then closes the connection, which tells the server to stop generating."""
        usage: dict[str, Any] = {}
        with self._client.stream("POST", url, json=body) as response:
            if not response.is_success:
                response.read()
                raise HTTPStatus(response)
            for line in response.iter_lines():
                if stop():
                    for c in choices.values():
                        c.finish = c.finish or "cancelled"
                    break
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = parse_json(payload, url)
                for choice in chunk.get("choices") or []:
                    k = choice.get("index", 0)
                    delta = choices.setdefault(k, Choice()).absorb(choice, chat)
                    emit(job.r, job.first + k, delta)
                usage = chunk.get("usage") or usage  # the last chunk, with include_usage
        return dict(usage)

    def _completions(self, req: GenerationRequest, choices: list[Choice],
                     usage: dict[str, Any], seconds: float) -> list[Completion]:
        texts = [c.generated() for c in choices]
        if "prompt_tokens" in usage:
            prompt_tokens = int(usage["prompt_tokens"])
        else:
            prompt = (req.prefix if req.prefix is not None
                      else self.render_chat(req.messages or (), tools=req.tools))
            prompt_tokens = self.count_tokens(prompt)
        counts = self._completion_tokens(usage.get("completion_tokens"), texts, choices)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        out = []
        for c, text, count in zip(choices, texts, counts, strict=True):
            finish: FinishReason = ("cancelled" if c.finish == "cancelled" else
                                    "length" if c.finish in ("length", "max_tokens") else "stop")
            stop_string = c.stop_reason if c.stop_reason in req.params.stop else None
            for s in req.params.stop:  # a server that ignored `stop`: cut the text here
                if s in text and finish != "cancelled":
                    text, finish, stop_string = text[: text.index(s)], "stop", s
            reasoning, text = self._split(c, req, text)
            out.append(Completion(
                text=text, reasoning=reasoning, finish_reason=finish, prompt_tokens=prompt_tokens,
                completion_tokens=count, cached_tokens=cached, token_logprobs=c.logprobs,
                top_logprobs=c.top if req.params.logprobs else None, stop_string=stop_string,
                seconds=seconds / len(choices)))
        return out

    def _split(self, c: Choice, req: GenerationRequest, text: str) -> tuple[str | None, str]:
        """(reasoning, reply) of a choice's generated `text`: split as the server split it
        (`generated` put its reasoning back in front of the end tag, as R1 writes it), else by
        `reasoning_parser` for a chat; else (None, text)."""
        parser: ReasoningParser | None = (
            PARSERS["deepseek-r1"] if c.reasoning is not None
            else self.reasoning_parser if req.messages is not None else None)
        if parser is None:
            return None, text
        split = parser.split(text)
        return split.reasoning, split.content

    def _completion_tokens(self, total: int | None, texts: list[str], choices: list[Choice]
                           ) -> list[int]:
        """Each choice's completion tokens: the server's `total` for one choice; else the
        choices' own counts (token ids or logprob entries the server sent, else `count_tokens`
        of the text, as the server generated it: before any stop string is cut here), with
        a total that adds up over them split in proportion."""
        if total is not None and len(choices) == 1:
            return [int(total)]
        own = [c.tokens for c in choices]
        counted = [k if k is not None else self.count_tokens(t) if t else 0
                   for k, t in zip(own, texts, strict=True)]
        if total is None or all(k is not None for k in own):
            return counted  # exact, or nothing to check against
        split = split_usage(int(total), counted)
        if split is None and not self._usage_warned:
            self._usage_warned = True
            log.info("%s: usage counts %d completion tokens for %d choices that have %d; "
                     "counting each choice here", self.base_url, total, len(choices),
                     sum(counted))
        return split if split is not None else counted

    # ---- server metadata and errors -----------------------------------------------------

    def _served_models(self, first_only: bool = False) -> list[str]:
        url = self.base_url + "/models"

        def send() -> httpx.Response:
            response = self._client.get(url)
            if not response.is_success:
                raise HTTPStatus(response)
            return response

        try:  # retried too: a server that was just started may still be loading its model
            response = self._retrying(url, send, lambda: False)
        except HTTPStatus as e:
            raise self._status_error(e, check_model=False) from None
        except _RETRY_EXC as e:
            raise self._transport_error(e, url) from None
        ids = [m["id"] for m in parse_json(response.text, url).get("data") or [] if "id" in m]
        if first_only and not ids:
            raise ModelNotFound(f"{url} lists no models; name one after the URL: URL#model")
        return ids

    def _tokenize(self, path: str, text: str) -> int | None:
        """The server's token count for `text`, or None. One body for all servers: each reads
        its own field (vLLM `prompt`, llama-server `content`, llama-cpp-python `input`)."""
        url = self.base_url.removesuffix("/v1") + path
        body = {"model": self.model, "prompt": text, "content": text, "input": text}
        try:
            response = self._client.post(url, json=body)
            data = response.json() if response.is_success else {}
            return int(data["count"]) if "count" in data else len(data["tokens"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _status_error(self, e: HTTPStatus, check_model: bool = True) -> BackendError:
        where = f"{e.status} from {e.url}"
        if e.status in (401, 403):
            return BackendError(f"{where}: set PONDER_API_KEY (or OPENAI_API_KEY) to a valid key")
        if e.status == 404 and check_model:
            try:
                served = self._served_models()
            except BackendError:
                served = []
            if served and self.model not in served:
                return BackendError(f"404 model {self.model!r} not served; served models: "
                                    f"{', '.join(served)}")
            return BackendError(f"{where} ({e.detail}): no such endpoint; check the base URL "
                                "(it usually ends in /v1)")
        if e.status in _RETRY_STATUS:
            return BackendError(f"{where} after {self.max_retries + 1} attempts ({e.detail}); "
                                "the server is overloaded or failing: retry later or lower "
                                "concurrency")
        return BackendError(f"{where}: {e.detail}")

    def _transport_error(self, e: Exception, url: str) -> BackendError:
        if isinstance(e, httpx.TimeoutException):
            return BackendError(f"timed out after {self.timeout:g}s waiting for {url}; raise "
                                "timeout=, or lower max_tokens or concurrency")
        if isinstance(e, httpx.ConnectError):
            return BackendError(f"cannot reach {self.base_url} ({describe(e)}); start the server"
                                " or check the URL")
        return BackendError(f"{url} dropped the connection ({describe(e)}); see the server's log")
