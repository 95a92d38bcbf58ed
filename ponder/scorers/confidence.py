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

from ponder.core.errors import ConfigError
from ponder.core.protocols import Candidate


class Confidence:
    name = "confidence"
    needs_logprobs = True

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        """exp(mean logprob) of each candidate's newest tokens; None for one with no tokens."""
        if any(c.token_logprobs is None for c in candidates):
            raise ConfigError("scorer", self.name, "it reads the sampled tokens' logprobs and "
                              "the model returned none; use a backend that gives logprobs "
                              "(llama.cpp, an OpenAI-compatible server), or scorer=judge")
        return [math.exp(sum(lp) / len(lp)) if lp else None
                for lp in (c.token_logprobs or () for c in candidates)]
