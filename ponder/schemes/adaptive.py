"""Adaptive self-consistency: sample in small batches, stop once the vote is decided.

Stopping rule: Adaptive-Consistency's Beta criterion (Aggarwal et al. 2023, arXiv:2305.11860,
§2.2). With v1 and v2 votes for the two leading answers, the share p of the leader among the
two has posterior Beta(v1 + 1, v2 + 1) under a uniform prior; sampling stops when
P(p > 1/2) ≥ `confidence`. For integer parameters this is exact through the binomial identity
I_x(a, b) = P(Binomial(a + b - 1, x) ≥ a), so no scipy is needed.

Sampling: batch b draws samples 4b..4b+3 of the run's seed (`first_sample`), so with the same
seed adaptive@16 sees exactly the first chains self-consistency@16 sees and stops early.

Departures: the paper checks after every single sample; we check after each batch of `batch`
samples because one batched call of 4 costs about as much time as one chain on a CPU and far
less than four. With batch = 4 and confidence = 0.95, four agreeing chains stop the run
(P = 31/32), and 3-1 does not (P = 13/16).

Giving up (off by default): with `give_up_after=k`, a run that has drawn at least k chains
stops when no answer has more than `give_up_votes` of them (default 2). The idea: the Beta
criterion spends the most on the questions whose chains scatter, and a vote on those is often
wrong anyway. `adaptive@16:give_up_after=4` (a first batch of four without three agreeing ends
the run) was chosen on the 50 GSM8K train questions of docs/results/gsm8k_train50.md, where it
kept self-consistency@8's accuracy (19/50) at 56% of its tokens. On the test questions it did
not hold up (docs/results/gsm8k_test200.md): with the 0.5B model, much of what 16 chains gain
over 4 comes from questions whose first four scatter, so giving up there costs ~7 points.
`stopping_reason` is the rule alone, for replays over stored samples
(benchmarks/sample_pools.py).

Free-form replies: for a problem read as a reply (the chat task), where no chain of the first
batch states an answer (code, prose), there is no vote to decide, so the run stops there
and the model chooses the most consistent of those replies (Universal Self-Consistency,
usc.py) rather than drawing up to N chains that cannot be voted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Node, Result
from ponder.schemes.base import ChainConfig, Run
from ponder.schemes.chains import chains
from ponder.schemes.usc import most_consistent
from ponder.schemes.vote import record, tally


@dataclass
class Config(ChainConfig):
    n: int = 16  # the most chains it may sample
    batch: int = 4  # chains per batch; the vote is checked after each
    confidence: float = 0.95  # stop when P(the leader is the mode) reaches this
    give_up_after: int = 0  # chains drawn before a scattered vote ends the run; 0: never
    give_up_votes: int = 2  # "scattered": no answer has more votes than this

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.batch <= self.n:
            raise ConfigError("batch", self.batch, f"use a batch size between 1 and n={self.n}")
        if not 0.5 < self.confidence < 1:
            raise ConfigError("confidence", self.confidence, "use a probability in (0.5, 1)")
        if not 0 <= self.give_up_after <= self.n:
            raise ConfigError("give_up_after", self.give_up_after,
                              f"use a number of chains between 1 and n={self.n}, or 0 for never")
        if self.give_up_after and not 0 <= self.give_up_votes < self.give_up_after:
            raise ConfigError("give_up_votes", self.give_up_votes,
                              f"use 0 up to give_up_after - 1 = {self.give_up_after - 1} votes")


def leader_probability(v1: int, v2: int) -> float:
    """P(p > 1/2) for p ~ Beta(v1 + 1, v2 + 1): how sure we are the leader is the true mode."""
    a, b = v1 + 1, v2 + 1
    trials = a + b - 1
    # I_{1/2}(a, b) = P(Bin(trials, 1/2) >= a) = P(p <= 1/2)
    below = sum(math.comb(trials, k) for k in range(a, trials + 1)) / 2**trials
    return 1.0 - below


def stopping_reason(votes: list[int], drawn: int, config: Config) -> str | None:
    """Why a run that has drawn `drawn` chains, whose answers got `votes` (most first), stops
    now: "decided", "gave up", or None to draw on."""
    v1 = votes[0] if votes else 0
    v2 = votes[1] if len(votes) > 1 else 0
    if v1 > 0 and leader_probability(v1, v2) >= config.confidence:
        return "decided"
    if config.give_up_after and drawn >= config.give_up_after and v1 <= config.give_up_votes:
        return "gave up"
    return None


def run(problem: Problem, r: Run, config: Config) -> Result:
    nodes: list[Node] = []
    stopped: str | None = None
    while len(nodes) < config.n and stopped is None and not r.cancelled:
        k = r.affordable(min(config.batch, config.n - len(nodes)), config.chain_tokens)
        if k == 0:
            break
        # One seed, samples numbered on: the chains are those self-consistency@n would draw
        # with this seed, in order, so the two compare on the same samples.
        batch = chains(problem, r, config, k, first_sample=len(nodes))
        nodes += [r.add_chain(c, problem, batch=r.calls) for c in batch]
        votes = [a.votes for a in tally(nodes, problem)]
        free_form = problem.reply is not None and not votes
        stopped = "free-form" if free_form else stopping_reason(votes, len(nodes), config)
    ranked = tally(nodes, problem)
    r.trace.meta.update(votes=record(nodes, ranked), samples=len(nodes),
                        decided=stopped == "decided", gave_up=stopped == "gave up")
    if not ranked:  # free-form replies (or none with an answer): Universal Self-Consistency
        return r.finish(most_consistent(r, problem, nodes) if nodes else None, None)
    return r.finish(ranked[0].nodes[0], ranked[0].answer)
