"""The wire protocol: OpenAI's chat-completions request and response, and `to_params()`.

Fields follow OpenAI's order (after vLLM's `protocol.py`); ponder's own settings are grouped in
one `ponder` object at the end of the request, so they never collide with a future OpenAI
field and a client passes them as `extra_body={"ponder": {...}}`. Unknown fields are ignored,
as OpenAI does.

`ChatRequest.to_params()` is the one place a request becomes what a run needs: the scheme of
each choice (with its config), the problem, and the response options.

Departures from OpenAI, all documented in docs/serve.md:
  * `max_completion_tokens` (or the older `max_tokens`) is the token budget of the whole
    scheme run, reasoning included, and also caps each chain.
  * `stop` is applied to the returned content; it does not cut the chain of thought.
  * earlier turns' `reasoning_content` / `reasoning` are accepted and dropped before prompting.
  * with tools offered, the scheme is `cot` unless `ponder.scheme` names another (a call is
    one chain's act); function calling is in tools.py.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ponder.core.errors import ConfigError, UnknownName
from ponder.core.problem import Problem
from ponder.core.types import Message
from ponder.schemes import SCHEMES, Scheme, get_scheme, parse_spec
from ponder.schemes.effort import Effort
from ponder.scorers import SCORERS
from ponder.serve.messages import ROLE_TAGS as ROLE_TAGS  # re-exported: where it always was
from ponder.serve.messages import ChatMessage, called_functions
from ponder.serve.tools import DeltaToolCall, Offer, ToolCall, ToolChoice, ToolSpec, offer

EffortLevel = Literal["none", "minimal", "low", "medium", "high", "xhigh", "auto"]
EFFORT_LEVELS: tuple[str, ...] = typing.get_args(EffortLevel)
DEFAULT_EFFORT = "low"
MAX_CHOICES = 16  # n independent scheme runs per request
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # a 64-bit seed, as vLLM takes


# ----------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server, set at startup (`ponder serve --max-request-*`)
    so that no request monopolises the machine, and what it may name: scorers are those the
    server loaded (`--scorer NAME=prm:PATH`) or need no file; never a path or a hub id."""

    max_chains: int = 64  # chains over all choices: n x the scheme's n
    max_tokens: int = 65_536  # completion tokens the runs may spend, over all choices
    max_seconds: float = 600.0  # wall seconds; then the runs stop and answer with what they have
    scorers: tuple[str, ...] = ()  # names of the scorers the server loaded

    def allowed_scorers(self, scheme: Scheme) -> list[str]:
        return [*SCORERS, *scheme.entry.own_scorers, *self.scorers]


# ----------------------------------------------------------------------------- request


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class StreamOptions(_Body):
    include_usage: bool = False


class PonderOptions(_Body):
    """ponder's extensions. `scheme` overrides the effort's scheme (`name@N` sets N);
    `scheme_args` sets that scheme's config fields (`ponder schemes` lists them); `roles`
    names a served model for each role the scheme asks besides the policy (the request's
    `model`), e.g. `{"judge": "big"}`."""

    scheme: str | None = Field(default=None, examples=["self-consistency@8"])
    scheme_args: dict[str, Any] = Field(default_factory=dict)
    roles: dict[str, str] = Field(default_factory=dict)
    include_reasoning: bool = True


