"""The policy as its own judge: the probability it gives "Yes" to "is the last step correct?".

An LLM-as-judge process scorer that needs no model beyond the policy, so it works with the
offline models. The judge continues the policy's own conversation: the problem's messages, the
solution so far as the assistant's turn, then a user turn asking whether its last step is
correct. The answer is not generated but read off the first token's distribution (top-20
logprobs): score = P(Yes) / (P(Yes) + P(No)), summing over the surface forms of each word
("Yes", " yes", ...). Where neither word is among the top 20 the step gets no score (None).

Cost: one decoded token per scored step, and a prefill of only the judge's question: the
judge prompt starts with the policy's prompt + path, whose KV the llama.cpp backend still holds
from the expansion (`keep_kv`), so the longest-prefix cache reuses it
(docs/results/tree_speed.md). Without `problems=` (a bare prompt) the judge falls back to a
standalone prompt that quotes the problem and the steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel
from ponder.core.types import GenerationRequest, SamplingParams

INSTRUCTION = ("Below is a problem and the beginning of a solution. Check the LAST step "
               "carefully: its arithmetic, and whether it follows from the problem and the "
               "steps before it.")
QUESTION = "Is the last step correct? Answer with one word, Yes or No."
FOLLOW_UP = ("Check the last step of your solution so far carefully: its arithmetic, and "
             "whether it follows from the problem and the steps before it. " + QUESTION)
TOP = 20


def judge_messages(question: str, steps: Sequence[str]) -> tuple[dict[str, str], ...]:
    numbered = "\n\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps))
    return ({"role": "user", "content": f"{INSTRUCTION}\n\nProblem:\n{question.strip()}\n\n"
             f"Solution so far:\n{numbered}\n\n{QUESTION}"},)


def follow_up_messages(problem: Problem, path: str) -> tuple[dict[str, str], ...]:
    """The policy's conversation so far, then the judge's question: it shares the policy's
    prompt + path as a prefix."""
    return (*problem.messages, {"role": "assistant", "content": path},
            {"role": "user", "content": FOLLOW_UP})


def yes_probability(top: dict[str, float]) -> float | None:
    """P(Yes) / (P(Yes) + P(No)) from one position's top logprobs; None if neither shows."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top.items():
        word = token.strip().lower()
        if word in mass:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


class StepJudge:
    """Scores the last step of each (prompt, path) pair. With `problems=` (as tree.py passes
    them) the judge continues each problem's conversation; without, it quotes `steps=`."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], *,
                 steps: Sequence[Sequence[str]] | None = None,
                 problems: Sequence[Problem] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if not completions:
            return []
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP)
        if problems is not None:  # continue the policy's own conversation (shared prefix)
            requests = [GenerationRequest(params, messages=follow_up_messages(p, c))
                        for p, c in zip(problems, completions, strict=True)]
        else:
            paths = steps if steps is not None else [[c] for c in completions]
            requests = [GenerationRequest(params, messages=judge_messages(q, s))
                        for q, s in zip(prompts, paths, strict=True)]
        out = self.model.generate(requests)
        scores: list[float | None] = []
        for [c] in out:
            top = c.top_logprobs[0] if c.top_logprobs else None
            scores.append(yes_probability(top) if top else None)
        return scores
