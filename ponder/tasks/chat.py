"""`chat`: any prompt, the default of `ponder solve` and `ponder serve`.

A prompt with a checkable answer (a number, an expression, yes/no, a choice) gets one that is
extracted and voted on; any other prompt (code, an explanation, a translation) gets a free-form
reply, and nobody is told to box an answer it does not have. The instruction asks for step by
step reasoning and a boxed answer only where the question has a single short one.

The reply. The embedded models do not think natively, and measured on them (greedy, the
0.5B): asked to think inside `<think>` tags they ignore the tags, and asked in a second turn to
"write the reply from your reasoning" they repeat the instruction instead of the deliverable
("The thing I asked for itself is…"); but their one chain is already the deliverable for a
free-form prompt (the palindrome function, the two sentences on the sky). So `reply` reads a
chosen chain as:
  * a model that thinks natively (`<think>…</think>` in the chain, as ponder's backends write
    a native thinker's output): the thinking is the reasoning, what follows it the reply;
  * a chain with an extracted answer: its last paragraph, where the answer is stated, is the
    reply (with `\\boxed{x}` shown as x); the paragraphs before it are the reasoning;
  * a chain without one: the whole chain is the reply, and nothing is kept apart.
The answer is read from the reply part only, never from a native thinker's thinking.
"""

from __future__ import annotations

import re

from ponder.core.problem import Reply
from ponder.core.reasoning import get_parser
from ponder.tasks.base import Task
from ponder.tasks.rules import Rules
from ponder.verifiers import canonical, extract_answer, is_equivalent

INSTRUCTION = ("Please reason step by step. If the question has a single short final answer (a "
               "number, an expression, yes/no, or a choice), put that answer within \\boxed{} "
               "at the end; otherwise, do not.")
THINK = get_parser("think")
_BOXED = re.compile(r"\\(?:boxed|fbox)\{((?:[^{}]|\{[^{}]*\})*)\}")


def extract(text: str) -> str | None:
    """The answer the reply states: the thinking of a native thinker is never read."""
    return extract_answer(THINK.split(text).content)


def reply(text: str) -> Reply:
    """A chosen chain as reasoning and reply (the module docstring says how). Thinking cut off
    before its end is all reasoning, with no reply."""
    split = THINK.split(text)
    if split.reasoning is not None:
        return Reply(split.reasoning.strip(), unbox(split.content.strip()))
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    if extract_answer(text) is None or len(paragraphs) < 2:
        return Reply("", unbox(text.strip()))
    return Reply("\n\n".join(paragraphs[:-1]), unbox(paragraphs[-1].strip()))


def unbox(text: str) -> str:
    """`\\boxed{408}` shown as 408."""
    return _BOXED.sub(lambda m: m.group(1), text)


TASK = Task(
    name="chat",
    summary="any prompt: a reply after the reasoning; a checkable answer extracted and voted",
    rules=Rules(extract, is_equivalent, canonical),
    instruction=INSTRUCTION,
    reply=reply,
)
