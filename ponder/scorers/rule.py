"""Rule checks as scores: what a problem can verify without a gold answer.

A path with an answer scores 1.0 if the problem can verify it and it is right, else 0.0; a
path without one scores 1.0 if the problem's partial check says it can still succeed (Game of
24: the numbers left can still make 24), else 0.0. Where the problem has neither check (GSM8K
has no gold-free check) the scorer cannot score it and says so (a `ConfigError`); where it has
one check but not the one a path needs, that path's score is None. Cheap and exact, so search
can prune dead branches before the model spends tokens on them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.errors import ConfigError
from ponder.core.protocols import Candidate


class RuleScorer:
    name = "rule"
    needs_logprobs = False

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        for c in candidates:
            if c.problem.verify is None and c.problem.partial is None:
                raise ConfigError("scorer", self.name, "this task has no check that needs no "
                                  "gold answer (Game of 24 has them; GSM8K does not); use "
                                  "scorer=judge or a trained prm:PATH")
        return [_score(c) for c in candidates]


def _score(c: Candidate) -> float | None:
    problem = c.problem
    if c.answer is not None:
        return None if problem.verify is None else float(problem.verify(c.answer))
    return None if problem.partial is None else float(problem.partial(c.text))
