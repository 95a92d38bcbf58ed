"""A cascade's threshold fitted from stored runs, without generating anything
(`ponder fit-cascade`).

The cheap rung's rows (a voting scheme of the small model, e.g. `self-consistency@8`, whose
traces keep every chain) and the strong rung's rows (e.g. the big model's `cot`, from another
store) on the same questions say, for every threshold t, what `cascade@n:accept=t` would have
scored and cost: the cheap rung is replayed from the first n chains of each stored pool (sample
order, so one pool of 8 fits cascade@2, @4 and @8), a question whose top answer has at least t
of the n votes keeps it, any other one takes the strong rung's. Fit it on a train split (Yue et
al. 2023 fit theirs on held-out questions) and run the cascade with the threshold on the test
split.

Costs per question: completion tokens, and model seconds where both stores have them (the cheap
rung's share of its row's seconds in proportion to its chains' tokens). Chosen: the cheapest
threshold (in seconds where known, else tokens) within `tolerance` of the strong rung's
accuracy alone, else the most accurate one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ponder.core.errors import DataError
from ponder.core.types import Trace
from ponder.eval.store import Row


@dataclass(frozen=True)
class Point:
    threshold: float  # the share of the cheap votes the top answer needs to stand
    accuracy: float
    tokens: float  # completion tokens per question, both rungs
    seconds: float | None  # model seconds per question, both rungs (None: a store lacks them)
    escalated: float  # share of questions that went to the strong rung


@dataclass(frozen=True)
class Cheap:
    """The cheap rung replayed on one question: its top answer, whether that is right, the
    top answer's share of the n votes, and what the n chains cost."""

    correct: bool
    agreement: float
    tokens: int
    seconds: float | None


def replay(row: Row, n: int, key: Callable[[str], str], check: Callable[[str, str], bool]
           ) -> Cheap:
    """The first n chains of the row's pool, voted as self-consistency votes: grouped by the
    task's key, ties to the answer sampled first."""
    trace = Trace.from_dict(json.loads(row.trace))
    roots = sorted((node for node in trace.nodes if node.parent is None), key=lambda nd: nd.id)
    if len(roots) < n:
        raise DataError(f"question {row.question_id} of {row.scheme} holds {len(roots)} "
                        f"chains, fewer than {n}; fit a smaller cascade or store more samples")
    chains = roots[:n]
    counts: dict[str, list[str]] = {}
    for node in chains:
        if node.answer is not None:
            counts.setdefault(key(node.answer), []).append(node.answer)
    top = max(counts.values(), key=len, default=[])  # max keeps the first of equal counts
    tokens = sum(node.tokens for node in chains)
    seconds = (None if row.model_seconds is None else
               row.model_seconds * tokens / max(1, sum(nd.tokens for nd in roots)))
    return Cheap(bool(top) and check(top[0], row.gold), len(top) / n, tokens, seconds)


def fit(cheap: Sequence[Row], strong: Sequence[Row], n: int, key: Callable[[str], str],
        check: Callable[[str, str], bool]) -> tuple[list[Point], float]:
    """What every threshold k/n (k = 1..n) would have given on the questions both ran, and the
    strong rung's accuracy alone on those questions."""
    strong_by_q = {r.question_id: r for r in strong}
    pairs = [(replay(r, n, key, check), strong_by_q[r.question_id]) for r in cheap
             if r.question_id in strong_by_q]
    if not pairs:
        raise DataError("the cheap and strong rows share no question; run both on the same "
                        "questions (the same task, split and --limit)")
    timed = all(c.seconds is not None and s.model_seconds is not None for c, s in pairs)
    points = []
    for k in range(1, n + 1):
        t = k / n
        kept = [c.agreement >= t for c, _ in pairs]
        right = sum(c.correct if keep else s.correct
                    for (c, s), keep in zip(pairs, kept, strict=True))
        tokens = sum(c.tokens + (0 if keep else s.completion_tokens)
                     for (c, s), keep in zip(pairs, kept, strict=True))
        seconds = (sum((c.seconds or 0) + (0 if keep else s.model_seconds or 0)
                       for (c, s), keep in zip(pairs, kept, strict=True)) if timed else None)
        points.append(Point(t, right / len(pairs), tokens / len(pairs),
                            None if seconds is None else seconds / len(pairs),
                            1 - sum(kept) / len(pairs)))
    return points, sum(s.correct for _, s in pairs) / len(pairs)


def choose(points: Sequence[Point], strong_accuracy: float, tolerance: float = 0.01) -> Point:
    """The cheapest threshold within `tolerance` of the strong rung alone, else the best."""
    def cost(p: Point) -> float:
        return p.tokens if p.seconds is None else p.seconds

    good = [p for p in points if p.accuracy >= strong_accuracy - tolerance]
    if good:
        return min(good, key=lambda p: (cost(p), -p.accuracy))
    return max(points, key=lambda p: (p.accuracy, -cost(p)))
