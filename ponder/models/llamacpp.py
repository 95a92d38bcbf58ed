"""In-process llama.cpp backend (llama-cpp-python's low-level API) with batched decoding.

`llama_cpp.Llama` runs one sequence and cannot set `n_seq_max`, so this backend builds its own
context (`llama_context_default_params`, `llama_init_from_model`) and decodes the sequences of all
concurrent `generate` calls together: see `_llama_batch.py` for the flow, `_llama_loop.py` for
the loop, `_sampling.py` for sampling and streamed text.

The KV cache, two layouts (`kv_unified`):
  * False (default): each sequence slot, and each cached prompt, has its own stream of n_ctx
    cells, as llama-server's parallel slots do. Attention reads only the sequence's own cells,
    and a sequence's logits do not depend on what else is in the batch. A prompt is still
    prefilled once; `llama_memory_seq_cp` then copies the whole stream (llama.cpp copies
    between streams only whole).
  * True: one pool of n_ctx cells for everything; sequences share a prompt's cells without any
    copy, which saves memory, but every sequence's attention scans the whole pool (masked), and
    cells freed by sequences that end early are reused out of order, which moves the logits of
    the others by ~1e-2 (summation order).
  16 samples x 256 new tokens from one 109-token prompt (Qwen2.5-0.5B, 2 cores): streams
  77 tok/s, unified 68 tok/s, llama-batched-bench 77 tok/s; the gap grows with length (see
  docs/results/batched_decoding.md). Memory: streams hold (n_seq_max + cache_prompts) * n_ctx
  cells, ~12 KB each for Qwen2.5-0.5B (~1.2 GB at the defaults).

Tree search (`GenerationRequest.keep_kv`): a finished sample's stream is not freed but handed
to the prompt cache, which holds it as the KV of prompt + completion (its id is swapped for a
free holder's: no copy). Expanding that node later sends prompt + path as a new prefix; the
cache finds the held stream as its longest prefix, copies it, and prefills only the tokens
after it (the delimiter, and any token the text re-tokenizes differently). Held streams are
dropped least recently used first; `cache_prompts` bounds how many are kept.

Departures from llama-cpp-python's `Llama`:
  * prompts are tokenized with special tokens parsed (the chat template writes them) and BOS is
    added only if the model wants one and the text does not already start with it;
  * generated text is the concatenation of token pieces with special tokens left out;
  * prompt + completion never exceed `n_ctx` positions (finish_reason "length"); when a unified
    pool fills up, the newest sequence waits and resumes later.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import jinja2
import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ponder.core.errors import ConfigError, ModelLoadError, ModelNotFound
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.reasoning import parser_setting
from ponder.core.tool_calls import for_template
from ponder.core.types import Completion, GenerationRequest, Message, Tool
from ponder.models._llama_batch import Decoder, Job, PromptCache, Vocab
from ponder.models._llama_batch import Sequence as Seq
from ponder.models._llama_loop import Scheduler
from ponder.models._sampling import LogprobRecorder, TextStream, sampler_for

MAX_SEQ = 256  # llama.cpp's LLAMA_MAX_SEQ: sequence ids per context (slots + prompt holders)

# Where a GGUF carries no chat template: ChatML, which most instruction-tuned models know.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@llama_cpp.llama_log_callback
def _no_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Swallows llama.cpp's log lines; a module global so ctypes never frees the callback."""


def _set_logging(verbose: bool) -> None:
    # Process-wide in llama.cpp: the model created last decides.
    llama_cpp.llama_log_set(None if verbose else _no_log, ctypes.c_void_p(0))


