"""A transformers causal LM behind the `LanguageModel` protocol.

For sampling from a model a training loop holds in memory (rollouts, checkpoint evaluation),
from students saved by `ponder distill` (a `save_pretrained` folder), and from models llama.cpp
cannot load. On CPU it is several times slower than the llama.cpp backend (float weights,
`model.generate`'s Python loop): prefer a GGUF where there is one.

    lm = TransformersModel("smollm2-135m")     # a catalog GGUF, dequantised to float32
    lm = TransformersModel(model, tokenizer)   # a model in memory, used as it is
    lm = load_model("hf:./runs/student")       # through the catalog

How `generate` runs, and where it departs from the llama.cpp backend:
  * Requests are grouped by sampling settings (n, seed, first_sample aside); a group is decoded
    by `model.generate` in left-padded batches of at most `max_batch` rows, one row per sample
    (not `num_return_sequences`, so requests with different n share a batch). A greedy request
    decodes one row and copies it n times.
  * A sampled request with a seed is decoded in batches of its own under `torch.manual_seed`,
    the caller's RNG state restored afterwards: its samples depend on the seed and the request
    only. `first_sample` is folded into the seed (as the HTTP backend does): n=4, first_sample=4
    are not samples 4-7 of n=8 as in llama.cpp, just other samples.
  * transformers applies temperature before top-k/top-p (llama.cpp: top-p on the untempered
    distribution). Knobs the model's generation_config may set outside SamplingParams
    (repetition_penalty, min_p, ...) are held neutral.
  * Stop strings and `should_stop` are checked after every step (a stopping criterion), so
    generation ends early. As in llama.cpp, `token_ids` include the token that ended a sample
    (EOS, or the one completing a stop string); the text leaves out special tokens and the stop.
  * Logprobs: log-softmax of the raw logits (`output_logits`, before temperature); they hold
    rows x steps x vocabulary floats while a batch runs (lower `max_batch` if that is too big).
  * Streaming is not incremental: `on_text` gets each completion's whole text when its batch ends.
  * Special tokens the chat template writes are parsed as such; BOS is added only where the
    tokenizer adds one and the text does not already start with it.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ponder.core.errors import ConfigError, ModelLoadError
from ponder.core.protocols import OnText, ShouldStop
from ponder.core.reasoning import parser_setting
from ponder.core.tool_calls import for_template
from ponder.core.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    Message,
    SamplingParams,
    Tool,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Where a tokenizer carries no chat template: ChatML, as in the llama.cpp backend.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# generate() fills every knob left unset from the model's generation_config (top_k from its own
# default, 50): those SamplingParams has no say over are held neutral.
NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0,
           "renormalize_logits": False}
NEUTRAL_SAMPLING = {"min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


class _Batch(NamedTuple):
    """The rows of one `model.generate` call: (request, sample) pairs with one setting."""

    params: SamplingParams
    seed: int | None
    rows: list[tuple[int, int]]


class TransformersModel:
    """A transformers causal LM. `model_or_spec`: a catalog name, .gguf path, `save_pretrained`
    folder or hub id (loaded by `torch_gguf.load_trainable`, moved to `device`, put in eval
    mode), or a model object with its `tokenizer`, used as it is (device, mode, dtype)."""

    def __init__(self, model_or_spec: str | PreTrainedModel,
                 tokenizer: PreTrainedTokenizerBase | None = None, *, name: str | None = None,
                 device: str = "cpu", dtype: str = "float32", max_batch: int = 16,
                 reasoning_parser: str | None = "auto") -> None:
        if max_batch < 1:
            raise ConfigError("max_batch", max_batch, "use at least 1 row per batch")
        model: Any = model_or_spec
        if isinstance(model_or_spec, str):
            from ponder.models.torch_gguf import load_trainable
            model, tokenizer = load_trainable(model_or_spec, dtype=dtype)
            model, name = model.to(device).eval(), name or model_or_spec
        elif tokenizer is None:
            raise ConfigError("tokenizer", None, "pass the tokenizer along with a model object")
        self.name = name or getattr(model, "name_or_path", "") or type(model).__name__
        self.max_batch = max_batch
        self._model: Any = model
        self._tokenizer: Any = tokenizer
        self._lock = threading.Lock()  # one generate at a time: it holds the batch's memory
        self._bos = tokenizer.bos_token_id
        self._add_bos = self._bos is not None and tokenizer("a")["input_ids"][:1] == [self._bos]
        eos = getattr(model.generation_config, "eos_token_id", None)  # int, list or None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self._eos = sorted({*eos, tokenizer.eos_token_id} - {None})
        pad = tokenizer.pad_token_id
        self._pad = pad if pad is not None else (self._eos or [0])[0]
        config = model.config.get_text_config()
        self.n_ctx = getattr(config, "max_position_embeddings", None) or 1 << 20
        # a native thinker's chat output is split into thinking and reply ("auto": read off the
        # tokenizer's chat template; "none": kept whole)
        self.raw_prefix = True
        template = getattr(tokenizer, "chat_template", None)
        self.reasoning_parser = parser_setting(reasoning_parser,
                                               template if isinstance(template, str) else None)

    # ---- text <-> tokens -------------------------------------------------------------------

    def _loaded(self) -> tuple[Any, Any]:
        if self._model is None:
            raise ModelLoadError(f"model {self.name!r} was closed; load it again")
        return self._model, self._tokenizer

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        import jinja2

        tokenizer = self._loaded()[1]
        template = None if getattr(tokenizer, "chat_template", None) else CHATML
        try:
            return str(tokenizer.apply_chat_template(
                for_template(messages), tools=list(tools) or None, tokenize=False,
                add_generation_prompt=add_generation_prompt, chat_template=template))
        except (jinja2.TemplateError, ValueError) as e:
            raise ConfigError("messages", f"{len(messages)} messages",
                              f"the model's chat template rejects them ({e})") from e

    def tokenize(self, text: str) -> list[int]:
        ids: list[int] = self._loaded()[1](text, add_special_tokens=False)["input_ids"]
        if self._add_bos and ids[:1] != [self._bos]:
            ids.insert(0, self._bos)  # a template that writes BOS itself must not get a second
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._loaded()[1](text, add_special_tokens=False)["input_ids"])

    def _text(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def _prompt(self, r: int, req: GenerationRequest) -> list[int]:
        text = (req.prefix if req.prefix is not None
                else self.render_chat(req.messages or (), tools=req.tools))
        ids = self.tokenize(text)
        if not 0 < len(ids) < self.n_ctx:
            raise ConfigError(f"requests[{r}]", f"{len(ids)}-token prompt", "use a non-empty "
                              f"prompt shorter than the model's {self.n_ctx} positions")
        return ids

    # ---- generation ------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        import torch

        prompts = [self._prompt(r, req) for r, req in enumerate(requests)]  # fail before decoding
        done: dict[tuple[int, int], Completion] = {}
        cancelled = False
        with self._lock, torch.no_grad():
            for batch in self._batches(requests):
                cancelled = cancelled or (should_stop is not None and should_stop())
                if cancelled:  # the batches after a cancel never start
                    got = [Completion("", finish_reason="cancelled", prompt_tokens=len(prompts[r]))
                           for r, _ in batch.rows]
                else:
                    got, cancelled = self._decode(batch, prompts, should_stop)
                done.update(zip(batch.rows, got, strict=True))
        out = [[done.get((r, i)) or copy.deepcopy(done[r, 0]) for i in range(req.params.n)]
               for r, req in enumerate(requests)]  # a greedy request: one row, copied
        for r, completions in enumerate(out):
            for i, c in enumerate(completions):
                if on_text is not None and c.text:
                    on_text(r, i, c.text)
        parser = self.reasoning_parser
        return [[parser.apart(c) for c in cs] if parser is not None and req.messages is not None
                else cs for req, cs in zip(requests, out, strict=True)]

    def _batches(self, requests: Sequence[GenerationRequest]) -> list[_Batch]:
        groups: dict[tuple[SamplingParams, int], list[tuple[int, int]]] = {}
        for r, req in enumerate(requests):
            p = req.params
            alone = p.seed is not None and not p.greedy  # samples must not depend on the others
            key = (p.with_(n=1, seed=None, first_sample=0), r if alone else -1)
            groups.setdefault(key, []).extend((r, i) for i in range(1 if p.greedy else p.n))
        batches = []
        for (params, owner), rows in groups.items():
            for k in range(0, len(rows), self.max_batch):
                seed = requests[owner].params.seed if owner >= 0 else None
                if seed is not None:  # chunk k starts at the request's sample first_sample + k
                    seed = (seed + 1_000_003 * (requests[owner].params.first_sample + k)) % 2**63
                batches.append(_Batch(params, seed, rows[k: k + self.max_batch]))
        return batches

    def _decode(self, batch: _Batch, prompts: list[list[int]],
                should_stop: ShouldStop | None) -> tuple[list[Completion], bool]:
        """One left-padded `model.generate` call; also says whether should_stop cancelled it."""
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        model, p = self._loaded()[0], batch.params
        ids = [prompts[r] for r, _ in batch.rows]
        width = max(map(len, ids))
        input_ids = torch.tensor([[self._pad] * (width - len(x)) + x for x in ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        sampling = {} if p.greedy else {"temperature": p.temperature, "top_p": p.top_p,
                                        "top_k": p.top_k, **NEUTRAL_SAMPLING}
        config = GenerationConfig(
            max_new_tokens=min(p.max_tokens, self.n_ctx - width), do_sample=not p.greedy,
            eos_token_id=[] if p.ignore_eos else self._eos, pad_token_id=self._pad,
            output_logits=p.logprobs is not None, return_dict_in_generate=True,
            **sampling, **NEUTRAL)
        stops = _Stops(self._text, p.stop, width, should_stop)
        t0 = time.perf_counter()
        with _seeded(batch.seed, model.device):
            out = model.generate(input_ids=input_ids.to(model.device),
                                 attention_mask=mask.to(model.device), generation_config=config,
                                 stopping_criteria=StoppingCriteriaList([stops]))
        share = (time.perf_counter() - t0) / len(ids)
        got = [self._completion(b, row, len(ids[b]), p, stops, share)
               for b, row in enumerate(out.sequences[:, width:].tolist())]
        for b, c in enumerate(got):
            if p.logprobs is not None and c.token_ids:
                self._add_logprobs(c, out.logits, b, p.logprobs)
        return got, stops.cancelled

    def _completion(self, b: int, tokens: list[int], prompt_tokens: int, p: SamplingParams,
                    stops: _Stops, seconds: float) -> Completion:
        """Row b's completion, cut after its EOS or stop string (padding follows those)."""
        eos_at = None if p.ignore_eos else \
            next((k + 1 for k, t in enumerate(tokens) if t in self._eos), None)
        stop_at, text, stop_string = stops.ends.get(b, (None, "", None))
        finish: FinishReason = "stop"
        if eos_at is not None and (stop_at is None or eos_at <= stop_at):
            tokens, stop_string = tokens[:eos_at], None
            text = self._text(tokens)
        elif stop_at is not None:
            tokens = tokens[:stop_at]
        else:
            finish = "cancelled" if stops.cancelled else "length"
            text = self._text(tokens)
        return Completion(text, token_ids=tokens, finish_reason=finish,
                          prompt_tokens=prompt_tokens, completion_tokens=len(tokens),
                          stop_string=stop_string, seconds=seconds)

    def _add_logprobs(self, c: Completion, logits: tuple[torch.Tensor, ...], b: int,
                      n_top: int) -> None:
        """Row b's raw logits (a (B, V) tensor a step), log-softmaxed: its tokens' logprobs and
        the n_top most likely tokens at each step."""
        import torch

        rows = torch.stack([step[b] for step in logits[: len(c.token_ids)]]).float()
        rows = rows.log_softmax(-1)  # (T, V)
        index = torch.tensor(c.token_ids, dtype=torch.long, device=rows.device)[:, None]
        c.token_logprobs = rows.gather(1, index)[:, 0].tolist()
        if n_top:
            vals, top = rows.topk(n_top, dim=-1)
            c.top_logprobs = [{self._text([t]): v for t, v in zip(ts, vs, strict=True)}
                              for ts, vs in zip(top.tolist(), vals.tolist(), strict=True)]

    def close(self) -> None:
        """Drop the model and tokenizer (their memory goes once nothing else holds them)."""
        with self._lock:
            self._model = self._tokenizer = None


