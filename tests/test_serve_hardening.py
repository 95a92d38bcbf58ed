"""What an independent pass over `ponder serve` found (issue 23), each a test that failed before
the fix: requests that reached the file system or the hub, work without a cap, /health telling
what is served to anyone, paths as model names, and an OpenAPI document that said less than the
server does. The ghost queue (clients that left while queued) needs a real server process:
tests/test_serve_load.py."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ponder.core.protocols import Candidate
from ponder.models.fake import ScriptedModel
from ponder.serve.app import create_app
from ponder.serve.commands import parse_models, parse_scorers, short_name
from ponder.serve.protocol import SEED_MAX, Limits
from ponder.tasks import get_task

URL = "/v1/chat/completions"
ASK = [{"role": "user", "content": "What is 6 * 7?"}]
CHAIN = "Six sevens.\n\nSo \\boxed{42}."


def client(model: Any = None, **kw: Any) -> TestClient:
    app = create_app({"fake": model or ScriptedModel([CHAIN])}, get_task("math").problem, **kw)
    return TestClient(app, raise_server_exceptions=False)


def ask(c: TestClient, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return c.post(URL, json={"model": "fake", "messages": ASK, **body}, headers=headers)


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Every file the process opens meanwhile (an audit hook; hooks stay, so it is gated)."""
    seen: list[str] = []
    live = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if live and event == "open" and isinstance(args[0], str):
            seen.append(args[0])

    sys.addaudithook(hook)
    try:
        yield seen
    finally:
        live.clear()


# -- 1. no request reaches the file system or the hub -------------------------------------------

@pytest.mark.parametrize(("ponder", "param"), [
    ({"scheme": "beam@2:scorer=prm:/etc"}, "ponder.scheme"),
    ({"scheme": "dvts@4:scorer=orm:/etc/passwd"}, "ponder.scheme"),
    ({"scheme": "mcts@4:scorer=prm:gpt2"}, "ponder.scheme"),
    ({"scheme": "tot:scorer=prm:/etc"}, "ponder.scheme"),
    ({"scheme": "aggregate", "scheme_args": {"scorer": "orm:/etc"}}, "ponder.scheme_args.scorer"),
    ({"scheme": "best-of-n@2", "scheme_args": {"scorer": "prm:gpt2"}},
     "ponder.scheme_args.scorer"),
])
def test_a_request_naming_a_path_or_hub_id_is_a_400_that_touches_nothing(
        monkeypatch: pytest.MonkeyPatch, ponder: dict[str, Any], param: str) -> None:
    from ponder import scorers

    def never(*args: Any) -> Any:
        raise AssertionError("a request made the server load a scorer")

    monkeypatch.setattr(scorers, "PATH_SCORERS", dict.fromkeys(scorers.PATH_SCORERS, never))
    c = client()
    with opened_files() as seen:
        r = ask(c, ponder=ponder)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert "judge" in error["message"] and "--scorer" in error["message"]
    assert not [f for f in seen if f.startswith("/etc") or "gpt2" in f or "config.json" in f]


class Spy:
    """A trained scorer as the server would have loaded it at startup."""

    name, needs_logprobs = "myprm", False

    def __init__(self) -> None:
        self.calls = 0

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        self.calls += 1
        return [0.5] * len(candidates)


def test_a_scorer_loaded_at_startup_is_named_by_requests() -> None:
    spy = Spy()
    c = client(ScriptedModel(["step one\n\nso \\boxed{42}"]), scorers={"myprm": spy})
    r = ask(c, ponder={"scheme": "beam@2:expansions=2:scorer=myprm"})
    assert r.status_code == 200, r.text
    assert spy.calls > 0
    assert ask(c, ponder={"scheme": "best-of-n@2:scorer=myprm"}).status_code == 200


def test_scorers_on_the_command_line_are_named_kind_and_path() -> None:
    assert parse_scorers(["mine=prm:runs/prm/final"]) == {"mine": "prm:runs/prm/final"}
    for bad in (["runs/prm"], ["mine=runs/prm"], ["judge=prm:x"], ["a=prm:x", "a=orm:y"]):
        with pytest.raises(Exception, match="--scorer"):
            parse_scorers(bad)


# -- 3. work per request is capped --------------------------------------------------------------

