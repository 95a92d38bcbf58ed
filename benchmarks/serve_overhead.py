"""What `ponder serve` costs on top of calling the scheme in-process, and what concurrency buys.

Overhead: the same scheme (cot, greedy, exactly --tokens new tokens: the question is long
enough that every chain ends on max_tokens), the same model and prompt, run (a) in-process with
`Scheme.__call__` and (b) through a `python -m ponder.serve` subprocess with the `openai`-shaped
HTTP request, non-streamed and streamed. Runs alternate a, b, b-stream so that load drifting
on a shared machine hits all three alike; p50 of each, overhead = p50(b) / p50(a) - 1. The
part of (b) spent outside the scheme (wall time less the scheme's time measured in the server)
is reported too: it is the protocol's cost, whatever the decoding speed.

Throughput: the same 8 requests sent by 1 client in turn and by 8 concurrent clients;
completion tokens per second of wall time.

Head-of-line blocking: the latency of a short request (--short tokens) alone, and sent 1 s
after a long one (--long tokens) has started; the long one's latency is shown beside it.

    flock /tmp/ponder-bench.lock .venv/bin/python benchmarks/serve_overhead.py

writes docs/results/serve_overhead.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from ponder.models.catalog import load_model
from ponder.schemes import get_scheme
from ponder.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
QUESTION = ("Explain, step by step and in detail, how to compute the sum of the first 100 "
            "positive integers, then check the result with a second method.")


@contextmanager
def server(model: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "ponder.serve", "--model", f"m={model}", "--port",
               str(port), "--max-concurrency", "8", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--short", type=int, default=16)
    parser.add_argument("--long", type=int, default=256)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/serve_overhead.md")
    args = parser.parse_args()

    scheme = get_scheme("cot", max_tokens=args.tokens)
    problem = get_task("math").problem(QUESTION)
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}],
            "ponder": {"scheme": "cot", "scheme_args": {"max_tokens": args.tokens}}}
    model = load_model(args.model)
    load = [os.getloadavg()[0]]  # other work on the machine skews every number below

    def in_process() -> int:
        return scheme(problem, model=model).usage.completion_tokens

    with server(args.model) as url, httpx.Client(base_url=url, timeout=600) as http:
        inside: list[float] = []  # the scheme's own seconds, timed inside the server

        def served(tokens: int = args.tokens) -> int:
            scheme_args = {"max_tokens": tokens}
            reply = http.post("/v1/chat/completions", json={
                **body, "ponder": {"scheme": "cot", "scheme_args": scheme_args}}).json()
            inside.append(reply["ponder"]["seconds"])
            return int(reply["usage"]["completion_tokens_details"]["reasoning_tokens"])

        def streamed() -> int:
            with http.stream("POST", "/v1/chat/completions",
                             json={**body, "stream": True}) as r:
                chunks = sum(1 for line in r.iter_lines() if "reasoning_content" in line)
            return chunks

        paths = {"in-process": in_process, "server": served, "server, streamed": streamed}
        for fn in paths.values():  # warm-up: load pages, fill prompt caches
            fn()
        times: dict[str, list[float]] = {name: [] for name in [*paths,
                                                               "server, outside the scheme"]}
        for _ in range(args.runs):
            for name, fn in paths.items():
                seconds, tokens = timed(fn)
                assert name == "server, streamed" or tokens == args.tokens, (name, tokens)
                times[name].append(seconds)
                if name == "server":
                    times["server, outside the scheme"].append(seconds - inside[-1])
        model.close()

        def clients(k: int) -> tuple[float, int]:
            with ThreadPoolExecutor(k) as pool:
                start = time.perf_counter()
                tokens = sum(pool.map(lambda _: served(), range(8)))
                return time.perf_counter() - start, tokens
        throughput = {k: clients(k) for k in (1, 8)}

        blocking = {"short, alone": timed(lambda: served(args.short))[0]}
        with ThreadPoolExecutor(1) as pool:
            start = time.perf_counter()
            long_run = pool.submit(served, args.long)
            time.sleep(1.0)
            blocking["short, 1 s after a long one started"] = timed(
                lambda: served(args.short))[0]
            long_run.result()
            blocking["the long one"] = time.perf_counter() - start
    load.append(os.getloadavg()[0])

    write(args, times, throughput, blocking, load)


def write(args: argparse.Namespace, times: dict[str, list[float]],
          throughput: dict[int, tuple[float, int]], blocking: dict[str, float],
          load: list[float]) -> None:
    base = statistics.median(times["in-process"])
    lines = [
        "# Server overhead",
        "",
        f"`{args.model}`, scheme `cot` (greedy), {args.tokens} new tokens per request, "
        f"{args.runs} alternating runs each; {platform.machine()}, {os.cpu_count()} cores, "
        f"1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end.",
        "",
        "    flock /tmp/ponder-bench.lock .venv/bin/python benchmarks/serve_overhead.py "
        f"--model {args.model} --tokens {args.tokens} --runs {args.runs} "
        f"--short {args.short} --long {args.long}",
        "",
        "| path | p50 s | min s | overhead (p50) |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        p50 = statistics.median(values)
        lines.append(f"| {name} | {p50:.3f} | {min(values):.3f} | {p50 / base:+.1%} |"
                     if name.endswith("outside the scheme") else
                     f"| {name} | {p50:.3f} | {min(values):.3f} | {p50 / base - 1:+.1%} |")
    lines += ["", "\"outside the scheme\" is the client's wall time less the scheme's own time "
              "measured inside the server (`ponder.seconds`): HTTP, JSON, validation, the thread "
              "hop. It does not move with how fast the model happens to decode."]
    lines += ["", "| clients | 8 requests, wall s | completion tok/s |", "|---|---|---|"]
    for k, (seconds, tokens) in throughput.items():
        lines.append(f"| {k} | {seconds:.2f} | {tokens / seconds:.1f} |")
    (s1, t1), (s8, t8) = throughput[1], throughput[8]
    lines += ["", f"8 clients / 1 client throughput: {(t8 / s8) / (t1 / s1):.2f}x (the llama.cpp "
              "backend decodes the sequences of concurrent requests in one batch per step; "
              "llama-batched-bench's ceiling on this machine is ~1.8x from 1 to 8 sequences, "
              "docs/results/batched_decoding.md)."]
    lines += ["", f"| request ({args.short} or {args.long} new tokens) | wall s |", "|---|---|"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in blocking.items()]
    lines += ["", "The short request is not queued behind the long one: it shares the long "
              "one's decode steps and returns as soon as its own tokens are done."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
