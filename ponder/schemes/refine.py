"""Plan, evaluate, refine, then execute: Self-Refine's feedback/refine loop (Madaan et al. 2023,
arXiv:2303.17651) applied to a plan rather than to the answer, then a solution written from the
plan (as PlanSearch, Wang et al. 2024, optillm `plansearch.py`, codes from a plan in words).

  1. The policy writes a plan for the problem: numbered steps, no solution yet.
  2. The policy judges the plan: asked "Is this plan correct and complete?", its P(Yes) is read
     off the first token's top logprobs (`yes_probability`, as the step judge does). The plan
     is accepted when P(Yes) >= `accept`.
  3. Otherwise the policy critiques the plan in a few sentences (Self-Refine's FEEDBACK) and
     4. rewrites it in the light of the critique (REFINE); back to 2, for at most `rounds`
     revisions.
  5. The policy solves the problem following the last plan; the answer is extracted from that
     chain as from any other.

Every call goes through the run, so plans, critiques and judge tokens all count as reasoning.
The trace is one path: plan -> critique -> revision -> ... -> execution, each node with
`meta["kind"]`; plan and revision nodes carry the judge's score. The result's `reasoning` is that
path with each part under a label ("Plan:", "Critique:", "Revised plan:", "Solution:"); the run's
plain concatenation of node texts would run them into one another.

Departures from the paper: Self-Refine stops when its own feedback says the output is good;
here a separate Yes/No judge decides, so stopping costs one token. A judge that cannot tell
(neither word among the top logprobs, or a backend without them) counts as "No", as a step
score of None counts as 0 in tree.py. A revision round is started only if the budget can still
pay for it *and* for the execution; with too little budget for even a plan the problem is
solved directly. A scorer given to the run replaces the plan judge: it gets the plan as a
candidate's text (and its one step) and returns P(accept).

Roles: the plan, critiques and revisions are written by the `planner` (the policy unless
`--model planner=...` gives another model), the plan judged by the `judge`, the solution
written by the policy from the final plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate, LanguageModel
from ponder.core.types import GenerationRequest, Message, Node, Result, SamplingParams, user
from ponder.schemes.base import Run, SchemeConfig
from ponder.scorers.judge import TOP, yes_probability

PLAN = ("Write a short plan for solving this problem: numbered steps saying what to compute "
        "and how. Do not carry out the steps and do not give the final answer.")
CRITIQUE = ("Point out, in a few sentences, what is wrong or missing in this plan: wrong "
            "steps, misread facts, steps that are left out. Do not solve the problem.")
REVISE = ("Rewrite the plan so that it fixes the problems the critique points out. Write only "
          "the new plan, as numbered steps; do not solve the problem.")
QUESTION = "Is this plan correct and complete? Answer with one word, Yes or No."
EXECUTE = "Solve the problem by following this plan:"
LABELS = {"plan": "Plan", "critique": "Critique", "revision": "Revised plan",
          "execution": "Solution"}


@dataclass
class Config(SchemeConfig):
    n: int = 1  # always 1: one plan is refined (aggregate@N merges N chains)
    temperature: float = 0.0
    max_tokens: int = 1024  # most tokens of the execution (the solution chain)
    token_budget: int | None = 4096  # most completion tokens (plan, 3 rounds, execution: 3,332)
    rounds: int = 3  # revisions at most
    accept: float = 0.5  # the judge's P(Yes) that accepts a plan
    plan_tokens: int = 384  # most tokens of a plan or a revised plan
    critique_tokens: int = 256  # most tokens of one critique

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n != 1:
            raise ConfigError("n", self.n, "refine writes one plan; set rounds= for more "
                              "revisions, or use aggregate@N for N chains")
        if self.rounds < 0:
            raise ConfigError("rounds", self.rounds, "use 0 or more revisions")
        if not 0.0 <= self.accept <= 1.0:
            raise ConfigError("accept", self.accept, "use a probability between 0 and 1")
        for name in ("plan_tokens", "critique_tokens"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "use a positive number of tokens")


def run(problem: Problem, r: Run, config: Config) -> Result:
    judge = r.scorer_or(PlanJudge(r.role("judge")))
    task = task_text(problem)
    prompt = r.model.render_chat(problem.messages)

    def affords(tokens: int) -> bool:  # ... and the execution after it
        return not r.cancelled and r.budget_left - config.max_tokens >= tokens

    def judged(node: Node) -> Node:
        [score] = r.score(judge, [Candidate(prompt, node.text, (node.text,), problem)])
        node.score = score
        return node

    def accepted(plan: Node) -> bool:  # an unsure judge (None) counts as No
        return plan.score is not None and plan.score >= config.accept

    def revised(plan: Node) -> Node:  # Self-Refine's FEEDBACK, then REFINE
        shown = f"Problem:\n{task}\n\nPlan:\n{plan.text.strip()}"
        critique = write(r, user(f"{shown}\n\n{CRITIQUE}"), config.critique_tokens, "critique",
                         parent=plan)
        asked = f"{shown}\n\nCritique:\n{critique.text.strip()}\n\n{REVISE}"
        return judged(write(r, user(asked), config.plan_tokens, "revision", parent=critique))

    plan: Node | None = None
    if affords(config.plan_tokens + 1):  # + the judge's one token
        plan = judged(write(r, user(f"Problem:\n{task}\n\n{PLAN}"), config.plan_tokens, "plan"))
        while not accepted(plan) and plan.meta["round"] < config.rounds \
                and affords(config.critique_tokens + config.plan_tokens + 1):
            plan = revised(plan)
        r.trace.meta.update(revisions=plan.meta["round"], accepted=accepted(plan))
    return execute(r, problem, plan, config)


def write(r: Run, messages: Sequence[Message], max_tokens: int, kind: str,
          parent: Node | None = None) -> Node:
    """One plan, critique or revision: a node under `parent`, its round the revision count."""
    [c] = r.sample(messages, 1, max_tokens=max_tokens, role="planner")
    rounds = 0 if parent is None else int(parent.meta["round"]) + (kind == "revision")
    return r.trace.add(c.text, parent=None if parent is None else parent.id,
                       tokens=c.completion_tokens, finish_reason=c.finish_reason,
                       role="planner", forced=list(c.forced),
                       meta={"kind": kind, "round": rounds})


def execute(r: Run, problem: Problem, plan: Node | None, config: Config) -> Result:
    """Solve the problem with the task's own prompt, the final plan appended to the question."""
    max_tokens = min(config.max_tokens, r.budget_left)
    if max_tokens <= 0 or r.cancelled:
        return r.finish(None, None)
    messages = problem.messages if plan is None else with_plan(problem.messages, plan.text)
    [c] = r.sample(messages, 1, max_tokens=max_tokens)
    node = r.add_chain(c, problem, parent=plan, kind="execution")
    result = r.finish(node, node.answer)
    result.reasoning = labelled([r.trace.nodes[i] for i in r.trace.chosen])
    return result


