"""The server under abuse: schemathesis over its OpenAPI document, load, disconnects, a queue of
clients that leave, and the per-request caps; writes docs/results/serve_hardening.md.

    .venv/bin/python benchmarks/serve_hardening.py [--examples 1000] [--clients 32]
        [--requests 100] [--disconnects 20]

1. schemathesis, in process (ASGI) on the fake model: for every operation, `--examples`
   schema-valid and as many schema-breaking requests; every default check but
   positive_data_acceptance (see tests/test_serve_schemathesis.py). Counted: requests, status
   codes, failures by check.
2. A real `python -m ponder.serve` on loopback (fake models): `--clients` concurrent clients x
   `--requests` requests each, alternating plain and streamed across effort levels; failures
   and wall time.
3. `--disconnects` streamed clients that leave mid-generation of a slow chain: how long until
   the server runs nothing, and whether each run was counted cancelled.
4. The ghost queue: one slot, a queue of two, two clients that leave while queued; their places
   back (admitted 1), and a new client queued (not 503).
5. The caps: a request for 16 x self-consistency@1024 and one past the token cap (400s).

Nothing here needs a real model; it takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from ponder.eval.store import cpu_model
from ponder.serve.process import serving

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "serve_hardening.md"
ASK = [{"role": "user", "content": "What is 6 * 7?"}]
SLOW_CHAIN = "word " * 400 + "\\boxed{1}"


def fuzz(examples: int) -> tuple[Counter[int], Counter[str], int]:
    """schemathesis' positive and negative cases for every operation, in process."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    from ponder.models.fake import ScriptedModel
    from ponder.serve.app import create_app
    from ponder.tasks import get_task

    app = create_app({"fake": ScriptedModel(["Think.\n\nSo \\boxed{42}.", "No idea."]),
                      "other": ScriptedModel(["So \\boxed{7}."])},
                     get_task("math").problem, max_concurrency=2, max_queue=8)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, excluded_checks=[positive_data_acceptance])
                except FailureGroup as group:
                    for failure in group.exceptions:
                        failures[f"{case.operation.label}: {failure.title}"] += 1

            with contextlib.suppress(Unsatisfiable):  # no input to break (GET /health)
                run()
    return statuses, failures, operations


def health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health").json())


