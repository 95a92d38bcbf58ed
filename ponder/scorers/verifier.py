"""`verifier:PATH`: an outcome verifier trained on the policy's own samples (a logistic regression
over cheap features of each chain), trained by `ponder train verifier` (ponder/train/verifier.py).

Features of one chain, read from its text and the other chains of the same question:
  agreement         the share of the question's chains whose answer has this chain's voting key
                    (0 without an answer): self-consistency's signal, per chain
  false_claims      arithmetic claims judged false (ponder/verifiers/claims.py)
  claims            arithmetic claims written
  log_tokens        log(1 + tokens in the chain)
  has_answer        1 if an answer was extracted
  invented_output   1 if it wrote a ```python block and then an ```output block itself: nothing
                    ran the code, so the "output" is made up

The saved model (JSON) holds the feature names, each feature's training mean and standard
deviation (features are standardised before the weights apply), the weights and bias, and the
training stats. The score is the predicted probability that the chain's answer is right, in
[0, 1]. Answer agreement is computed across the candidates given to one `score` call: for
best-of-n those are the question's chains; a single candidate agrees with itself (1.0).
Token counts come from the scoring model's tokenizer (the judge role, the policy unless another
is given); at training they are the stored chains' sampled token counts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.errors import ModelLoadError, ModelNotFound
from ponder.core.files import write_text_atomic
from ponder.core.protocols import Candidate, LanguageModel
from ponder.verifiers.claims import claims

FORMAT = "ponder-verifier/1"
FEATURES = ("agreement", "false_claims", "claims", "log_tokens", "has_answer", "invented_output")
_INVENTED_OUTPUT = re.compile(r"```(?:python|py)\b.*?```\s*```output\b", re.S | re.I)


@dataclass(frozen=True)
class Chain:
    """What the verifier reads of one chain."""

    text: str
    answer: str | None
    key: str | None  # the answer's voting key (the problem's `key`), None without an answer
    tokens: int


def features(chains: Sequence[Chain]) -> list[list[float]]:
    """One row of FEATURES per chain; agreement is counted among `chains` (one question's)."""
    keys = [c.key for c in chains if c.key is not None]
    rows = []
    for c in chains:
        found = claims(c.text)
        rows.append([
            keys.count(c.key) / len(chains) if c.key is not None else 0.0,
            float(sum(not claim.true for claim in found)),
            float(len(found)),
            math.log1p(c.tokens),
            float(c.answer is not None),
            float(_INVENTED_OUTPUT.search(c.text) is not None),
        ])
    return rows


@dataclass
class Verifier:
    """A logistic regression over standardised features: P(right) = σ(w · (x − mean) / std + b)."""

    weights: list[float]
    bias: float
    means: list[float]
    stds: list[float]
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    stats: dict[str, Any] = field(default_factory=dict)  # what it was trained on, and how well

    def probabilities(self, rows: Sequence[Sequence[float]]) -> list[float]:
        out = []
        for row in rows:
            z = self.bias + sum(w * (x - m) / s for w, x, m, s in
                                zip(self.weights, row, self.means, self.stds, strict=True))
            out.append(1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0))))
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"format": FORMAT, **asdict(self)}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Verifier:
        """A saved verifier; a missing or malformed file is a one-line error."""
        path = Path(path)
        fix = f"train one with `ponder train verifier STORE.db --out {path}`"
        if not path.is_file():
            raise ModelNotFound(f"no verifier at {path}; {fix}")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.pop("format", None) != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            verifier = cls(**saved)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ModelLoadError(f"cannot read the verifier {path} ({e}); {fix}") from None
        sizes = {len(verifier.weights), len(verifier.means), len(verifier.stds)}
        if verifier.features != list(FEATURES) or sizes != {len(FEATURES)}:
            raise ModelLoadError(f"the verifier {path} has features {verifier.features}; this "
                                 f"ponder computes {list(FEATURES)}; {fix}")
        return verifier


class VerifierScorer:
    """`verifier:PATH` as a scorer: P(right) for each candidate, agreement across the batch."""

    needs_logprobs = False

    def __init__(self, path: str | Path, model: LanguageModel) -> None:
        self.name = f"verifier:{path}"
        self.verifier = Verifier.load(path)
        self.model = model

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        chains = [Chain(c.text, c.answer, None if c.answer is None else c.problem.key(c.answer),
                        self.model.count_tokens(c.text)) for c in candidates]
        return list(self.verifier.probabilities(features(chains)))