def with_plan(messages: Sequence[Message], plan: str) -> list[Message]:
    """The task's own prompt with the plan to follow appended to the question."""
    *head, last = messages
    return [*head, {**last, "content": f"{last['content']}\n\n{EXECUTE}\n{plan.strip()}"}]


def labelled(path: Sequence[Node]) -> str:
    """The chosen path as reasoning: each part under its label, so plan, critique and
    solution do not run into one another."""
    return "\n\n".join(f"{LABELS[n.meta['kind']]}:\n{n.text.strip()}" for n in path)


def task_text(problem: Problem) -> str:
    """The question as the task words it (Game of 24's prompt, not just its four numbers)."""
    return "\n\n".join(m["content"] for m in problem.messages if m["role"] == "user")


class PlanJudge:
    """P(Yes) to "is this plan correct and complete?", one decoded token per plan (a Scorer:
    each candidate's text is a plan)."""

    name = "plan-judge"
    needs_logprobs = False

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP)
        requests = [GenerationRequest(params, messages=user(
            f"Problem:\n{task_text(c.problem)}\n\nPlan:\n{c.text.strip()}\n\n{QUESTION}"))
            for c in candidates]
        return [yes_probability(c.top_logprobs[0]) if c.top_logprobs else None
                for [c] in self.model.generate(requests)]