class ChatRequest(_Body):
    """Numbers are strict: `true` is no count of tokens, `"2"` no number of choices."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(description="A model this server hosts (GET /v1/models).")
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, gt=0, le=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, strict=True,
                                   description="The older name of max_completion_tokens.")
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX, strict=True)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = Field(
        default=None, description='"auto" (the default with tools), "none", "required", or '
        '{"type": "function", "function": {"name": ...}}.')
    parallel_tool_calls: bool = Field(default=True, strict=True, description=(
        "false: at most one call a reply (asked for, and only the first returned)."))
    reasoning_effort: EffortLevel | None = None
    # --- ponder extensions ---
    ponder: PonderOptions = Field(default_factory=lambda: PonderOptions())

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 non-empty stop strings")
        return stop

    def to_params(self, efforts: Mapping[str, Effort], problem_for: Callable[[str], Problem],
                  limits: Limits = Limits()) -> Params:
        """The schemes (one per choice), the problem and the response options; a request
        over one of `limits`, or naming a scorer the server did not load, is a ConfigError."""
        offered = offer(self.tools, self.tool_choice, self.parallel_tool_calls)
        scheme = self._scheme(efforts, tools=offered is not None)
        self._check(scheme, limits)
        seed = scheme.config.seed
        if seed is not None:  # n independent runs: choice i gets seed + i
            schemes = [_with(scheme, seed=(seed + i) % 2**31) for i in range(self.n)]
        else:
            schemes = [scheme] * self.n
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return Params(
            schemes=schemes, problem=self._problem(problem_for, offered), stop=stops,
            include_reasoning=self.ponder.include_reasoning, stream=self.stream,
            include_usage=bool(self.stream_options and self.stream_options.include_usage),
            offer=offered)

    def _scheme(self, efforts: Mapping[str, Effort], tools: bool = False) -> Scheme:
        level = efforts[self.reasoning_effort or DEFAULT_EFFORT]
        spec, settings = level.scheme, dict(level.settings)
        if self.ponder.scheme is not None or tools:
            # a named scheme, or cot where tools are offered (a call is one chain's act),
            # keeps only the effort's chain length
            spec = self.ponder.scheme or "cot"
            settings = {k: v for k, v in settings.items() if k == "max_tokens"}
        asked = dict(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        settings.update({k: v for k, v in asked.items() if v is not None})  # else the effort's
        settings.update(self.ponder.scheme_args)
        in_spec: dict[str, Any] = {}
        try:
            name, _, in_spec = parse_spec(spec)
            check_types(name, {**settings, **in_spec})
            scheme = get_scheme(spec, **settings)
        except UnknownName as e:
            raise ConfigError("ponder.scheme", spec, f"use one of {', '.join(e.valid)}") from None
        except ConfigError as e:  # name the request field the bad value came from
            raise ConfigError(self._where(e.param, in_spec), e.value, e.fix) from None
        budget = self.max_completion_tokens or self.max_tokens
        if budget is not None:
            own = scheme.config.token_budget
            scheme = _with(scheme, max_tokens=min(scheme.config.max_tokens, budget),
                           token_budget=budget if own is None else min(own, budget))
        return scheme

    def _check(self, scheme: Scheme, limits: Limits) -> None:
        name = scheme.scorer_name
        if name is not None and name not in limits.allowed_scorers(scheme):
            in_spec = parse_spec(self.ponder.scheme or "")[2] if self.ponder.scheme else {}
            raise ConfigError(self._where("scorer", in_spec), name, "name a scorer this server "
                              f"has: {', '.join(limits.allowed_scorers(scheme))} (a trained "
                              "one is loaded at startup: ponder serve --scorer NAME=prm:PATH)")
        chains = self.n * scheme.config.n
        if chains > limits.max_chains:
            raise ConfigError("max_request_chains", chains, f"this request asks for {self.n} x "
                              f"{scheme.config.n} chains; the server allows {limits.max_chains} "
                              "(ponder serve --max-request-chains); ask for fewer")
        config = scheme.config
        tokens = self.n * (config.token_budget or config.n * config.max_tokens)
        if tokens > limits.max_tokens:
            raise ConfigError("max_request_tokens", tokens, f"this request may spend {tokens} "
                              f"completion tokens; the server allows {limits.max_tokens} "
                              "(ponder serve --max-request-tokens); lower n, the scheme's N, "
                              "or max_completion_tokens")

    def _where(self, key: str, in_spec: Mapping[str, Any]) -> str:
        """The request field that set scheme setting `key` (a spec's settings win)."""
        if key in in_spec or key == "scheme":
            return "ponder.scheme"
        if key in self.ponder.scheme_args:
            return f"ponder.scheme_args.{key}"
        return "ponder.scheme" if key == "n" else key  # n: from name@N

    def _problem(self, problem_for: Callable[[str], Problem], offered: Offer | None) -> Problem:
        """The task's rendering of the last user message, after the earlier turns and before
        the tool calls and results that followed it (the turn a client sends tool results in)."""
        called = called_functions(self.messages)
        users = [k for k, m in enumerate(self.messages) if m.role == "user"]
        if self.messages[-1].role not in ("user", "tool") or not users:
            raise ConfigError("messages", self.messages[-1].role, "end the conversation with a "
                              "user message, or with the results of the tools it called")
        k = users[-1]
        if not self.messages[k].text().strip():
            raise ConfigError(f"messages[{k}].content", self.messages[k].content, "ask something")
        problem = problem_for(self.messages[k].text())
        told = ("system", "developer")
        system = [m.text() for m in self.messages if m.role in told]
        system += [m["content"] for m in problem.messages if m["role"] == "system"]
        system += [offered.ask] if offered is not None and offered.ask else []
        # each turn as a template renders it: earlier reasoning is dropped here
        history = [m.message(called) for m in self.messages[:k] if m.role not in told]
        after = [m.message(called) for m in self.messages[k + 1:] if m.role not in told]
        head: list[Message] = [{"role": "system", "content": "\n\n".join(system)}] if system else []
        asked = [m for m in problem.messages if m["role"] != "system"]
        return dataclasses.replace(problem, messages=(*head, *history, *asked, *after))


def _with(scheme: Scheme, **changes: Any) -> Scheme:
    return dataclasses.replace(scheme, config=dataclasses.replace(scheme.config, **changes))


def check_types(name: str, settings: Mapping[str, Any]) -> None:
    """Check settings against scheme `name`'s config field types, so that `max_tokens=0.5`
    is a ConfigError naming the key rather than a TypeError deep inside a run. Unknown
    names and keys are left to get_scheme, whose errors list the valid ones."""
    if name not in SCHEMES:
        return
    hints = typing.get_type_hints(SCHEMES[name].config)
    for key, value in settings.items():
        if key in hints and value is not None:
            try:
                _adapter(hints[key]).validate_python(value, strict=True)
            except ValidationError as e:
                raise ConfigError(key, value, f"setting {key}: {e.errors()[0]['msg'].lower()}"
                                  ) from None


@functools.cache
def _adapter(hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(hint)


@dataclass(frozen=True)
class Params:
    schemes: list[Scheme]  # one per choice
    problem: Problem
    stop: tuple[str, ...]
    include_reasoning: bool
    stream: bool
    include_usage: bool
    offer: Offer | None = None  # the tools offered the model; None: none

    @property
    def live(self) -> bool:
        """Stream reasoning as it is generated (one chain) rather than after selection. Not
        where the chain is read as a reply (the chat task) or for calls: which part of it is
        the reply, or a call, is known only once it has ended, and no token is sent twice."""
        return (self.include_reasoning and self.schemes[0].entry.streams
                and self.problem.reply is None and self.offer is None)

    def cut(self, content: str) -> str:
        """OpenAI's `stop`, applied to the answer shown."""
        ends = [k for k in (content.find(s) for s in self.stop) if k >= 0]
        return content[: min(ends)] if ends else content


# ----------------------------------------------------------------------------- response


def _omit_none(value: object) -> bool:
    return value is None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = Field(default=None, exclude_if=_omit_none)
    tool_calls: list[ToolCall] | None = Field(default=None, exclude_if=_omit_none)


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class PromptDetails(BaseModel):
    cached_tokens: int = 0


class CompletionDetails(BaseModel):
    reasoning_tokens: int = 0


class UsageInfo(BaseModel):
    """`completion_tokens = reasoning_tokens + content tokens` (see docs/serve.md)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptDetails = Field(default_factory=PromptDetails)
    completion_tokens_details: CompletionDetails = Field(default_factory=CompletionDetails)


class RoleInfo(BaseModel):
    """What one served model cost in one role, summed over the choices."""

    role: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    model_calls: int
    model_seconds: float


class PonderInfo(BaseModel):
    """ponder's extension to a response: what the runs did, one entry per choice."""

    scheme: str
    answers: list[str | None]
    model_calls: int
    seconds: float
    by_role: list[RoleInfo] = Field(default_factory=list)
    # chains the schemes asked for (n x the scheme's N) and the chains they ran to an end (a
    # tree's completed paths): fewer where max_completion_tokens could not pay for them all,
    # or an adaptive scheme stopped early
    chains_asked: int = 0
    chains_run: int = 0
    # why the runs stopped before they were done: "max_request_seconds" (the server's cap)
    stopped: str | None = Field(default=None, exclude_if=_omit_none)
    # why the tool calls a reply wrote were refused (it is returned as text)
    tool_call_error: str | None = Field(default=None, exclude_if=_omit_none)
    # with `ponder serve --keep-traces N`: where this request's traces are kept, as JSON at
    # /v1/traces/{trace_id} and drawn at /view/{trace_id}
    trace_id: str | None = Field(default=None, exclude_if=_omit_none)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageInfo
    ponder: PonderInfo | None = Field(default=None, exclude_if=_omit_none)


class Delta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, exclude_if=_omit_none)
    content: str | None = Field(default=None, exclude_if=_omit_none)
    reasoning_content: str | None = Field(default=None, exclude_if=_omit_none)
    tool_calls: list[DeltaToolCall] | None = Field(default=None, exclude_if=_omit_none)


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = Field(default=None, exclude_if=_omit_none)
    # while a multi-sample scheme searches: {"choice": i, "reasoning_tokens": k}; on the first
    # chunks, where the server keeps traces: {"trace_id": id}
    ponder: dict[str, Any] | None = Field(default=None, exclude_if=_omit_none)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ponder"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
