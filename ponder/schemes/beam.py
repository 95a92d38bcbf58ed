"""Step-level beam search guided by a step scorer (Snell et al. 2024, arXiv:2408.03314, §5;
search-and-learn's `beam_search`).

Keep `n` beams; at each depth expand every beam into `expansions` children (the root into
n × expansions), score each child's last step, and keep the `n` best unfinished paths by path
value (the step scores aggregated by `aggregate`). A child that finishes (an answer, the end of
the chain, or max_depth) leaves the beam for the pool of completed paths. The search ends when
`n` paths have completed, no beam is left, or the token budget cannot pay for another depth.

Answer: `selection="best"` takes the completed path of highest value; `"vote"` sums completed
paths' values per answer (weighted majority, as search-and-learn's final aggregation). With no
completed path, the best unfinished one is returned without an answer.
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
    n: int = 4  # beams kept
    expansions: int = 4  # children per beam and depth
    selection: str = "best"  # the answer: best (top path) or vote (value-weighted)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expansions < 1:
            raise ConfigError("expansions", self.expansions, "use 1 or more children per beam")
        check_selection(self.selection)


def run(problem: Problem, r: Run, config: Config) -> Result:
    tree = Tree(r, problem, config)
    completed: list[Node] = []
    beams: list[Node | None] = [None]
    depth = 0
    while beams and len(completed) < config.n and depth < config.max_depth:
        k = config.n * config.expansions if beams == [None] else config.expansions
        children = [c for cs in tree.expand(beams, k) for c in cs]
        if not children:
            break  # the budget cannot pay for another depth (or the run was cancelled)
        tree.score(children)
        completed += [c for c in children if c.terminal]
        alive = sorted((c for c in children if not c.terminal),
                       key=lambda c: (-c.value, c.id))
        beams = list(alive[: config.n])
        depth += 1
    r.trace.meta.update(depth=depth, completed=len(completed))
    return tree.choose(completed, [b for b in beams if b is not None], config.selection)
