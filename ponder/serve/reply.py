"""A request's response objects: the finished choices (`Answer`), the completion, the stream's
chunks, and the usage summed over the choices (docs/serve.md, "Usage, precisely")."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ponder.core.types import Result, Usage
from ponder.serve.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionDetails,
    Delta,
    Params,
    PonderInfo,
    PromptDetails,
    RoleInfo,
    UsageInfo,
)
from ponder.serve.tools import ToolCall, deltas


@dataclass
class Answer:
    """One choice, finished on its worker thread (token counting may block on a backend)."""

    result: Result
    content: str | None  # None: a reply that only calls tools
    content_tokens: int
    stopped: str | None = None  # "max_request_seconds": the deadline ended the run
    tool_calls: tuple[ToolCall, ...] = ()
    tool_error: str | None = None  # why the calls the reply wrote were refused

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else self.result.finish_reason


class Reply:
    """Builds one request's response objects."""

    def __init__(self, model: str, params: Params) -> None:
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        self.model, self.params = model, params
        self.trace_id: str | None = None  # where the traces are kept (--keep-traces)

    def completion(self, answers: list[Answer]) -> ChatCompletion:
        show = self.params.include_reasoning
        choices = [Choice(index=i, finish_reason=a.finish_reason,
                          message=AssistantMessage(content=a.content, reasoning_content=(
                              a.result.reasoning if show and a.result.reasoning else None),
                              tool_calls=list(a.tool_calls) or None))
                   for i, a in enumerate(answers)]
        info = PonderInfo(scheme=self.params.schemes[0].name,
                          answers=[a.result.answer for a in answers],
                          model_calls=sum(a.result.usage.model_calls for a in answers),
                          seconds=round(max(a.result.usage.seconds for a in answers), 4),
                          by_role=by_role(answers),
                          chains_asked=sum(s.config.n for s in self.params.schemes),
                          chains_run=sum(n.terminal for a in answers for n in a.result.trace.nodes),
                          stopped=next((a.stopped for a in answers if a.stopped), None),
                          tool_call_error=next((a.tool_error for a in answers if a.tool_error),
                                               None),
                          trace_id=self.trace_id)
        return ChatCompletion(id=self.id, created=self.created, model=self.model,
                              choices=choices, usage=usage(answers), ponder=info)

    def chunk(self, index: int | None = None, delta: Delta | None = None,
              finish: str | None = None, **extra: Any) -> str:
        choices = [] if index is None else [ChunkChoice(index=index, delta=delta or Delta(),
                                                        finish_reason=finish)]
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                    choices=choices, **extra)
        return f"data: {chunk.model_dump_json()}\n\n"

    def ending(self, index: int, answer: Answer) -> list[str]:
        """A finished choice: its reasoning unless it was streamed live, content, its tool
        calls (each call's head, then its arguments, as OpenAI streams them), finish."""
        out = []
        if self.params.include_reasoning and not self.params.live and answer.result.reasoning:
            out.append(self.chunk(index, Delta(reasoning_content=answer.result.reasoning)))
        if answer.content or not answer.tool_calls:
            out.append(self.chunk(index, Delta(content=answer.content or "")))
        out.extend(self.chunk(index, Delta(tool_calls=piece))
                   for piece in deltas(answer.tool_calls))
        out.append(self.chunk(index, finish=answer.finish_reason))
        return out


def usage(answers: list[Answer]) -> UsageInfo:
    """Summed over choices. reasoning_tokens: every generated token of every run but the
    reply shown (discarded samples included); completion_tokens = reasoning_tokens + the
    content's tokens, each token counted once (a reply the chain wrote is part of what was
    generated; an answer read out of the reasoning is counted on top)."""
    reasoning = sum(a.result.usage.reasoning_tokens for a in answers)
    completion = reasoning + sum(a.content_tokens for a in answers)
    prompt = sum(a.result.usage.prompt_tokens for a in answers)
    return UsageInfo(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        prompt_tokens_details=PromptDetails(
            cached_tokens=sum(a.result.usage.cached_tokens for a in answers)),
        completion_tokens_details=CompletionDetails(reasoning_tokens=reasoning))


def by_role(answers: list[Answer]) -> list[RoleInfo]:
    """Each (role, model)'s cost, summed over the choices."""
    total = Usage()
    for a in answers:
        total += a.result.usage
    return [RoleInfo(role=p.role, model=p.model, prompt_tokens=p.prompt_tokens,
                     completion_tokens=p.completion_tokens, model_calls=p.model_calls,
                     model_seconds=round(p.model_seconds, 4)) for p in total.by_role]
