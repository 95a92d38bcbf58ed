"""`ponder serve` as a child process, for scripts, benchmarks and tests that talk to a real one.

    with serving("--model", "default") as url:    # http://127.0.0.1:PORT, ready
        httpx.post(f"{url}/v1/chat/completions", json=...)

The server listens on a free loopback port; `serving` returns once `/health` answers, and stops
the server however the block ends. A server that exits before it is ready, or is not ready in
`ready_seconds`, is a `ServeError` carrying what it printed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ponder.core.errors import PonderError


class ServeError(PonderError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(*args: str, ready_seconds: float = 300.0) -> Iterator[str]:
    """`python -m ponder.serve ARGS` on a free loopback port; yields its base URL when ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # a file, not a pipe: a server that logs much never blocks on it
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "ponder.serve", "--port", str(port),
                                    "--log-level", "warning", *args],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_seconds
            while not _ready(url):
                if process.poll() is not None:
                    log.seek(0)
                    raise ServeError("ponder serve exited before it was ready: "
                                     + log.read().decode(errors="replace").strip()[-2000:])
                if time.monotonic() > deadline:
                    raise ServeError(f"ponder serve was not ready in {ready_seconds:.0f} s")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
