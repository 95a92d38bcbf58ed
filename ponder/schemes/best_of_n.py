"""Best-of-N: sample N chains, score each, keep the best (Cobbe et al. 2021 verifier reranking;
Lightman et al. 2023).

Two selections (Wang et al. 2024 "Math-Shepherd" §3 use both):
  * plain    — the single highest-scoring chain;
  * weighted — weighted majority: each answer gets the sum of its chains' scores.
Chains the scorer cannot score (None) lose plain selection and weigh 0 in the vote.
The default scorer, `confidence`, needs no model beyond the policy (ponder/scorers).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Result
from ponder.schemes.base import ChainConfig, Run, ScoredConfig
from ponder.schemes.chains import chains
from ponder.schemes.vote import record, tally

SELECTIONS = ("plain", "weighted")


@dataclass
class Config(ChainConfig, ScoredConfig):
    n: int = 8  # chains sampled and scored
    selection: str = "weighted"  # plain: the top chain; weighted: scores summed per answer
    scorer: str = "confidence"  # scores each chain: confidence, judge, rule, prm:PATH, ...

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selection not in SELECTIONS:
            raise ConfigError("selection", self.selection, f"use one of {', '.join(SELECTIONS)}")


def run(problem: Problem, r: Run, config: Config) -> Result:
    scorer = r.step_scorer(config.scorer)
    n = r.affordable(config.n, config.chain_tokens)
    logprobs = 0 if scorer.needs_logprobs else None
    completions = chains(problem, r, config, n, logprobs=logprobs) if n else []
    nodes = [r.add_chain(c, problem) for c in completions]
    if not nodes:
        return r.finish(None, None)
    scores = r.score_chains(scorer, problem, nodes, completions)
    ranked = tally(nodes, problem, weights=[s or 0.0 for s in scores])
    r.trace.meta.update(votes=record(nodes, ranked), selection=config.selection)
    if config.selection == "plain":
        best = max(nodes, key=lambda nd: (nd.score is not None, nd.score or 0.0, -nd.id))
        return r.finish(best, best.answer)
    if not ranked:  # free-form replies: the best-scored chain
        best = max(nodes, key=lambda nd: (nd.score is not None, nd.score or 0.0, -nd.id))
        return r.finish(best, None)
    best = max(ranked[0].nodes, key=lambda nd: nd.score or 0.0)
    return r.finish(best, ranked[0].answer)