class LlamaCppModel:
    """A GGUF model run in this process; `generate` decodes all its sequences as one batch.

    n_ctx: the most positions (prompt + completion) one sequence may use; the cells of each KV
      stream (with kv_unified=True, of the one pool all sequences share).
    n_seq_max: sequences decoded together; more wait and start as others finish.
    cache_prompts: recent prompts whose KV is kept between calls (at least the last one is).
    kv_unified: one KV pool instead of a stream per sequence (see the module docstring).
    seed: seeds the seeds of requests that give none, so a whole session can be replayed.
    n_threads: llama.cpp's threads, all cores by default. On a CPU that other processes share,
      fewer threads than cores avoid llama.cpp's spinning thread barriers stalling.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_seq_max: int = 16,
        seed: int | None = None,
        n_batch: int = 512,
        cache_prompts: int = 8,
        kv_unified: bool = False,
        flash_attn: bool | None = None,
        reasoning_parser: str | None = "auto",
        verbose: bool = False,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(f"no model file at {path}; give an existing .gguf path")
        n_holders = max(1, cache_prompts)
        if not 1 <= n_seq_max <= MAX_SEQ - n_holders:
            raise ConfigError("n_seq_max", n_seq_max,
                              f"use 1..{MAX_SEQ - n_holders} parallel sequences")
        if n_ctx < 16:
            raise ConfigError("n_ctx", n_ctx, "use a context of at least 16 tokens")
        self.name = name or path.stem
        _set_logging(verbose)
        llama_cpp.llama_backend_init()

        model = llama_cpp.llama_model_load_from_file(str(path).encode(),
                                                     llama_cpp.llama_model_default_params())
        if not model:
            raise ModelLoadError(f"llama.cpp could not load {path} (corrupt, truncated or an "
                                 "unsupported architecture); re-download or re-convert it")
        n_batch = max(n_batch, n_seq_max)  # one step of every slot must fit one batch
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = n_seq_max + n_holders  # ids: decoding slots, then prompt holders
        params.kv_unified = kv_unified
        params.n_ctx = n_ctx * (1 if kv_unified else params.n_seq_max)  # llama.cpp: all streams
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = n_threads or os.cpu_count() or 1
        if flash_attn is not None:
            params.flash_attn_type = int(flash_attn)  # LLAMA_FLASH_ATTN_TYPE_{DISABLED,ENABLED}
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ModelLoadError(f"llama.cpp could not create a context for {path} with "
                                 f"n_ctx={n_ctx}, n_seq_max={n_seq_max}; try smaller values")
        self._model, self._ctx = model, ctx
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx = min(n_ctx, llama_cpp.llama_model_n_ctx_train(model) or n_ctx)
        self._decoder = Decoder(ctx, self.n_vocab, n_batch)
        self._bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
        self._templates = self._chat_templates()
        # a native thinker's chat output is split into thinking and reply: "auto" reads the
        # parser off the GGUF's template (core/reasoning.py), "none" keeps the text whole
        self.reasoning_parser = parser_setting(reasoning_parser, self._template_text)
        self.raw_prefix = True
        self._seeds = np.random.default_rng(seed)
        self._seed_lock = threading.Lock()
        # Nothing the loop's thread holds may refer to `self`, or the model could never be freed.
        vocab = _loop_vocab(self._vocab, self.n_ctx)
        self._piece = vocab.piece
        self._cache = PromptCache(self._decoder, list(range(n_seq_max, n_seq_max + n_holders)))
        self._scheduler = Scheduler(self._decoder, self._cache, list(range(n_seq_max)), vocab)
        self._free = weakref.finalize(self, _free_all, self._scheduler, self._decoder, ctx, model)

    # ---- text <-> tokens -------------------------------------------------------------------

    def _chat_templates(self) -> dict[bool, Jinja2ChatFormatter]:
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        template = raw.decode() if raw else CHATML
        self._template_text = template
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        bos, eos_text = self._special_text(self._bos), self._special_text(eos)
        return {gen: Jinja2ChatFormatter(template, eos_token=eos_text, bos_token=bos,
                                         add_generation_prompt=gen) for gen in (False, True)}

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        """The GGUF's own template (ChatML where it has none, which renders no tools)."""
        render = self._templates[add_generation_prompt]
        try:
            return render(messages=for_template(messages),  # type: ignore[arg-type]
                          tools=list(tools) or None).prompt  # type: ignore[arg-type]
        except (jinja2.TemplateError, ValueError) as e:  # ValueError: raise_exception() in it
            raise ConfigError("messages", f"{len(messages)} messages",
                              f"the model's chat template rejects them ({e})") from e

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        """Special tokens written in `text` (e.g. by the chat template) are parsed as such."""
        if not self._free.alive:  # the vocabulary went with the model
            raise ModelLoadError(f"model {self.name!r} was closed; load it again")
        data = text.encode()
        buf = (llama_cpp.llama_token * (len(data) + 2))()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, True)
        assert n >= 0, "a text never has more tokens than bytes + 2"
        ids = list(buf[:n])
        if add_bos and self._add_bos and ids[:1] != [self._bos]:
            ids.insert(0, self._bos)  # a template that writes BOS itself must not get a second one
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, add_bos=False))

    def _special_text(self, token: int) -> str:
        return _token_bytes(self._vocab, token, special=True).decode(errors="replace") \
            if token >= 0 else ""

    def _prompt(self, r: int, req: GenerationRequest) -> np.ndarray:
        text = (req.prefix if req.prefix is not None
                else self.render_chat(req.messages or (), tools=req.tools))
        ids = np.asarray(self.tokenize(text), dtype=np.int32)
        if not 0 < ids.size < self.n_ctx:
            raise ConfigError(f"requests[{r}]", f"{ids.size}-token prompt",
                              f"use a non-empty prompt shorter than n_ctx={self.n_ctx} tokens "
                              "(or load the model with a larger n_ctx)")
        return ids

    # ---- generation ------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_text: OnText | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[list[Completion]]:
        prompts = [self._prompt(r, req) for r, req in enumerate(requests)]  # fail before decoding
        job = Job(self._sequences(requests, prompts), on_text, should_stop)
        self._scheduler.submit(job)
        out: list[list[Completion]] = [[] for _ in requests]
        parser = self.reasoning_parser
        for s in job.sequences:
            c = _completion(s)
            chat = requests[s.request].messages is not None  # a raw prefix may be mid-thought
            out[s.request].append(parser.apart(c) if parser is not None and chat else c)
        return out

    def _sequences(self, requests: Sequence[GenerationRequest],
                   prompts: list[np.ndarray]) -> list[Seq]:
        seqs = []
        for r, (req, prompt) in enumerate(zip(requests, prompts, strict=True)):
            p = req.params
            if p.seed is not None:
                seed = p.seed
            else:
                with self._seed_lock:
                    seed = int(self._seeds.integers(2**63))
            for i in range(p.n):
                lp = LogprobRecorder(p.logprobs) if p.logprobs is not None else None
                sampler = sampler_for(p, seed, p.first_sample + i)
                seqs.append(Seq(r, i, prompt, p, sampler, TextStream(p.stop), lp, req.keep_kv))
        return seqs

    def clear_cache(self) -> None:
        """Forget the KV of held prompts (benchmarks that must measure the prefill)."""
        with self._scheduler.lock:
            self._cache.clear()

    def close(self) -> None:
        """Finish the calls under way, then free the model (later calls raise)."""
        self._free()


