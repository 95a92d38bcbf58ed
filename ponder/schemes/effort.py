"""Reasoning effort -> scheme and budget: one documented, overridable table.

Used by `ponder solve --effort` and by the server's `reasoning_effort`. Budgets are in
completion tokens per question; measured costs on the default model are in
docs/results/. `none` answers without a chain of thought; `minimal` is a short greedy chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ponder.core.errors import UnknownName


@dataclass(frozen=True)
class Effort:
    scheme: str
    settings: Mapping[str, Any]


EFFORTS: dict[str, Effort] = {
    "none": Effort("direct", {"max_tokens": 64}),
    "minimal": Effort("cot", {"max_tokens": 256}),
    "low": Effort("cot", {"max_tokens": 1024}),
    "medium": Effort("adaptive@8", {"max_tokens": 1024, "batch": 4}),
    "high": Effort("adaptive@16", {"max_tokens": 1024, "batch": 4}),
    "xhigh": Effort("adaptive@32", {"max_tokens": 1024, "batch": 8}),
}


def effort(level: str, table: Mapping[str, Effort] = EFFORTS) -> Effort:
    if level not in table:
        raise UnknownName("effort", level, table)
    return table[level]
