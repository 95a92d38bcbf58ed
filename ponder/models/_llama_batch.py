"""The decode loop of the llama.cpp backend: many sequences, one `llama_decode` per step.

How generate calls run (continuous batching, across calls):

  1. every (request, sample) pair of a call becomes a `Sequence`; the call is a `Job`, handed
     to the `Scheduler`, whose loop runs on its own thread and serves every calling thread;
  2. a waiting sequence takes a free slot (a llama.cpp sequence id); a free slot goes to the job
     with the fewest sequences running, so concurrent calls share the slots. Its prompt's KV
     comes from the `PromptCache`: a prompt is prefilled once, into a *holder* sequence that
     never decodes, and `llama_memory_seq_cp` gives it to each sample's slot (shared cells in a
     unified KV cache, a copy of the stream otherwise). The holder also keeps the logits after
     the last prompt token, from which every sample draws its first token: n samples, one
     prefill;
  3. each step puts the last token of every live sequence, whatever its call, into ONE batch
     and calls `llama_decode` once; each sequence samples its next token from its logits row;
  4. a finished sequence leaves (`llama_memory_seq_rm`) and a waiting one takes its slot; a call
     returns when all its sequences have finished.

Holders outlive the call (least recently used first out), so a prompt sent again, as adaptive
self-consistency does, is not prefilled again; a new prompt reuses the longest prefix of a held
one. When a unified KV pool is full, held prompts are dropped first, then the newest sequence
is preempted (vLLM's recompute preemption): its cells are freed and it waits at the head of the
queue; when it resumes, its tokens so far are decoded again in one prefill. (Separate streams
never fill up.) Only the per-sequence limit, prompt + completion <= n_ctx, ends a sequence
with "length".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from ponder.core.errors import BackendError
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.types import FinishReason, SamplingParams
from ponder.models._sampling import LogprobRecorder, Sampler, TextStream, sample

KV_FULL = 1  # llama_decode's "no KV slot for this batch"; the cache state is left unchanged


class Batch:
    """One reusable llama_batch; numpy views over its arrays so filling it is vectorised."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        shape = (capacity,)
        self.token = np.ctypeslib.as_array(self.raw.token, shape=shape)
        self.pos = np.ctypeslib.as_array(self.raw.pos, shape=shape)
        self.n_seq_id = np.ctypeslib.as_array(self.raw.n_seq_id, shape=shape)
        self.logits = np.ctypeslib.as_array(self.raw.logits, shape=shape)
        self._seq_id = [self.raw.seq_id[i] for i in range(capacity)]  # one int32* per token

    def fill(self, tokens: list[int], pos: list[int] | np.ndarray, seq_ids: list[int],
             want_logits: bool | list[bool]) -> None:
        n = len(tokens)
        assert n <= self.capacity
        self.token[:n], self.pos[:n], self.logits[:n] = tokens, pos, want_logits
        self.n_seq_id[:n] = 1
        for ptr, s in zip(self._seq_id[:n], seq_ids, strict=True):
            ptr[0] = s
        self.raw.n_tokens = n

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.raw)


