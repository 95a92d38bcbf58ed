r"""`calc`: a calculator's check of a chain's arithmetic, as a score.

Every arithmetic claim the text writes (`48 / 2 = 24`, `\frac{48}{2} = 24`, `$5 + $7 = $12`,
each link of `a = b = c`) is found and judged exactly by ponder/verifiers/claims.py; the score
is exp(-number of false claims): 1.0 for a chain with no false claim (or none at all), 0.37 with
one, 0.14 with two. On the stored GSM8K pools (100 test questions, 0.5B model;
docs/results/rescore_pools.md) this weighting lifted self-consistency@8's vote from 35% to 40%
on the very same chains: a chain that miscalculates is usually wrong, and the vote lets the
careful chains decide. Alone (best-of-n's plain selection) it is weak: most chains make no false
claim, so most tie at 1.0.

Needs no model, no logprobs and no gold answer. Whole chains (best-of-n, aggregate) score their
whole text; a tree path (beam, dvts, mcts) is scored on its text so far, so a path falls as
soon as a step writes a false claim and stays low after it. With the tree's default
`aggregate=last` (or `min`) that is the path's value; `prod` would count an early false claim
once per later step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ponder.core.protocols import Candidate
from ponder.verifiers.claims import false_claims


def calc_score(text: str) -> float:
    """exp(-false claims): each false arithmetic claim divides the score by e."""
    return math.exp(-false_claims(text))


class Calc:
    name = "calc"
    needs_logprobs = False

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        return [calc_score(c.text) for c in candidates]
