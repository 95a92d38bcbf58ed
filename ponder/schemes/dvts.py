"""Diverse Verifier Tree Search (Beeching, Tunstall & Rush 2024, "Scaling test-time compute
with open models"; search-and-learn's `dvts`).

Beam search with few beams collapses onto one line of thought; DVTS splits the `n` beams into
n / `expansions` independent subtrees, each a greedy step search guided by the step scorer. At
each depth every live subtree expands its one leaf into `expansions` children (all subtrees in
one batched model call), and keeps its best child by path value (the earliest among equals). A
subtree ends when that child is terminal (an answer, the end of the chain, or max_depth). The
search ends when every subtree has ended or the token budget cannot pay for another depth.

Answer: as beam search, from the pool of completed paths: `selection="best"` takes the one of
highest value, `"vote"` sums values per answer. With none, the best live leaf, without an answer.

Departures from search-and-learn:
- the subtrees' first steps are `n` samples of one request (not n/expansions copies of it,
  which a seeded backend would sample identically); a budget too small for all of them starts
  fewer subtrees;
- the pool holds every terminal child seen (search-and-learn returns the last expansion of
  each subtree, terminal or not), so a finished sibling that was not kept still votes;
- no last depth that samples to the end of the chain, no lookahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Node, Result
from ponder.schemes.base import Run
from ponder.schemes.tree import Tree, TreeConfig, check_selection


@dataclass
class Config(TreeConfig):
    n: int = 8  # beams in all: n / expansions subtrees
    expansions: int = 4  # children per subtree and depth (search-and-learn's beam_width)
    selection: str = "best"  # the answer: best (top path) or vote (value-weighted)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expansions < 1:
            raise ConfigError("expansions", self.expansions, "use 1 or more children per beam")
        if self.n % self.expansions:
            raise ConfigError("n", self.n, f"use a multiple of expansions ({self.expansions}): "
                              "n beams make n / expansions subtrees")
        check_selection(self.selection)


def run(problem: Problem, r: Run, config: Config) -> Result:
    tree = Tree(r, problem, config)
    k = config.expansions
    # The first steps of all subtrees: one request for n samples, cut into subtrees of k.
    [first] = tree.expand([None], config.n) or [[]]
    groups = [first[i: i + k] for i in range(0, len(first), k)]
    leaves: dict[int, Node | None] = dict.fromkeys(range(len(groups)))  # subtree -> live leaf
    completed: list[Node] = []
    depth = 0
    while groups and depth < config.max_depth:
        depth += 1
        tree.score([c for cs in groups for c in cs])
        # groups[i] grew from the i-th live leaf (the first ones only, if the budget was short)
        for subtree, children in zip(list(leaves), groups, strict=False):
            for child in children:
                child.meta["subtree"] = subtree
            completed += [c for c in children if c.terminal]
            best = tree.best(children)
            assert best is not None
            if best.terminal:
                del leaves[subtree]  # this subtree has finished its path
            else:
                leaves[subtree] = best
        live = [leaf for leaf in leaves.values() if leaf is not None]
        groups = tree.expand(live, k) if live else []  # [] also when the budget runs out
    r.trace.meta.update(depth=depth, completed=len(completed), subtrees=-(-len(first) // k))
    unfinished = [leaf for leaf in leaves.values() if leaf is not None]
    return tree.choose(completed, unfinished, config.selection)
