"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Bad input is a 400 naming the field (`param`), never FastAPI's 422; a bad API key 401, an
unknown model 404, an unknown route 404, a wrong method 405 (with Allow), a full queue 503
(with Retry-After), a failing backend 502. Anything else is a bug: a 500 in the same shape,
logged with its traceback. Codes are the ones docs/serve.md lists; messages repeat at most 80
characters of an offending value (core/errors.py `shown`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ponder.core.errors import ConfigError, ModelError, PonderError
from ponder.serve.engine import QueueFull
from ponder.serve.messages import ROLE_TAGS
from ponder.serve.protocol import ErrorResponse

log = logging.getLogger("ponder.serve")


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = \
            status, message, type, param, code


def error_of(exc: BaseException) -> tuple[int, ErrorResponse]:
    """Status and OpenAI-shaped body for any exception; a 500 is logged as the bug it is."""
    def body(message: str, type: str = "invalid_request_error", param: str | None = None,
             code: str | None = None) -> ErrorResponse:
        return ErrorResponse.model_validate(
            {"error": {"message": message, "type": type, "param": param, "code": code}})

    if isinstance(exc, APIError):
        return exc.status, body(exc.message, exc.type, exc.param, exc.code)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return 400, body(f"the body is not valid JSON: {first['msg']}", code="invalid_json")
        loc = tuple(first["loc"]) + (("role",) if first.get("type") == "union_tag_invalid" else ())
        param = _param(loc)
        where = f" at {param}" if param else ""
        return 400, body(f"{first['msg']}{where}", param=param, code="invalid_value")
    if isinstance(exc, ConfigError):  # a backend names its `requests[i]`: the messages here
        param = "messages" if exc.param.startswith("requests[") else exc.param
        return 400, body(str(exc), param=param, code="invalid_value")
    if isinstance(exc, QueueFull):
        return 503, body(f"server busy: {exc}", "server_error", code="queue_full")
    if isinstance(exc, ModelError):
        return 502, body(f"model backend failed: {exc}", "server_error", code="backend_error")
    if isinstance(exc, PonderError):
        return 400, body(str(exc))
    if isinstance(exc, HTTPException):  # starlette's own: routing, and a body it cannot read
        if exc.status_code == 400:
            return 400, body(f"the body is not valid JSON: {exc.detail}", code="invalid_json")
        return exc.status_code, body(str(exc.detail), code=HTTP_CODES.get(exc.status_code,
                                                                          "invalid_request"))
    log.error("internal error", exc_info=exc)
    return 500, body("internal server error (logged)", "server_error", code="internal_error")


_UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _param(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content', 'str') -> 'messages[0].content'."""
    param = ""
    for part in loc[1:]:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part in ROLE_TAGS:  # the message type pydantic chose by its role: not a field
            continue
        elif part in _UNION_TAGS or "[" in part:  # pydantic names the union member tried
            break
        else:
            param += f".{part}" if param else part
    return param or None


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    status, body = error_of(exc)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}  # 405: Allow
    if status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


HANDLERS: dict[Any, Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    exc: _handle for exc in (APIError, RequestValidationError, PonderError, QueueFull,
                             HTTPException, Exception)}
