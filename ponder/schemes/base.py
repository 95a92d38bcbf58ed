"""What every scheme shares: its config base and a run context that meters the models.

A scheme is `run(problem, r, config) -> Result`, where `r` is the `Run` the scheme table built
for it. It asks its models only through the run (`Run.sample`, `Run.role`), which counts usage
per role and model, keeps the token budget and forwards streaming callbacks, so no scheme can
forget to account for a call or overspend.

Models by role: a run holds the policy and any other models the caller gave by role
(`planner`, `executor`, `verifier`, `judge`, `fallback`; core/types.py `ROLES`). A role with no
model of its own is played by the policy, so every scheme runs on one model and uses more
where they are given; the usage of each (role, model) is kept apart in `Usage.by_role`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate, LanguageModel, OnText, Scorer, ShouldStop
from ponder.core.reasoning import get_parser
from ponder.core.types import (
    MAX_N,
    POLICY,
    Completion,
    FinishReason,
    GenerationRequest,
    Node,
    Result,
    SamplingParams,
    Trace,
    Usage,
)
from ponder.core.wrap import Wrapper
from ponder.scorers import RewardFn, resolve_scorer

THINK = get_parser("think")


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

    def seed_for(self, call: int) -> int | None:
        """The sampling seed of a run's `call`-th model call (or batched round): each call
        draws from its own seed, all derived from `seed`; None: fresh draws."""
        return None if self.seed is None else self.seed + 7919 * call

    def sampling(self, n: int, **changes: object) -> SamplingParams:
        params = SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p,
                                top_k=self.top_k, max_tokens=self.max_tokens, seed=self.seed)
        return params.with_(**changes) if changes else params


@dataclass
class ScoredConfig(SchemeConfig):
    """Settings of a scheme that scores chains or steps: `scorer` names its scorer (a name in
    ponder.scorers' table, a scorer the caller named when it started, or `prm:PATH`)."""

    scorer: str = "judge"  # the scorer: judge, confidence, rule, uniform, prm:PATH, orm:PATH


# what `tools=` may name, joined by "+" (tooluse.py): python runs the chain's ```python blocks;
# calc writes the value of the arithmetic the chain is about to equate, after its `=`
TOOLS = ("python", "calc")


@dataclass
class ToolSettings:
    """The tools a scheme uses mid-reasoning (tooluse.py): chain schemes take python and calc,
    tree schemes python (a step that closes a ```python block has the block's output added)."""

    tools: str = ""  # python, calc or python+calc: tools used mid-chain (tooluse.py); "": none
    tool_calls: int = 4  # most code blocks run per chain; later ones are left as written
    tool_seconds: float = 5.0  # wall-time limit of one code block's run

    def check_tools(self, allowed: tuple[str, ...] = TOOLS) -> None:
        if any(tool not in allowed for tool in self.tool_names):
            raise ConfigError("tools", self.tools, f"use {' or '.join(allowed)}"
                              + (", or both joined by +: python+calc" if len(allowed) > 1
                                 else " here"))
        if self.tool_calls < 1 or not 0 < self.tool_seconds <= 60:
            raise ConfigError("tool_calls" if self.tool_calls < 1 else "tool_seconds",
                              self.tool_calls if self.tool_calls < 1 else self.tool_seconds,
                              "use at least 1 call, and 0 < seconds <= 60")

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(self.tools.split("+")) if self.tools else ()


@dataclass
class ChainConfig(ToolSettings, SchemeConfig):
    """How each chain of a chain scheme is written, beyond sampling it whole: budget forcing
    (forcing.py: with `budget` set, every chain thinks in tags, cut at the budget or extended
    with "Wait") or tools (tooluse.py: with `tools=python`, the chain's code blocks run in the
    sandbox and their output is inserted). chains.py dispatches."""

    budget: int | None = None  # thinking tokens per chain, forced to end there; null: no forcing
    waits: int = 0  # times an early end of thinking is replaced by `wait`
    wait: str = "Wait"  # the text that replaces an early end of thinking
    lead_in: str = "\n</think>\n\n"  # forced to end the thinking (at the budget); has </think>
    reply_tokens: int = 256  # most tokens of the reply after the thinking

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.budget is not None and self.budget < 0:
            raise ConfigError("budget", self.budget,
                              "use a number of thinking tokens (0: end the thinking at once)")
        if self.waits < 0:
            raise ConfigError("waits", self.waits, "use 0 (keep an early end) or more")
        if not self.wait.strip():
            raise ConfigError("wait", self.wait, "use a word that continues thinking: Wait")
        if "</think>" not in self.lead_in:
            raise ConfigError("lead_in", self.lead_in, "include </think>, e.g. \\n</think>\\n\\n")
        if self.reply_tokens < 1:
            raise ConfigError("reply_tokens", self.reply_tokens,
                              "use a positive number of tokens")
        self.check_tools()
        if self.tools and self.budget is not None:
            raise ConfigError("tools", self.tools, "tools and budget forcing do not combine "
                              "yet; drop budget= or tools=")
        if self.budget is not None and self.token_budget is None:
            self.token_budget = self.n * self.chain_tokens

    @property
    def chain_tokens(self) -> int:
        """The most tokens one chain samples: a forced chain's thinking and reply, else
        `max_tokens`."""
        return self.max_tokens if self.budget is None else self.budget + self.reply_tokens


Nested = Callable[[str, Problem, LanguageModel], Result]  # (spec, problem, policy) -> result


@dataclass
class Run:
    """One scheme run: its models by role, the budget left, the usage so far, and the trace.
    `scorer` is a scorer the caller gave (else each scheme builds the one its config names)."""

    models: Mapping[str, LanguageModel]
    config: SchemeConfig
    scheme: str
    scorer: Scorer | RewardFn | None = None
    problem: Problem | None = None  # what `finish` reads the reply of the chosen chain with
    # scorers loaded once by whoever runs many schemes (the server's --scorer NAME=prm:PATH):
    # a config naming one of these gets it rather than building its own
    scorers: Mapping[str, Scorer] = field(default_factory=dict)
    on_text: OnText | None = None
    should_stop: ShouldStop | None = None
    # runs another scheme of the table by spec on a model (a cascade's next rung); given by
    # whoever runs this one from the table (Scheme.__call__), so schemes need not import it
    nested: Nested | None = None
    usage: Usage = field(default_factory=Usage)
    trace: Trace = field(default_factory=Trace)
    started: float = field(default_factory=time.perf_counter)
    calls: int = 0  # how many sample() calls so far, to give each its own seed

    def __post_init__(self) -> None:
        if POLICY not in self.models:
            raise ConfigError("model", sorted(self.models), "give a policy model")
        self.trace.scheme = self.scheme

    @property
    def model(self) -> LanguageModel:
        """The policy: the model that writes the reasoning."""
        return self.models[POLICY]

    def role(self, name: str) -> LanguageModel:
        """The model playing `name` (the policy where none was given for it), metered: its
        calls count in this run's usage under that role and stop when the run is cancelled."""
        return _Metered(self, name)

    def step_scorer(self, name: str) -> Scorer:
        """The scorer the caller gave, else the named one loaded beforehand, else the one
        named, built on the `judge` role's model."""
        if self.scorer is None and name in self.scorers:
            return self.scorers[name]
        return resolve_scorer(self.scorer, name, self.role("judge"))

    def scorer_or(self, default: Scorer) -> Scorer:
        """The scorer the caller gave, or a scheme's own default (refine's plan judge)."""
        return default if self.scorer is None else resolve_scorer(self.scorer, "", self.model)

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
               prefix: str | None = None, reasoning: bool = True, role: str = POLICY,
               **changes: object) -> list[Completion]:
        """n completions of one prompt from the model in `role`, metered (as reasoning unless
        `reasoning=False`). Sampling seeds differ between calls of a run."""
        request = GenerationRequest(params=self._params(n, changes), prefix=prefix,
                                    messages=tuple(messages) if messages is not None else None)
        [completions] = self.generate([request], reasoning=reasoning, role=role)
        return completions

    def sample_prefixes(self, prefixes: Sequence[str], n: int, *, reasoning: bool = True,
                        keep_kv: bool = False, role: str = POLICY,
                        **changes: object) -> list[list[Completion]]:
        """n continuations of each raw prefix, all in one batched call (tree schemes expand
        every frontier node at once); `keep_kv` as in GenerationRequest."""
        params = self._params(n, changes)
        return self.generate([GenerationRequest(params=params, prefix=p, keep_kv=keep_kv)
                              for p in prefixes], reasoning=reasoning, role=role)

    def generate(self, requests: Sequence[GenerationRequest], *, reasoning: bool = True,
                 role: str = POLICY) -> list[list[Completion]]:
        """The one place a scheme's model calls go through: metered by role and model,
        streamed (the policy's text only), cancellable."""
        model = self.models.get(role, self.model)
        on_text = self.on_text if role == POLICY else None
        out = model.generate(requests, on_text=on_text, should_stop=self.should_stop)
        self.usage.add_completions([c for cs in out for c in cs], reasoning=reasoning,
                                   role=role, model=model.name)
        return out

    def _params(self, n: int, changes: dict[str, object]) -> SamplingParams:
        if self.config.seed is not None:
            changes.setdefault("seed", self.config.seed_for(self.calls))
        self.calls += 1
        return self.config.sampling(n, **changes)

    def add_chain(self, completion: Completion, problem: Problem, *, role: str = POLICY,
                  parent: Node | None = None, **meta: object) -> Node:
        """Record a whole chain as a node of the trace (a root unless `parent` is given), with
        its extracted answer, who wrote it, and the spans ponder inserted into it. A native
        thinker's thinking (`Completion.reasoning`) is kept in the chain as `<think>…</think>`
        before its reply, which is how tasks that read replies (chat) tell them apart; a chain
        in tags, native or forced (forcing.py), has its answer read from the reply alone."""
        text = (completion.text if completion.reasoning is None
                else f"<think>{completion.reasoning}</think>{completion.text}")
        shift = len(text) - len(completion.text)
        return self.trace.add(text, parent=None if parent is None else parent.id,
                              tokens=completion.completion_tokens,
                              answer=problem.extract(answered(text)), terminal=True,
                              finish_reason=completion.finish_reason, role=role,
                              forced=[(a + shift, b + shift) for a, b in completion.forced],
                              meta=dict(meta))

    def score(self, scorer: Scorer, candidates: Sequence[Candidate]) -> list[float | None]:
        """The one scoring path, for whole chains and tree paths alike: one score per
        candidate, or a clear error."""
        if not candidates:
            return []
        scores = list(scorer.score(candidates))
        if len(scores) != len(candidates):
            raise ConfigError("scorer", scorer.name, f"it returned {len(scores)} scores for "
                              f"{len(candidates)} candidates; return one score (or None) each")
        return scores

    def score_chains(self, scorer: Scorer, problem: Problem, nodes: Sequence[Node],
                     completions: Sequence[Completion]) -> list[float | None]:
        """Score whole chains as solutions of the problem and set each node's score."""
        prompt = self.model.render_chat(problem.messages)
        scores = self.score(scorer, [
            Candidate(prompt, node.text, tuple(steps_of(node.text, problem)), problem,
                      node.answer, _logprobs(c) if scorer.needs_logprobs else None)
            for node, c in zip(nodes, completions, strict=True)])
        for node, score in zip(nodes, scores, strict=True):
            node.score = score
        return scores

    def finish(self, chosen: Node | None, answer: str | None,
               finish_reason: FinishReason | None = None) -> Result:
        """Build the result: `reasoning` is the chain that gave the answer and `content` the
        answer; where the problem reads a reply (the chat task), `content` is the chosen
        chain's reply and `reasoning` what was thought apart from it, and the usage counts the
        reply's tokens as content, every other generated token as reasoning."""
        self.usage.seconds = time.perf_counter() - self.started
        if chosen is not None:
            self.trace.chosen = self.trace.path(chosen.id)
        reasoning = "".join(self.trace.nodes[i].text for i in self.trace.chosen)
        if finish_reason is None:
            if self.cancelled:
                finish_reason = "cancelled"
            elif answer is None and chosen is not None and chosen.finish_reason == "length":
                finish_reason = "length"
            elif answer is None and chosen is None:
                finish_reason = "length"  # the budget paid for no chain at all
            else:
                finish_reason = "stop"
        content = answer if answer is not None else _tail(reasoning)
        if self.problem is not None and self.problem.reply is not None and chosen is not None:
            reply = self.problem.reply(reasoning)
            reasoning, content = reply.reasoning, reply.content
            # the reply's tokens as shown (a \boxed{} shown plain is shorter than written): every
            # generated token not shown, discarded samples and markup included, is reasoning
            shown = min(self.model.count_tokens(content) if content else 0,
                        self.usage.completion_tokens)
            self.usage.content_tokens = shown
            self.usage.reasoning_tokens = self.usage.completion_tokens - shown
        return Result(answer=answer, content=content, reasoning=reasoning, trace=self.trace,
                      usage=self.usage, finish_reason=finish_reason)


class _Metered(Wrapper):
    def __init__(self, run: Run, role: str) -> None:
        super().__init__(run.models.get(role, run.model))
        self._run, self._role = run, role

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        return self._run.generate(requests, role=self._role)


def answered(text: str) -> str:
    """What a chain's answer is read from: the reply after its thinking where it thought in
    `<think>` tags (none if the thinking never ended), else the whole chain."""
    split = THINK.split(text)
    return text if split.reasoning is None else split.content if split.closed else ""


def steps_of(text: str, problem: Problem) -> list[str]:
    """A whole chain cut into its steps at the problem's delimiter (empty pieces dropped)."""
    return [s for s in text.split(problem.step_delimiter) if s.strip()]


def _logprobs(c: Completion) -> tuple[float, ...] | None:
    return None if c.token_logprobs is None else tuple(c.token_logprobs)


def _tail(text: str) -> str:
    """The last paragraph of a chain with no extractable answer: the closest thing to one."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    return paragraphs[-1].strip() if paragraphs else ""
