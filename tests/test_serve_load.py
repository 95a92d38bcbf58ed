"""A real `python -m ponder.serve` process on loopback, serving two fakes: `fake` (instant) and
`slow` (a long chain at 20 ms a token). 32 concurrent clients x 10 requests must all succeed;
a client that disconnects mid-generation must have its run stopped at once; and a second server
can use the first as its upstream model."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ponder.serve.process import serving

pytestmark = pytest.mark.server

SLOW_CHAIN = "word " * 400 + "\\boxed{1}"
ASK = [{"role": "user", "content": "What is 6 * 7?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # --task math: a one-chain scheme streams its reasoning live, which the disconnect tests
    # read (the chat task sends a chain's reply only once it has ended)
    with serving("--model", "fake", "--model", "slow=fake", "--max-concurrency", "8",
                 "--task", "math",
                 "--model-arg", "slow:delay_per_token=0.02",
                 "--model-arg", f"slow:script={json.dumps([SLOW_CHAIN])}") as url:
        yield url


def health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health").json())


async def one_client(client: httpx.AsyncClient, k: int) -> list[str]:
    """Ten requests in turn, alternating plain and streamed, across effort levels."""
    failures = []
    for i in range(10):
        body = {"model": "fake", "messages": ASK,
                "reasoning_effort": ["low", "medium", "none"][(k + i) % 3]}
        if i % 2:
            async with client.stream("POST", "/v1/chat/completions",
                                     json={**body, "stream": True}) as r:
                text = (await r.aread()).decode()
            ok = r.status_code == 200 and text.endswith("data: [DONE]\n\n") and "42" in text
        else:
            r = await client.post("/v1/chat/completions", json=body)
            ok = r.status_code == 200 and "42" in r.json()["choices"][0]["message"]["content"]
        if not ok:
            failures.append(f"client {k} request {i}: {r.status_code}")
    return failures


def test_32_clients_x_10_requests(server: str) -> None:
    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as client:
            results = await asyncio.gather(*(one_client(client, k) for k in range(32)))
        return [f for failures in results for f in failures]

    assert asyncio.run(run()) == []
    assert health(server)["active"] == 0


def wait_idle(url: str, within: float) -> float:
    start = time.monotonic()
    while health(url)["active"] > 0:
        assert time.monotonic() - start < within, health(url)
        time.sleep(0.02)
    return time.monotonic() - start


def test_streaming_client_disconnect_stops_its_generation(server: str) -> None:
    cancelled = health(server)["cancelled"]
    body = {"model": "slow", "messages": ASK, "stream": True}
    with httpx.Client(base_url=server, timeout=30) as client, \
            client.stream("POST", "/v1/chat/completions", json=body) as r:
        lines, tokens = r.iter_lines(), 0
        while tokens < 5:  # a few tokens in: the run is live
            tokens += "reasoning_content" in next(lines)
        assert health(server)["active"] == 1
    # the connection is closed here, ~8 s of generation early
    assert wait_idle(server, within=1.5) < 1.5
    assert health(server)["cancelled"] == cancelled + 1


def test_plain_client_disconnect_stops_its_generation(server: str) -> None:
    cancelled = health(server)["cancelled"]

    async def leave_early() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            request = asyncio.create_task(client.post(
                "/v1/chat/completions", json={"model": "slow", "messages": ASK}))
            while health(server)["active"] == 0:
                await asyncio.sleep(0.05)
            request.cancel()  # drops the connection
            with pytest.raises(asyncio.CancelledError):
                await request

    asyncio.run(leave_early())
    assert wait_idle(server, within=1.5) < 1.5
    assert health(server)["cancelled"] == cancelled + 1


def test_a_model_can_be_an_upstream_openai_server(server: str) -> None:
    """`--model up=URL#name`: this server thinks, the upstream (here the fake server) writes."""
    with serving("--model", f"up={server}/v1#fake") as url:
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                           json={"model": "up", "messages": ASK})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "42"  # the upstream's reply


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_clients_that_leave_while_queued_give_their_place_back(stream: bool) -> None:
    """One slot, a queue of two: a live request holds the slot, two clients queue and leave.
    Their places come back at once, so a new client is queued, not refused (issue 23: before,
    /health stayed at admitted 3 and the next client got 503 queue_full)."""
    with serving("--model", "slow=fake", "--max-concurrency", "1", "--max-queue", "2",
                 "--model-arg", "delay_per_token=0.02",
                 "--model-arg", f"script={json.dumps([SLOW_CHAIN])}") as url:
        body = {"model": "slow", "messages": ASK, "stream": stream}

        async def scenario() -> tuple[int, int]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                async def post() -> Any:
                    if stream:
                        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                            return r.status_code, await r.aread()
                    return await client.post("/v1/chat/completions", json=body)

                live = asyncio.create_task(post())
                while health(url)["active"] == 0:
                    await asyncio.sleep(0.02)
                leaving = [asyncio.create_task(post()) for _ in range(2)]
                while health(url)["admitted"] < 3:
                    await asyncio.sleep(0.02)
                for task in leaving:
                    task.cancel()  # drops the connection
                await asyncio.gather(*leaving, return_exceptions=True)
                start = time.monotonic()
                while health(url)["admitted"] > 1:
                    assert time.monotonic() - start < 2, health(url)
                    await asyncio.sleep(0.02)
                late = asyncio.create_task(post())
                while health(url)["admitted"] < 2:  # queued behind the live one, not refused
                    assert not late.done(), late.result()
                    await asyncio.sleep(0.02)
                admitted = health(url)["admitted"]
                late.cancel()
                live.cancel()
                await asyncio.gather(late, live, return_exceptions=True)
                return admitted, round(time.monotonic() - start)

        admitted, _ = asyncio.run(scenario())
        assert admitted == 2


def test_a_server_that_cannot_start_says_why() -> None:
    from ponder.serve.process import ServeError

    with pytest.raises(ServeError, match="unknown model 'nope'"), serving("--model", "nope"):
        pass