class Decoder:
    """The context-level calls the loop needs: decode a batch, read logits, edit sequences."""

    def __init__(self, ctx: llama_cpp.llama_context_p, n_vocab: int, n_batch: int) -> None:
        self.ctx, self.n_vocab, self.n_batch = ctx, n_vocab, n_batch
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.batch = Batch(n_batch)

    def decode(self, tokens: list[int], pos: list[int] | np.ndarray, seq_ids: list[int],
               want_logits: bool | list[bool] = True) -> int:
        self.batch.fill(tokens, pos, seq_ids, want_logits)
        ret = llama_cpp.llama_decode(self.ctx, self.batch.raw)
        if ret not in (0, KV_FULL):
            raise BackendError(f"llama_decode failed with code {ret}")
        return int(ret)

    def extend(self, seq: int, tokens: np.ndarray, p0: int, logits_last: bool = False) -> bool:
        """Decode `tokens` into `seq` at positions p0, p0+1, ... in chunks of n_batch; False if
        the KV cache is full (what was decoded stays: the caller removes it)."""
        for i in range(0, tokens.size, self.n_batch):
            chunk = tokens[i: i + self.n_batch]
            want = [False] * chunk.size
            want[-1] = logits_last and i + chunk.size == tokens.size
            pos = np.arange(p0 + i, p0 + i + chunk.size)
            if self.decode(chunk.tolist(), pos, [seq] * chunk.size, want) == KV_FULL:
                return False
        return True

    def logits(self, n_rows: int) -> np.ndarray:
        """(n_rows, n_vocab) float32, a zero-copy view valid until the next decode."""
        ptr = llama_cpp.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_rows, self.n_vocab))

    def copy(self, src: int, dst: int, p1: int = -1) -> None:
        """dst gets src's positions [0, p1) (all if p1 < 0). llama.cpp copies between separate
        streams only whole (at the next decode), so copy all, then cut."""
        llama_cpp.llama_memory_seq_cp(self.mem, src, dst, -1, -1)
        if p1 >= 0:
            self.remove(dst, p1)

    def remove(self, seq: int, p0: int = -1) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, seq, p0, -1)

    def close(self) -> None:
        self.batch.free()


@dataclass
class Held:
    """A prompt whose KV cells a holder sequence keeps, and the logits after its last token."""

    tokens: np.ndarray  # int32 (P,)
    seq: int
    logits: np.ndarray | None  # float32 (n_vocab,); None for a kept completion (not decoded)


class PromptCache:
    """Prompt KV kept in reserved holder sequences, least recently used dropped first."""

    def __init__(self, decoder: Decoder, holder_ids: list[int]) -> None:
        self.decoder = decoder
        self.free_ids = list(holder_ids)
        self.held: OrderedDict[bytes, Held] = OrderedDict()  # key: the prompt's token bytes

    def acquire(self, tokens: np.ndarray) -> tuple[Held, int] | None:
        """The held prompt and how many of its tokens this call prefilled; None if the KV cache
        has no room now (nothing is changed then)."""
        key = tokens.tobytes()
        if key in self.held:
            self.held.move_to_end(key)
            held = self.held[key]
            if held.logits is None:  # a kept completion: decode its last token again
                self.decoder.remove(held.seq, tokens.size - 1)
                if not self.decoder.extend(held.seq, tokens[-1:], tokens.size - 1, True):
                    self.decoder.remove(held.seq)
                    del self.held[key]
                    self.free_ids.append(held.seq)
                    return None
                held.logits = self.decoder.logits(1)[0].copy()
                return held, 1
            return held, 0
        # Reuse the longest held prefix, but decode at least the last token: its logits are needed.
        src, reuse = None, 0
        for h in self.held.values():
            n = _shared_prefix(h.tokens, tokens)
            if min(n, tokens.size - 1) > reuse:
                src, reuse = h, min(n, tokens.size - 1)
        if src is not None:
            self.held.move_to_end(src.tokens.tobytes())  # a donor is in use: keep it longest
        seq = self._free_id(keep=src)
        if src is not None and src.seq == seq:
            self.decoder.remove(seq, reuse)  # the evicted holder was the donor: keep its prefix
        elif src is not None:
            self.decoder.copy(src.seq, seq, reuse)
        if not self.decoder.extend(seq, tokens[reuse:], reuse, logits_last=True):
            self.decoder.remove(seq)
            self.free_ids.append(seq)
            return None
        held = Held(tokens, seq, self.decoder.logits(1)[0].copy())
        self.held[key] = held
        return held, tokens.size - reuse

    def adopt(self, seq: int, tokens: np.ndarray) -> int:
        """Hold the KV that sequence `seq` already has for `tokens` (a finished sample's prompt
        and completion); returns the id the caller gets back in exchange: a free holder id, or
        the least recently used holder's, emptied. Returns `seq` itself if `tokens` are held."""
        key = tokens.tobytes()
        if key in self.held:
            return seq
        if self.free_ids:
            out = self.free_ids.pop()
        else:
            _, victim = self.held.popitem(last=False)
            self.decoder.remove(victim.seq)
            out = victim.seq
        self.held[key] = Held(tokens, seq, None)
        return out

    def _free_id(self, keep: Held | None) -> int:
        if self.free_ids:
            return self.free_ids.pop()
        _, victim = self.held.popitem(last=False)
        if victim is not keep:
            self.decoder.remove(victim.seq)
        return victim.seq

    def clear(self) -> None:
        while self.drop_oldest():
            pass

    def drop_oldest(self) -> bool:
        """Free the least recently used holder (KV full); False if none is held."""
        if not self.held:
            return False
        _, victim = self.held.popitem(last=False)
        self.decoder.remove(victim.seq)
        self.free_ids.append(victim.seq)
        return True


