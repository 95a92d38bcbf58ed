"""The HTTP layer: routes and streaming. A thin protocol layer over `Scheme.__call__`:
everything about thinking is decided in protocol.to_params() and the schemes.

  POST /v1/chat/completions   a request's n choices = n independent scheme runs
  GET  /v1/models[/NAME]      the models this server hosts, by name
  GET  /health                liveness; with the API key (or none set) also the served models
                              and the run counters (active runs, queue, cancelled)
  GET  /v1/traces[/ID], /view/ID   with --keep-traces N, the last N requests' traces, as JSON
                              and drawn, growing while they run (traces.py)

Everything a request can name was resolved at startup: models and trained scorers are named by
what the server was started with, never by a path or a hub id, and each request's work is
capped (`Limits`). A request waiting in the queue whose client leaves gives its place back.

The response objects are built in reply.py, the stream in stream.py, and function calling
(what a request's tools offer the model, the calls its reply makes) in tools.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel, OnText, Scorer
from ponder.core.types import POLICY, ROLES
from ponder.schemes import Scheme
from ponder.schemes.effort import EFFORTS, Effort, table_for
from ponder.serve.engine import Engine, Ticket
from ponder.serve.errors import HANDLERS, APIError
from ponder.serve.protocol import (
    SEED_MAX,
    SEED_MIN,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ErrorResponse,
    Limits,
    ModelCard,
    ModelList,
    Params,
)
from ponder.serve.reply import Answer, Reply
from ponder.serve.stream import EventStream, stream
from ponder.serve.tools import Called, Offering, read_calls
from ponder.serve.traces import Kept, KeptTraces
from ponder.serve.traces import add_routes as add_trace_routes

# One server-sent event of a stream, as OpenAPI before 3.2 describes an event: its `data` is a
# chunk, an error, or the closing [DONE].
EVENT: dict[str, Any] = {"type": "object", "required": ["data"], "properties": {"data": {
    "anyOf": [{"type": "string", "const": "[DONE]"},
              {"type": "string", "contentMediaType": "application/json", "contentSchema": {
                  "anyOf": [{"$ref": "#/components/schemas/ChatCompletionChunk"},
                            {"$ref": "#/components/schemas/ErrorResponse"}]}}]}}}


@dataclass
class Server:
    models: Mapping[str, LanguageModel]
    problem_for: Callable[[str], Problem]
    efforts: Mapping[str, Effort]
    engine: Engine
    api_key: str | None
    started: int
    scorers: Mapping[str, Scorer]
    limits: Limits
    kept: KeptTraces | None = None  # --keep-traces N: the last N requests' traces
    roles: Mapping[str, str] = dataclasses.field(default_factory=dict)  # --role ROLE=NAME


def create_app(models: Mapping[str, LanguageModel], problem_for: Callable[[str], Problem], *,
               efforts: Mapping[str, Effort] = EFFORTS, api_key: str | None = None,
               max_concurrency: int = 8, max_queue: int = 64,
               scorers: Mapping[str, Scorer] | None = None,
               limits: Limits | None = None, keep_traces: int = 0,
               roles: Mapping[str, str] | None = None) -> FastAPI:
    """The app, serving `models` by name; `problem_for(question)` is the task's prompt;
    `scorers` are trained scorers loaded at startup, named as a scheme's `scorer=` names them;
    `limits` caps each request's work; `keep_traces` requests' traces are kept (traces.py);
    `roles` names the served model a scheme's role gets where a request names none."""
    scorers = dict(scorers or {})
    limits = dataclasses.replace(limits or Limits(), scorers=tuple(scorers))
    server = Server(dict(models), problem_for, dict(efforts),
                    Engine(max_concurrency, max_queue), api_key, int(time.time()), scorers,
                    limits, KeptTraces(keep_traces) if keep_traces > 0 else None,
                    dict(roles or {}))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.engine.open()
        yield
        server.engine.close()

    app = FastAPI(title="ponder", summary="An OpenAI-compatible reasoning server.",
                  version="0.1.0", lifespan=lifespan)
    app.state.server = server
    app.openapi = partial(_openapi, app, list(server.models))  # type: ignore[method-assign]
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)

    def authorized(request: Request) -> bool:
        """No key set, or `Authorization: Bearer KEY` with the key (the scheme's case is
        free, RFC 7235; a bare key is no credential)."""
        if server.api_key is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            given.strip().encode(), server.api_key.encode())

    def check_key(request: Request) -> None:
        if not authorized(request):
            raise APIError(401, "invalid or missing API key; send Authorization: Bearer KEY",
                           code="invalid_api_key")

    errors: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse} for s in (400, 401, 404, 500, 502, 503)}

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness for anyone; what is served and running only for who holds the key."""
        if not authorized(request):
            return {"status": "ok"}
        return {"status": "ok", "models": list(server.models), **server.engine.stats.to_dict()}

    @app.get("/v1/models", response_model=ModelList, responses=errors,
             dependencies=[Depends(check_key)])
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=name, created=server.started)
                               for name in server.models])

    @app.get("/v1/models/{name:path}", response_model=ModelCard, responses=errors,
             dependencies=[Depends(check_key)])
    async def get_model(name: str) -> ModelCard:
        if name not in server.models:
            raise APIError(404, f"model {name!r} is not served here", param="model",
                           code="model_not_found")
        return ModelCard(id=name, created=server.started)

    @app.post("/v1/chat/completions", response_model=ChatCompletion,
              responses={**errors, 200: {"content": {"text/event-stream": {"schema": EVENT}},
                  "description": "The completion; with `stream: true`, server-sent events: "
                  "ChatCompletionChunk objects, then `data: [DONE]` (an error after the "
                  "start: one ErrorResponse event)."}},
              dependencies=[Depends(check_key)])
    async def chat(body: ChatRequest, request: Request) -> Any:
        model = server.models.get(body.model)
        if model is None:
            raise APIError(404, f"model {body.model!r} is not served here; this server has "
                           f"{', '.join(server.models)}", param="model", code="model_not_found")
        params = body.to_params(table_for(model, server.efforts), server.problem_for,
                                server.limits)
        asks = params.schemes[0].entry.roles  # the server's roles, where the scheme asks them
        given = {r: name for r, name in server.roles.items() if r in asks}
        roles = _roles(given | body.ponder.roles, server.models)
        params.schemes[0].check_roles(roles)
        reply = Reply(body.model, params)
        ticket = server.engine.admit()  # or 503
        kept = None if server.kept is None else server.kept.open(
            reply.id, body.model, params.schemes[0].name, params.problem.question,
            len(params.schemes))
        reply.trace_id = None if kept is None else kept.id
        call = Call(params, model, roles, server, ticket, kept)
        if params.stream:
            return EventStream(stream(params, reply, call.start), on_close=call.close)
        try:
            answers = await _until_done_or_gone(call, request)
        finally:
            await call.close()
        if answers is None:  # the client left; nobody reads this
            return JSONResponse({}, status_code=499)
        return JSONResponse(reply.completion(answers).model_dump(mode="json"))

    add_trace_routes(app, server.kept, authorized, server.api_key, errors)
    return app


def _openapi(app: FastAPI, served: list[str]) -> dict[str, Any]:
    """FastAPI's document, made to say what this server does: no 422 (it answers 400), the
    served model names as `model`'s enum, the seed's 64-bit bounds as integers, and the
    streamed chunk's schema (the 200's text/event-stream)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    for path in schema["paths"].values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    request = components["ChatRequest"]["properties"]
    request["model"]["enum"] = served
    roles = components["PonderOptions"]["properties"]["roles"]
    roles["propertyNames"] = {"enum": [r for r in ROLES if r != POLICY]}
    roles["additionalProperties"] = {"type": "string", "enum": served}
    request["seed"]["anyOf"][0].update(minimum=SEED_MIN, maximum=SEED_MAX)
    chunk = ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(chunk.pop("$defs", {}))
    components["ChatCompletionChunk"] = chunk
    app.openapi_schema = schema
    return schema


