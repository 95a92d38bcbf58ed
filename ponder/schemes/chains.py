"""The chains of the chain schemes (cot, self-consistency, adaptive, best-of-n), written as
their `ChainConfig` says: sampled whole in one batched call, budget-forced (forcing.py), or
with their python blocks run (tooluse.py). One dispatch, so each scheme reads the same.
"""

from __future__ import annotations

import ponder.schemes.forcing as forcing
import ponder.schemes.tooluse as tooluse
from ponder.core.problem import Problem
from ponder.core.types import Completion
from ponder.schemes.base import ChainConfig, Run


def chains(problem: Problem, r: Run, config: ChainConfig, n: int, *, first_sample: int = 0,
           logprobs: int | None = None) -> list[Completion]:
    """n chains, samples `first_sample`.. of the run's seed. Forced chains are whole (opening,
    thinking, end, reply) with their forced spans marked; so are chains whose blocks ran."""
    if config.budget is not None:
        return [t.chain for t in forcing.sample(problem, r, config, n, first_sample, logprobs)]
    if config.tools:
        return tooluse.sample(problem, r, config, n, first_sample, logprobs)
    return r.sample(problem.messages, n, logprobs=logprobs, seed=config.seed,
                    first_sample=first_sample)
