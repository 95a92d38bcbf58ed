"""Majority voting over answers, the operator self-consistency, adaptive and best-of-n share.

Answers are grouped by the problem's key (its normalised form), so "18", "18.00" and "$18"
vote together. Chains without an answer do not vote.

Tie rule: among answers with equal weight, the one sampled first wins (lowest node id). It is
deterministic for a given sample order and favours no answer by content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ponder.core.problem import Problem
from ponder.core.types import Node


@dataclass
class Candidate:
    answer: str  # the first surface form seen for this key
    key: str
    weight: float = 0.0
    nodes: list[Node] = field(default_factory=list)

    @property
    def votes(self) -> int:
        return len(self.nodes)


def tally(nodes: Sequence[Node], problem: Problem,
          weights: Sequence[float] | None = None) -> list[Candidate]:
    """Candidates, best first. `weights[i]` is node i's vote (1 each when None)."""
    by_key: dict[str, Candidate] = {}
    for i, node in enumerate(nodes):
        if node.answer is None:
            continue
        key = problem.key(node.answer)
        cand = by_key.setdefault(key, Candidate(answer=node.answer, key=key))
        cand.weight += 1.0 if weights is None else weights[i]
        cand.nodes.append(node)
    return sorted(by_key.values(), key=lambda c: (-c.weight, c.nodes[0].id))


def record(nodes: Sequence[Node], ranked: Sequence[Candidate]) -> dict[str, int]:
    """The vote counts, for the trace; marks each node with its answer's rank."""
    for rank, cand in enumerate(ranked):
        for node in cand.nodes:
            node.meta["rank"] = rank
    return {c.answer: c.votes for c in ranked}
