"""The two seams schemes are written against: a batched language model and a batched scorer.

Schemes never touch backend internals; backends may batch, share prefixes and cache KV state
behind `generate` as they see fit. A scorer receives one typed `Candidate` per thing to score,
whole chains and tree paths alike, and says whether it needs token logprobs to do so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ponder.core.problem import Problem
from ponder.core.reasoning import ReasoningParser
from ponder.core.types import Completion, GenerationRequest, Message, Tool

# on_text(request_index, sample_index, delta): called as text is generated, for streaming.
OnText = Callable[[int, int, str], None]
# should_stop(): polled between decode steps; True cancels the call (finish_reason "cancelled").
ShouldStop = Callable[[], bool]


@runtime_checkable
class LanguageModel(Protocol):
    """The policy that writes. One batched call: requests in, `n` completions per request out."""

    name: str
    # How the model thinks natively: the parser that splits its chat output into thinking and
    # reply (core/reasoning.py), or None for a model that does not think natively. Backends
    # read it off the chat template, or take `reasoning_parser=` from the user; a chat
    # completion of a thinking model has `Completion.reasoning` set.
    reasoning_parser: ReasoningParser | None
    # Whether a raw `prefix` request (the chat template's text plus a partial answer, as tree
    # search, budget forcing and tools send) continues what this model would write: local
    # backends always; an HTTP model only where it knows the server's template.
    raw_prefix: bool

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_text: OnText | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[list[Completion]]:
        """Return, for each request, its `params.n` completions in order."""
        ...

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        """The model's chat template applied to `messages` (and the `tools` offered, where the
        template carries tools), as the raw text it would see."""
        ...

    def count_tokens(self, text: str) -> int:
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class Candidate:
    """One thing to score: a whole chain, or a tree path up to its newest step.

    `text` is the chain (or the path's text so far) and `steps` the same text cut into steps at
    the problem's delimiter (a whole chain is cut too, so a process scorer reads it step by
    step); a scorer scores the *last* step, or the whole text if it scores outcomes.
    `token_logprobs` are the sampled tokens' log-probabilities of the newest part (the whole
    chain, or the path's last step), present when the scorer `needs_logprobs`.
    """

    prompt: str  # the policy's prompt as the model saw it (chat template applied)
    text: str
    steps: tuple[str, ...]
    problem: Problem
    answer: str | None = None  # the answer the text states, if any
    token_logprobs: tuple[float, ...] | None = None


@runtime_checkable
class Scorer(Protocol):
    """A value / reward function over candidates: one score each, higher is better.

    `None` for a candidate means "no opinion on this one" (a judge whose yes/no did not show, a
    rule with nothing to check at this step); a scorer that cannot score what it was given at
    all (no logprobs for a logprob scorer, a task without the checks a rule scorer needs)
    raises `ConfigError` rather than returning Nones. `needs_logprobs` makes every scheme ask
    the backend for the sampled tokens' logprobs and pass them in `Candidate.token_logprobs`.
    TRL-shaped reward functions, `fn(prompts, completions, **kw)`, become scorers through
    `ponder.scorers.RewardFunction`.
    """

    name: str
    needs_logprobs: bool

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        ...
