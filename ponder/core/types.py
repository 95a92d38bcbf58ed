"""The data that crosses ponder's seams: requests to a model, what comes back, and results.

Every scheme, backend, scorer, the CLI and the server speak these types, and nothing else.
Plain dataclasses (no pydantic, no torch) so the core imports in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ponder.core.errors import ConfigError

# {"role": "system" | "user" | "assistant" | "tool", "content": "..."}, in OpenAI's form: an
# assistant turn may carry "tool_calls" ([{"id", "type": "function", "function": {"name",
# "arguments": JSON text}}]) and a tool turn its "tool_call_id" (see core/tool_calls.py)
Message = dict[str, Any]
# A tool offered to the model, as OpenAI sends it: {"type": "function", "function": {"name",
# "description", "parameters": a JSON schema}}; chat templates render it as given.
Tool = dict[str, Any]
FinishReason = Literal["stop", "length", "cancelled"]
# A span of text that ponder wrote into a chain rather than the model sampled (a tool's output,
# a forced end of thinking): (start, end) character offsets, end exclusive.
Span = tuple[int, int]

# The roles a model can play in a scheme. The policy writes the reasoning; the others are asked
# only by schemes that use them, and fall back to the policy where no model is given for them.
ROLES = ("policy", "planner", "executor", "verifier", "judge", "fallback")
POLICY = "policy"

MAX_N = 1024  # more samples than this for one request is a typo, not a plan


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request; validates itself (after vLLM's `SamplingParams`).

    temperature == 0 means greedy. `top_k = 0` and `top_p = 1.0` switch those filters off.
    `seed` makes sampling reproducible for a given backend, prompt and batch shape.
    `first_sample` numbers the samples: sample i of this request is sample `first_sample + i` of
    its seed, so n=4 with first_sample=4 draws what samples 4-7 of n=8 would (exactly so in the
    llama.cpp backend, where each sample has its own generator; the HTTP backend folds it into
    the seed). Adaptive schemes use it to extend a sample set without redrawing it.
    `logprobs` asks for the log-probability of every sampled token (and, if > 0, that many
    alternatives per position) where the backend can give them.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None
    ignore_eos: bool = False  # keep going past end-of-turn tokens (benchmarks of fixed length)
    first_sample: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if not 1 <= self.n <= MAX_N:
            raise ConfigError("n", self.n, f"use a number of samples between 1 and {MAX_N}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError("temperature", self.temperature,
                              "use 0 (greedy) or a positive number")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", self.top_p, "use a number in (0, 1]; 1 disables it")
        if self.top_k < 0:
            raise ConfigError("top_k", self.top_k, "use 0 (disabled) or a positive integer")
        if self.max_tokens <= 0:
            raise ConfigError("max_tokens", self.max_tokens, "use a positive number of tokens")
        if any(not s for s in self.stop):
            raise ConfigError("stop", self.stop, "stop strings must be non-empty")
        if self.first_sample < 0:
            raise ConfigError("first_sample", self.first_sample, "use 0 or a positive index")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ConfigError("logprobs", self.logprobs, "use an integer between 0 and 20")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for the batched `LanguageModel.generate` call.

    Exactly one of `messages` (a chat, templated by the backend) or `prefix` (raw text that the
    model continues verbatim, e.g. a templated chat plus a partial assistant answer) is given.
    `keep_kv` hints that a later request will continue this one's prompt + completion (a tree
    search expanding a node): the llama.cpp backend then keeps each finished sample's KV cache
    among its held prefixes instead of freeing it; other backends ignore it.
    `tools` are offered to the model with `messages`: the backend renders them through the
    chat template (or sends them to a server that renders its own). `tool_choice` "required"
    and `parallel_tool_calls` False go to such a server as they are (vLLM and SGLang can
    constrain decoding to a call); a local backend has only the prompt's asking.
    """

    params: SamplingParams = field(default_factory=SamplingParams)
    messages: tuple[Message, ...] | None = None
    prefix: str | None = None
    keep_kv: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: Literal["auto", "required"] = "auto"
    parallel_tool_calls: bool = True

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prefix is None):
            raise ConfigError("request", "messages/prefix",
                              "give exactly one of messages or prefix")
        if self.messages is not None and not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(self.messages))
        if not isinstance(self.tools, tuple):
            object.__setattr__(self, "tools", tuple(self.tools))