async def load(url: str, clients: int, requests: int) -> tuple[int, list[str], float]:
    async def one(client: httpx.AsyncClient, k: int) -> list[str]:
        failed = []
        for i in range(requests):
            body = {"model": "fake", "messages": ASK,
                    "reasoning_effort": ["low", "medium", "none"][(k + i) % 3]}
            if i % 2:
                async with client.stream("POST", "/v1/chat/completions",
                                         json={**body, "stream": True}) as r:
                    text = (await r.aread()).decode()
                ok = r.status_code == 200 and text.endswith("data: [DONE]\n\n")
            else:
                r = await client.post("/v1/chat/completions", json=body)
                ok = r.status_code == 200 and "42" in r.json()["choices"][0]["message"]["content"]
            if not ok:
                failed.append(f"client {k} request {i}: {r.status_code}")
        return failed

    start = time.monotonic()
    limits = httpx.Limits(max_connections=2 * clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        results = await asyncio.gather(*(one(client, k) for k in range(clients)))
    return clients * requests, [f for r in results for f in r], time.monotonic() - start


def disconnects(url: str, count: int) -> tuple[list[float], int]:
    """Streamed clients leaving a slow chain a few tokens in: seconds until nothing runs."""
    waits, before = [], health(url)["cancelled"]
    body = {"model": "slow", "messages": ASK, "stream": True}
    for _ in range(count):
        with httpx.Client(base_url=url, timeout=30) as client, \
                client.stream("POST", "/v1/chat/completions", json=body) as r:
            lines, tokens = r.iter_lines(), 0
            while tokens < 3:
                tokens += "reasoning_content" in next(lines)
        start = time.monotonic()
        while health(url)["active"] > 0:
            time.sleep(0.005)
        waits.append(time.monotonic() - start)
    return waits, health(url)["cancelled"] - before


async def ghost_queue(url: str) -> tuple[int, int, int]:
    """(admitted with two queued, admitted after they left, admitted with a new client)."""
    body = {"model": "slow", "messages": ASK}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        def post() -> asyncio.Task[Any]:
            return asyncio.create_task(client.post("/v1/chat/completions", json=body))

        live = post()
        while health(url)["active"] == 0:
            await asyncio.sleep(0.02)
        leaving = [post(), post()]
        while health(url)["admitted"] < 3:
            await asyncio.sleep(0.02)
        full = health(url)["admitted"]
        for task in leaving:
            task.cancel()
        await asyncio.gather(*leaving, return_exceptions=True)
        await asyncio.sleep(0.5)
        after = health(url)["admitted"]
        late = post()
        await asyncio.sleep(0.5)
        queued = health(url)["admitted"]
        for task in (late, live):
            task.cancel()
        await asyncio.gather(late, live, return_exceptions=True)
    return full, after, queued


def caps(url: str) -> list[tuple[str, int, str]]:
    out = []
    asks: list[tuple[str, dict[str, Any]]] = [
        ("n=16, self-consistency@1024", {"n": 16, "ponder": {"scheme": "self-consistency@1024"}}),
        ("cot with max_tokens 100,000",
         {"ponder": {"scheme": "cot", "scheme_args": {"max_tokens": 100_000}}}),
        ("beam@2:scorer=prm:/etc", {"ponder": {"scheme": "beam@2:scorer=prm:/etc"}})]
    for label, body in asks:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": "fake", "messages": ASK, **body})
        out.append((label, r.status_code, str(r.json()["error"]["param"])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--disconnects", type=int, default=20)
    args = parser.parse_args()

    started = time.monotonic()
    statuses, failures, operations = fuzz(args.examples)
    fuzz_seconds = time.monotonic() - started
    slow = ["--model-arg", "slow:delay_per_token=0.02",
            "--model-arg", f"slow:script={json.dumps([SLOW_CHAIN])}"]
    with serving("--model", "fake", "--model", "slow=fake", "--max-concurrency", "8",
                 "--task", "math", *slow) as url:
        sent, load_failures, load_seconds = asyncio.run(load(url, args.clients, args.requests))
        waits, cancelled = disconnects(url, args.disconnects)
        refused = caps(url)
    with serving("--model", "slow=fake", "--max-concurrency", "1", "--max-queue", "2",
                 *[a.replace("slow:", "") for a in slow]) as url:
        full, after, queued = asyncio.run(ghost_queue(url))

    lines = [
        "# `ponder serve` under abuse",
        "",
        f"`.venv/bin/python benchmarks/serve_hardening.py --examples {args.examples} --clients "
        f"{args.clients} --requests {args.requests} --disconnects {args.disconnects}` on "
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, fake "
        "models (no model time: this measures the server).",
        "",
        "## schemathesis over /openapi.json",
        "",
        f"{sum(statuses.values()):,} requests over {operations} operations "
        f"({args.examples} schema-valid and {args.examples} schema-breaking examples drawn per "
        f"operation), {fuzz_seconds:.0f} s. Status codes: "
        + ", ".join(f"{code} × {count:,}" for code, count in sorted(statuses.items()))
        + f". 5xx: {sum(c for s, c in statuses.items() if s >= 500)}. Failed checks: "
        + (", ".join(f"{k} × {v}" for k, v in failures.items()) if failures else "none") + ".",
        "",
        "## Load, disconnects, the queue, the caps (a real server process on loopback)",
        "",
        "| what | result |",
        "|---|---|",
        f"| {args.clients} clients × {args.requests} requests, plain and streamed, effort "
        f"none/low/medium | {sent:,} sent, {len(load_failures)} failed, {load_seconds:.1f} s |",
        f"| {args.disconnects} streamed clients leaving a slow chain mid-generation | "
        f"{cancelled} runs counted cancelled; nothing running again after at most "
        f"{max(waits) * 1000:.0f} ms (median {sorted(waits)[len(waits) // 2] * 1000:.0f} ms) |",
        f"| one slot, queue of two: two queued plain clients leave | admitted {full} → "
        f"{after} within 0.5 s; a new client is queued (admitted {queued}), not refused |",
        *(f"| {label} | {status}, param `{param}` |" for label, status, param in refused),
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
