"""The two seams schemes are written against: a batched language model and a batched scorer.

Schemes never touch backend internals; backends may batch, share prefixes and cache KV state
behind `generate` as they see fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ponder.core.types import Completion, GenerationRequest, Message

# on_text(request_index, sample_index, delta): called as text is generated, for streaming.
OnText = Callable[[int, int, str], None]
# should_stop(): polled between decode steps; True cancels the call (finish_reason "cancelled").
ShouldStop = Callable[[], bool]


@runtime_checkable
class LanguageModel(Protocol):
    """The policy that writes. One batched call: requests in, `n` completions per request out."""

    name: str

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_text: OnText | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[list[Completion]]:
        """Return, for each request, its `params.n` completions in order."""
        ...

    def render_chat(self, messages: Sequence[Message], *,
                    add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to `messages`, as the raw text it would see."""
        ...

    def count_tokens(self, text: str) -> int:
        ...

    def close(self) -> None:
        ...


class Scorer(Protocol):
    """A value / reward function, the same shape as TRL's reward functions.

    `prompts[i]` and `completions[i]` form one pair; the result is one score per pair, higher is
    better, `None` where the scorer does not apply. Extra keyword arguments (for instance
    `answers`, `gold`) are passed through and may be ignored.
    """

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any
    ) -> list[float | None]:
        ...
