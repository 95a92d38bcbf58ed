"""Budget forcing: one chain whose thinking is cut at a token budget or extended with "Wait"
(s1, Muennighoff et al. 2025, arXiv:2501.19393, section 3.1).

The model thinks inside `<think>` ... `</think>`, then writes its reply. The scheme works on the
raw text of the chain, continuing it call by call:

  1. Open the thinking: the chat prompt plus `<think>\\n` (forced), unless the chat template
     already opened it (DeepSeek-R1's ends with `<think>\\n`).
  2. Think: sample up to `</think>`, at most the thinking tokens the budget has left.
     "If the model generates more thinking tokens than a desired limit, we forcefully end the
     thinking process by appending an end-of-thinking token delimiter" (s1): when the budget
     runs out, `lead_in` (`\\n</think>\\n\\n`) is forced.
     "If we want the model to spend more test-time compute on a problem, we suppress the
     generation of the end-of-thinking token delimiter and instead append 'Wait' to the
     model's current reasoning trace" (s1): an end of thinking before the budget is replaced
     by the forced `wait`, up to `waits` times; after that the model's own `</think>` stands.
  3. Reply: sample after `</think>` to the end of the turn, at most `reply_tokens`, metered as
     content rather than reasoning. The answer is read from the reply alone, never from the
     thinking (a number boxed while thinking is not the answer given).

Result: `reasoning` is the text between the think tags (forced "Wait"s included); `content` the
reply. The trace is one root node for the whole chain (opening, thinking, end, reply) with the
inserted text in its `forced` spans, and `meta` saying how many waits were forced, whether the
budget ended the thinking, and how many tokens the thinking sampled. Token counts, the budget
included, count sampled tokens only: forced text costs nothing, as s1 counts only generated
thinking tokens. Only the thinking streams live (forced "Wait"s included); the reply is the
content a client gets at the end.

Departures from s1:
  * s1 uses its own template (`<|im_start|>think` ... `<|im_start|>answer`) and forces
    "Final Answer:" after the thinking; here the R1 `<think>` format, and the lead-in only ends
    the thinking, so the reply keeps the task's answer format (`\\boxed{}`). A lead-in may
    carry more text after `</think>` (e.g. "The final answer is"): it counts as reply.
  * s1 suppresses the end-of-thinking token; here the chain stops at the string `</think>`,
    which is dropped before "Wait" is appended. An end of turn inside the thinking (a model
    that does not think natively) counts as an early end too: "Wait", or the forced lead-in.
  * A "Wait" appended to thinking that does not end in whitespace starts a new line.
  * The run's token budget (`token_budget`, default `budget + reply_tokens`) keeps
    `reply_tokens` for the reply: a smaller run budget cuts the thinking first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ponder.core.errors import ConfigError
from ponder.core.problem import Problem
from ponder.core.types import Completion, FinishReason, Result, splice
from ponder.schemes.base import Run, SchemeConfig

OPEN, END = "<think>", "</think>"


@dataclass
class Config(SchemeConfig):
    n: int = 1  # always 1: one chain
    temperature: float = 0.0  # greedy, as s1
    max_tokens: int = 1024  # unused: budget bounds the thinking, reply_tokens the reply
    token_budget: int | None = None  # most completion tokens; null: budget + reply_tokens
    budget: int = 1024  # most thinking tokens; the end of thinking is forced there
    waits: int = 0  # times an early end of thinking is replaced by `wait`
    wait: str = "Wait"  # the text that replaces an early end of thinking
    lead_in: str = "\n</think>\n\n"  # forced to end the thinking (at the budget); has </think>
    reply_tokens: int = 256  # most tokens of the reply after the thinking

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n != 1:
            raise ConfigError("n", self.n, "budget forcing samples one chain; use n=1")
        if self.budget < 1:
            raise ConfigError("budget", self.budget, "use a positive number of thinking tokens")
        if self.waits < 0:
            raise ConfigError("waits", self.waits, "use 0 (keep an early end) or more")
        if not self.wait.strip():
            raise ConfigError("wait", self.wait, "use a word that continues thinking: Wait")
        if END not in self.lead_in:
            raise ConfigError("lead_in", self.lead_in, f"include {END}, e.g. \\n{END}\\n\\n")
        if self.reply_tokens < 1:
            raise ConfigError("reply_tokens", self.reply_tokens,
                              "use a positive number of tokens")
        if self.token_budget is None:
            self.token_budget = self.budget + self.reply_tokens


@dataclass
class Thinking:
    """The chain so far (after the prompt) and how its thinking went."""

    chain: Completion
    opening: str  # the forced "<think>\n", or "" where the template opened the thinking
    tokens: int = 0  # sampled thinking tokens
    waits: int = 0  # forced waits
    end: int | None = None  # where `</think>` starts in chain.text, once the thinking ended
    budget_forced: bool = False


def run(problem: Problem, r: Run, config: Config) -> Result:
    prompt = r.model.render_chat(problem.messages)
    opening = "" if prompt.endswith((OPEN, OPEN + "\n")) else OPEN + "\n"
    t = Thinking(Completion(opening, forced=((0, len(opening)),) if opening else ()), opening)
    think(t, prompt, r, config)
    room = min(config.reply_tokens, r.budget_left)
    ended = t.end is not None and not r.cancelled
    reply = sample_reply(t, prompt, r, room) if ended and room > 0 else None
    return finish(t, reply, problem, r)


def think(t: Thinking, prompt: str, r: Run, config: Config) -> None:
    """Sample the thinking until it ends, forcing "Wait" over early ends and the lead-in at
    the budget. Leaves `t.end` None only when the run was cancelled."""
    while True:
        room = thinking_room(t, r, config)
        if room <= 0:
            force_end(t, config, budget=True)
            return
        [c] = r.sample(None, 1, prefix=prompt + t.chain.text, stop=(END,), max_tokens=room)
        t.chain, t.tokens = splice(t.chain, "", c), t.tokens + c.completion_tokens
        if c.finish_reason == "cancelled" or r.cancelled:
            return
        if c.finish_reason == "length":
            force_end(t, config, budget=True)
            return
        # An early end: at `</think>`, or at the end of the turn with the thinking still open.
        if t.waits < config.waits and thinking_room(t, r, config) > 0:
            sep = "" if not t.chain.text or t.chain.text[-1].isspace() else "\n"
            t.chain = splice(t.chain, sep + config.wait, Completion(""))
            t.waits += 1
            if r.on_text is not None:  # the stream shows the reasoning as the chain holds it
                r.on_text(0, 0, sep + config.wait)
        elif c.stop_string == END:  # the model's own end of thinking stands: put it back
            t.end = len(t.chain.text)
            t.chain.text += END
            return
        else:
            force_end(t, config, budget=False)
            return


def thinking_room(t: Thinking, r: Run, config: Config) -> int:
    """Thinking tokens the next call may sample: the thinking budget's rest, less what the
    run's budget must keep for the reply."""
    return min(config.budget - t.tokens, r.budget_left - config.reply_tokens)


