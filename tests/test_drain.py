"""A drained `ponder eval` stores every question it began, whole, begins no more, and resumes."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from test_eval import config, count_rows, ponder_eval, stored, write_questions

from ponder.core.protocols import OnText, ShouldStop
from ponder.core.types import Completion, GenerationRequest
from ponder.core.wrap import Wrapper
from ponder.eval.drain import Drain
from ponder.eval.runner import run_eval
from ponder.models.catalog import load_model

SCHEMES = ("cot", "self-consistency@3", "best-of-n@2")
ROWS_A_QUESTION = 1 + 2 * 2  # cot once; the sampled schemes with 2 seeds each


class DrainWhenBegun(Wrapper):
    """Sets `drain` once the model has been asked about `begun` different questions."""

    def __init__(self, drain: Drain, begun: int) -> None:
        super().__init__(load_model("fake", delay_per_token=0.0005), owns=True)
        self.drain, self.begun, self.seen = drain, begun, set[str]()

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        for r in requests:
            self.seen.update(re.findall(r"Question \d+", str(r.messages)))
        if len(self.seen) >= self.begun:
            self.drain.set()
        return super().generate(requests, on_text=on_text, should_stop=should_stop)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_drain_finishes_the_questions_in_flight_and_begins_no_more(tmp_path: Path,
                                                                      concurrency: int) -> None:
    drain = Drain()
    cfg = config(tmp_path, schemes=SCHEMES, concurrency=concurrency, share_samples=True)
    outcome = run_eval(cfg, model_factory=lambda: DrainWhenBegun(drain, concurrency),
                       progress=False, drain=drain)
    per_question = Counter(row.position for row in stored(tmp_path / "run.db"))
    assert per_question == {q: ROWS_A_QUESTION for q in range(concurrency)}
    assert (outcome.written, outcome.drained) == (concurrency * ROWS_A_QUESTION, True)

    resumed = run_eval(replace(cfg, resume=True), progress=False)
    assert (resumed.resumed, resumed.drained) == (outcome.written, False)
    assert len(stored(tmp_path / "run.db")) == resumed.planned == 6 * ROWS_A_QUESTION


def test_a_run_that_finishes_is_not_drained_even_if_asked_at_its_end(tmp_path: Path) -> None:
    drain = Drain()
    cfg = config(tmp_path, schemes=("cot",), limit=2, concurrency=2)
    outcome = run_eval(cfg, model_factory=lambda: DrainWhenBegun(drain, 2), progress=False,
                       drain=drain)
    assert drain.is_set() and not outcome.drained
    assert outcome.written == outcome.planned == 2


def wait_for_rows(db: Path, proc: subprocess.Popen[str], rows: int) -> None:
    deadline = time.monotonic() + 60
    while count_rows(db) < rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the signal"


def start_eval(*args: str, sigint: signal.Handlers = signal.SIG_DFL) -> subprocess.Popen[str]:
    """`ponder eval ARGS` in a subprocess that starts with SIGINT as `sigint`: SIG_DFL as in a
    terminal whatever this process has (a runner started in the background ignores SIGINT,
    and its children inherit that), SIG_IGN as in a background job."""
    return subprocess.Popen(ponder_eval(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


@pytest.mark.parametrize("signals", [(signal.SIGUSR1,), (signal.SIGINT,)], ids=["usr1", "ctrl-c"])
def test_the_cli_drains_on_a_signal_and_says_how_to_resume(tmp_path: Path,
                                                           signals: tuple[int, ...]) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    db = tmp_path / "run.db"
    args = ["gsm8k", "--data", str(data), "--model", "fake", "--model-arg",
            "delay_per_token=0.01", "--schemes", ",".join(SCHEMES), "--seeds", "2",
            "--concurrency", "2", "--out", str(db)]
    proc = start_eval(*args)
    wait_for_rows(db, proc, 1)
    for sig in signals:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "finishing the questions in flight" in err
    assert "stopped on request: run the same command with --resume to finish" in err
    assert "Traceback" not in err
    per_question = Counter(row.position for row in stored(db))
    assert set(per_question.values()) == {ROWS_A_QUESTION}  # whole questions only
    assert 1 <= len(per_question) < 6

    resumed = subprocess.run(ponder_eval(*args, "--resume"), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len(stored(db)) == 6 * ROWS_A_QUESTION


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    db = tmp_path / "run.db"
    args = ["gsm8k", "--data", str(data), "--model", "fake", "--model-arg",
            "delay_per_token=0.05", "--schemes", ",".join(SCHEMES), "--seeds", "2",
            "--out", str(db)]
    proc = start_eval(*args)
    wait_for_rows(db, proc, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.rstrip().endswith("stopping now; the questions in flight are not stored "
                                 "(--resume redoes them)")
    assert count_rows(db) < ROWS_A_QUESTION  # the question in flight was not finished


def test_a_background_job_that_ignores_sigint_keeps_ignoring_it(tmp_path: Path) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    db = tmp_path / "run.db"
    args = ["gsm8k", "--data", str(data), "--model", "fake", "--model-arg",
            "delay_per_token=0.002", "--schemes", "cot", "--out", str(db)]
    proc = start_eval(*args, sigint=signal.SIG_IGN)
    wait_for_rows(db, proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "finishing the questions in flight" not in err
    assert count_rows(db) == 6
