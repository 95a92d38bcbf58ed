"""Token sampling and streamed text for the llama.cpp backend: numpy, no loop over the vocabulary.

The sampling chain is llama.cpp's own order (`common_sampler`): top-k, then top-p on the
*untempered* distribution of what is left, then temperature, then one draw. (HF and vLLM apply
temperature before top-k/top-p; for top_k/top_p off the two orders agree.) Greedy is argmax.

Why numpy rather than llama.cpp's C sampler chain: both are exact, but llama_sampler_sample
copies the whole 151,936-entry vocabulary into a candidate array for every sequence at every
step, while `top_k` below reads each row once with a SIMD max and draws for all rows that share
settings at once. benchmarks/sampler_choice.py (docs/results/sampler_choice.md), 16 rows of
Qwen2.5-0.5B logits on this 2-core machine: top-k 40 / top-p 0.95 / temp 0.7: C chains 2.9 ms,
numpy 0.9 ms; greedy: C 3.5 ms, numpy argmax 0.2 ms (one decode step of 16 sequences: ~200 ms).
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ponder.core.types import SamplingParams

COLUMNS = 32  # each row is viewed as COLUMNS x (V // COLUMNS); see `top_k` (32: fastest here)


def top_k(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest entries of each row of (m, V) `rows` (or of one 1-D row) as (ids, values),
    each (m, k) in descending order; exact, O(V).

    A full np.argpartition over 152k logits costs ~0.5 ms a row. Instead view each row as a
    (COLUMNS, V/COLUMNS) matrix and take each column's max (one SIMD pass). Any entry outside
    the k columns with the largest maxima is <= each of those k maxima, so a row's top k lie
    among those k columns (plus the ragged tail): a partition of k*COLUMNS values.
    """
    if rows.ndim == 1:
        ids, vals = top_k(rows[None, :], k)
        return ids[0], vals[0]
    m, n = rows.shape
    width = n // COLUMNS
    if k >= width:
        ids = np.argpartition(rows, n - k, axis=1)[:, n - k:] if k < n else \
            np.broadcast_to(np.arange(n), (m, n))
    else:
        col_max = rows[:, : COLUMNS * width].reshape(m, COLUMNS, width).max(axis=1)  # (m, width)
        cols = np.argpartition(col_max, width - k, axis=1)[:, width - k:]  # (m, k)
        ids = (cols[:, None, :] + width * np.arange(COLUMNS)[None, :, None]).reshape(m, -1)
        tail = np.broadcast_to(np.arange(COLUMNS * width, n), (m, n - COLUMNS * width))
        ids = np.concatenate([ids, tail], axis=1)  # (m, k*COLUMNS + V % COLUMNS)
        vals = np.take_along_axis(rows, ids, axis=1)
        best = np.argpartition(vals, vals.shape[1] - k, axis=1)[:, vals.shape[1] - k:]
        ids = np.take_along_axis(ids, best, axis=1)
    vals = np.take_along_axis(rows, ids, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)


def log_normalizer(row: np.ndarray) -> float:
    """log sum exp(row): log-softmax(row)[t] = row[t] - log_normalizer(row)."""
    return float(log_normalizers(row[None, :])[0])


def log_normalizers(rows: np.ndarray) -> np.ndarray:
    """`log_normalizer` of each row of (m, V) `rows` in one pass: exp in the rows' float32,
    sums in float64 (within 1e-7 of an all-float64 computation over 152k logits)."""
    m = rows.max(axis=1, keepdims=True)
    return m[:, 0].astype(np.float64) + np.log(np.exp(rows - m).sum(axis=1, dtype=np.float64))


