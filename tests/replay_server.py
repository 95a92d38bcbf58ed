"""A tiny OpenAI-compatible server that replays a recording (tests/recordings/*.json): the
recorded whole answer to every non-streamed chat request, the recorded SSE chunks to every
streamed one. For tests of `OpenAIModel` against a real server process where the real server
(vLLM with a reasoning parser) needs a GPU.

    python tests/replay_server.py RECORDING --port PORT

Only what a client of a recorded answer needs: `GET /v1/models` lists the recorded model;
`POST /v1/chat/completions` answers a request for it (404 in vLLM's error shape for another),
sends the usage chunk only where `stream_options.include_usage` asks, as vLLM does, and ends
the stream with `data: [DONE]`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


def wire(obj: Any) -> str:
    """JSON as vLLM's pydantic models write it: compact, UTF-8 unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def replay_app(recording: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    model = recording["model"]

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "vllm"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("model") != model:
            return JSONResponse(status_code=404, content={
                "object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                "type": "NotFoundError", "param": None, "code": 404})
        if not body.get("stream"):
            return Response(wire(recording["response"]), media_type="application/json")
        usage = (body.get("stream_options") or {}).get("include_usage", False)

        def events() -> Iterator[str]:
            for chunk in recording["stream"]:
                if chunk["choices"] or usage:
                    yield f"data: {wire(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    recording = json.loads(args.recording.read_text())
    uvicorn.run(replay_app(recording), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