class _Stops:
    """A stopping criterion (duck-typed: transformers calls it after every step with the ids so
    far): ends a row once its text holds a stop string, and every row once should_stop() says
    so. `ends[row]` = (its tokens up to the one completing the stop, the text before it, it)."""

    def __init__(self, decode: Callable[[list[int]], str], stop: tuple[str, ...], width: int,
                 should_stop: ShouldStop | None) -> None:
        self.decode, self.stop, self.width, self.should_stop = decode, stop, width, should_stop
        self.longest = max(map(len, stop), default=0)
        self.seen: dict[int, int] = {}  # row -> the length of its text at the last step
        self.ends: dict[int, tuple[int, str, str]] = {}
        self.cancelled = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            return torch.ones(len(input_ids), dtype=torch.bool, device=input_ids.device)
        done = [False] * len(input_ids)
        if self.stop:
            for b, row in enumerate(input_ids[:, self.width:].tolist()):
                done[b] = b in self.ends or self._check(b, row)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _check(self, b: int, row: list[int]) -> bool:
        text = self.decode(row)
        start = max(0, self.seen.get(b, 0) - self.longest + 1)  # a stop may straddle two steps
        self.seen[b] = len(text)
        hits = [(k, s) for s in self.stop if (k := text.find(s, start)) >= 0]
        if hits:
            k, s = min(hits)
            self.ends[b] = (len(row), text[:k], s)
        return bool(hits)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's generator for one batch, restoring the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    import torch

    accelerator = device.type != "cpu"
    with torch.random.fork_rng(devices=[device] if accelerator else [],
                               device_type=device.type if accelerator else None):
        torch.manual_seed(seed)
        yield
