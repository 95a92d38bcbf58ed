r"""math-verify, bounded in time and safe to call from any thread.

The problem: math-verify bounds its sympy work with `signal.alarm`, which Python only allows in
the main thread (elsewhere `parse`/`verify` raise ValueError), and turning its timeouts off in a
worker thread (TRL's choice) leaves nothing to stop a runaway comparison. Worse, a thread cannot
be interrupted at all: comparing `10^{10^{10}}` with `1` spends minutes inside CPython's big-integer
power *holding the GIL*, which freezes every other thread of a server (measured: the main thread
did not get one tick in 60 s). Only a process boundary bounds that.

So:
- in the main thread, math-verify runs here, under our own interval timer (`_deadline`: one
  float budget for parse + parse + verify, instead of math-verify's per-step whole seconds);
- in any other thread, it runs in a child process whose main thread does exactly the same, and
  the parent kills the child if it has not answered `GRACE_S` after the budget.

The child is a fresh interpreter running `_serve`, not `multiprocessing`: it never
re-imports the caller's `__main__` (spawn's trap for unguarded scripts) and never forks a
multi-threaded server (fork's trap). Protocol: one JSON line in, `1`/`0` out.

Cost on the 2-core dev box (200 MATH-500 answers, each against itself): in the main thread the
median comparison takes ~1 ms (the slowest, intervals and matrices, ~100-900 ms); in a worker
thread the first call also starts a worker (~0.6 s: interpreter plus sympy import), after which
the median is ~1.15 ms, i.e. the process round trip adds ~0.2 ms.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

MAX_WORKERS = max(1, min(4, os.cpu_count() or 1))  # concurrent verifications across threads
GRACE_S = 2.0  # past the budget, the parent kills a worker that did not time itself out
STARTUP_S = 60.0  # a cold interpreter importing sympy on a loaded machine
_HAS_ITIMER = hasattr(signal, "setitimer")  # POSIX


def math_verify_equal(pred: str, gold: str, *, timeout: float = 5.0) -> bool:
    """math-verify's judgement of `pred` against `gold`; False if it takes over `timeout` s."""
    if threading.current_thread() is threading.main_thread() or not _HAS_ITIMER:
        return verify_here(pred, gold, timeout)
    return _verify_in_worker(pred, gold, timeout)


# --- in this process ------------------------------------------------------------------------


def _for_math_verify(answer: str) -> str:
    r"""math-verify extracts from `\boxed{}` first; a bare answer is boxed so it is read whole."""
    answer = answer.strip()
    if answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    return answer if "\\boxed" in answer else f"\\boxed{{{answer}}}"


class _Overran(BaseException):
    """Raised by our timer; a BaseException so math-verify's `except Exception` lets it through."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise `_Overran` in the main thread after `seconds`, then every 50 ms in case something
    swallows it. An outer timer (pytest-timeout, a caller's alarm) is put back, less the time
    spent here."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _Overran

    outer_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 0.05)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if outer_handler is None else outer_handler)
        if outer_delay > 0:
            left = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


class _QuietTimeoutNotice(logging.Filter):
    """math-verify warns that its own timeout is off; ours is on, so the notice would mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_QuietTimeoutNotice())


def verify_here(pred: str, gold: str, timeout: float) -> bool:
    """math-verify in this thread, which must be the main thread where `setitimer` exists."""
    from math_verify import parse, verify

    gold_text, pred_text = _for_math_verify(gold), _for_math_verify(pred)
    if not _HAS_ITIMER:  # Windows: math-verify's own timeouts use processes there, any thread
        seconds = max(1, math.ceil(timeout))
        g, p = parse(gold_text, parsing_timeout=seconds), parse(pred_text, parsing_timeout=seconds)
        return bool(g and p and verify(g, p, timeout_seconds=seconds))
    try:
        with _deadline(timeout):
            g = parse(gold_text, parsing_timeout=None)
            p = parse(pred_text, parsing_timeout=None)
            return bool(g and p and verify(g, p, timeout_seconds=None))
    except _Overran:
        logger.warning("math-verify gave up after %.1fs on %.60r vs %.60r", timeout, pred, gold)
        return False


# --- in worker processes --------------------------------------------------------------------


class _Worker:
    """One child interpreter serving requests from its stdin, one at a time."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from ponder.verifiers.mathverify import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, text=True,
        )
        if self._read_line(STARTUP_S) != "ready":
            self.kill()
            raise RuntimeError("the math-verify worker process did not start")

    def ask(self, pred: str, gold: str, timeout: float) -> bool | None:
        """The child's verdict, or None if it overran or died."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps([pred, gold, timeout]) + "\n")
            self.proc.stdin.flush()
        except OSError:  # the child died; BrokenPipeError is an OSError
            return None
        line = self._read_line(timeout + GRACE_S)
        return None if line not in ("0", "1") else line == "1"

    def _read_line(self, seconds: float) -> str | None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        return self.proc.stdout.readline().strip() if ready else None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the child's loop ends at EOF
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.kill()


_idle: list[_Worker] = []
_idle_lock = threading.Lock()
_slots = threading.BoundedSemaphore(MAX_WORKERS)


def _verify_in_worker(pred: str, gold: str, timeout: float) -> bool:
    with _slots:
        with _idle_lock:
            worker = _idle.pop() if _idle else None
        worker = worker or _Worker()
        verdict = worker.ask(pred, gold, timeout)
        if verdict is None:
            logger.warning("math-verify worker overran %.1fs on %.60r vs %.60r; killed it",
                           timeout, pred, gold)
            worker.kill()
            return False
        with _idle_lock:
            _idle.append(worker)
        return verdict


@atexit.register
def _close_workers() -> None:
    with _idle_lock:
        while _idle:
            _idle.pop().close()


def _serve() -> None:
    """The child: answer requests until stdin closes. Anything a library prints goes to stderr,
    so it cannot corrupt the protocol on stdout."""
    out, sys.stdout = sys.stdout, sys.stderr
    import math_verify  # noqa: F401  (import before "ready", so the first request is not slow)

    print("ready", file=out, flush=True)
    for line in sys.stdin:
        pred, gold, timeout = json.loads(line)
        print("1" if verify_here(pred, gold, float(timeout)) else "0", file=out, flush=True)
