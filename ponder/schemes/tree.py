"""What the tree and graph schemes share: steps, expansion, step scores and path values.

A *step* is what the policy writes from a prefix until the problem's step delimiter (a blank
line by default, a newline for Game of 24) or the end of its answer. A node of the trace holds
one step: its text (delimiter included, so a path's text is the concatenation of its nodes'),
its token count, its step score, its path value (the aggregate of the step scores from the root),
visits, parent and children, its depth, finish reason and whether it is terminal.

Expanding nodes is one batched model call for the whole frontier. Each request is the raw
prefix `chat prompt + path text` with `keep_kv=True`, so the llama.cpp backend keeps every new
step's KV and the next expansion prefills only the few tokens after it (HTTP servers with
prefix caching, vLLM and SGLang, do the same on their side).

A node is terminal when its step ends the chain (end of turn, no delimiter), states an answer
(`\boxed{}`, `####`, "the answer is": a task's fallback such as GSM8K's last number is read only
once the chain has ended, or any step with a number in it would end its path), or reaches
`max_depth`; or when the step budget ran out mid-step
("length"). Scorers get one `Candidate` per path (its text, its steps, its answer, and the new
step's token logprobs when the scorer needs them) and return the score of its *last* step.

With `tools=python` a step also ends where it closes a ```python block: the block runs in the
sandbox (tooluse.py's, one process each, all of the expansion's blocks at once) and its output
block is added to the step as forced text (`Node.forced`; not counted as completion tokens), so
the children continue from the real output and the scorer reads it. At most `tool_calls` blocks
run on one path. Tools act where `Tree.expand` writes steps (beam, dvts, mcts's expansions, tot
with `generator=sample`), not in mcts's greedy rollouts or tot's proposals. calc is a chain
tool; in a tree the calculator is a step scorer (`scorer=calc`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate, Scorer
from ponder.core.types import Completion, FinishReason, Node, Result
from ponder.schemes.base import Run, ScoredConfig, ToolSettings
from ponder.schemes.tooluse import FENCE, at_block, block, output_block, run_codes
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
class TreeConfig(ToolSettings, ScoredConfig):
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
        self.check_tools(("python",))
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
    """A search over one problem: expands and scores nodes of the run's trace. `scorer` is the
    step scorer (default: the one the run was given, else the config's `scorer` by name)."""

    def __init__(self, run: Run, problem: Problem, config: TreeConfig,
                 scorer: Scorer | None = None) -> None:
        self.run, self.problem, self.config = run, problem, config
        self.trace = run.trace
        self.prompt = run.model.render_chat(problem.messages)
        self.scorer = scorer if scorer is not None else run.step_scorer(config.scorer)
        # the sampled tokens' logprobs of each new step, kept only for a scorer that reads them
        self.logprobs: dict[int, tuple[float, ...] | None] = {}
        self.trace.meta.update(scorer=self.scorer.name, aggregate=config.aggregate)

    # -- paths ---------------------------------------------------------------------------

    def path(self, node: Node | None) -> list[Node]:
        return [] if node is None else [self.trace.nodes[i] for i in self.trace.path(node.id)]

    def text(self, node: Node | None) -> str:
        return "".join(n.text for n in self.path(node))

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
        if self.scorer.needs_logprobs:
            changes.setdefault("logprobs", 0)
        completions = self.run.sample_prefixes(
            [self.prompt + self.text(p) for p in parents], k, stop=self.stops,
            max_tokens=step_tokens, keep_kv=True, **changes)
        children = [[self._child(p, c) for c in cs]
                    for p, cs in zip(parents, completions, strict=True)]
        self._run_blocks([c for cs in children for c in cs])
        return children

    @property
    def stops(self) -> tuple[str, ...]:
        """Where a step ends: the delimiter, and with python tools the end of a code block."""
        python = "python" in self.config.tool_names
        return (self.problem.step_delimiter, *((FENCE,) if python else ()))

    def _child(self, parent: Node | None, c: Completion) -> Node:
        stop = c.stop_string if c.stop_string in self.stops else None
        node = self.add_step(parent, c.text + (stop or ""), c.completion_tokens,
                             c.finish_reason, ended=stop is None)
        if self.scorer.needs_logprobs:
            self.logprobs[node.id] = (None if c.token_logprobs is None
                                      else tuple(c.token_logprobs))
        return node

    def _run_blocks(self, steps: Sequence[Node]) -> None:
        """Run the python block each new step closed (tools=python), all at once, and add its
        output to the step as forced text."""
        if "python" not in self.config.tool_names:
            return
        ran = [n for n in steps if not n.terminal and n.text.endswith(FENCE)
               and at_block(self.text(n)) and self._runs(n) < self.config.tool_calls]
        codes = [block(self.text(n)) for n in ran]
        for node, ex in zip(ran, run_codes(codes, self.config.tool_seconds), strict=True):
            inserted = output_block(ex)
            node.forced.append((len(node.text), len(node.text) + len(inserted)))
            node.text += inserted
            node.meta["tool"] = "python"

    def _runs(self, node: Node) -> int:
        """Code blocks run on the path to `node`, itself included."""
        return sum(n.meta.get("tool") == "python" for n in self.path(node))

    def add_step(self, parent: Node | None, text: str, tokens: int,
                 finish_reason: FinishReason, *, ended: bool, reads: str | None = None) -> Node:
        """A new step under `parent` (None: the root), with its answer (read off `reads`, by
        default the whole path) and whether it is terminal: the chain `ended`, the step states
        an answer, or the path is `max_depth` deep."""
        depth = (0 if parent is None else parent.depth) + 1
        node = self.trace.add(text, parent=None if parent is None else parent.id, tokens=tokens,
                              depth=depth, finish_reason=finish_reason)
        ended = ended or depth >= self.config.max_depth
        node.answer = step_answer(self.problem, self.text(node) if reads is None else reads,
                                  ended)
        node.terminal = ended or node.answer is not None
        return node

    def candidate(self, node: Node, rest: Sequence[str] = (),
                  token_logprobs: tuple[float, ...] | None = None) -> Candidate:
        """A node's path as a scorer's candidate; `rest` adds steps after it (a rollout)."""
        steps = (*(n.text for n in self.path(node)), *rest)
        return Candidate(self.prompt, "".join(steps), steps, self.problem, node.answer,
                         token_logprobs if rest else self.logprobs.get(node.id))

    def score(self, nodes: Sequence[Node]) -> None:
        """Step scores from the scorer, then each node's path value. A step the scorer has no
        opinion on (None) keeps score None and counts as 0 in path values; the trace's meta
        counts them (`unscored`)."""
        if not nodes:
            return
        scores = self.run.score(self.scorer, [self.candidate(n) for n in nodes])
        aggregate = AGGREGATIONS[self.config.aggregate]
        for node, score in zip(nodes, scores, strict=True):
            node.score = None if score is None else float(score)
            node.value = aggregate([s.score if s.score is not None else 0.0
                                    for s in self.path(node)])
        if unscored := sum(score is None for score in scores):
            self.trace.meta["unscored"] = self.trace.meta.get("unscored", 0) + unscored

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
        cut = leaf is not None and leaf.answer is None and not leaf.terminal
        return self.run.finish(leaf, None if leaf is None else leaf.answer,
                               "length" if cut else None)