@dataclass
class Completion:
    """One sampled continuation.

    `token_logprobs[i]` is log p(token_ids[i]) under the sampling distribution's model logits
    (before temperature), when logprobs were asked for. `prompt_tokens` counts the prompt as the
    model saw it; `cached_tokens` how many of those were reused from a cache instead of prefilled.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    token_logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = None
    stop_string: str | None = None  # the stop string that ended it, if any (not in `text`)
    # Model time spent on it, where the backend can tell: its share of every batched decode step
    # it was in (step time / sequences in the step) plus the prefill it paid for, if any.
    seconds: float | None = None
    # Spans of `text` that ponder inserted rather than the model sampled (see `splice`); the
    # token counts above count sampled tokens only. Backends always return () here.
    forced: tuple[Span, ...] = ()
    # A model that thinks natively (`<think>...</think>`): its thinking, apart from `text`,
    # which is then the reply after it. None for a model that does not think natively.
    reasoning: str | None = None

    def sampled_text(self) -> str:
        """The text with its forced spans left out: what the model itself wrote."""
        return "".join(self.text[a:b] for a, b in unforced(self.forced, len(self.text)))


def splice(head: Completion, forced: str, tail: Completion) -> Completion:
    """One chain from a sampled head, text ponder inserted, and the continuation sampled from
    head + inserted text (nanochat's `generate_batch` masks, as character spans): the inserted
    text is marked forced, the token counts and seconds add up, the tail decides how it ended.
    Token ids and logprobs are the sampled ones, head's then tail's."""
    shift = len(head.text) + len(forced)
    inserted: tuple[Span, ...] = ((len(head.text), shift),) if forced else ()
    spans = (*head.forced, *inserted, *((a + shift, b + shift) for a, b in tail.forced))
    # a piece with no tokens (forced text alone) neither has nor lacks logprobs
    heads = head.token_logprobs if head.token_ids else head.token_logprobs or []
    tails = tail.token_logprobs if tail.token_ids else tail.token_logprobs or []
    logprobs = (None if heads is None or tails is None
                or (head.token_logprobs is None and tail.token_logprobs is None)
                else heads + tails)
    seconds = (None if head.seconds is None and tail.seconds is None
               else (head.seconds or 0.0) + (tail.seconds or 0.0))
    return Completion(
        text=head.text + forced + tail.text, token_ids=head.token_ids + tail.token_ids,
        finish_reason=tail.finish_reason, prompt_tokens=head.prompt_tokens,
        completion_tokens=head.completion_tokens + tail.completion_tokens,
        cached_tokens=head.cached_tokens, token_logprobs=logprobs,
        top_logprobs=None, stop_string=tail.stop_string, seconds=seconds, forced=spans)


def unforced(forced: Sequence[Span], length: int) -> list[Span]:
    """The complement of sorted, disjoint forced spans in a text of `length` characters."""
    out, at = [], 0
    for a, b in sorted(forced):
        if a > at:
            out.append((at, a))
        at = max(at, b)
    return [*out, (at, length)] if at < length else out


@dataclass
class RoleUsage:
    """What one model cost in one role: tokens, calls and model time (no wall time: roles share
    the run's seconds)."""

    role: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    model_calls: int = 0
    model_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    """What a result cost. `reasoning_tokens` counts every completion token spent thinking,
    discarded samples and search branches included; for ponder's schemes that is all of them
    (the final answer is extracted from the reasoning, not generated apart).

    `seconds` is wall time; `model_seconds` the model time of the completions (their
    `Completion.seconds`; 0 where the backend does not report it): a run that shares batched
    steps with other runs uses less model time than wall time.

    `by_role` splits the totals by (role, model), in the order roles were first asked: one entry
    for a run that asked only its policy, one per role for a scheme with a planner or a judge.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    by_role: list[RoleUsage] = field(default_factory=list)
    # The tokens of the reply shown (a task that reads a reply: the chat task), counted as
    # shown; every other generated token is reasoning, so reasoning_tokens + content_tokens =
    # completion_tokens. 0 where the content is only the extracted answer (read, not written).
    content_tokens: int = 0

    def add_completions(self, completions: Iterable[Completion], *, reasoning: bool = True,
                        role: str = POLICY, model: str = "") -> None:
        """Account for one batched model call that returned `completions`, made by `model`
        in `role`."""
        part = self.part(role, model)
        self.model_calls += 1
        part.model_calls += 1
        for c in completions:
            for totals in (self, part):
                totals.prompt_tokens += c.prompt_tokens
                totals.completion_tokens += c.completion_tokens
                totals.cached_tokens += c.cached_tokens
                totals.model_seconds += c.seconds or 0.0
            if reasoning:
                self.reasoning_tokens += c.completion_tokens

    def part(self, role: str, model: str) -> RoleUsage:
        """The (role, model) entry of `by_role`, added if new."""
        for part in self.by_role:
            if (part.role, part.model) == (role, model):
                return part
        self.by_role.append(RoleUsage(role, model))
        return self.by_role[-1]

    def __iadd__(self, other: Usage) -> Usage:
        for f in fields(self):
            if f.name != "by_role":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for theirs in other.by_role:
            mine = self.part(theirs.role, theirs.model)
            for f in fields(theirs):
                if f.name not in ("role", "model"):
                    setattr(mine, f.name, getattr(mine, f.name) + getattr(theirs, f.name))
        return self

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_tokens": self.total_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        known = {f.name for f in fields(cls)} - {"by_role"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   by_role=[RoleUsage(**p) for p in d.get("by_role", [])])


@dataclass
class Node:
    """A step of reasoning: a whole chain for chain schemes, one step for tree schemes.

    The typed fields are what modules other than the one that wrote the node read: `depth` (0
    for a whole chain, 1 for a tree's first step), `terminal` (no step may follow it),
    `finish_reason` (of the completion that wrote it), `role` (which model wrote it) and
    `forced` (spans of `text` ponder inserted, as in `Completion.forced`). `meta` holds notes
    private to the scheme that wrote the node (refine's "kind", MCTS's "q").
    """

    id: int
    parent: int | None
    text: str
    tokens: int = 0
    score: float | None = None
    answer: str | None = None
    visits: int = 0
    value: float = 0.0
    children: list[int] = field(default_factory=list)
    depth: int = 0
    terminal: bool = False
    finish_reason: FinishReason | None = None
    role: str = POLICY
    forced: list[Span] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_step(self) -> bool:
        """A step of a tree (its chain is its path from the root), not a whole chain."""
        return self.depth > 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        """A node as `to_dict` wrote it; traces written before the typed fields kept depth,
        terminal and finish_reason in `meta`, and are read the same."""
        d = dict(d)
        meta = dict(d.pop("meta", {}))
        for key in ("depth", "terminal", "finish_reason"):
            if key in meta and key not in d:
                d[key] = meta.pop(key)
        d["forced"] = [tuple(span) for span in d.get("forced", [])]
        return cls(**d, meta=meta)


@dataclass
class Trace:
    """One trace type for every scheme: a forest of nodes and the chosen path (root -> leaf).

    Chains are root-level nodes (self-consistency: N roots); trees link children to parents;
    graph merges (aggregate) record their sources in `meta["sources"]`.
    """

    scheme: str = ""
    nodes: list[Node] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, text: str, parent: int | None = None, **kw: Any) -> Node:
        node = Node(id=len(self.nodes), parent=parent, text=text, **kw)
        self.nodes.append(node)
        if parent is not None:
            self.nodes[parent].children.append(node.id)
        return node

    def path(self, leaf: int) -> list[int]:
        ids = [leaf]
        while (parent := self.nodes[ids[-1]].parent) is not None:
            ids.append(parent)
        return ids[::-1]

    def roots(self) -> list[Node]:
        return [n for n in self.nodes if n.parent is None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        nodes = [Node.from_dict(n) for n in d.get("nodes", [])]
        return cls(scheme=d.get("scheme", ""), nodes=nodes, chosen=list(d.get("chosen", [])),
                   meta=dict(d.get("meta", {})))


@dataclass
class Result:
    """What every scheme returns.

    `answer` is the extracted, normalised final answer (None if none was found); `content` is
    what a user is shown as the reply; `reasoning` is the chosen chain of thought.
    `finish_reason` is "length" when the budget ran out before any answer was found.
    """

    answer: str | None
    content: str
    reasoning: str
    trace: Trace
    usage: Usage
    finish_reason: FinishReason = "stop"

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "content": self.content,
            "reasoning": self.reasoning,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "trace": self.trace.to_dict(),
        }


def user(content: str, system: str | None = None,
         before: Sequence[Message] = ()) -> tuple[Message, ...]:
    """The common one-question chat: an optional system message, earlier turns, the question."""
    head: Sequence[Message] = [{"role": "system", "content": system}] if system else []
    return (*head, *before, {"role": "user", "content": content})
