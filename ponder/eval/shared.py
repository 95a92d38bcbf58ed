"""Shared samples: schemes on one question draw from one pool of seeded samples.

With `ponder eval --share-samples`, self-consistency@4, @8 and @16, adaptive@16 and best-of-n@8
with the same seed all want samples 0, 1, 2, ... of the same prompt, sampling settings and
seed (adaptive numbers its batches on with `first_sample`). `SharedSamples` wraps the model for
one question: the first scheme to need sample i generates it, the others get the same
completion. A grid of those five schemes then generates 16 chains per question and seed
instead of up to 52.

This is the "subsample from one pool" estimator used to draw accuracy-vs-samples curves
(e.g. Wang et al. 2023, Fig. 3): each scheme sees samples drawn exactly as it would draw them
alone (sample i of seed s, from its own generator), so its accuracy is unchanged in
distribution; schemes compared on the same seed are paired, which narrows the uncertainty of
their differences. Paired, not identical to separate runs: in the llama.cpp backend a seeded
sample does not depend on the *content* of the rest of the batch (tests/test_llamacpp.py::
test_seeds), but its logits are not bit-for-bit repeatable across batches, and at
temperature 0.7 a small change in the logits sometimes moves a draw: a chain drawn again in
another batch can diverge (in the GSM8K run of docs/eval.md, 122 of 172 chains drawn again in
a later process differed, most within their first ~60 tokens). Every row still counts the
tokens and model seconds of all samples it uses, as if it had generated them.

Only seeded, sampled requests without top-logprob alternatives are shared; anything else goes
straight to the model. Generated samples always carry token logprobs, so best-of-n's
confidence scorer can use a sample first drawn for self-consistency.

A pool can outlive its process: `on_sample` is told of every sample drawn (the eval store keeps
them) and `stored` starts a pool with the samples an earlier, killed run drew, so a resumed
question draws only what it still lacks. Pools are named by `pool_key`, a hash of what decides
a sample's text apart from its index.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from ponder.core.protocols import LanguageModel, OnText, ShouldStop
from ponder.core.types import Completion, GenerationRequest
from ponder.core.wrap import Wrapper


class SharedSamples(Wrapper):
    """A LanguageModel that hands out each (prompt, settings, seed, sample index) once drawn."""

    def __init__(self, model: LanguageModel, *,
                 stored: Mapping[str, Mapping[int, Completion]] | None = None,
                 on_sample: Callable[[str, int, Completion], None] | None = None) -> None:
        super().__init__(model)
        self.generated = 0  # samples this pool generated
        self.served = 0  # samples it returned (generated or reused)
        self._pool: dict[str, dict[int, Completion]] = {
            key: dict(samples) for key, samples in (stored or {}).items()}
        self._on_sample = on_sample
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        for req in requests:
            p = req.params
            if p.seed is None or p.greedy or (p.logprobs or 0) > 0:
                out += self.model.generate([req], on_text=on_text, should_stop=should_stop)
                continue
            key = pool_key(req)
            wanted = range(p.first_sample, p.first_sample + p.n)
            with self._lock:
                have = self._pool.setdefault(key, {})
                missing = [i for i in wanted if i not in have]
            if missing:  # draw the missing range in one batched call
                lo, hi = missing[0], missing[-1] + 1
                draw = replace(p, n=hi - lo, first_sample=lo, logprobs=0)
                [got] = self.model.generate([replace(req, params=draw)], on_text=on_text,
                                            should_stop=should_stop)
                with self._lock:
                    new = [(i, c) for i, c in zip(range(lo, hi), got, strict=True)
                           if c.finish_reason != "cancelled" and i not in have]
                    have.update(new)
                    self.generated += len(got)
                if self._on_sample is not None:
                    for i, c in new:
                        self._on_sample(key, i, c)
                by_index = dict(zip(range(lo, hi), got, strict=True))
            else:
                by_index = {}
            chosen = [have.get(i) or by_index[i] for i in wanted]
            with self._lock:
                self.served += len(chosen)
            out.append([c if p.logprobs is not None else replace(c, token_logprobs=None)
                        for c in chosen])
        return out

    def close(self) -> None:
        """The pool is dropped; the wrapped model stays open (its owner closes it)."""
        self._pool.clear()


def pool_key(req: GenerationRequest) -> str:
    """A hash of everything that decides sample i's text, apart from i."""
    p = replace(req.params, n=1, first_sample=0, logprobs=None)
    prompt = req.prefix if req.prefix is not None else [dict(m) for m in req.messages or ()]
    text = json.dumps([prompt, repr(p)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