# --------------------------------------------------------------------------- running a call


def _roles(names: Mapping[str, str], served: Mapping[str, LanguageModel]
           ) -> dict[str, LanguageModel]:
    """The served models a request names for its scheme's roles (the names it was started
    with; never a path or a hub id)."""
    for role, name in names.items():
        if name not in served:
            raise ConfigError(f"ponder.roles.{role}", name,
                              f"name a model this server hosts: {', '.join(served)}")
    return {role: served[name] for role, name in names.items()}


class Call:
    """One request in flight: its place in the queue, its runs, their stop flag, and the
    deadline its runs stop at (`Limits.max_seconds` from when it got a slot)."""

    def __init__(self, params: Params, model: LanguageModel, roles: Mapping[str, LanguageModel],
                 server: Server, ticket: Ticket, kept: Kept | None = None):
        self.params, self.roles, self.ticket, self.kept = params, roles, ticket, kept
        # the policy with the request's tools offered (the other roles' models see none)
        self.model = model if params.offer is None else Offering(model, params.offer)
        self.engine, self.scorers, self.limits = server.engine, server.scorers, server.limits
        self.stop = threading.Event()
        self.deadline = math.inf
        self.tasks: list[asyncio.Task[Answer]] = []

    async def start(self, on_text: Callable[[int], OnText | None]) -> list[asyncio.Task[Answer]]:
        """Wait for a slot, then start every choice's run; `on_text(i)` streams choice i."""
        await self.ticket.acquire()
        self.deadline = time.monotonic() + self.limits.max_seconds
        self.tasks = [asyncio.create_task(self.engine.run(
            partial(self._answer, scheme, on_text(i), i), self.stop))
            for i, scheme in enumerate(self.params.schemes)]
        return self.tasks

    def _answer(self, scheme: Scheme, on_text: OnText | None, index: int) -> Answer:
        """One choice's run, on a worker thread. A run stopped by the deadline ends as a
        budget does: finish reason "length", with the answer it had."""
        kept = None if self.kept is None else self.kept.traces[index]  # read as it grows
        result = scheme(self.params.problem, model=self.model, roles=self.roles,
                        scorers=self.scorers, on_text=on_text, should_stop=self._should_stop,
                        trace=kept)
        if self.kept is not None:
            self.kept.traces[index] = result.trace
        stopped = None
        if self.expired and not self.stop.is_set() and result.finish_reason == "cancelled":
            result.finish_reason, stopped = "length", "max_request_seconds"
        offer = self.params.offer
        called = None if offer is None else read_calls(result, self.params.problem, offer,
                                                         self.model.count_tokens)
        if isinstance(called, Called):
            content = self.params.cut(called.content) if called.content else None
            return Answer(result, content, called.shown_tokens, stopped, called.calls)
        content = self.params.cut(result.content)
        counted = result.usage.content_tokens or (  # a generated reply: counted once already
            self.model.count_tokens(content) if content else 0)
        return Answer(result, content, counted, stopped, tool_error=called)

    def _should_stop(self) -> bool:
        return self.stop.is_set() or self.expired

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    async def close(self) -> None:
        """However the request ended: stop its runs, wait for them, free the slot. The slot
        is freed even if this wait is itself cancelled (a server shutting down mid-request):
        a slot never leaks."""
        self.stop.set()
        try:
            if self.tasks:
                await asyncio.wait(self.tasks)
                for task in self.tasks:  # retrieved: a stopped run's error has nobody to go to
                    if not task.cancelled():
                        task.exception()
        finally:
            self.ticket.release()
            if self.kept is not None:
                self.kept.status = _status(self.tasks)


def _status(tasks: list[asyncio.Task[Answer]]) -> str:
    """A kept request's end: "done", or "stopped" (cancelled, failed, never started)."""
    ended = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is None]
    if not tasks or len(ended) < len(tasks):
        return "stopped"
    return ("stopped" if any(t.result().result.finish_reason == "cancelled" for t in ended)
            else "done")


async def _until_done_or_gone(call: Call, request: Request) -> list[Answer] | None:
    """The answers, or None if the client disconnected first: while it waited for a slot (its
    place in the queue is given back) or while its runs ran (they are stopped)."""
    gone: asyncio.Future[Any] = asyncio.create_task(_disconnected(request.receive))
    started = asyncio.create_task(call.start(lambda i: None))
    try:
        await asyncio.wait([started, gone], return_when=asyncio.FIRST_COMPLETED)
        if not started.done():  # left while queued: `call.close` frees the place
            started.cancel()
            await asyncio.wait([started])
            return None
        runs: asyncio.Future[Any] = asyncio.gather(*call.tasks)
        await asyncio.wait([runs, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not runs.done():
        call.stop.set()
        await asyncio.wait([runs])
        runs.exception()  # retrieved: a cancelled run's error has nobody to go to
        return None
    return runs.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
