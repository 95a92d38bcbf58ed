"""A cascade's threshold fitted from stored runs, without generating anything
(`ponder fit-cascade`).

The cheap rung's rows (a voting scheme of the small model, e.g. `self-consistency@4`, whose
traces keep the vote) and the strong rung's rows (e.g. the big model's `cot`, from another
store) on the same questions say, for every threshold t, what `cascade@N:accept=t` would have
scored and cost: a question whose top answer has at least t of the N votes keeps the cheap
answer, any other one takes the strong rung's. Fit it on a train split (Yue et al. 2023 fit
theirs on held-out questions) and run the cascade with the threshold on the test split.

Chosen: the cheapest threshold within `tolerance` of the strong rung's accuracy alone, else the
most accurate one. Tokens are completion tokens per question: the cheap rung always, the
strong rung's where the question escalates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ponder.core.errors import DataError
from ponder.eval.store import Row


@dataclass(frozen=True)
class Point:
    threshold: float  # the share of the cheap votes the top answer needs to stand
    accuracy: float
    tokens: float  # completion tokens per question, both rungs
    escalated: float  # share of questions that went to the strong rung


def agreement(row: Row, n: int) -> float:
    """The top answer's share of the row's n chains, from the vote its trace recorded."""
    votes = json.loads(row.trace).get("meta", {}).get("votes") or {}
    return max(votes.values(), default=0) / n


def fit(cheap: Sequence[Row], strong: Sequence[Row], n: int) -> list[Point]:
    """What every threshold k/n (k = 1..n) would have given on the questions both ran."""
    strong_by_q = {r.question_id: r for r in strong}
    pairs = [(r, strong_by_q[r.question_id]) for r in cheap if r.question_id in strong_by_q]
    if not pairs:
        raise DataError("the cheap and strong rows share no question; run both on the same "
                        "questions (the same task, split and --limit)")
    shares = [agreement(c, n) for c, _ in pairs]
    points = []
    for k in range(1, n + 1):
        t = k / n
        kept = [share >= t for share in shares]
        right = sum(c.correct if keep else s.correct
                    for (c, s), keep in zip(pairs, kept, strict=True))
        tokens = sum(c.completion_tokens + (0 if keep else s.completion_tokens)
                     for (c, s), keep in zip(pairs, kept, strict=True))
        points.append(Point(t, right / len(pairs), tokens / len(pairs),
                            1 - sum(kept) / len(pairs)))
    return points


def choose(points: Sequence[Point], strong_accuracy: float, tolerance: float = 0.01) -> Point:
    """The cheapest threshold within `tolerance` of the strong rung alone, else the best."""
    good = [p for p in points if p.accuracy >= strong_accuracy - tolerance]
    if good:
        return min(good, key=lambda p: (p.tokens, -p.accuracy))
    return max(points, key=lambda p: (p.accuracy, -p.tokens))
