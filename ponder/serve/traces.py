"""Kept traces: `ponder serve --keep-traces N` keeps the last N requests' traces, to read or
watch while their search runs.

  GET /v1/traces          the kept requests, newest first: id, model, scheme, status, nodes
  GET /v1/traces/{id}     one request's traces (one per choice) as JSON; it grows while the
                          request runs (`status`: running, then done or stopped)
  GET /view/{id}          the page that draws them (ponder/view), polling the JSON while the
                          search runs

The id is the completion's `id`, given in the response's `ponder.trace_id` (a stream's first
chunks carry it, so a client can open the page while it waits). All three are behind the API
key: a browser following a link cannot send a header, so /view/{id} also takes `?key=KEY`
and the page sends it on as `Authorization: Bearer` when it polls.

A request's trace is the `Trace` its run builds (app.py hands the run one it made): the JSON is
read from it while a worker thread appends nodes. A snapshot copies the node list, then each
node's lists and dicts, and encodes the copy, all in one try that is repeated if a dict changed
size meanwhile; a node half-written is at worst a step behind the next poll.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ponder.core.types import Node, Trace
from ponder.serve.errors import APIError
from ponder.view.page import Panel, finite, page

NODE_FIELDS = tuple(f.name for f in fields(Node))


@dataclass
class Kept:
    """One request's traces: one per choice, filled in by its runs as they search."""

    id: str
    model: str
    scheme: str
    question: str | None
    traces: list[Trace]
    created: int = field(default_factory=lambda: int(time.time()))
    status: str = "running"  # then "done", or "stopped" (cancelled, failed, client gone)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "object": "ponder.trace", "created": self.created,
                "model": self.model, "scheme": self.scheme, "status": self.status,
                "nodes": sum(len(t.nodes) for t in self.traces)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of GET /v1/traces/{id}; `status` is read first, so a "done" body
        holds the finished traces."""
        head = self.summary()
        return {**head, "question": self.question,
                "traces": [snapshot(t) for t in list(self.traces)]}


class KeptTraces:
    """The last `size` requests' traces, oldest dropped first (running ones too: their run
    keeps its own reference and goes on)."""

    def __init__(self, size: int) -> None:
        assert size >= 1
        self.size = size
        self._items: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, id: str, model: str, scheme: str, question: str | None, n: int) -> Kept:
        kept = Kept(id, model, scheme, question, [Trace(scheme=scheme) for _ in range(n)])
        with self._lock:
            self._items[id] = kept
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return kept

    def get(self, id: str) -> Kept | None:
        with self._lock:
            return self._items.get(id)

    def newest_first(self) -> list[Kept]:
        with self._lock:
            return list(reversed(self._items.values()))


def snapshot(trace: Trace, tries: int = 5) -> dict[str, Any]:
    """`trace.to_dict()`, safe while another thread adds to it (see the module docstring)."""
    for _ in range(tries):
        try:
            copy = {"scheme": trace.scheme, "nodes": [_node(n) for n in list(trace.nodes)],
                    "chosen": list(trace.chosen), "meta": dict(trace.meta)}
            return json.loads(json.dumps(copy, default=str))  # a deep copy, made here
        except RuntimeError:  # "changed size during iteration": read it again
            time.sleep(0.001)
    raise APIError(503, "the trace is changing too fast to read; retry", code="trace_busy")


def _node(node: Node) -> dict[str, Any]:
    out = {}
    for name in NODE_FIELDS:
        value = getattr(node, name)
        out[name] = (list(value) if isinstance(value, list)
                     else dict(value) if isinstance(value, dict) else value)
    return out


def add_routes(app: FastAPI, kept: KeptTraces | None, authorized: Callable[[Request], bool],
               api_key: str | None, responses: dict[int | str, dict[str, Any]]) -> None:
    """The trace routes of `app`: 404 for every id where the server keeps none."""

    def check(request: Request, *, query_key: bool = False) -> None:
        given = request.query_params.get("key") if query_key else None
        if authorized(request) or (api_key is not None and given is not None
                                   and secrets.compare_digest(given.encode(), api_key.encode())):
            return
        raise APIError(401, "invalid or missing API key; send Authorization: Bearer KEY"
                       + (" (or open /view/ID?key=KEY)" if query_key else ""),
                       code="invalid_api_key")

    def find(id: str) -> Kept:
        if kept is None:
            raise APIError(404, "this server keeps no traces; start it with --keep-traces N",
                           param="id", code="trace_not_found")
        found = kept.get(id)
        if found is None:
            raise APIError(404, f"no kept trace {id[:80]!r}: it never was, or a newer one "
                           f"took its place (the server keeps the last {kept.size})",
                           param="id", code="trace_not_found")
        return found

    @app.get("/v1/traces", responses=responses)
    async def list_traces(request: Request) -> dict[str, Any]:
        """The kept requests, newest first (empty where the server keeps none)."""
        check(request)
        return {"object": "list",
                "data": [k.summary() for k in (kept.newest_first() if kept else [])]}

    @app.get("/v1/traces/{id}", responses=responses)
    async def get_trace(id: str, request: Request) -> Response:
        """One kept request's traces, one per choice; they grow while `status` is running."""
        check(request)
        body = find(id).to_dict()
        return Response(json.dumps(finite(body), allow_nan=False), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    @app.get("/view/{id}", responses={**responses, 200: {
        "description": "The page (errors are JSON, as elsewhere).",
        "content": {"text/html": {"schema": {"type": "string"}}}}})
    async def view_trace(id: str, request: Request) -> HTMLResponse:
        """The page that draws a kept request's traces, live while it runs."""
        check(request, query_key=True)
        body = find(id).to_dict()
        many = len(body["traces"]) > 1
        panels = [Panel(t, f"{body['scheme']} · choice {i}" if many else body["scheme"],
                        question=body["question"]) for i, t in enumerate(body["traces"])]
        html = page(panels, f"{body['model']} · {body['scheme']} · {id}",
                    status=body["status"], live_url=f"/v1/traces/{id}")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})
