"""What every scheme shares: its config base and a run context that meters the model.

A scheme is `run(problem, *, model, scorer, config) -> Result`. It asks the model only through
`Run.sample`, which counts usage, keeps the token budget and forwards streaming callbacks, so
no scheme can forget to account for a call or overspend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel, OnText, ShouldStop
from ponder.core.types import (
    MAX_N,
    Completion,
    FinishReason,
    GenerationRequest,
    Node,
    Result,
    SamplingParams,
    Trace,
    Usage,
)
from ponder.models.wrap import Wrapper


@dataclass
class SchemeConfig:
    """Sampling and budget settings common to all schemes (each scheme subclasses it).

    `max_tokens` bounds one chain; `token_budget` bounds the completion tokens of the whole run
    (None = n × max_tokens). A scheme never starts a chain that the budget could not finish.
    """

    n: int = 1  # chains (name@N sets it)
    temperature: float = 0.7  # sampling temperature; 0: greedy
    top_p: float = 0.95  # nucleus sampling: the most likely tokens up to this mass; 1: off
    top_k: int = 0  # sample among the k most likely tokens; 0: off
    max_tokens: int = 1024  # most tokens of one chain
    token_budget: int | None = None  # most completion tokens of the run; null: n x max_tokens
    seed: int | None = None  # sampling seed; null: a fresh draw each run

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_N:
            raise ConfigError("n", self.n, f"use a number of samples between 1 and {MAX_N}")
        if self.token_budget is not None and self.token_budget <= 0:
            raise ConfigError("token_budget", self.token_budget, "use a positive token count")
        self.sampling(1)  # validates temperature, top_p, top_k, max_tokens with their own errors

    def sampling(self, n: int, **changes: object) -> SamplingParams:
        params = SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p,
                                top_k=self.top_k, max_tokens=self.max_tokens, seed=self.seed)
        return params.with_(**changes) if changes else params


@dataclass
class Run:
    """One scheme run: the model, the budget left, the usage so far, and the trace."""

    model: LanguageModel
    config: SchemeConfig
    scheme: str
    on_text: OnText | None = None
    should_stop: ShouldStop | None = None
    usage: Usage = field(default_factory=Usage)
    trace: Trace = field(default_factory=Trace)
    started: float = field(default_factory=time.perf_counter)
    calls: int = 0  # how many sample() calls so far, to give each its own seed

    def __post_init__(self) -> None:
        self.trace.scheme = self.scheme

    @property
    def budget_left(self) -> int:
        cfg = self.config
        total = cfg.token_budget if cfg.token_budget is not None else cfg.n * cfg.max_tokens
        return total - self.usage.completion_tokens

    def affordable(self, wanted: int, max_tokens: int | None = None) -> int:
        """How many of `wanted` chains of `max_tokens` the budget can still pay for in full."""
        return max(0, min(wanted, self.budget_left // (max_tokens or self.config.max_tokens)))

    @property
    def cancelled(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def sample(self, messages: Sequence[dict[str, str]] | None, n: int, *,
               prefix: str | None = None, reasoning: bool = True,
               **changes: object) -> list[Completion]:
        """n completions of one prompt, metered (as reasoning unless `reasoning=False`).
        Sampling seeds differ between calls of a run."""
        request = GenerationRequest(params=self._params(n, changes), prefix=prefix,
                                    messages=tuple(messages) if messages is not None else None)
        [completions] = self.generate([request], reasoning=reasoning)
        return completions

    def sample_prefixes(self, prefixes: Sequence[str], n: int, *, reasoning: bool = True,
                        keep_kv: bool = False, **changes: object) -> list[list[Completion]]:
        """n continuations of each raw prefix, all in one batched call (tree schemes expand
        every frontier node at once); `keep_kv` as in GenerationRequest."""
        params = self._params(n, changes)
        return self.generate([GenerationRequest(params=params, prefix=p, keep_kv=keep_kv)
                              for p in prefixes], reasoning=reasoning)

    def generate(self, requests: Sequence[GenerationRequest], *,
                 reasoning: bool = True) -> list[list[Completion]]:
        """The one place a scheme's model calls go through: metered, streamed, cancellable."""
        out = self.model.generate(requests, on_text=self.on_text, should_stop=self.should_stop)
        self.usage.add_completions([c for cs in out for c in cs], reasoning=reasoning)
        return out

    def _params(self, n: int, changes: dict[str, object]) -> SamplingParams:
        seed = self.config.seed
        if seed is not None:
            changes.setdefault("seed", seed + 7919 * self.calls)
        self.calls += 1
        return self.config.sampling(n, **changes)

    @property
    def metered(self) -> LanguageModel:
        """The model as a scorer should see it: its calls count in this run's usage (a judge's
        tokens are tokens spent thinking) and stop when the run is cancelled."""
        return _Metered(self)

    def add_chain(self, completion: Completion, problem: Problem, **meta: object) -> Node:
        """Record a whole chain as a root node of the trace, with its extracted answer."""
        answer = problem.extract(completion.text)
        return self.trace.add(completion.text, tokens=completion.completion_tokens, answer=answer,
                              meta={"finish_reason": completion.finish_reason, **meta})

    def finish(self, chosen: Node | None, answer: str | None,
               finish_reason: FinishReason | None = None) -> Result:
        """Build the result: `content` is the answer; `reasoning` the chain that gave it."""
        self.usage.seconds = time.perf_counter() - self.started
        if chosen is not None:
            self.trace.chosen = self.trace.path(chosen.id)
        reasoning = "".join(self.trace.nodes[i].text for i in self.trace.chosen)
        if finish_reason is None:
            if self.cancelled:
                finish_reason = "cancelled"
            elif answer is None and chosen is not None \
                    and chosen.meta.get("finish_reason") == "length":
                finish_reason = "length"
            elif answer is None and chosen is None:
                finish_reason = "length"  # the budget paid for no chain at all
            else:
                finish_reason = "stop"
        content = answer if answer is not None else _tail(reasoning)
        return Result(answer=answer, content=content, reasoning=reasoning, trace=self.trace,
                      usage=self.usage, finish_reason=finish_reason)


class _Metered(Wrapper):
    def __init__(self, run: Run) -> None:
        super().__init__(run.model)
        self._run = run

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        return self._run.generate(requests)


def _tail(text: str) -> str:
    """The last paragraph of a chain with no extractable answer: the closest thing to one."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    return paragraphs[-1].strip() if paragraphs else ""
