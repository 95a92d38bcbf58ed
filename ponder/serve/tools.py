"""Function calling: OpenAI's `tools` and `tool_choice` on the wire, and the calls a reply makes.

How tools reach the model: `offer()` decides what a request offers (every tool for "auto", the
default, and "required"; the one a `{"type": "function", "function": {"name": ...}}` choice
names; nothing for "none"), and `Offering` wraps the policy so that each chat request it is
asked carries them; the backend renders them through the model's own chat template (Qwen2.5's
puts a `# Tools` section in the system message), or sends them to an upstream server that
renders its own. "required" and a named function are also asked for in the system message:
ponder has no constrained decoding, so a reply that calls nothing comes back as text (an
upstream server is sent `tool_choice: "required"` too, and may enforce it).
`parallel_tool_calls: false` asks for one call at a time, and a reply that makes several
returns only its first (as vLLM and SGLang do).

What comes back (`read_calls`): the chosen chain, once it ended (finish "stop"), read for
Hermes calls (`<tool_call>{"name", "arguments"}</tool_call>`, core/tool_calls.py has the rules,
the one repair and the all-or-nothing policy). With calls, the choice finishes "tool_calls";
the text outside them is read as any reply is (the task's `reply`: the chat task's content, a
native thinker's thinking as reasoning), and its tokens and the calls' count as the content.
Malformed calls leave the reply as it was (text, finish "stop") and say why in `ponder`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ponder.core import tool_calls
from ponder.core.errors import ConfigError
from ponder.core.problem import Problem, Reply
from ponder.core.protocols import LanguageModel, OnText, ShouldStop
from ponder.core.types import Completion, GenerationRequest, Message, Result, Tool
from ponder.core.wrap import Wrapper

log = logging.getLogger("ponder.serve")
NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for a function's name


# ----------------------------------------------------------------------------- the wire


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class FunctionSpec(_Body):
    name: str = Field(pattern=NAME)
    description: str | None = None
    parameters: dict[str, object] | None = Field(
        default=None, description="A JSON schema object; left out: the function takes none.")
    strict: bool | None = None


class ToolSpec(_Body):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


def _choice(choice: object) -> object:
    """One line for any bad choice (pydantic's first error would name one union member)."""
    named = isinstance(choice, dict) and isinstance(choice.get("function"), dict)
    if choice not in ("none", "auto", "required") and not named:
        raise ValueError('use "none", "auto", "required" or {"type": "function", "function": '
                         '{"name": NAME}}')
    return choice


ToolChoice = Annotated[Literal["none", "auto", "required"] | NamedToolChoice,
                       BeforeValidator(_choice)]


class FunctionCall(_Body):
    name: str
    arguments: str = Field(description="The arguments, a JSON object as text.")


class ToolCall(_Body):
    """A call, in a response and in the assistant turn a client sends back."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _omit_none(value: object) -> bool:
    return value is None


class DeltaFunctionCall(BaseModel):
    name: str | None = Field(default=None, exclude_if=_omit_none)
    arguments: str | None = Field(default=None, exclude_if=_omit_none)


class DeltaToolCall(BaseModel):
    """A piece of a streamed call: the first has its id, type and name, the next its
    arguments; `index` tells a choice's calls apart."""

    index: int
    id: str | None = Field(default=None, exclude_if=_omit_none)
    type: Literal["function"] | None = Field(default=None, exclude_if=_omit_none)
    function: DeltaFunctionCall


def deltas(calls: Sequence[ToolCall]) -> list[list[DeltaToolCall]]:
    """A choice's calls as OpenAI streams them: per call, its head, then its arguments."""
    out = []
    for k, call in enumerate(calls):
        out.append([DeltaToolCall(index=k, id=call.id, type="function", function=DeltaFunctionCall(
            name=call.function.name, arguments=""))])
        out.append([DeltaToolCall(index=k, function=DeltaFunctionCall(
            arguments=call.function.arguments))])
    return out


# ----------------------------------------------------------------------------- the offer


@dataclass(frozen=True)
class Offer:
    """What a request offers the model: the tools rendered into its prompt, a line asking for
    a call (for "required", a named function, or one call only), and what an upstream server
    is sent (`GenerationRequest.tool_choice` and `parallel_tool_calls`)."""

    tools: tuple[Tool, ...]
    ask: str | None = None
    tool_choice: Literal["auto", "required"] = "auto"  # "required" too for a named function
    parallel_tool_calls: bool = True  # False: the reply's first call only

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t["function"]["name"] for t in self.tools)


