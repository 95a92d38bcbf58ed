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
(docs/results/tree_speed.md). The judge is the model in the scheme's `judge` role: the policy
itself unless another model is given for it (`--model judge=qwen-1.5b`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ponder.core.problem import Problem
from ponder.core.protocols import Candidate, LanguageModel
from ponder.core.types import GenerationRequest, SamplingParams

QUESTION = "Is the last step correct? Answer with one word, Yes or No."
FOLLOW_UP = ("Check the last step of your solution so far carefully: its arithmetic, and "
             "whether it follows from the problem and the steps before it. " + QUESTION)
TOP = 20


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
    """Scores the last step of each candidate: the judge continues the candidate's problem's
    conversation with the path as the assistant's turn and asks about its last step."""

    name = "judge"
    needs_logprobs = False

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        if not candidates:
            return []
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP)
        requests = [GenerationRequest(params, messages=follow_up_messages(c.problem, c.text))
                    for c in candidates]
        return [yes_probability(c.top_logprobs[0]) if c.top_logprobs else None
                for [c] in self.model.generate(requests)]
