"""Monte Carlo tree search over reasoning steps, in the style of rStar (Qi et al. 2024,
arXiv:2408.06195) and llm-reasoners' `MCTS`, with AlphaZero's PUCT as the default rule.

Each of the `n` iterations walks from the root to one node and backs a value up its path:
1. select: from the root, pick children by the rule until reaching a node never visited, or a
   visited leaf. `"uct"` (rStar): unvisited children first, then Q + c·sqrt(ln N_parent / N);
   `"puct"` (AlphaZero): Q + c·P·sqrt(N_parent) / (1 + N), Q = 0 while unvisited, with the
   prior P the step score normalised over the siblings (uniform if they all score 0). Ties go
   to the higher step score, then the earlier node. `c_puct` is c in both.
2. expand: a visited leaf that is not terminal gets `expansions` children in one model call,
   all scored in one scorer call; the rule then picks one of them to evaluate.
3. evaluate: `value="scorer"` uses the node's path value (its aggregated step scores) as a
   value head would; `"rollout"` completes the chain from the node greedily in one sample,
   scores the whole chain, and aggregates that score after the path's step scores. A terminal
   node is its own path value (re-visiting it backs the same value up again).
4. backpropagate: every node on the path gets one more visit and Q, the running mean of the
   values backed up through it, in `node.meta["q"]`; `node.value` stays the path value that
   every tree scheme records, so `Tree.best` still ranks by it.
The search stops after `n` iterations, when the budget cannot pay for an expansion, or when
every leaf is terminal.

Answer: `final="visits"` follows the most visited child (then the higher Q) from the root; if
that ends at an answer it is the answer. `"value"`, and the fallback of `"visits"`, is the
answered terminal node of highest path value; with none, the end of the most visited path.

Departures: rStar's and llm-reasoners' simulations expand every step of the rollout into the
tree (rStar also scores by the rollouts' answer agreement); here a rollout is one greedy
sample that is kept out of the tree (its answer and score are in the node's meta). One
node is evaluated per iteration, so UCT, which visits every sibling before any grandchild,
needs n well above `expansions` × depth to reach answers; PUCT goes deep sooner.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Node, Result
from ponder.schemes.base import Run
from ponder.schemes.tree import AGGREGATIONS, Tree, TreeConfig


def _uct(q: float, prior: float, n_parent: int, n: int, c: float) -> float:
    return math.inf if n == 0 else q + c * math.sqrt(math.log(n_parent) / n)


def _puct(q: float, prior: float, n_parent: int, n: int, c: float) -> float:
    return q + c * prior * math.sqrt(n_parent) / (1 + n)


RULES: dict[str, Callable[[float, float, int, int, float], float]] = {"uct": _uct, "puct": _puct}
VALUES = ("scorer", "rollout")
FINALS = ("visits", "value")


@dataclass
class Config(TreeConfig):
    n: int = 16  # iterations
    expansions: int = 3  # children per expansion
    c_puct: float = 1.0  # exploration weight, of UCT too
    selection_rule: str = "puct"  # puct (AlphaZero) or uct (rStar)
    value: str = "scorer"  # a node's value: scorer (its path value) or rollout (greedy)
    final: str = "visits"  # the answer: visits (most visited path) or value

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expansions < 1:
            raise ConfigError("expansions", self.expansions, "use 1 or more children per node")
        if not (self.c_puct >= 0 and math.isfinite(self.c_puct)):
            raise ConfigError("c_puct", self.c_puct, "use 0 (greedy) or a positive number")
        for name, value, valid in (("selection_rule", self.selection_rule, RULES),
                                   ("value", self.value, VALUES), ("final", self.final, FINALS)):
            if value not in valid:
                raise ConfigError(name, value, f"use one of {', '.join(valid)}")


def run(problem: Problem, r: Run, config: Config) -> Result:
    tree = Tree(r, problem, config)
    iterations = 0  # also the root's visit count
    while iterations < config.n and not r.cancelled and not _exhausted(tree, None):
        path = _select(tree, config, iterations)
        leaf = path[-1] if path else None  # None: the root, not expanded yet
        if leaf is None or (leaf.visits > 0 and not leaf.terminal):
            children = [c for cs in tree.expand([leaf], config.expansions) for c in cs]
            if not children:
                break  # the budget cannot pay for an expansion (or the run was cancelled)
            tree.score(children)
            path.append(_pick(children, iterations if leaf is None else leaf.visits, config))
        value = _evaluate(tree, path[-1], config)
        for node in path:  # the root's visit is `iterations`
            node.visits += 1
            node.meta["q"] = _q(node) + (value - _q(node)) / node.visits
        iterations += 1
    terminals = [n for n in r.trace.nodes if n.terminal]
    r.trace.meta.update(iterations=iterations, completed=len(terminals))
    followed = _most_visited(tree)
    if config.final == "visits" and followed is not None and followed.answer is not None:
        return tree.finish_with(followed)
    answered = [n for n in terminals if n.answer is not None]
    return tree.finish_with(tree.best(answered) or tree.best(terminals) or followed)


def _children(tree: Tree, node: Node | None) -> list[Node]:
    ids = [n.id for n in tree.trace.roots()] if node is None else node.children
    return [tree.trace.nodes[i] for i in ids]


def _q(node: Node) -> float:
    return float(node.meta.get("q", 0.0))


def _select(tree: Tree, config: Config, root_visits: int) -> list[Node]:
    """The path from the root to the first unvisited node or visited leaf (root excluded)."""
    path: list[Node] = []
    node: Node | None = None
    visits = root_visits
    while children := _children(tree, node):
        node = _pick(children, visits, config)
        path.append(node)
        if node.visits == 0:
            break
        visits = node.visits
    return path


def _pick(children: list[Node], parent_visits: int, config: Config) -> Node:
    """The child the rule ranks first; ties to the higher step score, then the earlier."""
    scores = [max(c.score or 0.0, 0.0) for c in children]
    total = sum(scores)
    priors = [s / total if total > 0 else 1 / len(children) for s in scores]
    rule = RULES[config.selection_rule]
    ranked = [(rule(_q(c), p, parent_visits, c.visits, config.c_puct), s, -c.id, i)
              for i, (c, p, s) in enumerate(zip(children, priors, scores, strict=True))]
    return children[max(ranked)[-1]]


def _evaluate(tree: Tree, node: Node, config: Config) -> float:
    if config.value == "scorer" or node.terminal:
        return node.value
    return _rollout(tree, node)


def _rollout(tree: Tree, node: Node) -> float:
    """Complete the chain greedily; the value is its score after the path's step scores.
    If the budget cannot pay for a whole rollout, the node's path value stands in."""
    cfg = tree.config
    max_tokens = cfg.max_tokens * (cfg.max_depth - node.depth)  # the steps left
    if tree.run.affordable(1, max_tokens) == 0:
        return node.value
    logprobs = 0 if tree.scorer.needs_logprobs else None
    [[c]] = tree.run.sample_prefixes([tree.prompt + tree.text(node)], 1, temperature=0.0,
                                     max_tokens=max_tokens, logprobs=logprobs)
    path = tree.path(node)
    delimiter = tree.problem.step_delimiter
    rest = [s + delimiter for s in c.text.split(delimiter)]  # the rollout's steps
    rest[-1] = rest[-1].removesuffix(delimiter)
    rest = [s for s in rest if s]
    answer = tree.problem.extract(tree.text(node) + c.text)
    rollout = replace(tree.candidate(node, rest, None if c.token_logprobs is None
                                     else tuple(c.token_logprobs)), answer=answer)
    [score] = tree.run.score(tree.scorer, [rollout])
    score = 0.0 if score is None else float(score)
    node.meta["rollout"] = {"answer": answer, "score": score, "tokens": c.completion_tokens}
    return AGGREGATIONS[cfg.aggregate]([s.score or 0.0 for s in path] + [score])


def _most_visited(tree: Tree) -> Node | None:
    """The end of the path that follows the most visited child (then the higher Q)."""
    node: Node | None = None
    while children := _children(tree, node):
        node = max(children, key=lambda c: (c.visits, _q(c), -c.id))
    return node


def _exhausted(tree: Tree, node: Node | None) -> bool:
    """Whether every leaf under `node` is terminal (no iteration could learn more there)."""
    if node is not None and node.terminal:
        return True
    children = _children(tree, node)
    return bool(children) and all(_exhausted(tree, c) for c in children)
