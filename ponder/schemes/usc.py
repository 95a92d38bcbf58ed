"""Universal Self-Consistency (Chen et al. 2023, arXiv:2311.17311): choosing among free-form
replies that cannot be keyed for a vote (code, prose).

The model is shown the candidate replies, numbered, and asked which is the most consistent
with the others; its choice is read off the first number of its answer. One greedy call of at
most `TOKENS` tokens, by the model in the `judge` role (the policy unless another is given),
metered as reasoning. Departures: the paper shows whole responses; here each candidate is the
user-facing reply only (what would be shown), cut to `SHOWN` characters so that eight long
replies still fit a small model's context. An unreadable choice keeps the first candidate (the
paper's fallback is the same).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ponder.core.problem import Problem
from ponder.core.types import Node, user
from ponder.schemes.base import Run

TOKENS = 16
SHOWN = 1200  # characters of each candidate reply shown to the judge
ASK = ("I have generated the following responses to the question: {question}\n\n{responses}\n\n"
       "Evaluate these responses. Select the most consistent response based on majority "
       "consensus. Start your answer with \"The most consistent response is Response X\" "
       "(without quotes).")
_CHOICE = re.compile(r"response\s*(\d+)", re.IGNORECASE)


def most_consistent(r: Run, problem: Problem, nodes: Sequence[Node]) -> Node:
    """The node whose reply the judge names the most consistent; the first where it cannot
    tell, or where the budget cannot pay for the question. Records the choice in trace meta."""
    if len(nodes) == 1 or r.cancelled or r.affordable(1, TOKENS) == 0:
        return nodes[0]
    replies = [problem.reply(n.text).content if problem.reply else n.text for n in nodes]
    shown = "\n\n".join(f"Response {i + 1}:\n{reply.strip()[:SHOWN]}"
                        for i, reply in enumerate(replies))
    [c] = r.sample(user(ASK.format(question=problem.question, responses=shown)), 1,
                   role="judge", temperature=0.0, max_tokens=TOKENS)
    match = _CHOICE.search(c.text)
    index = int(match.group(1)) - 1 if match else -1
    chosen = index if 0 <= index < len(nodes) else 0
    r.trace.meta["usc"] = {"choice": chosen + 1, "read": match is not None}
    return nodes[chosen]