def _completion(s: Seq) -> Completion:
    assert s.finish is not None
    lp = s.logprobs
    return Completion(
        text=s.stream.text,
        token_ids=list(s.tokens),
        finish_reason=s.finish,
        prompt_tokens=int(s.prompt.size),
        completion_tokens=len(s.tokens),
        cached_tokens=s.cached,
        token_logprobs=lp.token_logprobs if lp is not None else None,
        top_logprobs=lp.top_logprobs if lp is not None and lp.n_top > 0 else None,
        stop_string=s.stream.stop_string,
        seconds=s.seconds,
    )


def _loop_vocab(vocab: llama_cpp.llama_vocab_p, n_ctx: int) -> Vocab:
    pieces: dict[int, bytes] = {}  # token -> bytes, filled as tokens are first seen

    def piece(token: int) -> bytes:
        got = pieces.get(token)
        if got is None:
            got = pieces[token] = _token_bytes(vocab, token, special=False)
        return got

    return Vocab(piece=piece, text=lambda t: piece(t).decode(errors="replace"),
                 is_eog=lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t)), n_ctx=n_ctx)


def _token_bytes(vocab: llama_cpp.llama_vocab_p, token: int, *, special: bool) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:  # a longer piece: -n bytes
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return buf.raw[:n]


def _free_all(scheduler: Scheduler, decoder: Decoder, ctx: llama_cpp.llama_context_p,
              model: llama_cpp.llama_model_p) -> None:
    scheduler.close()
    decoder.close()
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