def force_end(t: Thinking, config: Config, *, budget: bool) -> None:
    t.end = len(t.chain.text) + config.lead_in.index(END)
    t.chain = splice(t.chain, config.lead_in, Completion(""))
    t.budget_forced = budget


def sample_reply(t: Thinking, prompt: str, r: Run, room: int) -> Completion:
    """The reply after the thinking, to the end of the turn, metered as content. It is not
    streamed: a live stream is the reasoning, and the reply comes as the content."""
    on_text, r.on_text = r.on_text, None
    try:
        [c] = r.sample(None, 1, prefix=prompt + t.chain.text, max_tokens=room, reasoning=False)
    finally:
        r.on_text = on_text
    t.chain = splice(t.chain, "", c)
    return c


def finish(t: Thinking, reply: Completion | None, problem: Problem, r: Run) -> Result:
    """One root node for the chain; reasoning is the thinking, content the reply, and the
    answer is read from the reply alone."""
    text, end = t.chain.text, t.end
    thinking = text[len(t.opening):end]
    replied = text[end + len(END):] if end is not None else ""
    answer = problem.extract(replied) if reply is not None else None
    reason: FinishReason = ("cancelled" if r.cancelled or t.end is None
                            else "length" if reply is None or reply.finish_reason == "length"
                            else "stop")
    node = r.trace.add(text, tokens=t.chain.completion_tokens, answer=answer,
                             terminal=True, finish_reason=reason, forced=list(t.chain.forced),
                             meta={"waits": t.waits, "budget_forced": t.budget_forced,
                                   "thinking_tokens": t.tokens})
    thought = r.usage.reasoning_tokens  # metered exactly: the reply's call counted as content
    result = r.finish(node, answer, reason)
    result.reasoning, result.content = thinking.strip(), replied.strip()
    result.usage.reasoning_tokens = thought  # (finish may re-split a chat task's reply)
    return result
