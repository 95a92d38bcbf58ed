"""Scorers: value and reward functions in one batched shape, `fn(prompts, completions, **kw)`.

A scorer may set `needs_logprobs = True` to have schemes ask the backend for token logprobs
(passed back as `token_logprobs=`). The table maps names to factories taking the policy model,
so a judge can reuse it.
"""

from __future__ import annotations

from collections.abc import Callable

from ponder.core.errors import UnknownName
from ponder.core.protocols import LanguageModel, Scorer
from ponder.scorers.confidence import Confidence
from ponder.scorers.judge import StepJudge
from ponder.scorers.rule import RuleScorer

SCORERS: dict[str, Callable[[LanguageModel], Scorer]] = {
    "confidence": lambda model: Confidence(),
    "judge": StepJudge,
    "rule": lambda model: RuleScorer(),
}


def get_scorer(name: str, model: LanguageModel) -> Scorer:
    if name not in SCORERS:
        raise UnknownName("scorer", name, SCORERS)
    return SCORERS[name](model)
