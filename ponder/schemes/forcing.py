"""Budget forcing for many chains at once (s1, Muennighoff et al. 2025, arXiv:2501.19393, §3.1):
the engine behind the `budget` scheme and behind the voting schemes' `budget=` setting
(`self-consistency@4:budget=256` votes over four budget-forced chains).

Each chain thinks inside `<think>` ... `</think>`, then writes its reply:

  1. Open the thinking: the chat prompt plus `<think>\\n` (forced), unless the chat template
     already opened it (DeepSeek-R1's ends with `<think>\\n`).
  2. Think: sample up to `</think>`, at most the thinking tokens the chain's budget has left.
     "If the model generates more thinking tokens than a desired limit, we forcefully end the
     thinking process by appending an end-of-thinking token delimiter" (s1): when the budget
     runs out, `lead_in` (`\\n</think>\\n\\n`) is forced.
     "If we want the model to spend more test-time compute on a problem, we suppress the
     generation of the end-of-thinking token delimiter and instead append 'Wait' to the
     model's current reasoning trace" (s1): an end of thinking before the budget is replaced
     by the forced `wait`, up to `waits` times; after that the model's own `</think>` stands.
  3. Reply: sample after `</think>` to the end of the turn, at most `reply_tokens`, metered as
     content rather than reasoning. The answer is read from the reply alone, never from the
     thinking (Run.add_chain: a number boxed while thinking is not the answer given).

All chains move in rounds: every chain still thinking is sampled in one batched call (one
request per chain, each with its own token room), then each is judged — ended, extended with
"Wait", or cut at its budget — and the replies of all chains are sampled in one last call.
Token counts, budgets included, count sampled tokens only: forced text costs nothing, as s1
counts only generated thinking tokens.

Departures from s1:
  * s1 uses its own template (`<|im_start|>think` ... `<|im_start|>answer`) and forces
    "Final Answer:" after the thinking; here the R1 `<think>` format, and the lead-in only ends
    the thinking, so the reply keeps the task's answer format (`\\boxed{}`). A lead-in may
    carry more text after `</think>` (s1's "Final Answer:", or `Final answer: \\boxed{`,
    which benchmarks/budget_curve.py uses): it counts as reply.
  * s1 suppresses the end-of-thinking token; here the chain stops at the string `</think>`,
    which is dropped before "Wait" is appended. An end of turn inside the thinking (a model
    that does not think natively) counts as an early end too: "Wait", or the forced lead-in.
  * A "Wait" appended to thinking that does not end in whitespace starts a new line.
  * The run's token budget (`token_budget`, default n × (budget + reply_tokens)) keeps
    `reply_tokens` per chain for the replies: a smaller run budget cuts the thinking first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ponder.core.problem import Problem
from ponder.core.types import Completion, GenerationRequest, splice
from ponder.schemes.base import ChainConfig, Run

OPEN, END = "<think>", "</think>"


@dataclass
class Thinking:
    """One chain so far (after the prompt) and how its thinking went."""

    chain: Completion
    opening: str  # the forced "<think>\n", or "" where the template opened the thinking
    tokens: int = 0  # sampled thinking tokens
    waits: int = 0  # forced waits
    end: int | None = None  # where `</think>` starts in chain.text, once the thinking ended
    budget_forced: bool = False
    reply: Completion | None = None  # the reply's own call, once sampled

    @property
    def thinking(self) -> str:
        return self.chain.text[len(self.opening):self.end]

    @property
    def replied(self) -> str:
        return "" if self.end is None else self.chain.text[self.end + len(END):]


def sample(problem: Problem, r: Run, config: ChainConfig, n: int, first_sample: int = 0,
           logprobs: int | None = None) -> list[Thinking]:
    """n budget-forced chains, thought and replied in batched rounds. Chain i draws sample
    `first_sample + i` of each round's seed, so with the same seed adaptive's batches are the
    chains self-consistency would force."""
    prompt = r.model.render_chat(problem.messages)
    opening = "" if prompt.endswith((OPEN, OPEN + "\n")) else OPEN + "\n"
    chains = [Thinking(Completion(opening, forced=((0, len(opening)),) if opening else ()),
                       opening) for _ in range(n)]
    think(chains, prompt, r, config, first_sample, logprobs)
    ended = [t for t in chains if t.end is not None]
    if ended and not r.cancelled:
        reply(ended, prompt, r, config, logprobs)
    return chains


def think(chains: Sequence[Thinking], prompt: str, r: Run, config: ChainConfig,
          first_sample: int, logprobs: int | None = None) -> None:
    """Sample every chain's thinking until it ends, forcing "Wait" over early ends and the
    lead-in at the budget. Leaves `end` None only on chains the run's cancellation stopped."""
    rounds = 0
    while not r.cancelled:
        open_ = [(i, t) for i, t in enumerate(chains) if t.end is None]
        asked: list[tuple[Thinking, GenerationRequest]] = []
        for i, t in open_:
            room = thinking_room(t, r, config, len(open_))
            if room <= 0:
                force_end(t, config, budget=True)
                continue
            seed = config.seed_for(rounds)
            params = config.sampling(1, stop=(END,), max_tokens=room, seed=seed,
                                     first_sample=first_sample + i, logprobs=logprobs)
            asked.append((t, GenerationRequest(params=params, prefix=prompt + t.chain.text)))
        if not asked:
            return
        rounds += 1
        out = r.generate([request for _, request in asked])
        for (t, _), [c] in zip(asked, out, strict=True):
            t.chain, t.tokens = splice(t.chain, "", c), t.tokens + c.completion_tokens
            if c.finish_reason != "cancelled" and not r.cancelled:
                judge(t, c, r, config, len(open_))


