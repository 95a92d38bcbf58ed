"""What the tree and graph schemes share: steps, expansion, step scores and path values.

A *step* is what the policy writes from a prefix until the problem's step delimiter (a blank
line by default, a newline for Game of 24) or the end of its answer. A node of the trace holds
one step: its text (delimiter included, so a path's text is the concatenation of its nodes'),
its token count, its step score, its path value (the aggregate of the step scores from the root),
visits, parent and children; `meta` has its depth, finish reason and whether it is terminal.

Expanding nodes is one batched model call for the whole frontier. Each request is the raw
prefix `chat prompt + path text` with `keep_kv=True`, so the llama.cpp backend keeps every new
step's KV and the next expansion prefills only the few tokens after it (HTTP servers with
prefix caching, vLLM and SGLang, do the same on their side).

A node is terminal when its step ends the chain (end of turn, no delimiter), states an answer
(`\boxed{}`, `####`, "the answer is": a task's fallback such as GSM8K's last number is read only
once the chain has ended, or any step with a number in it would end its path), or reaches
`max_depth`; or when the step budget ran out mid-step
("length"). Scorers see (prompt, path text) pairs plus `steps=` (each path cut into its steps),
`answers=` and `problems=` keyword lists; they return the score of each path's *last* step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Scorer
from ponder.core.types import Completion, Node, Result
from ponder.schemes.base import Run, SchemeConfig
from ponder.schemes.vote import record, tally
from ponder.verifiers import extract_answer


def _mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores)


# How a path's step scores become its value (search-and-learn's `agg_strategy`; Math-Shepherd
# uses min, Lightman et al. product).
AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda scores: scores[-1],
    "min": min,
    "prod": math.prod,
    "mean": _mean,
}


# How a search that found several answers picks one: the best path by value, or the answers'
# values summed (weighted majority, search-and-learn's final aggregation).
SELECTIONS = ("best", "vote")


def check_selection(selection: str) -> None:
    if selection not in SELECTIONS:
        raise ConfigError("selection", selection, f"use one of {', '.join(SELECTIONS)}")


@dataclass
class TreeConfig(SchemeConfig):
    """Settings every tree scheme has. `n` is its main width; `max_tokens` bounds one step."""

    n: int = 4  # main width (each scheme says what it counts)
    temperature: float = 0.7  # sampling temperature of steps
    max_tokens: int = 256  # most tokens of one step
    max_depth: int = 12  # most steps on a path
    token_budget: int | None = 8192  # most completion tokens of the search, scoring included
    scorer: str = "judge"  # step scorer: judge, rule, confidence, prm:PATH, orm:PATH
    aggregate: str = "last"  # a path's value from its step scores: last, min, prod, mean

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_depth < 1:
            raise ConfigError("max_depth", self.max_depth, "use 1 or more steps")
        if self.aggregate not in AGGREGATIONS:
            raise ConfigError("aggregate", self.aggregate,
                              f"use one of {', '.join(AGGREGATIONS)}")


def step_answer(problem: Problem, text: str, ended: bool) -> str | None:
    """The answer a path holds: the problem's extraction once the chain has ended, before that
    only where the text states one (see the module docstring)."""
    return problem.extract(text) if ended or extract_answer(text) is not None else None


class Tree:
    """A search over one problem: expands and scores nodes of the run's trace."""

    def __init__(self, run: Run, problem: Problem, scorer: Scorer | None,
                 config: TreeConfig) -> None:
        self.run, self.problem, self.config = run, problem, config
        self.trace = run.trace
        self.prompt = run.model.render_chat(problem.messages)
        self.scorer = scorer if scorer is not None else default_scorer(config.scorer, run)
        name = config.scorer if scorer is None else getattr(scorer, "__name__",
                                                              type(scorer).__name__)
        self.trace.meta.update(scorer=name, aggregate=config.aggregate)

    # -- paths ---------------------------------------------------------------------------

    def path(self, node: Node | None) -> list[Node]:
        return [] if node is None else [self.trace.nodes[i] for i in self.trace.path(node.id)]

    def text(self, node: Node | None) -> str:
        return "".join(n.text for n in self.path(node))

    def depth(self, node: Node | None) -> int:
        return 0 if node is None else int(node.meta["depth"])

    @staticmethod
    def terminal(node: Node) -> bool:
        return bool(node.meta.get("terminal"))

    # -- operators -----------------------------------------------------------------------

    def expand(self, parents: Sequence[Node | None], k: int,
               **changes: Any) -> list[list[Node]]:
        """k new children of each parent (None = the root), in one batched call; fewer, or
        none, where the token budget cannot pay for them. Children are not scored yet."""
        step_tokens = int(changes.pop("max_tokens", self.config.max_tokens))
        afford = self.run.affordable(len(parents) * k, step_tokens)
        if afford < len(parents) * k:  # whole sets of k for the first parents, or fewer for one
            parents, k = (parents[: afford // k], k) if afford >= k else (parents[:1], afford)
        if afford == 0 or not parents or self.run.cancelled:
            return []
        delimiter = self.problem.step_delimiter
        completions = self.run.sample_prefixes(
            [self.prompt + self.text(p) for p in parents], k, stop=(delimiter,),
            max_tokens=step_tokens, keep_kv=True, **changes)
        return [[self._child(p, c) for c in cs]
                for p, cs in zip(parents, completions, strict=True)]

    def _child(self, parent: Node | None, c: Completion) -> Node:
        delimited = c.stop_string == self.problem.step_delimiter
        text = c.text + (self.problem.step_delimiter if delimited else "")
        depth = self.depth(parent) + 1
        node = self.trace.add(text, parent=None if parent is None else parent.id,
                              tokens=c.completion_tokens,
                              meta={"depth": depth, "finish_reason": c.finish_reason})
        ended = not delimited or depth >= self.config.max_depth
        node.answer = step_answer(self.problem, self.text(node), ended)
        node.meta["terminal"] = ended or node.answer is not None
        return node

    def score(self, nodes: Sequence[Node]) -> None:
        """Step scores from the scorer (None counts as 0), then each node's path value."""
        if not nodes:
            return
        paths = [self.path(n) for n in nodes]
        scores = self.scorer([self.prompt] * len(nodes), [self.text(n) for n in nodes],
                             steps=[[s.text for s in p] for p in paths],
                             answers=[n.answer for n in nodes],
                             problems=[self.problem] * len(nodes))
        aggregate = AGGREGATIONS[self.config.aggregate]
        for node, path, score in zip(nodes, paths, scores, strict=True):
            node.score = 0.0 if score is None else float(score)
            node.value = aggregate([s.score if s.score is not None else 0.0 for s in path])

    def best(self, nodes: Sequence[Node]) -> Node | None:
        """The highest value, the earliest among equals."""
        return max(nodes, key=lambda n: (n.value, -n.id), default=None)

    def choose(self, completed: Sequence[Node], unfinished: Sequence[Node],
               selection: str) -> Result:
        """The result: among completed paths with an answer, the best by value ("best") or
        the best path of the answer with the largest summed value ("vote"); else the best
        completed path, else the best unfinished one (no answer: "length")."""
        answered = [c for c in completed if c.answer is not None]
        if selection == "vote" and answered:
            ranked = tally(answered, self.problem, weights=[c.value for c in answered])
            self.trace.meta["votes"] = record(answered, ranked)
            return self.finish_with(self.best(ranked[0].nodes))
        return self.finish_with(self.best(answered) or self.best(completed)
                                or self.best(unfinished))

    def finish_with(self, leaf: Node | None) -> Result:
        """The run's result for a chosen leaf (None: no path was found). A leaf the search
        had to leave unfinished ends with "length", as a chain cut by max_tokens does."""
        cut = leaf is not None and leaf.answer is None and not self.terminal(leaf)
        return self.run.finish(leaf, None if leaf is None else leaf.answer,
                               "length" if cut else None)


def default_scorer(name: str, run: Run) -> Scorer:
    """A scorer by name, built on the run's metered model (its tokens count as reasoning)."""
    from ponder.scorers import get_scorer
    return get_scorer(name, run.metered)
