"""Sequential against parallel at an equal token budget (`ponder report --equal-tokens`).

One long chain (`budget:budget=1024:waits=2`, or greedy `cot`) and self-consistency spend
their tokens differently: one thinks longer, the other samples more. To compare them at the
same total tokens, each parallel line of a results store (a voting scheme run at two or more
sizes with the same other settings: `self-consistency@2:budget=256`, `@4`, `@8`) is read as
a curve of accuracy against tokens per question, and every other scheme is set next to that
curve at its own tokens per question: the curve's accuracy there, interpolated linearly in
log tokens between the two sizes that bracket it (samples double, so log tokens is the curve's
natural axis; Ghosal et al. 2025 and Snell et al. 2024 plot it so). A scheme outside a curve's
range is compared to its nearest end and marked so: it is not an estimate at equal tokens.

The interpolated accuracy is a reading of the curve, not a measured run, so it has no interval
of its own; the sizes that bracket it are named, with their own intervals in the main table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ponder.eval.report import SchemeSummary
from ponder.schemes import parse_spec

PARALLEL = ("self-consistency", "adaptive", "best-of-n")  # families that sample more to spend


@dataclass(frozen=True)
class Curve:
    """One parallel line: a voting family at several sizes, the same settings otherwise."""

    name: str  # e.g. "self-consistency@k:budget=256"
    points: tuple[SchemeSummary, ...]  # by tokens per question, ascending


@dataclass(frozen=True)
class Matched:
    scheme: str
    tokens: float  # its completion tokens per question
    accuracy: float
    curve: str
    curve_accuracy: float  # the curve at `tokens`
    below: str  # the sizes it is read between (the same one twice at an end)
    above: str
    inside: bool  # False: `tokens` is outside the curve, compared to its nearest end

    @property
    def gain(self) -> float:
        return self.accuracy - self.curve_accuracy


def curves(summaries: Sequence[SchemeSummary]) -> list[Curve]:
    """The parallel lines: a PARALLEL family at two or more sizes with equal other settings."""
    lines: dict[str, list[SchemeSummary]] = {}
    for s in summaries:
        family, size, settings = parse_spec(s.scheme)
        if family in PARALLEL and size is not None and s.mean_completion_tokens > 0:
            rest = "".join(f":{k}={json.dumps(v)}" for k, v in sorted(settings.items()))
            lines.setdefault(f"{family}@k{rest}", []).append(s)
    return [Curve(name, tuple(sorted(points, key=lambda p: p.mean_completion_tokens)))
            for name, points in lines.items() if len(points) >= 2]


def at_equal_tokens(summaries: Sequence[SchemeSummary]) -> list[Matched]:
    """Every scheme that is not on a curve, against every curve, at its tokens per question."""
    lines = curves(summaries)
    on_a_curve = {p.scheme for c in lines for p in c.points}
    return [read(s, c) for c in lines for s in summaries
            if s.scheme not in on_a_curve and s.mean_completion_tokens > 0]


def read(s: SchemeSummary, curve: Curve) -> Matched:
    """The curve's accuracy at `s`'s tokens per question."""
    x = math.log(s.mean_completion_tokens)
    xs = [math.log(p.mean_completion_tokens) for p in curve.points]
    if x <= xs[0] or x >= xs[-1]:
        end = curve.points[0] if x <= xs[0] else curve.points[-1]
        inside = math.isclose(x, math.log(end.mean_completion_tokens))
        return Matched(s.scheme, s.mean_completion_tokens, s.accuracy, curve.name,
                       end.accuracy, end.scheme, end.scheme, inside)
    i = next(i for i in range(1, len(xs)) if x <= xs[i])
    lo, hi = curve.points[i - 1], curve.points[i]
    share = (x - xs[i - 1]) / (xs[i] - xs[i - 1]) if xs[i] > xs[i - 1] else 0.0
    accuracy = lo.accuracy + share * (hi.accuracy - lo.accuracy)
    return Matched(s.scheme, s.mean_completion_tokens, s.accuracy, curve.name, accuracy,
                   lo.scheme, hi.scheme, True)


HEADERS = ("scheme", "tokens/q", "accuracy", "parallel curve", "curve at equal tokens",
           "Δ (points)", "read between")


def cells(m: Matched) -> list[str]:
    between = m.below if m.below == m.above else f"{m.below} … {m.above}"
    where = between if m.inside else f"{between} (outside the curve: its nearest end)"
    return [m.scheme, f"{m.tokens:.0f}", f"{m.accuracy:.1%}", m.curve,
            f"{m.curve_accuracy:.1%}", f"{round(100 * m.gain, 1) + 0.0:+.1f}", where]


def to_markdown(matched: Sequence[Matched]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(m)) + " |" for m in matched]
    return "\n".join(lines) + "\n"
