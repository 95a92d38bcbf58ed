"""Scorers: value and reward functions in one batched shape, `fn(prompts, completions, **kw)`.

A scorer may set `needs_logprobs = True` to have schemes ask the backend for token logprobs
(passed back as `token_logprobs=`). The table maps names to factories taking the policy model,
so a judge can reuse it. Scorers that load a model of their own are named `KIND:PATH`
(`prm:/models/my-prm`, `orm:/models/my-orm`); their factories take the path as well.
"""

from __future__ import annotations

from collections.abc import Callable

from ponder.core.errors import UnknownName
from ponder.core.protocols import LanguageModel, Scorer
from ponder.scorers.confidence import Confidence
from ponder.scorers.judge import StepJudge
from ponder.scorers.prm import PRMScorer
from ponder.scorers.rule import RuleScorer

SCORERS: dict[str, Callable[[LanguageModel], Scorer]] = {
    "confidence": lambda model: Confidence(),
    "judge": StepJudge,
    "rule": lambda model: RuleScorer(),
}

# `KIND:PATH` names: a trained reward model at PATH (a save_pretrained directory or a hub id).
# torch and transformers are imported only when one is built (pip install 'ponder[prm]').
PATH_SCORERS: dict[str, Callable[[str, LanguageModel], Scorer]] = {
    "prm": lambda path, model: PRMScorer(path),  # format read off the model's config
    "orm": lambda path, model: PRMScorer(path, format="sequence-classification"),
}


def get_scorer(name: str, model: LanguageModel) -> Scorer:
    kind, colon, path = name.partition(":")
    if colon and path and kind in PATH_SCORERS:
        return PATH_SCORERS[kind](path, model)
    if name not in SCORERS:
        raise UnknownName("scorer", name, [*SCORERS, *(f"{kind}:PATH" for kind in PATH_SCORERS)])
    return SCORERS[name](model)
