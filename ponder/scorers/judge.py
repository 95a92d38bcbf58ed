"""The policy as its own judge: the probability it gives "Yes" to "is the last step correct?".

An LLM-as-judge process scorer that needs no model beyond the policy, so it works with the
offline models. The judge sees the problem and the solution so far, and is asked one question;
its answer is not generated but read off the first token's distribution (top-20 logprobs):
score = P(Yes) / (P(Yes) + P(No)), summing over the surface forms of each word ("Yes", " yes",
...). Where neither word is among the top 20 the step gets no score (None).

Cost: one prefill of the judge prompt and one decoded token per scored step; the judge prompt
shares no prefix with the policy's (it starts with its own instruction), so a tree of S steps
costs S judge prefills on top of the search.
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
TOP = 20


def judge_messages(question: str, steps: Sequence[str]) -> tuple[dict[str, str], ...]:
    numbered = "\n\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps))
    return ({"role": "user", "content": f"{INSTRUCTION}\n\nProblem:\n{question.strip()}\n\n"
             f"Solution so far:\n{numbered}\n\n{QUESTION}"},)


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
    """Scores the last step of each (prompt, path) pair; `problems=` gives the question text,
    `steps=` the path cut into steps (both as tree.py passes them)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], *,
                 steps: Sequence[Sequence[str]] | None = None,
                 problems: Sequence[Problem] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if not completions:
            return []
        questions = [p.question for p in problems] if problems is not None else list(prompts)
        paths = steps if steps is not None else [[c] for c in completions]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP)
        requests = [GenerationRequest(params, messages=judge_messages(q, s))
                    for q, s in zip(questions, paths, strict=True)]
        out = self.model.generate(requests)
        scores: list[float | None] = []
        for [c] in out:
            top = c.top_logprobs[0] if c.top_logprobs else None
            scores.append(yes_probability(top) if top else None)
        return scores
