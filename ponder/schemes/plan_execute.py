"""Plan, then execute: a big planner with small executors (seed 001: "a big model does the
high-level thinking and planning, fast, cheap small models execute the plan").

  1. The `planner` (a bigger model: `--model planner=qwen-1.5b`; the policy if none is given)
     writes a numbered plan: what to compute and how, no solution (refine.py's prompt).
  2. `n` executors carry the whole plan out: the `executor` role's model (the policy if none
     is given) samples n chains from the task's own prompt with the plan appended (greedy for
     n = 1, sampled at `temperature` for more).
  3. The answer is the executors' vote (self-consistency over the executions; Universal
     Self-Consistency for free-form replies, usc.py).

Whether the split pays is a real question: Divide-or-Conquer (Wu et al., EMNLP 2024) finds
that planning (decomposition) transfers to a smaller model more readily than solving does. The
trace is the plan (role planner) with the executions under it (role executor), each model
metered apart.

Departures: executors carry out the whole plan in one chain, not step by step; and the
planner does not check the final answer (the issue's optional step; not built).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.problem import Problem
from ponder.core.types import Result, user
from ponder.schemes.base import Run, SchemeConfig
from ponder.schemes.refine import PLAN, task_text, with_plan
from ponder.schemes.usc import most_consistent
from ponder.schemes.vote import record, tally

EXECUTOR = "executor"


@dataclass
class Config(SchemeConfig):
    n: int = 1  # executions of the plan
    temperature: float = 0.0  # greedy for one execution; set it for several
    max_tokens: int = 1024  # most tokens of one execution
    plan_tokens: int = 384  # most tokens of the plan
    token_budget: int | None = None  # most completion tokens; null: plan + n executions

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token_budget is None:
            self.token_budget = self.plan_tokens + self.n * self.max_tokens


def run(problem: Problem, r: Run, config: Config) -> Result:
    plan = None
    if r.budget_left >= config.plan_tokens + config.max_tokens and not r.cancelled:
        asked = user(f"Problem:\n{task_text(problem)}\n\n{PLAN}")
        [c] = r.sample(asked, 1, max_tokens=config.plan_tokens, role="planner", temperature=0.0)
        plan = r.trace.add(c.text, tokens=c.completion_tokens, finish_reason=c.finish_reason,
                           role="planner", meta={"kind": "plan"})
    n = r.affordable(config.n)
    if n == 0 or r.cancelled:
        return r.finish(None, None)
    messages = problem.messages if plan is None else with_plan(problem.messages, plan.text)
    nodes = [r.add_chain(c, problem, role=EXECUTOR, parent=plan, kind="execution")
             for c in r.sample(messages, n, role=EXECUTOR)]
    ranked = tally(nodes, problem)
    r.trace.meta["votes"] = record(nodes, ranked)
    if not ranked:
        return r.finish(most_consistent(r, problem, nodes) if nodes else None, None)
    return r.finish(ranked[0].nodes[0], ranked[0].answer)
