"""Tree of Thoughts (Yao et al. 2023, arXiv:2305.10601): the policy proposes next steps, values
the states they reach itself, and the tree is searched breadth-first (ToT-BFS, §4.1, Game of 24)
or depth-first (ToT-DFS, Algorithm 2). Game of 24 uses princeton-nlp/tree-of-thought-llm's
prompts (src/tot/prompts/game24.py: propose, value, value_last_step, cot; verbatim in
ponder/tasks/game24.py) as its src/tot/tasks/game24.py wraps and reads them; the search is its
src/tot/methods/bfs.py `solve`. Other tasks get generic prompts of the same shape (below); a
question that is four integers counts as Game of 24.

  generate  propose: one prompt per frontier state; each line of the reply is a child (Game of
            24: once only 24 is left, the cot prompt with the steps so far, for "Answer: ...").
            sample: `n_generate` next steps from the task's own prompt (`Tree.expand`).
  evaluate  `n_evaluate` samples of the value prompt per state: 20·sure + 1·likely +
            0.001·impossible (`value_outputs_unwrap`); `scorer=NAME` uses a step scorer instead.
  search    bfs: the `n` best states of each depth are expanded, for `max_depth` depths (Game
            of 24: three operations, then the answer). dfs: children best first, those valued
            below `threshold` pruned, backtracking; the first answer at or above it wins.
The answer is the problem's `extract` of the final step. Each state is a Node (its step line,
its value, `meta["left"]` the numbers left in Game of 24); `chosen` is the path to the answer.

Departures: (1) `rule_check` (default on; off is the paper's setting) applies the problem's
gold-free checks first: a state that cannot succeed (`Problem.partial`) is pruned unasked; an
answer is judged by `Problem.verify` (right: valued as all "sure"; wrong: 0); BFS stops at a
right one. (2) The verdict is the first line of a value reply that is one of the three words
(ToT reads the last; small models write on). (3) Replies are cut at "Input:" (the next example);
proposal lines lose list markers and duplicates, and in Game of 24 need "left:" or an answer.
(4) A value prompt is asked once per run (ToT caches across runs). (5) No call starts that the
token budget could not finish; states it cannot value are worth 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate
from ponder.core.types import Completion, Node, Result, user
from ponder.schemes.base import Run
from ponder.schemes.tree import Tree, TreeConfig
from ponder.tasks import game24

VALUES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}  # value_outputs_unwrap's value_map
_VERDICT = re.compile(r"^\W*(sure|likely|impossible)\W*$", re.IGNORECASE | re.MULTILINE)
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")  # "1. ", "- ": chat models number lists
_PUZZLE = re.compile(r"\s*\d+(?:\s+\d+){3}\s*")  # a Game of 24 question is its four numbers
STOP = ("Input:",)  # where ToT's few-shot prompts would begin the next example

GENERIC_PROPOSE = ("Question: {question}\nSolution so far:\n{path}\nPossible next steps (one "
                   "per line; each is one step that continues the solution above, and a step "
                   "that reaches the final answer puts it in \\boxed{{}}):\n")
GENERIC_VALUE = ("Evaluate if the partial solution below can still reach a correct answer to the "
                 "question (sure/likely/impossible). Check its steps, then write your judgement "
                 "alone on the last line: sure, likely or impossible.\nQuestion: {question}\n"
                 "Solution so far:\n{path}\n")


@dataclass(frozen=True)
class Prompts:
    propose: Callable[[str, str], tuple[str, str]]  # (question, path) -> (user, reply start)
    value: Callable[[str, str], str]  # (question, path) -> user message


GAME24 = Prompts(game24.tot_propose, game24.tot_value)
GENERIC = Prompts(
    lambda q, path: (GENERIC_PROPOSE.format(question=q, path=path or "(no steps yet)"), ""),
    lambda q, path: GENERIC_VALUE.format(question=q, path=path))


def prompts_for(problem: Problem) -> Prompts:
    return GAME24 if _PUZZLE.fullmatch(problem.question) else GENERIC


@dataclass
class Config(TreeConfig):
    n: int = 5  # breadth b: states kept per depth (bfs)
    max_tokens: int = 256  # one proposal list, or one sampled step
    max_depth: int = 4  # most steps (Game of 24: three operations, the answer)
    token_budget: int | None = 32768
    scorer: str = "value"  # ToT's value prompt; or a step scorer's name
    search: str = "bfs"  # bfs or dfs
    generator: str = "propose"  # propose (one list of steps) or sample (n_generate steps)
    n_generate: int = 5  # samples per state (generator=sample)
    n_evaluate: int = 3  # value samples per state
    value_tokens: int = 96  # most tokens of one value reply
    threshold: float = 1.0  # dfs prunes children valued below it (1.0: one "likely")
    rule_check: bool = True  # prune states the task's gold-free checks rule out

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, valid in (("search", SEARCHES), ("generator", GENERATORS)):
            if getattr(self, name) not in valid:
                raise ConfigError(name, getattr(self, name), f"use one of {', '.join(valid)}")
        for name in ("n_generate", "n_evaluate", "value_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "use a positive number")


def chat(r: Run, content: str, start: str = "") -> str:
    """A user message as the model's raw prompt, with the start of its reply."""
    return r.model.render_chat(user(content)) + start


