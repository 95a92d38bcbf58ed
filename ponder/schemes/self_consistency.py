"""Self-consistency: sample N chains, answer by majority vote (Wang et al. 2023, arXiv:2203.11171).
Where no chain states an answer (free-form replies: code, prose), the model chooses the most
consistent reply instead (Universal Self-Consistency, usc.py).

Departures from the paper: answers are grouped by a normalised key rather than exact string
match, and ties go to the answer sampled first (see vote.py). All N chains are sampled in one
batched call, so a batching backend prefills the prompt once. With `budget=` each chain is
budget-forced (forcing.py), all chains in batched rounds, and the vote is over their replies.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.problem import Problem
from ponder.core.types import Result
from ponder.schemes.base import ChainConfig, Run
from ponder.schemes.chains import chains
from ponder.schemes.usc import most_consistent
from ponder.schemes.vote import record, tally


@dataclass
class Config(ChainConfig):
    n: int = 8  # chains sampled in one batch


def run(problem: Problem, r: Run, config: Config) -> Result:
    n = r.affordable(config.n, config.chain_tokens)
    nodes = [r.add_chain(c, problem) for c in chains(problem, r, config, n)] if n else []
    ranked = tally(nodes, problem)
    r.trace.meta["votes"] = record(nodes, ranked)
    if not ranked:  # free-form replies (or none with an answer): Universal Self-Consistency
        return r.finish(most_consistent(r, problem, nodes) if nodes else None, None)
    return r.finish(ranked[0].nodes[0], ranked[0].answer)
