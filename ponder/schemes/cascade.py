"""Cascade: the cheap rung answers first and the question escalates only when it must (Yue et
al. 2023, "Large Language Model Cascades with Mixture of Thoughts Representations for
Cost-efficient Reasoning", arXiv:2310.03094: the weaker model's answers are sampled, and the
question goes to the stronger model when they disagree).

  1. The cheap rung: `n` answers from the policy (the small model) — reasoning chains
     (`cheap=chains`, self-consistency's samples) or direct answers with no chain of thought
     (`cheap=direct`, the `direct` scheme's prompt, sampled).
  2. Accept: the most common answer's share of the n reaches `accept` (Yue et al.'s
     "vote" decision; their threshold is fitted on held-out questions, as
     `fit_threshold` fits ours from stored rows).
  3. Else escalate: the `then` scheme runs on the `fallback` model (a bigger model: `--model
     fallback=qwen-1.5b`, or the server's `--role fallback=big`; the policy itself where none
     is given, which makes the next rung "more thinking on the same model").

`route` is the same scheme with the direct-or-reasoning defaults (seed 000's "when to choose a
reasoning model"): two direct answers at temperature 0.7; if they agree the question was easy
and the answer stands, else it is reasoned out by `cot`.

Trace: the cheap answers are roots (`role` policy); the escalated run's nodes follow, copied in
with their ids shifted (`role` fallback where the fallback model wrote them). `trace.meta`
holds the decision: `escalated`, the `agreement` that decided it, and the `threshold`. Usage:
every call is metered by role and model, the escalated run's included, so a result says what
each model cost. The escalated run keeps its own scheme's budget: a cascade's `token_budget`
bounds the cheap rung only.

Departures: Yue et al. escalate on the weak model's answers in two thought representations
(chain of thought and program of thought) and sample more; here one representation, and the
decision is the vote share alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Node, Result, Trace
from ponder.schemes.base import ChainConfig, Run
from ponder.schemes.chains import chains
from ponder.schemes.direct import asked
from ponder.schemes.vote import record, tally

CHEAP = ("chains", "direct")
FALLBACK = "fallback"


@dataclass
class Config(ChainConfig):
    n: int = 4  # answers of the cheap rung (the policy)
    cheap: str = "chains"  # chains: reasoning chains; direct: answers with no chain of thought
    accept: float = 0.75  # share of the cheap answers that must agree for the answer to stand
    then: str = "cot"  # the scheme the next rung runs, on the fallback model (else the policy)
    direct_tokens: int = 64  # a direct answer's tokens (cheap=direct); max_tokens bounds chains

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cheap not in CHEAP:
            raise ConfigError("cheap", self.cheap, f"use one of {', '.join(CHEAP)}")
        if self.direct_tokens < 1:
            raise ConfigError("direct_tokens", self.direct_tokens, "use at least 1 token")
        if not 0 < self.accept <= 1:
            raise ConfigError("accept", self.accept, "use a share in (0, 1]: 0.75 = 3 of 4")
        if not self.then or self.then.partition("@")[0] in ("cascade", "route"):
            raise ConfigError("then", self.then, "name the scheme of the next rung, e.g. cot "
                              "or self-consistency@4 (not another cascade)")


@dataclass
class RouteConfig(Config):
    n: int = 2  # direct answers
    cheap: str = "direct"  # answers with no chain of thought
    accept: float = 1.0  # both must agree
    temperature: float = 0.7  # sampled, so that two answers can disagree


def run(problem: Problem, r: Run, config: Config) -> Result:
    cheap = answer_cheaply(problem, r, config)
    ranked = tally(cheap, problem)
    agreement = ranked[0].votes / len(cheap) if ranked and cheap else 0.0
    r.trace.meta.update(votes=record(cheap, ranked), agreement=agreement,
                        threshold=config.accept, cheap=config.cheap)
    if ranked and agreement >= config.accept:
        r.trace.meta["escalated"] = False
        return r.finish(ranked[0].nodes[0], ranked[0].answer)
    r.trace.meta["escalated"] = True
    if r.nested is None:
        raise ConfigError("then", config.then, "a cascade runs through the scheme table "
                          "(ponder.schemes.get_scheme)")
    escalated = r.nested(config.then, problem, r.role(FALLBACK))
    chosen = graft(r.trace, escalated.trace, role=FALLBACK if FALLBACK in r.models else None)
    return r.finish(chosen, escalated.answer, escalated.finish_reason)


def answer_cheaply(problem: Problem, r: Run, config: Config) -> list[Node]:
    """The cheap rung's answers, one root node each."""
    each = config.chain_tokens if config.cheap == "chains" else config.direct_tokens
    n = r.affordable(config.n, each)
    if n == 0:
        return []
    if config.cheap == "chains":
        return [r.add_chain(c, problem, rung=1) for c in chains(problem, r, config, n)]
    return [r.add_chain(c, problem, rung=1) for c in
            r.sample(asked(problem), n, max_tokens=config.direct_tokens, reasoning=False)]


def graft(into: Trace, trace: Trace, *, role: str | None) -> Node | None:
    """Copy `trace`'s nodes into `into`, ids shifted, as the second rung; the node that ends
    its chosen path (None if it chose nothing)."""
    shift = len(into.nodes)
    for node in trace.nodes:
        into.add(node.text, parent=None if node.parent is None else node.parent + shift,
                 tokens=node.tokens, score=node.score, answer=node.answer, visits=node.visits,
                 value=node.value, terminal=node.terminal, finish_reason=node.finish_reason,
                 role=role or node.role, forced=list(node.forced), depth=node.depth,
                 meta={**node.meta, "rung": 2})
    return into.nodes[trace.chosen[-1] + shift] if trace.chosen else None