def offer(tools: Sequence[ToolSpec] | None, choice: ToolChoice | None,
          parallel: bool = True) -> Offer | None:
    """The request's offer, or None where nothing is offered (no tools, or "none")."""
    if not tools:
        if choice is not None and choice not in ("none", "auto"):
            raise ConfigError("tool_choice", _choice_text(choice), "give tools to choose from")
        return None
    names = [t.function.name for t in tools]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise ConfigError(f"tools[{k}].function.name", name, "give each tool its own name")
    specs = tuple(t.model_dump(exclude_none=True) for t in tools)
    if choice == "none":
        return None
    if choice is None or choice == "auto":
        offered, call = specs, None
    elif choice == "required":
        offered, call = specs, "Answer with a call to one of the functions offered."
    else:
        name = choice.function.name
        if name not in names:
            raise ConfigError("tool_choice.function.name", name,
                              f"name one of the tools given: {', '.join(names)}")
        offered, call = (specs[names.index(name)],), f"Answer with a call to the function {name}."
    one = None if parallel else "Make at most one function call."
    ask = " ".join(line for line in (call, one) if line) or None
    return Offer(offered, ask, "auto" if call is None else "required", parallel)


def _choice_text(choice: ToolChoice) -> str:
    return choice if isinstance(choice, str) else f"function {choice.function.name}"


class Offering(Wrapper):
    """The policy with the request's tools offered on every chat it is asked (a raw prefix,
    a tree's path, was rendered with them by `render_chat`)."""

    def __init__(self, model: LanguageModel, offer: Offer) -> None:
        super().__init__(model)
        self.offer = offer
        self.tools = offer.tools

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        o = self.offer
        offered = [dataclasses.replace(r, tools=o.tools, tool_choice=o.tool_choice,
                                       parallel_tool_calls=o.parallel_tool_calls)
                   if r.messages is not None else r for r in requests]
        return self.model.generate(offered, on_text=on_text, should_stop=should_stop)

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        return self.model.render_chat(messages, add_generation_prompt=add_generation_prompt,
                                      tools=tools or self.tools)


# ----------------------------------------------------------------------------- the reply


@dataclass(frozen=True)
class Called:
    """A reply that calls tools: the calls, the text outside them shown as content (None if
    none), and how many tokens the content and the calls took."""

    calls: tuple[ToolCall, ...]
    content: str | None
    shown_tokens: int


def read_calls(result: Result, problem: Problem, offer: Offer,
               count_tokens: Callable[[str], int]) -> Called | str | None:
    """The calls the run's chosen chain makes; why they were refused (a string: the reply
    stays text); or None where it makes none or did not end (a budget cut it). Sets the
    result's reasoning and content, and its usage's split between them, as `Run.finish` does
    for any reply."""
    if result.finish_reason != "stop" or not result.trace.chosen:
        return None
    chain = "".join(result.trace.nodes[i].text for i in result.trace.chosen)
    parsed = tool_calls.parse(chain, offer.names)
    if parsed.error is not None:
        log.info("tool calls refused, the reply is returned as text: %s", parsed.error)
        return parsed.error
    if not parsed.calls:
        return None
    kept = parsed.calls if offer.parallel_tool_calls else parsed.calls[:1]
    if len(kept) < len(parsed.calls):
        log.info("parallel_tool_calls is false: %d of the reply's %d calls dropped",
                 len(parsed.calls) - 1, len(parsed.calls))
    reply = problem.reply(parsed.text) if problem.reply else Reply(parsed.text.strip(), "")
    usage = result.usage
    shown = min(usage.completion_tokens, (count_tokens(reply.content) if reply.content else 0)
                + count_tokens(parsed.written))
    usage.content_tokens, usage.reasoning_tokens = shown, usage.completion_tokens - shown
    result.reasoning, result.content = reply.reasoning, reply.content
    calls = tuple(ToolCall(id=f"call_{uuid.uuid4().hex[:24]}",
                           function=FunctionCall(name=c.name, arguments=c.arguments))
                  for c in kept)
    return Called(calls, reply.content or None, shown)
