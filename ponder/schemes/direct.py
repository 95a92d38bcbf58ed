"""Direct answer: no chain of thought (the `none` reasoning effort).

The task's reasoning instruction is replaced by one that asks for the final answer alone, and
the completion counts as content, not reasoning (`reasoning_tokens` stays 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.problem import Problem
from ponder.core.types import Message, Result
from ponder.schemes.base import Run, SchemeConfig

INSTRUCTION = "Give only the final answer, within \\boxed{}, with no explanation."


@dataclass
class Config(SchemeConfig):
    temperature: float = 0.0  # greedy
    max_tokens: int = 64  # the answer alone


def run(problem: Problem, r: Run, config: Config) -> Result:
    max_tokens = min(config.max_tokens, r.budget_left)
    if max_tokens <= 0:
        return r.finish(None, None)
    [completion] = r.sample(asked(problem), 1, max_tokens=max_tokens, reasoning=False)
    node = r.add_chain(completion, problem)
    result = r.finish(node, node.answer)
    result.reasoning = ""
    if result.answer is None:
        result.content = completion.text.strip()
    return result


def asked(problem: Problem) -> list[Message]:
    """The problem asked for its answer alone: the task's system prompt replaced by ours."""
    return [{"role": "system", "content": INSTRUCTION},
            *(m for m in problem.messages if m["role"] != "system")]