def _nucleus(row: np.ndarray, top_p: float, lse: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest descending prefix of the whole row whose probability reaches top_p (`lse`:
    the row's `log_normalizer`).

    Grows a top-k window until it holds top_p of the mass, so a peaked distribution (the usual
    case) never sorts the vocabulary; a flat one ends in one full sort, still vectorised.
    """
    k = 64
    while True:
        ids, vals = top_k(row, min(k, row.shape[0]))
        mass = np.cumsum(np.exp(vals - lse))
        if mass[-1] >= top_p or k >= row.shape[0]:
            keep = int(np.searchsorted(mass, top_p)) + 1
            return ids[:keep], vals[:keep]
        k *= 4


@dataclass
class Sampler:
    """Draws the tokens of one sequence. Its own generator, seeded from (request seed, sample
    index), makes sample i of a request independent of what else shares the batch."""

    params: SamplingParams
    rng: np.random.Generator | None = None

    @property
    def key(self) -> tuple[float, int, float]:
        """Samplers with equal keys are drawn from together, as one (m, V) block."""
        p = self.params
        return (0.0, 0, 1.0) if self.rng is None else (p.temperature, p.top_k, p.top_p)

    @property
    def nucleus(self) -> bool:
        """Draws from a top-p nucleus over the whole vocabulary (needs the log-normaliser)."""
        temperature, k, top_p = self.key
        return temperature > 0 and k == 0 and top_p < 1.0

    def __call__(self, row: np.ndarray) -> int:
        return sample([self], row[None, :])[0]


def sample(samplers: list[Sampler], rows: np.ndarray, lse: np.ndarray | None = None
           ) -> list[int]:
    """One token per row of (m, V) `rows`, row j drawn by samplers[j]. Samplers with equal
    keys should be adjacent: each run of them is one vectorised draw. `lse`: the rows'
    `log_normalizers` if the caller has them (a nucleus over the whole vocabulary needs them)."""
    if lse is None and any(s.nucleus for s in samplers):
        lse = log_normalizers(rows)
    tokens: list[int] = []
    for (temperature, k, top_p), run in itertools.groupby(samplers, key=lambda s: s.key):
        group = list(run)
        block = rows[len(tokens): len(tokens) + len(group)]  # a view, not a copy
        if temperature == 0.0:
            tokens += block.argmax(axis=1).tolist()
        elif k == 0 and top_p < 1.0:  # a nucleus over the whole vocabulary: its size varies
            assert lse is not None
            at = len(tokens)
            tokens += [_draw(*_nucleus(row, top_p, float(lse[at + j])), temperature, [s])[0]
                       for j, (s, row) in enumerate(zip(group, block, strict=True))]
        else:
            ids, vals = top_k(block, min(k, block.shape[1])) if k > 0 else \
                (np.broadcast_to(np.arange(block.shape[1]), block.shape), block)
            tokens += _draw(ids, vals, temperature, group, top_p)
    return tokens


def _draw(ids: np.ndarray, vals: np.ndarray, temperature: float, group: list[Sampler],
          top_p: float = 1.0) -> list[int]:
    """Inverse-CDF draws over (m, c) candidates sorted by descending logit (1-D: m = 1)."""
    ids, vals = np.atleast_2d(ids), np.atleast_2d(vals)
    shifted = vals - vals.max(axis=1, keepdims=True)
    weights = np.exp(shifted / temperature, dtype=np.float64)
    if top_p < 1.0:  # llama.cpp: top-p on the untempered softmax of what top-k kept
        probs = np.exp(shifted, dtype=np.float64)
        mass = np.cumsum(probs, axis=1)
        weights[mass - probs >= top_p * mass[:, -1:]] = 0.0  # the mass before it reached p
    cdf = np.cumsum(weights, axis=1)
    u = np.array([s.rng.random() for s in group if s.rng is not None])[:, None] * cdf[:, -1:]
    j = np.minimum((cdf <= u).sum(axis=1), ids.shape[1] - 1)
    return ids[np.arange(ids.shape[0]), j].tolist()


def sampler_for(params: SamplingParams, seed: int, index: int) -> Sampler:
    """The sampler of sample `index` of a request whose (resolved) seed is `seed`."""
    if params.greedy:
        return Sampler(params)
    return Sampler(params, np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, index]))


@dataclass
class LogprobRecorder:
    """token_logprobs / top_logprobs of one sequence, from the raw (untempered) logits."""

    n_top: int
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)

    def record(self, row: np.ndarray, token: int, piece: Callable[[int], str],
               lse: float | None = None) -> None:
        """Log-probabilities of `token` (and the top n_top) in `row`; `lse` is the row's
        `log_normalizer`, computed here if not given."""
        if lse is None:
            lse = log_normalizer(row)
        self.token_logprobs.append(float(row[token]) - lse)
        if self.n_top > 0:
            ids, vals = top_k(row, self.n_top)
            top = zip(ids.tolist(), vals.tolist(), strict=True)
            self.top_logprobs.append({piece(t): v - lse for t, v in top})


class TextStream:
    """Incremental detokenisation of one sequence, with stop strings.

    Token pieces are bytes; a UTF-8 character may straddle two tokens, so an incremental
    decoder holds back incomplete bytes. `delta()` never releases text that might be the start
    of a stop string, so streamed deltas always concatenate to the final `text`.
    """

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = stop
        self._longest = max((len(s) for s in stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.stop_string: str | None = None
        self._sent = 0

    def push(self, piece: bytes) -> bool:
        """Append one token's bytes; True if a stop string now ends the text."""
        return self._append(self._decoder.decode(piece))

    def close(self) -> None:
        """The sequence ended: flush bytes an unfinished character left behind."""
        if self.stop_string is None:
            self._append(self._decoder.decode(b"", final=True))

    def _append(self, new: str) -> bool:
        if not new:
            return False
        start = max(0, len(self.text) - self._longest + 1)  # a stop may straddle old and new
        self.text += new
        hits = [(k, s) for s in self.stop if (k := self.text.find(s, start)) >= 0]
        if not hits:
            return False
        k, self.stop_string = min(hits)
        self.text = self.text[:k]
        return True

    def delta(self, final: bool = False) -> str:
        """Text not handed out yet, minus a tail that could still grow into a stop string."""
        end = len(self.text)
        if not final and self.stop:
            end -= self._held_back()
        out, self._sent = self.text[self._sent: end], max(self._sent, end)
        return out

    def _held_back(self) -> int:
        tail = self.text[-self._longest:] if self._longest else ""
        for n in range(min(len(tail), self._longest - 1), 0, -1):
            if any(s.startswith(tail[-n:]) for s in self.stop):
                return n
        return 0
