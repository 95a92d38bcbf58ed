"""What `ponder view` and `ponder report --html` draw: panels read from trace files and from
results stores, with each node's answer checked against the gold where one is known.

A trace file is what `ponder trace` reads (`ponder solve --trace`, a `Result.to_dict()`, an
exported row) or what the server's `GET /v1/traces/{id}` returns (one trace per choice). A
results store (`ponder eval --out RUN.db`) gives one panel per scheme × seed of one question,
checked with the task's own checker (`task_of` its metadata).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, DataError, PonderError, UnknownName
from ponder.core.types import Trace
from ponder.trace_view import parse_trace, read_json
from ponder.view.page import Panel

Check = Callable[[str, str], bool]  # (answer, gold) -> right?


def is_store(path: Path) -> bool:
    """A SQLite file (a results store), by its first bytes."""
    try:
        with path.open("rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def checker(name: str) -> Check:
    """A named rule's check (`ponder/tasks/rules.py`: numeric, math, exact, yesno)."""
    from ponder.tasks.rules import RULES

    if name not in RULES:
        raise UnknownName("checker", name, RULES)
    return RULES[name].check


def rights(trace: Trace, gold: str | None, check: Check | None,
           verdicts: dict[str, bool] | None = None) -> dict[int, bool]:
    """Each answering node's verdict against `gold`: {node id: right?}. Every distinct answer
    is checked once: `verdicts` (answer -> right?, e.g. the stored rows' own) is read and
    added to, so traces of one question share it; an answer the checker cannot read is left
    unmarked."""
    if gold is None or check is None:
        return {}
    verdicts = {} if verdicts is None else verdicts
    out = {}
    for node in trace.nodes:
        if node.answer is None:
            continue
        if node.answer not in verdicts:
            try:
                verdicts[node.answer] = bool(check(node.answer, gold))
            except Exception:  # a checker that chokes on a model's answer: no mark, no crash
                continue
        out[node.id] = verdicts[node.answer]
    return out


def file_panels(path: Path, gold: str | None = None, check: Check | None = None) -> list[Panel]:
    """The traces in a JSON file: one, or a kept request's (`{"traces": [...]}`)."""
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("traces"), list):  # GET /v1/traces/{id}
        question = data.get("question") if isinstance(data.get("question"), str) else None
        traces = [parse_trace(t, f"{path} choice {i}") for i, t in enumerate(data["traces"])]
        many = len(traces) > 1
        return [Panel(t, f"{path.name} · choice {i}" if many else path.name, question, gold,
                      right=rights(t, gold, check)) for i, t in enumerate(traces)]
    trace = parse_trace(data, str(path))
    return [Panel(trace, path.name, gold=gold, right=rights(trace, gold, check))]


# -- results stores --------------------------------------------------------------------------


@dataclass
class StoredRun:
    """One stored row of a question, with its trace parsed."""

    scheme: str
    seed: int
    position: int
    correct: bool
    answer: str | None
    gold: str
    trace: Trace


def question_runs(path: Path, question: str, schemes: Sequence[str] = ()
                  ) -> tuple[dict[str, Any], list[StoredRun]]:
    """The store's metadata and the rows of one question (by id, or by position where no id
    matches), in scheme and seed order; `schemes` keeps only those specs."""
    from ponder.eval.store import Store

    with Store.read(path) as store:
        meta = store.meta()
        rows = _rows(store.conn, "question_id = ?", question)
        if not rows and question.isdigit():
            rows = _rows(store.conn, "position = ?", int(question))
        if not rows:
            some = [q for (q,) in store.conn.execute(
                "SELECT DISTINCT question_id FROM results ORDER BY position LIMIT 5")]
            raise DataError(f"{path} holds no question {question!r}; its questions include "
                            f"{', '.join(some) or 'none yet'} (an id, or a position)")
    runs = parse_runs(path, question, [r for r in rows if not schemes or r[0] in schemes])
    if not runs:
        stored = sorted({r[0] for r in rows})
        raise UnknownName("scheme", ",".join(schemes), stored)
    return meta, runs


def parse_runs(path: Path, question: str, rows: Sequence[tuple[Any, ...]]) -> list[StoredRun]:
    """`_rows`' tuples as runs, their traces parsed (a broken one is a one-line DataError)."""
    runs = []
    for scheme, seed, position, correct, answer, gold, text in rows:
        try:
            trace = parse_trace(json.loads(text), f"{path} ({question}, {scheme}, seed {seed})")
        except json.JSONDecodeError:
            raise DataError(f"{path}: the trace of ({question}, {scheme}, seed {seed}) is not "
                            "JSON") from None
        runs.append(StoredRun(scheme, int(seed), int(position), bool(correct), answer, gold,
                              trace))
    return runs


def question_rows(conn: Any, question: str) -> list[tuple[Any, ...]]:
    """One question's rows in an open store: (scheme, seed, position, correct, answer, gold,
    trace JSON), in scheme and seed order."""
    return _rows(conn, "question_id = ?", question)


def _rows(conn: Any, where: str, value: object) -> list[tuple[Any, ...]]:
    # the primary key (question_id, scheme, seed) makes one question's rows a quick look-up
    return list(conn.execute(
        "SELECT scheme, seed, position, correct, answer, gold, trace FROM results "
        f"WHERE {where} ORDER BY scheme, seed", (value,)))


def task_check(meta: dict[str, Any]) -> Check | None:
    """The checker of the task a store was made with; None where it cannot be rebuilt (a task
    file since moved): then only each run's own verdict is shown."""
    from ponder.eval.runner import task_of

    try:
        return task_of(meta).check
    except (PonderError, OSError, KeyError):
        return None


def store_panels(path: Path, question: str, schemes: Sequence[str] = (),
                 check: Check | None = None) -> list[Panel]:
    """One panel per stored scheme × seed of `question`."""
    meta, runs = question_runs(path, question, schemes)
    return run_panels(runs, check or task_check(meta))


def run_panels(runs: Sequence[StoredRun], check: Check | None) -> list[Panel]:
    """A panel per stored run of one question, labelled by scheme (and seed, where several)."""
    seeds = Counter(r.scheme for r in runs)
    verdicts = {r.answer: r.correct for r in runs if r.answer is not None}
    return [Panel(r.trace, r.scheme + (f" · seed {r.seed}" if seeds[r.scheme] > 1 else ""),
                  gold=r.gold, correct=r.correct, right=rights(r.trace, r.gold, check, verdicts))
            for r in runs]


def load_panels(paths: Sequence[Path], *, question: str | None = None,
                schemes: Sequence[str] = (), gold: str | None = None,
                check: Check | None = None) -> list[Panel]:
    """Panels from every path, in order: trace files and results stores alike."""
    if not paths:
        raise ConfigError("paths", "", "give a trace file (ponder solve --trace FILE.json) or "
                          "a results store with --question ID")
    panels: list[Panel] = []
    stores = [p for p in paths if is_store(p)]
    if question is not None and not stores:
        raise ConfigError("--question", question, "it picks a question of a results store "
                          "(ponder eval --out RUN.db); pass one")
    if schemes and not stores:
        raise ConfigError("--scheme", ",".join(schemes), "it picks runs of a results store; "
                          "pass one")
    for path in paths:
        if path in stores:
            if question is None:
                raise ConfigError("--question", "", f"{path} is a results store: name one of "
                                  "its questions, e.g. --question 0 (an id or a position)")
            panels += store_panels(path, question, schemes)
        else:
            panels += file_panels(path, gold, check)
    return panels
