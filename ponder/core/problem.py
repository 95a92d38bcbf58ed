"""A problem as a scheme sees it: the prompt, and how to read and compare answers.

Tasks (ponder/tasks) build these; schemes only read them. Keeping answer handling here lets one
scheme serve GSM8K numbers, MATH expressions, Game-of-24 equations and Yes/No questions alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ponder.core.types import Message


def _identity(answer: str) -> str:
    return answer.strip()


@dataclass(frozen=True)
class Reply:
    """A chosen chain as the user sees it: the `content` shown, and the `reasoning` kept apart
    (empty where the chain itself is the reply: nothing was thought apart from it)."""

    reasoning: str
    content: str


@dataclass(frozen=True)
class Problem:
    question: str
    messages: tuple[Message, ...]
    extract: Callable[[str], str | None]  # completion text -> answer (None if it has none)
    key: Callable[[str], str] = _identity  # answer -> voting key; equal keys = same answer
    step_delimiter: str = "\n\n"  # where tree schemes cut a chain into steps
    # Checks that need no gold answer, where the task has them (Game of 24 does):
    verify: Callable[[str], bool] | None = None  # answer -> is it right?
    partial: Callable[[str], bool] | None = None  # steps so far -> can they still succeed?
    id: str | None = None
    gold: str | None = None
    # How a chosen chain reads as a reply for the user (the chat task, ponder/tasks/chat.py);
    # None: the extracted answer is the content shown (benchmark tasks)
    reply: Callable[[str], Reply] | None = None
