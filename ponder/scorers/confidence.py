"""Self-confidence: how sure the policy was of its own chain, with no extra model.

Score = exp(mean token log-probability), the geometric-mean probability per sampled token, in
(0, 1]. Length-normalised so long chains are not penalised for their length; the classic
"average log-likelihood" reranker, a simple cousin of self-certainty (Kang et al. 2025,
arXiv:2502.18581), which measures the same confidence with a KL to the uniform distribution.
It needs the backend's sampled-token logprobs (`SamplingParams.logprobs = 0`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class Confidence:
    needs_logprobs = True

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], *,
                 token_logprobs: Sequence[Sequence[float] | None] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if token_logprobs is None:
            return [None] * len(completions)
        return [math.exp(sum(lp) / len(lp)) if lp else None for lp in token_logprobs]
