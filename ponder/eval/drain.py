"""Stopping a long `ponder eval` without losing the questions it is working on.

A question's rows are stored when its schemes finish; one killed mid-question loses what it had
done (its pooled samples aside, shared.py). For a tree search that is many minutes of a CPU.
A drain instead finishes the questions in flight, starts no more, and ends the run with every
question it began stored whole; `--resume` carries on later.

    kill -USR1 PID      # drain (works for a run started in the background, which ignores Ctrl-C)
    Ctrl-C              # drain; a second Ctrl-C stops at once, as Ctrl-C always did

Signals reach only the main thread, so the handlers are installed only when the run is on it
(the CLI); a run on another thread (a test, a notebook's worker) is stopped through `Drain.set`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

NOTICE = (b"\nponder eval: finishing the questions in flight, starting no more "
          b"(a second Ctrl-C stops at once; --resume continues)\n")
NOW = (b"\nponder eval: stopping now; the questions in flight are not stored "
       b"(--resume redoes them)\n")


class Drain(threading.Event):
    """Set when the run should finish what it has begun and begin nothing more."""


@contextmanager
def drain_on_signals(drain: Drain) -> Iterator[None]:
    """While the block runs, SIGUSR1 and a first Ctrl-C set `drain`; a second Ctrl-C raises
    KeyboardInterrupt. SIGINT is left alone where it is ignored (a background job) or handled
    by someone else."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and drain.is_set():
            os.write(2, NOW)
            raise KeyboardInterrupt
        if not drain.is_set():
            os.write(2, NOTICE)  # not print: a signal handler may interrupt a print
        drain.set()

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    signal.signal(signal.SIGUSR1, on_signal)
    if before[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_signal)
    try:
        yield
    finally:
        for sig, handler in before.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(sig, handler)
