"""Scorers: value and reward functions over typed candidates (ponder/core/protocols.py).

Every scorer has a `name`, says whether it `needs_logprobs`, and scores a batch of `Candidate`s
(whole chains and tree paths alike) with `score(candidates)`. The table maps names to
factories taking the model in the scheme's `judge` role (the policy unless another is given),
so a judge can reuse it. Scorers that load a model of their own are named `KIND:PATH`
(`prm:/models/my-prm`, `orm:/models/my-orm`, `verifier:runs/verifier.json`); their factories
take the path as well.
A TRL-shaped reward function, `fn(prompts, completions, **kw)`, is a scorer through
`RewardFunction`; `resolve_scorer` does that for whatever a caller hands a scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ponder.core.errors import UnknownName
from ponder.core.protocols import Candidate, LanguageModel, Scorer
from ponder.scorers.calc import Calc
from ponder.scorers.confidence import Confidence
from ponder.scorers.judge import StepJudge
from ponder.scorers.prm import PRMScorer
from ponder.scorers.rule import RuleScorer
from ponder.scorers.verifier import VerifierScorer

RewardFn = Callable[..., Sequence[float | None]]


class Uniform:
    """Every candidate scores 0.5: a search guided by nothing, to measure what the search
    itself costs (benchmarks/tree_speed.py) or to explore without a scorer's opinion."""

    name = "uniform"
    needs_logprobs = False

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        return [0.5] * len(candidates)


class RewardFunction:
    """A TRL-shaped reward function as a scorer: `fn(prompts, completions, steps=, answers=,
    problems=, token_logprobs=)` -> one score per completion (None: no opinion)."""

    def __init__(self, fn: RewardFn, *, name: str | None = None,
                 needs_logprobs: bool = False) -> None:
        self.fn = fn
        self.name: str = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.needs_logprobs = needs_logprobs

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        return list(self.fn([c.prompt for c in candidates], [c.text for c in candidates],
                            steps=[list(c.steps) for c in candidates],
                            answers=[c.answer for c in candidates],
                            problems=[c.problem for c in candidates],
                            token_logprobs=[c.token_logprobs for c in candidates]))


SCORERS: dict[str, Callable[[LanguageModel], Scorer]] = {
    "calc": lambda model: Calc(),  # exp(-false arithmetic claims); no model needed
    "confidence": lambda model: Confidence(),
    "judge": StepJudge,
    "rule": lambda model: RuleScorer(),
    "uniform": lambda model: Uniform(),
}

# `KIND:PATH` names: a trained reward model at PATH (a save_pretrained directory or a hub id).
# torch and transformers are imported only when one is built (pip install 'ponder[prm]').
PATH_SCORERS: dict[str, Callable[[str, LanguageModel], Scorer]] = {
    "prm": lambda path, model: PRMScorer(path),  # format read off the model's config
    "orm": lambda path, model: PRMScorer(path, format="sequence-classification"),
    # ponder train verifier's logistic regression over cheap chain features (a JSON file)
    "verifier": lambda path, model: VerifierScorer(path, model),
}


def get_scorer(name: str, model: LanguageModel) -> Scorer:
    kind, colon, path = name.partition(":")
    if colon and path and kind in PATH_SCORERS:
        return PATH_SCORERS[kind](path, model)
    if name not in SCORERS:
        raise UnknownName("scorer", name, [*SCORERS, *(f"{kind}:PATH" for kind in PATH_SCORERS)])
    return SCORERS[name](model)


def resolve_scorer(given: Scorer | RewardFn | None, name: str, judge: LanguageModel) -> Scorer:
    """The scorer a scheme uses: the one given (a TRL-shaped function wrapped), else the one
    its config names, built on the `judge` role's model."""
    if given is None:
        return get_scorer(name, judge)
    if isinstance(given, Scorer):
        return given
    return RewardFunction(given)

