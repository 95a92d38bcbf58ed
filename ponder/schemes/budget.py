"""Budget forcing: one chain whose thinking is cut at a token budget or extended with "Wait"
(s1, Muennighoff et al. 2025, arXiv:2501.19393, section 3.1). How a chain is forced, and where
ponder departs from s1, is in forcing.py, which the voting schemes share (`budget=` on
self-consistency, adaptive and best-of-n forces each of their chains the same way).

Result: `reasoning` is the text between the think tags (forced "Wait"s included); `content` the
reply. The trace is one root node for the whole chain (opening, thinking, end, reply) with the
inserted text in its `forced` spans, and `meta` saying how many waits were forced, whether the
budget ended the thinking, and how many tokens the thinking sampled. Only the thinking streams
live (forced "Wait"s included); the reply is the content a client gets at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import FinishReason, Result
from ponder.schemes.base import ChainConfig, Run
from ponder.schemes.forcing import Thinking, sample


@dataclass
class Config(ChainConfig):
    n: int = 1  # always 1: one chain
    temperature: float = 0.0  # greedy, as s1
    max_tokens: int = 1024  # unused: budget bounds the thinking, reply_tokens the reply
    token_budget: int | None = None  # most completion tokens; null: budget + reply_tokens
    budget: int | None = 1024  # most thinking tokens; the end of thinking is forced there

    def __post_init__(self) -> None:
        if self.n != 1:
            raise ConfigError("n", self.n, "budget forcing samples one chain; use n=1")
        if self.budget is None:
            raise ConfigError("budget", self.budget, "give a number of thinking tokens")
        super().__post_init__()


def run(problem: Problem, r: Run, config: Config) -> Result:
    [t] = sample(problem, r, config, 1)
    return finish(t, problem, r)


def finish(t: Thinking, problem: Problem, r: Run) -> Result:
    """One root node for the chain; reasoning is the thinking, content the reply, and the
    answer is read from the reply alone."""
    answer = problem.extract(t.replied) if t.reply is not None else None
    reason: FinishReason = ("cancelled" if r.cancelled or t.end is None
                            else "length" if t.reply is None or t.reply.finish_reason == "length"
                            else "stop")
    node = r.trace.add(t.chain.text, tokens=t.chain.completion_tokens, answer=answer,
                       terminal=True, finish_reason=reason, forced=list(t.chain.forced),
                       meta={"waits": t.waits, "budget_forced": t.budget_forced,
                             "thinking_tokens": t.tokens})
    thought = r.usage.reasoning_tokens  # metered exactly: the reply's call counted as content
    result = r.finish(node, answer, reason)
    result.reasoning, result.content = t.thinking.strip(), t.replied.strip()
    result.usage.reasoning_tokens = thought  # (finish may re-split a chat task's reply)
    return result
