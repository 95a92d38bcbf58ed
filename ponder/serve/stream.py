"""Streaming: a request's runs as server-sent events in OpenAI's chunk format.

Per choice: a first chunk with the role (and `ponder.trace_id` where the server keeps
traces); then, for a one-chain scheme whose reasoning is
streamed live, `delta.reasoning_content` as it is written, else progress chunks (an empty
delta and `ponder.reasoning_tokens` so far, at most every PROGRESS_SECONDS) while it searches;
once a choice has finished, its reasoning (where not streamed), content, tool calls and finish
reason (`Reply.ending`). Then the usage chunk if asked, and [DONE]. An error after the 200
went out is one `data: {"error": ...}` event, without [DONE].
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ponder.core.protocols import OnText
from ponder.serve.engine import Events
from ponder.serve.errors import error_of
from ponder.serve.protocol import Delta, Params
from ponder.serve.reply import Answer, Reply, usage

PROGRESS_SECONDS = 0.25  # how often a searching scheme reports progress while streaming
# start(on_text): wait for a slot, start every choice's run (`on_text(i)` streams choice i)
Start = Callable[[Callable[[int], OnText | None]], Awaitable[list[asyncio.Task[Answer]]]]


async def stream(params: Params, reply: Reply, start: Start) -> AsyncIterator[str]:
    n = len(params.schemes)
    events = Events()
    tokens, shown = [0] * n, [0] * n

    def on_text(i: int) -> OnText:
        if params.live:
            return lambda _r, _s, delta: events.put(("text", i, delta))

        def count(_r: int, _s: int, _delta: str) -> None:
            tokens[i] += 1  # progress only: a rare lost increment between threads is harmless
        return count

    kept = {"trace_id": reply.trace_id} if reply.trace_id else None
    for i in range(n):  # the first chunks say where the traces are kept, to watch them grow
        yield reply.chunk(i, Delta(role="assistant", content=""), ponder=kept)
    for i, task in enumerate(await start(on_text)):
        task.add_done_callback(partial(_report_done, events, i))
    answers: list[Answer] = []
    while len(answers) < n:
        item = await events.get(PROGRESS_SECONDS)
        if item is None:
            for i in range(n):
                if tokens[i] != shown[i]:
                    shown[i] = tokens[i]
                    yield reply.chunk(i, ponder={"reasoning_tokens": tokens[i]})
            continue
        kind, i, value = item
        if kind == "text":
            yield reply.chunk(i, Delta(reasoning_content=value))
            continue
        failure = RuntimeError("run cancelled") if value.cancelled() else value.exception()
        if failure is not None:
            yield _stream_error(failure)
            return
        answers.append(value.result())
        for line in reply.ending(i, answers[-1]):
            yield line
    if params.include_usage:
        yield reply.chunk(usage=usage(answers))
    yield "data: [DONE]\n\n"


def _report_done(events: Events, i: int, task: asyncio.Task[Answer]) -> None:
    events.put_nowait(("done", i, task))


def _stream_error(exc: BaseException) -> str:
    """An error after the 200 went out: one `data: {"error": ...}` event (as vLLM sends)."""
    _, body = error_of(exc)
    return f"data: {body.model_dump_json()}\n\n"


class EventStream(StreamingResponse):
    """An SSE response that runs `on_close` however it ends: done, failed, or client gone."""

    def __init__(self, body: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]):
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
