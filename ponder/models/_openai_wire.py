"""The OpenAI wire format for `OpenAIModel` (openai_http.py): choices as they arrive (whole or
as stream deltas, with the reasoning and tool calls a server split off), error answers, JSON
bodies, a response's token total checked against and split over its choices, and chat
rendering where the server's own template cannot be seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ponder.core.errors import BackendError, ConfigError, ModelNotFound
from ponder.core.reasoning import END, START
from ponder.core.tool_calls import for_template, hermes
from ponder.core.types import Message, Tool

# (messages, add_generation_prompt, tools) -> the prompt text
Renderer = Callable[[Sequence[Message], bool, Sequence[Tool]], str]


class HTTPStatus(Exception):
    """A non-2xx answer, carried to the retry loop."""

    def __init__(self, response: httpx.Response) -> None:
        self.status, self.url = response.status_code, str(response.request.url)
        try:
            body = response.json()
            err = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
            detail = err.get("message", err) if isinstance(err, dict) else err
        except (ValueError, UnicodeDecodeError):
            detail = response.text
        self.detail = " ".join(str(detail).split())[:300] or response.reason_phrase
        after = response.headers.get("retry-after", "")  # seconds; the date form is ignored
        self.retry_after = min(float(after), 60.0) if after.replace(".", "", 1).isdigit() else None
        super().__init__(f"{self.status} from {self.url}: {self.detail}")


@dataclass
class Choice:
    """One choice as it arrives, whole or in stream chunks.

    A chat choice's reasoning, where the server split it off (`message.reasoning_content`:
    vLLM, SGLang, llama-server, DeepSeek's API; `message.reasoning`: Ollama, newer vLLM; the
    same names on stream deltas), is kept apart from its content in `reasoning`. Tool calls a
    server parsed (`message.tool_calls`, or its stream deltas by index) go back into the text
    after the content, as the model wrote them (core/tool_calls.py reads them there)."""

    text: list[str] = field(default_factory=list)  # the content (chat) or text (completions)
    reasoning: list[str] | None = None  # None: the server split no reasoning off
    finish: str | None = None
    stop_reason: Any = None  # vLLM names the stop string that matched
    logprobs: list[float] | None = None
    top: list[dict[str, float]] | None = None
    token_ids: list[int] | None = None  # vLLM sends them when asked (`return_token_ids`)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [name, arguments]

    @property
    def tokens(self) -> int | None:
        """Its own token count where the server sent its tokens (ids, or one logprob entry
        per token), else None."""
        own = self.token_ids if self.token_ids is not None else self.logprobs
        return None if own is None else len(own)

    @property
    def began(self) -> bool:
        """Some text or reasoning has arrived."""
        return any(self.text) or any(self.reasoning or ())

    def generated(self) -> str:
        """The text as the model wrote it, as near as can be told: reasoning the server split
        off goes back before the content, with the end tag between where content followed,
        and its tool calls after the content."""
        text = "".join(self.text) + self.called()
        if self.reasoning is None:
            return text
        return "".join(self.reasoning) + (END if text else "") + text

    def absorb(self, choice: dict[str, Any], chat: bool) -> str:
        """Add one choice object or stream delta; return what `on_text` is shown of it: its
        content, and reasoning the server split off shown inside `<think>...</think>` before
        the content, as the model wrote it."""
        message = choice.get("message") or choice.get("delta") or {}
        text = (message.get("content") if chat else choice.get("text")) or ""
        said = split_off(message) if chat else None
        opens = said is not None and self.reasoning is None
        if said is not None:
            self.reasoning = [*(self.reasoning or []), said]
        closes = bool(text) and self.reasoning is not None and not any(self.text)
        shown = (START if opens else "") + (said or "") + (END if closes else "") + text
        self.text.append(text)
        self._add_calls(message.get("tool_calls") if chat else None)
        if choice.get("finish_reason") and self.calls:
            shown += self.called()  # the calls are whole only once the choice has finished
        self.finish = choice.get("finish_reason") or self.finish
        self.stop_reason = choice.get("stop_reason", self.stop_reason)
        ids = choice.get("token_ids")
        if isinstance(ids, list):
            self.token_ids = (self.token_ids or []) + ids
        lp = choice.get("logprobs")
        if lp:
            self.logprobs, self.top = self.logprobs or [], self.top or []
            if chat:  # {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}
                for t in lp.get("content") or []:
                    self.logprobs.append(t["logprob"])
                    self.top.append({a["token"]: a["logprob"] for a in t.get("top_logprobs") or []})
            else:  # {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: lp}]}
                self.logprobs.extend(lp.get("token_logprobs") or [])
                self.top.extend(dict(t or {}) for t in lp.get("top_logprobs") or [])
        return shown

    def _add_calls(self, calls: Any) -> None:
        """A message's tool calls, or a stream delta's pieces of them (arguments in parts)."""
        for k, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            name, arguments = function.get("name"), function.get("arguments")
            entry = self.calls.setdefault(call.get("index", k), ["", ""])
            entry[0] += name if isinstance(name, str) else ""
            entry[1] += (arguments if isinstance(arguments, str)  # Ollama sends an object
                         else json.dumps(arguments) if isinstance(arguments, dict) else "")

    def called(self) -> str:
        """The calls in the Hermes form, each on its own line after the content."""
        return "".join("\n" + hermes(*self.calls[k]) for k in sorted(self.calls))


def split_off(message: dict[str, Any]) -> str | None:
    """The reasoning a server split off a chat message or delta, if it did."""
    said = message.get("reasoning_content")
    said = said if isinstance(said, str) else message.get("reasoning")
    return said if isinstance(said, str) else None


def describe(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return "connection refused" if "refused" in text.lower() else " ".join(text.split())


def parse_json(text: str, url: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise BackendError(f"{url} sent invalid JSON ({text[:80]!r}); is this an "
                           "OpenAI-compatible server?") from None
    if not isinstance(data, dict):
        return {}
    if "error" in data and "choices" not in data:  # vLLM reports errors inside a stream
        err = data["error"]
        detail = " ".join(str(err.get("message", err) if isinstance(err, dict) else err).split())
        raise BackendError(f"{url} reported an error: {detail[:300]}")
    return data


def split_usage(total: int, counted: Sequence[int]) -> list[int] | None:
    """A response's completion-token `total` spread over its choices in proportion to their
    `counted` tokens (largest remainders first, so the parts add up to `total`) — or None where
    the total does not add up over the choices: it is nearer one choice's count than their sum,
    as llama-server's is for n > 1 (its usage counts one of the n choices). `counted` may be
    estimates (a re-tokenized text, 4 characters a token), hence nearest rather than equal."""
    if abs(total - sum(counted)) > min(abs(total - c) for c in counted):
        return None
    weights = counted if sum(counted) > 0 else [1] * len(counted)
    shares = [total * w / sum(weights) for w in weights]
    parts = [int(s) for s in shares]
    for k in sorted(range(len(parts)), key=lambda k: parts[k] - shares[k])[: total - sum(parts)]:
        parts[k] += 1
    return parts


def chat_renderer(template: str | None, tokenizer: str | None) -> Renderer:
    if template is not None:
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as e:
            raise ModelNotFound("chat_template= needs jinja2; run: pip install jinja2") from e

        def raise_exception(message: str) -> None:  # Hugging Face templates call this
            raise ConfigError("messages", message, "the chat template rejects these messages")

        # The environment Hugging Face's apply_chat_template uses, so templates behave alike.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        compiled = env.from_string(template)
        return lambda messages, gen, tools: compiled.render(
            messages=for_template(messages), tools=list(tools) or None,
            add_generation_prompt=gen, bos_token="", eos_token="")
    if tokenizer is not None:
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise ModelNotFound("tokenizer= needs transformers: pip install transformers") from e
        tok = AutoTokenizer.from_pretrained(tokenizer)
        return lambda messages, gen, tools: str(tok.apply_chat_template(
            for_template(messages), tools=list(tools) or None, tokenize=False,
            add_generation_prompt=gen))
    return chatml


def chatml(messages: Iterable[Message], add_generation_prompt: bool,
           tools: Sequence[Tool] = ()) -> str:
    """ChatML, the template of Qwen, SmolLM2 and many others: the likeliest guess. It has no
    place for tools: give `chat_template=` or `tokenizer=` to render them."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
