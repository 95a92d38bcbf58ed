"""Progress of `ponder eval` on stderr: a rich bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time

from rich import progress as rp
from rich.console import Console


def accuracy_text(right: int, rows: int) -> str:
    return f"acc {right / rows:.1%} of {rows}" if rows else "acc —"


def progress_bar(enabled: bool) -> rp.Progress:
    """A bar on stderr: rows done / planned, accuracy so far, elapsed and ETA. On a stderr that
    is not a terminal (nohup, CI logs) the bar does not draw; `LogLines` writes lines instead."""
    console = Console(stderr=True)
    return rp.Progress(rp.TextColumn("{task.description:<26}"), rp.BarColumn(),
                       rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[acc]}"),
                       rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
                       console=console, disable=not enabled or not console.is_terminal,
                       speed_estimate_period=1800)  # rows come minutes apart


class LogLines:
    """The progress bar's content as one plain line every `every` seconds, for a log file:
    `gsm8k · 450/2400 rows · acc 31.2% of 450 · 1:02:33 elapsed · ETA 3:10:00`. The ETA
    assumes the rest goes at this session's average pace so far."""

    every = 60.0

    def __init__(self, bar: rp.Progress, tid: rp.TaskID, name: str) -> None:
        self.bar, self.tid, self.name = bar, tid, name
        self.start, self.last = time.monotonic(), time.monotonic()
        self.first = bar.tasks[tid].completed  # rows a resumed run found done

    def maybe_print(self) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        t = self.bar.tasks[self.tid]
        total = t.total or 0
        rate = (t.completed - self.first) / max(now - self.start, 1e-9)
        eta = clock((total - t.completed) / rate) if rate > 0 else "—"
        print(f"{self.name} · {t.completed:.0f}/{total:.0f} rows · {t.fields['acc']} · "
              f"{clock(now - self.start)} elapsed · ETA {eta}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
