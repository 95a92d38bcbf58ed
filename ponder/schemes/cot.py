"""Chain of thought: one chain, greedy by default (Wei et al. 2022; Kojima et al. 2022).

The problem's prompt already asks the model to reason step by step and to box its answer; the
scheme only decides how to sample and reads the answer off the end of the chain. With `tools=python`
its code blocks run as it writes them (tooluse.py); with `budget=` it is the budget scheme's chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.problem import Problem
from ponder.core.types import Result
from ponder.schemes.base import ChainConfig, Run
from ponder.schemes.chains import chains


@dataclass
class Config(ChainConfig):
    temperature: float = 0.0  # greedy


def run(problem: Problem, r: Run, config: Config) -> Result:
    max_tokens = min(config.max_tokens, r.budget_left)
    if max_tokens <= 0:
        return r.finish(None, None)
    if config.budget is not None or config.tools:  # written in rounds (chains.py)
        [completion] = chains(problem, r, config, 1)
    else:
        [completion] = r.sample(problem.messages, 1, max_tokens=max_tokens)
    node = r.add_chain(completion, problem)
    return r.finish(node, node.answer)
