"""Rule checks as scores: what a problem can verify without a gold answer.

A path with an answer scores 1.0 if the problem can verify it and it is right, else 0.0; a
path without one scores 1.0 if the problem's partial check says it can still succeed (Game of
24: the numbers left can still make 24), else 0.0. Where the problem has neither check (GSM8K
has no gold-free check) the score is None. Cheap and exact, so search can prune dead branches
before the model spends tokens on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ponder.core.problem import Problem


class RuleScorer:
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], *,
                 answers: Sequence[str | None] | None = None,
                 problems: Sequence[Problem] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if problems is None:
            return [None] * len(completions)
        answers = answers if answers is not None else [p.extract(c) for p, c in
                                                         zip(problems, completions, strict=True)]
        return [_score(p, text, answer)
                for p, text, answer in zip(problems, completions, answers, strict=True)]


def _score(problem: Problem, text: str, answer: str | None) -> float | None:
    if answer is not None:
        return None if problem.verify is None else float(problem.verify(answer))
    return None if problem.partial is None else float(problem.partial(text))
