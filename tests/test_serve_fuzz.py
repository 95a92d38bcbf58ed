"""Fuzzing the server from its own OpenAPI schema, a hypothesis-based equivalent of
schemathesis: over 1,000 generated requests against the fake model, valid, mutated and garbage.
Never a 5xx; every error in OpenAI's shape; every success well formed, streamed or not.

`from_schema` covers the JSON Schema that FastAPI emits for our models (objects, arrays, bounded
numbers, enums, anyOf, $ref); hypothesis-jsonschema would, but it does not work with current
hypothesis releases.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (the dev extra)")

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponder.models.fake import ScriptedModel
from ponder.serve.app import create_app
from ponder.tasks import get_task

URL = "/v1/chat/completions"
APP = create_app({"fake": ScriptedModel(["Think.\n\nSo \\boxed{42}.", "No idea."])},
                 get_task("math").problem, max_concurrency=2, max_queue=8)
CLIENT = TestClient(APP, raise_server_exceptions=True)  # a bug raises here, not only a 500
SPEC = CLIENT.get("/openapi.json").json()
SENT: dict[str | int, int] = {"count": 0}
FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (a FastAPI OpenAPI 3.1 component schema)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(SPEC["components"]["schemas"][name]))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        fixed = st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required})
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            more = st.dictionaries(st.text(max_size=12), from_schema(extra), max_size=3)
            return st.tuples(more, fixed).map(lambda pair: {**pair[0], **pair[1]})
        return fixed
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(from_schema(schema.get("items", {})), min_size=low,
                        max_size=schema.get("maxItems", low + 3))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if kind == "integer":
            return st.integers(min_value=low, max_value=high)
        low = schema.get("exclusiveMinimum", low)
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema)
    simple = {"string": st.text(max_size=40), "boolean": st.booleans(), "null": st.none()}
    return simple.get(kind, JSON) if isinstance(kind, str) else JSON


BODY = SPEC["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["schema"]
VALID = from_schema(BODY)
SCHEMES = st.sampled_from([None, "cot", "self-consistency@3", "adaptive@4", "best-of-n@2"])
QUESTION = st.text(min_size=1, max_size=40).filter(str.strip)


@st.composite
def served(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid body that the server should also accept: fake model, a question last,
    a known scheme with no scheme_args."""
    body = draw(VALID)
    extension = {**body.get("ponder", {}), "scheme": draw(SCHEMES), "scheme_args": {}}
    question = {"role": "user", "content": draw(QUESTION)}
    return {**body, "model": "fake", "messages": [*body["messages"], question],
            "stop": None, "ponder": extension}


SERVED = served()


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A served, valid body with one field removed or replaced by any JSON value."""
    body = dict(draw(SERVED))
    key = draw(st.sampled_from([*body, "messages", "n", "temperature", "ponder", "stop"]))
    if draw(st.booleans()):
        body.pop(key, None)
    else:
        body[key] = draw(JSON)
    return body


def check(response: Any) -> None:
    SENT["count"] += 1
    SENT[response.status_code] = SENT.get(response.status_code, 0) + 1
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        lines = [line for line in response.text.split("\n\n") if line]
        assert lines[-1] == "data: [DONE]"
        for line in lines[:-1]:
            assert json.loads(line.removeprefix("data: "))["object"] == "chat.completion.chunk"
        return
    body = response.json()
    assert body["object"] == "chat.completion" and body["choices"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] >= usage["completion_tokens_details"]["reasoning_tokens"]


@FUZZ
@given(st.one_of(VALID, SERVED, SERVED))
def test_valid_bodies(body: dict[str, Any]) -> None:
    check(CLIENT.post(URL, json=body))


@FUZZ
@given(st.one_of(mutated(), JSON))
def test_mutated_and_arbitrary_json(body: Any) -> None:
    check(CLIENT.post(URL, json=body))


KEYS = st.sampled_from(["n", "batch", "temperature", "top_p", "max_tokens", "token_budget",
                        "confidence", "selection", "seed", "beam"])
VALUES = st.sampled_from(["0", "-1", "2", "0.5", "1e999", "-1e999", "NaN", "true", "[1]",
                          "weighted", "", "99999999999999999999"])
SPECS = st.builds(
    lambda name, at, pairs: name + at + "".join(f":{k}={v}" for k, v in pairs),
    st.sampled_from(["cot", "self-consistency", "adaptive", "best-of-n", "nope"]),
    st.sampled_from(["", "@1", "@3", "@0", "@x"]),
    st.lists(st.tuples(KEYS, VALUES), max_size=3))


@FUZZ
@given(SPECS, st.dictionaries(KEYS, JSON, max_size=2), st.sampled_from([None, 64]))
def test_scheme_specs_and_args(spec: str, args: dict[str, Any], budget: int | None) -> None:
    """`name@N:key=value` specs and scheme_args: the settings most likely to reach a run."""
    body = {"model": "fake", "messages": [{"role": "user", "content": "q"}],
            "max_completion_tokens": budget, "ponder": {"scheme": spec, "scheme_args": args}}
    check(CLIENT.post(URL, json=body))


@settings(FUZZ, max_examples=250)
@given(st.binary(max_size=200),
       st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_raw_bytes(raw: bytes, content_type: str) -> None:
    check(CLIENT.post(URL, content=raw, headers={"content-type": content_type}))


@pytest.mark.parametrize("raw", [
    b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"model": "fake", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}',
    b'{"model": "fake", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b"", b"null", b"[]", b'"text"', b"\xff\xfe{}"])
def test_awkward_json(raw: bytes) -> None:
    check(CLIENT.post(URL, content=raw, headers={"content-type": "application/json"}))


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/openapi.json"])
def test_gets(path: str) -> None:
    assert CLIENT.get(path).status_code == 200


def test_at_least_a_thousand_requests() -> None:
    """Runs last in this file (pytest keeps file order): the fuzzers above sent enough."""
    print(SENT)
    assert SENT["count"] >= 1000, SENT
