"""Reward functions in TRL's `RewardFunc` shape: `fn(prompts, completions, **kwargs) -> scores`.

Batched, one score per completion, `None` where a reward does not apply (TRL skips those), extra
dataset columns arrive as keyword arguments and are ignored unless named. Completions may be plain
strings or chat-format message lists (TRL passes the latter for conversational datasets); the
text scored is the last assistant message. The same functions serve as ponder `Scorer`s.

Factories return callable objects rather than closures so the rewards stay picklable (TRL may
send reward functions to a worker process), with a `__name__` for TRL's per-reward logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ponder.core.errors import ConfigError
from ponder.verifiers.answers import extract_answer, is_equivalent

Completion = str | Sequence[dict[str, str]]


def completion_text(completion: Completion) -> str:
    """The text of a completion: itself, or the content of its last assistant message."""
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role", "assistant") == "assistant":
            return message.get("content") or ""
    return ""


def correctness_reward(
    prompts: Sequence[Any],
    completions: Sequence[Completion],
    *,
    gold: Sequence[str | None],
    extract: Callable[[str], str | None] = extract_answer,
    check: Callable[[str, str], bool] = is_equivalent,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 when the extracted answer matches `gold`, 0.0 when it does not or no answer can be
    found, None when the gold answer is missing. A task plugs in its own rules with
    `functools.partial(correctness_reward, extract=task.extract, check=task.check)`."""
    if len(gold) != len(completions):
        raise ValueError(f"got {len(completions)} completions but {len(gold)} gold answers")
    rewards: list[float | None] = []
    for completion, answer in zip(completions, gold, strict=True):
        if answer is None:
            rewards.append(None)
            continue
        pred = extract(completion_text(completion))
        rewards.append(1.0 if pred is not None and check(pred, answer) else 0.0)
    return rewards


def format_reward(
    prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any
) -> list[float | None]:
    """1.0 when a final answer can be extracted (boxed, `####` or "the answer is"), else 0.0."""
    return [0.0 if extract_answer(completion_text(c)) is None else 1.0 for c in completions]


class LengthPenalty:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to `max_tokens - buffer`,
    then falling linearly to -1 at `max_tokens`, and -1 beyond. It penalises rambling near the
    budget without rewarding brevity for its own sake.

    Lengths come from TRL's `completion_ids` keyword when given, else from `count_tokens(text)`;
    with neither the call fails rather than guess a tokenizer.
    """

    __name__ = "length_penalty"

    def __init__(
        self,
        max_tokens: int,
        buffer_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        buffer = max_tokens // 4 if buffer_tokens is None else buffer_tokens
        if max_tokens <= 0:
            raise ConfigError("max_tokens", max_tokens, "use a positive number of tokens")
        if not 0 < buffer <= max_tokens:
            raise ConfigError("buffer_tokens", buffer, "use a number of tokens in (0, max_tokens]")
        self.max_tokens, self.buffer, self.count_tokens = max_tokens, buffer, count_tokens

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Completion],
        *,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        elif self.count_tokens is not None:
            lengths = [self.count_tokens(completion_text(c)) for c in completions]
        else:
            raise ConfigError("completion_ids", None,
                              "pass completion_ids (TRL does) or build it with count_tokens=...")
        free = self.max_tokens - self.buffer
        return [min(0.0, max(-1.0, (free - n) / self.buffer)) for n in lengths]


def length_penalty(
    max_tokens: int,
    buffer_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> LengthPenalty:
    """A `LengthPenalty` reward; `buffer_tokens` defaults to a quarter of `max_tokens`."""
    return LengthPenalty(max_tokens, buffer_tokens, count_tokens)