class Value:
    """ToT's state evaluator as a Scorer: `n_evaluate` samples of each path's value prompt, all
    in one batched call, by the model in the `judge` role (the policy unless another is given);
    None where the budget cannot pay for them."""

    name = "value"
    needs_logprobs = False

    def __init__(self, run: Run, config: Config) -> None:
        self.run, self.config = run, config
        self.cache: dict[str, float] = {}  # value prompt -> value, for this run

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        asks = [prompts_for(c.problem).value(c.problem.question, c.text) for c in candidates]
        n, r = self.config.n_evaluate, self.run
        new = [a for a in dict.fromkeys(asks) if a not in self.cache]
        new = new[: r.affordable(len(new) * n, self.config.value_tokens) // n]
        if new and not r.cancelled:
            judge = r.role("judge")
            replies = r.sample_prefixes([judge.render_chat(user(a)) for a in new], n,
                                        max_tokens=self.config.value_tokens, role="judge")
            for a, cs in zip(new, replies, strict=True):
                verdicts = (_VERDICT.search(c.text) for c in cs)
                self.cache[a] = sum(VALUES[v[1].lower()] for v in verdicts if v is not None)
        return [self.cache.get(a) for a in asks]


class Search:
    """One ToT search: the tree, its generator, and the rule checks before its evaluator."""

    def __init__(self, r: Run, problem: Problem, config: Config) -> None:
        self.r, self.problem, self.config = r, problem, config
        value = config.scorer == "value" and r.scorer is None
        self.tree = Tree(r, problem, config, Value(r, config) if value else None)
        self.prompts = prompts_for(problem)
        self.top = VALUES["sure"] * config.n_evaluate  # a verified answer's value

    def expand(self, parents: Sequence[Node | None]) -> list[Node]:
        children = GENERATORS[self.config.generator](self, parents)
        for child in children:
            if self.prompts is GAME24 and (left := game24.numbers_left(child.text)) is not None:
                child.meta["left"] = left
        return children

    def sample(self, parents: Sequence[Node | None]) -> list[Node]:
        return [c for cs in self.tree.expand(parents, self.config.n_generate) for c in cs]

    def propose(self, parents: Sequence[Node | None]) -> list[Node]:
        parents = parents[: self.r.affordable(len(parents))]
        if not parents or self.r.cancelled:
            return []
        asks = [self.prompts.propose(self.problem.question, self.tree.text(p)) for p in parents]
        replies = self.r.sample_prefixes([chat(self.r, *ask) for ask in asks], 1, stop=STOP)
        return [self._child(parent, line, c)
                for parent, [c] in zip(parents, replies, strict=True) for line in self._lines(c)]

    def _lines(self, reply: Completion) -> list[str]:
        lines = [_MARKER.sub("", line).strip() for line in reply.text.split("\n")]
        if reply.finish_reason == "length":
            lines = lines[:-1]  # cut off mid-line
        return list(dict.fromkeys(line for line in lines if line and (
            self.prompts is not GAME24 or "left:" in line.lower()
            or self.problem.extract(line) is not None)))

    def _child(self, parent: Node | None, line: str, reply: Completion) -> Node:
        """A proposed line as a step; its answer is read off the line alone."""
        return self.tree.add_step(parent, line + self.problem.step_delimiter,
                                  self.r.model.count_tokens(line), reply.finish_reason,
                                  ended=False, reads=line)

    def evaluate(self, nodes: Sequence[Node]) -> None:
        """Rule checks first (no model call), then the evaluator on the rest, in one batch."""
        self.tree.score([node for node in nodes if not self._ruled(node)])

    def _ruled(self, node: Node) -> bool:
        """Value a state with no model call where a rule decides (True if one did)."""
        p = self.problem
        if node.answer is None and node.terminal:  # 0, as in value_outputs_unwrap
            rule = "no answer"
        elif not self.config.rule_check:
            return False
        elif node.answer is not None and p.verify is not None:
            rule = "verified" if p.verify(node.answer) else "wrong"
        elif node.answer is None and p.partial is not None and not p.partial(self.tree.text(node)):
            rule = "dead end"
        else:
            return False
        node.meta["rule"] = rule
        node.score = node.value = self.top if rule == "verified" else 0.0
        return True

    def alive(self, node: Node) -> bool:
        return not node.terminal and "rule" not in node.meta

    def ranked(self, nodes: Sequence[Node]) -> list[Node]:
        return sorted(nodes, key=lambda n: (-n.value, n.id))


def bfs(s: Search) -> Node | None:
    """ToT-BFS (bfs.py `solve`, greedy selection): expand every state of the frontier, value the
    children, keep the `n` best open ones for the next depth."""
    frontier: list[Node | None] = [None]
    for _ in range(s.config.max_depth):
        children = s.expand(frontier)  # none: nothing proposed, or no budget for another depth
        s.evaluate(children)
        if verified := [c for c in children if c.meta.get("rule") == "verified"]:
            return verified[0]
        frontier = list(s.ranked([c for c in children if s.alive(c)])[: s.config.n])
        if not frontier:
            return None  # `run` takes the best answer of the tree
    return None


def dfs(s: Search, state: Node | None = None) -> Node | None:
    """ToT-DFS (Algorithm 2): children best first, those valued below `threshold` pruned; the
    first answer at or above it ends the search."""
    children = s.expand([state])
    s.evaluate(children)
    for child in s.ranked(children):
        if child.value < s.config.threshold or s.r.cancelled:
            break
        if child.answer is not None:
            return child
        if s.alive(child) and (found := dfs(s, child)) is not None:
            return found
    return None


SEARCHES: dict[str, Callable[[Search], Node | None]] = {"bfs": bfs, "dfs": dfs}
GENERATORS: dict[str, Callable[[Search, Sequence[Node | None]], list[Node]]] = {
    "propose": Search.propose, "sample": Search.sample}


def run(problem: Problem, r: Run, config: Config) -> Result:
    s = Search(r, problem, config)
    found = SEARCHES[config.search](s)
    r.trace.meta.update(search=config.search, generator=config.generator,
                        prompts="game24" if s.prompts is GAME24 else "generic",
                        found=found is not None)
    if found is not None:
        return s.tree.finish_with(found)
    answered = [n for n in r.trace.nodes if n.answer is not None]  # (bfs, or dfs gave up)
    return s.tree.choose(answered, [n for n in r.trace.nodes if s.alive(n)], "best")
