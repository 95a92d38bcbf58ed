"""Where scheme runs execute: a bounded thread pool behind a bounded queue.

Schemes and backends are synchronous, so each run goes to a worker thread; the event loop
only moves bytes. A request is admitted if fewer than `max_concurrency + max_queue` requests
are running or waiting (else `QueueFull`, a 503), then waits for one of `max_concurrency`
slots. Its `n` choices run on the pool under that one slot.

Cancellation is a `threading.Event` per request, read by the backend through `should_stop`
between decode steps: a request whose client has gone sets it, its runs end within a token,
and only then is its slot freed, so a new request never waits behind a run nobody reads.

`Events` carries what worker threads report (streamed text) to the event loop with
`call_soon_threadsafe`, the one thread-safe way into an asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    pass


class Cancelled(Exception):
    """A run whose request was cancelled before a thread could start it."""


@dataclass
class Stats:
    """Counters for /health. `active` is the number of scheme runs executing right now."""

    active: int = 0
    admitted: int = 0  # requests running or waiting for a slot
    completed: int = 0
    cancelled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_dict(self) -> dict[str, int]:
        return {"active": self.active, "admitted": self.admitted, "completed": self.completed,
                "cancelled": self.cancelled}


class Engine:
    def __init__(self, max_concurrency: int = 8, max_queue: int = 64) -> None:
        assert max_concurrency >= 1 and max_queue >= 0
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self._closed = False
        self.stats = Stats()
        self._pool = self._new_pool()
        self._slots = asyncio.Semaphore(max_concurrency)

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="ponder-run")

    def open(self) -> None:
        """Ready to run again after `close` (an app whose lifespan starts again: test clients
        start and stop it around each use, each time on an event loop of their own, to which
        a fresh semaphore binds)."""
        if self._closed:
            self._pool, self._closed = self._new_pool(), False
            self._slots = asyncio.Semaphore(self.max_concurrency)

    def admit(self) -> Ticket:
        """Take a place in the queue now, or raise QueueFull."""
        if self.stats.admitted >= self.max_concurrency + self.max_queue:
            raise QueueFull(f"{self.stats.admitted} requests are running or queued; retry later")
        self.stats.admitted += 1
        return Ticket(self)

    async def run(self, fn: Callable[[], T], stop: threading.Event) -> T:
        """`fn()` on a worker thread. If the caller is cancelled, the run is told to stop and
        is waited for before the cancellation goes on."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._counted, fn, stop)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            await asyncio.wait([future])
            raise

    def _counted(self, fn: Callable[[], T], stop: threading.Event) -> T:
        stats = self.stats
        if stop.is_set():  # cancelled while it waited for a thread: do not start
            raise Cancelled
        with stats.lock:
            stats.active += 1
        try:
            return fn()
        finally:
            with stats.lock:
                stats.active -= 1
                if stop.is_set():
                    stats.cancelled += 1
                else:
                    stats.completed += 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._closed = True


class Ticket:
    """One admitted request: its place in the queue, then a slot once `acquire` returns."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self._held, self._done = engine, False, False

    async def acquire(self) -> None:
        await self._engine._slots.acquire()
        self._held = True

    def release(self) -> None:
        """Idempotent: free the slot (if held) and the place in the queue."""
        if self._held:
            self._engine._slots.release()
            self._held = False
        if not self._done:
            self._engine.stats.admitted -= 1
            self._done = True


class Events:
    """Worker threads `put`, the response coroutine `get`s, in order."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: Any) -> None:
        """Thread-safe; a closed loop means the response is gone, so the item is dropped."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def put_nowait(self, item: Any) -> None:
        """From the event loop itself."""
        self._queue.put_nowait(item)

    async def get(self, timeout: float) -> Any:
        """The next item, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