@pytest.mark.parametrize(("body", "cap"), [
    ({"n": 16, "ponder": {"scheme": "self-consistency@1024"}}, "max_request_chains"),
    ({"ponder": {"scheme": "self-consistency@128"}}, "max_request_chains"),
    ({"ponder": {"scheme": "cot", "scheme_args": {"max_tokens": 100_000}}}, "max_request_tokens"),
    ({"ponder": {"scheme": "self-consistency@64", "scheme_args": {"max_tokens": 4096}}},
     "max_request_tokens"),
])
def test_a_request_over_a_cap_is_a_400_naming_it(body: dict[str, Any], cap: str) -> None:
    r = ask(client(), **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == cap and "ponder serve --max-request" in r.text


def test_caps_are_settings_and_a_request_under_them_runs() -> None:
    c = client(limits=Limits(max_chains=4, max_tokens=10_000))
    assert ask(c, ponder={"scheme": "self-consistency@4"}).status_code == 200
    assert ask(c, ponder={"scheme": "self-consistency@5"}).status_code == 400
    assert ask(c, n=2, ponder={"scheme": "self-consistency@2",
                               "scheme_args": {"max_tokens": 2_500}}).status_code == 200
    assert ask(c, n=2, ponder={"scheme": "self-consistency@2",
                               "scheme_args": {"max_tokens": 2_501}}).status_code == 400


def test_a_run_past_the_seconds_cap_stops_and_answers_with_length() -> None:
    slow = ScriptedModel(["word " * 2000 + "\\boxed{1}"], delay_per_token=0.002)
    c = client(slow, limits=Limits(max_seconds=0.3))
    r = ask(c, ponder={"scheme": "self-consistency@2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["ponder"]["stopped"] == "max_request_seconds"
    assert body["ponder"]["seconds"] < 2.0


# -- 4. /health and model names -----------------------------------------------------------------

def test_health_tells_liveness_to_anyone_and_the_detail_to_the_key() -> None:
    c = client(api_key="sesame")
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/health", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
    detail = c.get("/health", headers={"Authorization": "Bearer sesame"}).json()
    assert detail["models"] == ["fake"] and "active" in detail
    assert client().get("/health").json()["models"] == ["fake"]  # no key set: nothing to hide


@pytest.mark.parametrize(("spec", "name"), [
    ("/home/u/.cache/ponder/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
     "qwen2.5-coder-0.5b-instruct-q4_k_m"),
    ("runs/distill/student/", "student"),
    ("bartowski/Qwen2.5-0.5B-GGUF/model-Q4.gguf", "model-Q4"),
    ("http://127.0.0.1:8080/v1#qwen", "qwen"),
    ("default", "default"),
])
def test_a_model_from_a_path_is_served_under_a_short_name(spec: str, name: str) -> None:
    assert short_name(spec) == name
    assert parse_models([spec]) == {name: spec}


# -- 6. the OpenAPI document says what the server does ------------------------------------------

def test_the_schema_names_served_models_real_bounds_and_the_stream() -> None:
    spec = client().get("/openapi.json").json()
    request = spec["components"]["schemas"]["ChatRequest"]["properties"]
    assert request["model"]["enum"] == ["fake"]
    assert request["seed"]["anyOf"][0]["maximum"] == SEED_MAX
    assert isinstance(request["seed"]["anyOf"][0]["minimum"], int)
    ok = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(ok) == {"application/json", "text/event-stream"}
    assert "ChatCompletionChunk" in spec["components"]["schemas"]
    user = spec["components"]["schemas"]["UserMessage"]
    assert "content" in user["required"] and "null" not in str(user["properties"]["content"])


@pytest.mark.parametrize(("body", "param"), [
    ({"max_tokens": True}, "max_tokens"),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
    ({"n": "2"}, "n"),
    ({"seed": False}, "seed"),
    ({"temperature": True}, "temperature"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
])
def test_values_the_schema_refuses_are_refused(body: dict[str, Any], param: str) -> None:
    r = ask(client(), **body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_errors_carry_their_documented_codes_and_headers() -> None:
    c = client()
    wrong_method = c.get(URL)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert c.get("/nowhere").json()["error"]["code"] == "not_found"
    not_utf8 = c.post(URL, content=b'{"model": "fake\xff"}',
                      headers={"content-type": "application/json"})
    assert not_utf8.status_code == 400 and not_utf8.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(("header", "status"), [
    ("Bearer sesame", 200), ("bearer sesame", 200), ("sesame", 401), ("Basic sesame", 401),
    ("Bearer", 401), ("Bearersesame", 401)])
def test_the_key_is_a_bearer_token(header: str, status: int) -> None:
    assert ask(client(api_key="sesame"), headers={"Authorization": header}).status_code == status


def test_an_offending_value_is_not_echoed_in_full() -> None:
    huge = "x" * 100_000
    for body in ({"ponder": {"scheme": huge}}, {"ponder": {"scheme": f"cot:{huge}=1"}},
                 {"ponder": {"scheme": "beam@2", "scheme_args": {"scorer": huge}}}):
        r = ask(client(), **body)
        assert r.status_code == 400 and len(r.text) < 1_000, r.text[:200]


def test_caps_and_names_hold_for_every_effort_level() -> None:
    """The default caps leave every effort level of the table servable."""
    c = client()
    for level in ("none", "minimal", "low", "medium", "high", "xhigh"):
        assert ask(c, reasoning_effort=level).status_code == 200, level
    assert math.isfinite(Limits().max_seconds)