def _shared_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


@dataclass(eq=False)
class Sequence:
    """One sample being generated: the state of one (request, sample index) pair of a job."""

    request: int
    index: int
    prompt: np.ndarray  # int32 (P,)
    params: SamplingParams
    sampler: Sampler
    stream: TextStream
    logprobs: LogprobRecorder | None
    keep_kv: bool = False  # on finishing, hand its KV to the prompt cache (GenerationRequest)
    job: Job | None = None  # set when its generate call is submitted
    tokens: list[int] = field(default_factory=list)
    slot: int = -1
    cached: int = 0  # prompt tokens this sample did not prefill
    seconds: float = 0.0  # its share of the decode time: each step's time / sequences in it
    finish: FinishReason | None = None


@dataclass
class Vocab:
    """What the loop needs to know about tokens."""

    piece: Callable[[int], bytes]  # token -> its bytes as generated text
    text: Callable[[int], str]  # token -> display text (top_logprobs keys)
    is_eog: Callable[[int], bool]
    n_ctx: int  # positions one sequence may use: prompt + completion <= n_ctx


@dataclass(eq=False)
class Job:
    """One generate call: its sequences, its callbacks, and how far it got."""

    sequences: list[Sequence]
    on_text: OnText | None = None
    should_stop: ShouldStop | None = None
    waiting: deque[Sequence] = field(init=False)
    live: int = 0  # its sequences holding a slot now
    left: int = field(init=False)  # its sequences not finished yet
    cancelled: bool = False  # set by the caller that gave up waiting (e.g. Ctrl-C)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.waiting = deque(self.sequences)
        self.left = len(self.sequences)
        for s in self.sequences:
            s.job = self


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
        self.free_slots = sorted(slots, reverse=True)
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
        while (held := self._load(s, self.free_slots[-1])) is None and not self.live:
            if not self.cache.drop_oldest():  # nothing runs: only held prompts are in the way
                raise BackendError(f"a {s.prompt.size}-token prompt does not fit the KV cache")
        if held is None:
            return False
        s.slot = self.free_slots.pop()
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
        while True:  # sequences that sample alike sit together: one vectorised draw for them
            seqs = sorted(self.live.values(), key=lambda s: s.sampler.key)
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
        tokens = sample([s.sampler for s in seqs], rows)
        share = (time.perf_counter() - t0) / len(seqs)
        for s, row, token in zip(seqs, rows, tokens, strict=True):
            if s.slot >= 0:  # not released meanwhile by a failed job
                s.seconds += share
                self._accept(s, row, token)

    def _accept(self, s: Sequence, row: np.ndarray, token: int) -> None:
        if s.logprobs is not None:
            s.logprobs.record(row, token, self.vocab.text)
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
            self.free_slots.append(new_id)
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
            self.free_slots.append(s.slot)
            s.slot = -1
            assert s.job is not None
            s.job.live -= 1