def judge(t: Thinking, c: Completion, r: Run, config: ChainConfig, open_: int) -> None:
    """After a round: cut at the budget, or an early end (at `</think>`, or at the end of the
    turn with the thinking still open) replaced by "Wait", or let stand."""
    if c.finish_reason == "length":
        force_end(t, config, budget=True)
    elif t.waits < config.waits and thinking_room(t, r, config, open_) > 0:
        sep = "" if not t.chain.text or t.chain.text[-1].isspace() else "\n"
        t.chain = splice(t.chain, sep + config.wait, Completion(""))
        t.waits += 1
        if r.on_text is not None:  # the stream shows the reasoning as the chain holds it
            r.on_text(0, 0, sep + config.wait)
    elif c.stop_string == END:  # the model's own end of thinking stands: put it back
        t.end = len(t.chain.text)
        t.chain.text += END
    else:
        force_end(t, config, budget=False)


def thinking_room(t: Thinking, r: Run, config: ChainConfig, open_: int) -> int:
    """Thinking tokens a chain's next call may sample: its thinking budget's rest, and its
    share of the run's budget less what the replies must keep."""
    budget = config.budget or config.max_tokens
    share = r.budget_left // max(open_, 1) - config.reply_tokens
    return min(budget - t.tokens, share)


def force_end(t: Thinking, config: ChainConfig, *, budget: bool) -> None:
    t.end = len(t.chain.text) + config.lead_in.index(END)
    t.chain = splice(t.chain, config.lead_in, Completion(""))
    t.budget_forced = budget


def reply(chains: Sequence[Thinking], prompt: str, r: Run, config: ChainConfig,
          logprobs: int | None = None) -> None:
    """Every ended chain's reply, in one batched call, metered as content. Not streamed: a
    live stream is the reasoning, and the reply comes as the content."""
    room = min(config.reply_tokens, r.budget_left // len(chains))
    if room <= 0:
        return
    on_text, r.on_text = r.on_text, None
    try:
        out = r.generate([GenerationRequest(params=config.sampling(1, max_tokens=room,
                                                                   first_sample=i,
                                                                   logprobs=logprobs),
                                            prefix=prompt + t.chain.text)
                          for i, t in enumerate(chains)], reasoning=False)
    finally:
        r.on_text = on_text
    for t, [c] in zip(chains, out, strict=True):
        t.chain, t.reply = splice(t.chain, "", c), c



