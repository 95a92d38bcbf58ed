"""Reasoning effort -> scheme and budget: one documented, overridable table per kind of model.

Used by `ponder solve --effort` and by the server's `reasoning_effort`. Budgets are in
completion tokens per question; measured costs on the default model are in
docs/results/. `none` answers without a chain of thought; `minimal` is a short greedy chain.

A model that thinks natively (its `reasoning_parser` is set: DeepSeek-R1 and its distills, QwQ,
Qwen3) gets THINKING_EFFORTS instead: effort is a thinking budget (s1 budget forcing,
schemes/forcing.py), as OpenAI's and Anthropic's reasoning models take one. `none` ends the
thinking at once (budget 0: the reply only); minimal, low and medium cut one chain's thinking at
512, 2,048 and 8,192 tokens; high and xhigh vote over 4 and 8 chains of 8,192, since at an equal
budget parallel voting beats one longer chain for small reasoning models (Ghosal et al. 2025;
docs/results/budget_curve.md has what ponder measured on the 0.5B in the thinking format). The
reply after the thinking gets up to 1,024 tokens more; `max_completion_tokens` caps the whole.
Sampling is at temperature 0.6, as DeepSeek-R1's model card asks (greedy thinking repeats).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ponder.core.errors import UnknownName
from ponder.core.protocols import LanguageModel


@dataclass(frozen=True)
class Effort:
    scheme: str
    settings: Mapping[str, Any]


EFFORTS: dict[str, Effort] = {
    "none": Effort("direct", {"max_tokens": 64}),
    "minimal": Effort("cot", {"max_tokens": 256}),
    # calc checks each result as the chain writes it: 29 vs 28 of 100 on GSM8K at 4% more
    # tokens (docs/results/tools_gsm8k.md), and 17 * 24 = 408 where plain cot wrote 416
    "low": Effort("cot", {"max_tokens": 1024, "tools": "calc"}),
    "medium": Effort("adaptive@8", {"max_tokens": 1024, "batch": 4}),
    "high": Effort("adaptive@16", {"max_tokens": 1024, "batch": 4}),
    "xhigh": Effort("adaptive@32", {"max_tokens": 1024, "batch": 8}),
    # a cascade (Yue et al. 2023): two sampled chains of the policy; unless they agree, cot on
    # the `fallback` model (a bigger one, given by role), else more of the policy. Fitted on
    # GSM8K train; on test the 0.5B -> 1.5B cascade matched the 1.5B alone (65 vs 64 of 100),
    # cheapest of n = 2, 4, 8, though dearer than the 1.5B alone on a CPU
    # (docs/results/models_gsm8k.md)
    "auto": Effort("cascade@2", {"max_tokens": 1024, "accept": 1.0, "then": "cot"}),
}


# DeepSeek-R1's model card: temperature 0.5-0.7 (0.6), not greedy, against endless repetition
_REPLY = {"reply_tokens": 1024, "temperature": 0.6}
THINKING_EFFORTS: dict[str, Effort] = {
    "none": Effort("budget", {"budget": 0, **_REPLY}),
    "minimal": Effort("budget", {"budget": 512, **_REPLY}),
    "low": Effort("budget", {"budget": 2048, **_REPLY}),
    "medium": Effort("budget", {"budget": 8192, **_REPLY}),
    "high": Effort("self-consistency@4", {"budget": 8192, **_REPLY}),
    "xhigh": Effort("self-consistency@8", {"budget": 8192, **_REPLY}),
    "auto": Effort("cascade@4", {"budget": 2048, "accept": 0.75, "then": "budget:budget=8192",
                                 **_REPLY}),
}


def table_for(model: LanguageModel, table: Mapping[str, Effort] = EFFORTS
              ) -> Mapping[str, Effort]:
    """The effort table for `model`: THINKING_EFFORTS for a native thinker, else `table`;
    for a model that cannot continue raw text (an HTTP model whose template ponder does not
    have), its levels without tools, whose rounds continue raw prefixes."""
    if model.reasoning_parser is not None:
        return THINKING_EFFORTS
    if model.raw_prefix:
        return table
    return {level: Effort(e.scheme, {k: v for k, v in e.settings.items() if k != "tools"})
            for level, e in table.items()}


def effort(level: str, table: Mapping[str, Effort] = EFFORTS) -> Effort:
    if level not in table:
        raise UnknownName("effort", level, table)
    return table[level]
