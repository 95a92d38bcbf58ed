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

The loop itself (slots, steps) is in _llama_loop.py; this file holds its parts: the batch, the
decoder calls, the prompt cache, a sequence's state and a job (one call's sequences).

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
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from ponder.core.errors import BackendError
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.types import FinishReason, SamplingParams
from ponder.models._sampling import LogprobRecorder, Sampler, TextStream

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


@dataclass
class Vocab:
    """What the loop needs to know about tokens."""

    piece: Callable[[int], bytes]  # token -> its bytes as generated text
    text: Callable[[int], str]  # token -> display text (top_logprobs keys)
    is_eog: Callable[[int], bool]
    n_ctx: int  # positions one sequence may use: prompt + completion <= n_ctx
