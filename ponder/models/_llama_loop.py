"""The decode loop of the llama.cpp backend: one thread, one `llama_decode` per step, for the
sequences of every concurrent `generate` call (see _llama_batch.py's docstring for the whole
flow, and for the batch, decoder, prompt cache and jobs this loop drives)."""

from __future__ import annotations

import heapq
import threading
import time

import numpy as np

from ponder.core.errors import BackendError
from ponder.core.types import FinishReason
from ponder.models._llama_batch import KV_FULL, Decoder, Held, Job, PromptCache, Sequence, Vocab
from ponder.models._sampling import log_normalizers, sample


class Scheduler:
    """Decodes the sequences of every concurrent generate call together, on one thread.

    `submit` hands a job to the loop and blocks until all its sequences have finished. Callers
    on other threads add jobs at any step, and the next `llama_decode` carries their sequences
    too (continuous batching across calls). A free slot goes to the waiting job with the fewest
    sequences running (the oldest among equals), so a short request that arrives while a long
    one holds every slot starts as soon as any one of them ends. Callbacks (`on_text`,
    `should_stop`) run on the loop's thread; one that raises fails only its own job.
    """

    def __init__(self, decoder: Decoder, cache: PromptCache, slots: list[int],
                 vocab: Vocab) -> None:
        self.decoder, self.cache, self.vocab = decoder, cache, vocab
        self.free_slots = sorted(slots)  # a heap: the lowest free id is taken first
        self.live: dict[int, Sequence] = {}  # slot -> sequence, in admission order
        self.jobs: list[Job] = []  # jobs with sequences still to finish, oldest first
        self.lock = threading.Lock()  # held by the loop while it uses the context
        self._wake = threading.Condition()
        self._new: list[Job] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job) -> None:
        """Run `job` alongside whatever else runs; returns when all its sequences finished."""
        with self._wake:
            if self._closed:
                raise BackendError("the model was closed; load it again")
            self._new.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ponder-llama-decode",
                                                 daemon=True)
                self._thread.start()
            self._wake.notify()
        try:
            job.done.wait()
        except BaseException:
            job.cancelled = True  # the loop ends its sequences at the next step
            raise
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        """Let submitted jobs finish, refuse new ones, and stop the loop's thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._new and not self.jobs and not self._closed:
                    self._wake.wait()
                self.jobs += self._new
                self._new.clear()
                if not self.jobs:  # closed, and nothing left to finish
                    return
            with self.lock:
                try:
                    self._iterate()
                except Exception as e:  # llama_decode failed: no job can go on
                    for job in list(self.jobs):
                        self._fail(job, e)

    def _iterate(self) -> None:
        """Cancel what was asked to stop, start waiting sequences, decode one step."""
        for job in list(self.jobs):
            try:
                stop = job.cancelled or (job.should_stop is not None and job.should_stop())
            except Exception as e:
                self._fail(job, e)
                continue
            if stop:
                for s in [*self._live_of(job), *job.waiting]:
                    self._finish(s, "cancelled")
        self._admit()
        if self.live:
            self._step()

    def _admit(self) -> None:
        while self.free_slots:
            job = min((j for j in self.jobs if j.waiting), key=lambda j: j.live, default=None)
            if job is None:
                return
            s = job.waiting.popleft()
            try:
                started = self._start(s)
            except BackendError as e:  # its prompt cannot fit the KV cache at all
                self._fail(job, e)
                continue
            if not started:
                job.waiting.appendleft(s)
                return

    def _start(self, s: Sequence) -> bool:
        """Give `s` a slot with its KV in place; False if the KV cache has no room for it now
        (it waits for a live sequence to end)."""
        t0 = time.perf_counter()
        while (held := self._load(s, self.free_slots[0])) is None and not self.live:
            if not self.cache.drop_oldest():  # nothing runs: only held prompts are in the way
                raise BackendError(f"a {s.prompt.size}-token prompt does not fit the KV cache")
        if held is None:
            return False
        s.slot = heapq.heappop(self.free_slots)
        self.live[s.slot] = s
        assert s.job is not None
        s.job.live += 1
        s.seconds += time.perf_counter() - t0  # the prefill, if this sample paid for one
        if len(s.tokens) == 0:  # the first token comes from the logits the prompt cache kept
            assert held.logits is not None
            self._accept(s, held.logits, s.sampler(held.logits))
        return True

    def _load(self, s: Sequence, slot: int) -> Held | None:
        """The prompt's KV from the cache, shared into `slot`; for a sequence that was preempted,
        its own tokens but the last decoded again (vLLM's preemption by recomputation)."""
        got = self.cache.acquire(s.prompt)
        if got is None:
            return None
        held, prefilled = got
        self.decoder.remove(slot)
        self.decoder.copy(held.seq, slot)
        if not s.tokens:
            s.cached = s.prompt.size - prefilled
        elif not self.decoder.extend(slot, np.asarray(s.tokens[:-1], np.int32), s.prompt.size):
            self.decoder.remove(slot)
            return None
        return held

    def _step(self) -> None:
        """One llama_decode for every live sequence, then one token sampled for each."""
        t0 = time.perf_counter()
        while True:
            # In slot order: with a KV stream per sequence, llama.cpp puts in one ubatch only
            # sequences whose ids follow each other in the batch (split_equal, sequential), so
            # 32 sequences in admission order ran as ~18 ubatches a step, each a whole pass
            # over the weights. Slots are taken lowest first, so the ids stay packed.
            seqs = sorted(self.live.values(), key=lambda s: s.slot)
            tokens = [s.tokens[-1] for s in seqs]
            pos = [s.prompt.size + len(s.tokens) - 1 for s in seqs]
            if self.decoder.decode(tokens, pos, [s.slot for s in seqs]) != KV_FULL:
                break
            if not self.cache.drop_oldest():  # KV full: shed held prompts, then the newest run
                newest = next(reversed(self.live.values()))
                if len(self.live) == 1:  # cannot happen while prompt + completion <= n_ctx
                    self._finish(newest, "length")
                    return
                self._release(newest)
                assert newest.job is not None
                newest.job.waiting.appendleft(newest)  # resumes first, as soon as there is room
        rows = self.decoder.logits(len(seqs))
        # One pass over the vocabulary for the log-normalisers that nucleus sampling and
        # logprobs both need (each alone was ~10% of a 32-sequence step).
        needs = any(s.logprobs is not None or s.sampler.nucleus for s in seqs)
        lse = log_normalizers(rows) if needs else None
        tokens = sample([s.sampler for s in seqs], rows, lse)
        share = (time.perf_counter() - t0) / len(seqs)
        for j, (s, row, token) in enumerate(zip(seqs, rows, tokens, strict=True)):
            if s.slot >= 0:  # not released meanwhile by a failed job
                s.seconds += share
                self._accept(s, row, token, None if lse is None else float(lse[j]))

    def _accept(self, s: Sequence, row: np.ndarray, token: int, lse: float | None = None
                ) -> None:
        if s.logprobs is not None:
            s.logprobs.record(row, token, self.vocab.text, lse)
        s.tokens.append(token)
        p = s.params
        reason: FinishReason | None = None
        if not p.ignore_eos and self.vocab.is_eog(token):
            reason = "stop"  # end of turn: not part of the text
        elif s.stream.push(self.vocab.piece(token)):
            reason = "stop"  # a stop string: the text ends before it
        elif len(s.tokens) >= p.max_tokens or s.prompt.size + len(s.tokens) >= self.vocab.n_ctx:
            reason = "length"
        if reason is not None:
            self._finish(s, reason)
        else:
            self._emit(s)

    def _emit(self, s: Sequence, final: bool = False) -> None:
        job = s.job
        assert job is not None
        if job.on_text is None or job.error is not None or not (delta := s.stream.delta(final)):
            return
        try:
            job.on_text(s.request, s.index, delta)
        except Exception as e:
            self._fail(job, e)

    def _finish(self, s: Sequence, reason: FinishReason) -> None:
        job = s.job
        assert job is not None
        s.finish = reason
        s.stream.close()
        self._emit(s, final=True)
        if s.keep_kv and reason != "cancelled" and s.slot >= 0 and len(s.tokens) > 1:
            self._keep(s)
        self._release(s)
        if job.error is None:
            job.left -= 1
            if job.left == 0:
                self._done(job)

    def _keep(self, s: Sequence) -> None:
        """Hand the slot's KV (prompt + all tokens but the last, which was never decoded) to
        the prompt cache; the slot id is exchanged for the holder id the cache frees."""
        kept = np.concatenate([s.prompt, np.asarray(s.tokens[:-1], np.int32)])
        new_id = self.cache.adopt(s.slot, kept)
        if new_id != s.slot:
            self.decoder.remove(new_id)
            del self.live[s.slot]
            heapq.heappush(self.free_slots, new_id)
            s.slot = -1
            assert s.job is not None
            s.job.live -= 1

    def _fail(self, job: Job, error: BaseException) -> None:
        if job.error is None:
            job.error = error
            for s in self._live_of(job):
                self._release(s)
            job.waiting.clear()
            self._done(job)

    def _done(self, job: Job) -> None:
        self.jobs.remove(job)
        job.done.set()

    def _live_of(self, job: Job) -> list[Sequence]:
        return [s for s in self.live.values() if s.job is job]

    def _release(self, s: Sequence) -> None:
        if s.slot >= 0:
            self.decoder.remove(s.slot)
            del self.live[s.slot]
            heapq.heappush(self.free_slots, s.slot)
            s.slot = -1
            assert s.job is not None
            s.job.live -= 1
