"""Trained reward models as scorers: process reward models (PRMs) and outcome ones (ORMs).

A PRM reads a question and a solution cut into steps and gives each step the probability that
it is correct; as a scorer it returns each path's *last* step score (tree.py aggregates a path's
steps itself), and `step_scores` returns them all. Three formats, picked by `format=` or read
off the saved config's architecture:

- "token-classification": TRL's `PRMTrainer` (an AutoModelForTokenClassification with 2 labels)
  and Qwen2.5-Math-PRM. Input ids = [bos] + prompt + (step + separator) for each step, every
  piece tokenized on its own exactly as TRL's `PRMTrainer.tokenize_row` does; a step's score is
  softmax(logits)[1] at the last token of its separator ("\\n" by TRL's default, "<extra_0>"
  for Qwen2.5-Math-PRM, which also wraps the text in its chat template).
- "causal-lm-tags": Math-Shepherd (peiyi9979/math-shepherd-mistral-7b-prm), a causal LM.
  Text = f"{question} {step_1} ки\\n{step_2} ки..."; a step's score is the softmax over the
  logits of the good and bad tokens ("+", "-") at its tag token, taking the good one.
- "sequence-classification": an ORM. The whole (question, completion) gets one score:
  sigmoid of the logit for one label, softmax(logits)[1] for two.

Notes:
- The question is `problems[i].question` when schemes pass `problems=`, else `prompts[i]` as is.
  Steps come from `steps=` (tree.py), else the completion cut at the problem's step delimiter;
  each step is stripped of surrounding whitespace, the format adds its own separator.
- A model saved with a `step_separator` attribute in its config uses it (a training script sets
  `model.config.step_separator` before `save_pretrained`); `separator=` overrides both.
- Longer than `max_length` tokens: tokens are cut from the left of the solution (its earliest
  steps), then from the left of the prompt, so the last step is always read. Steps whose
  separator was cut get no score: `step_scores` then lists fewer scores than there were steps.
- Batches are padded on the right with an attention mask, so a pair scores the same alone and
  in a batch. transformers and torch are imported when a scorer is built, never by
  `import ponder`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, ModelLoadError, ModelNotFound
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate

FORMATS = ("token-classification", "causal-lm-tags", "sequence-classification")
LOADERS = {  # format -> the transformers auto class that loads it
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm-tags": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
}
# Architecture name endings -> format, for `format=None`.
ARCHITECTURES = (
    ("ForTokenClassification", "token-classification"),
    ("ForProcessRewardModel", "token-classification"),
    ("ForSequenceClassification", "sequence-classification"),
    ("ForCausalLM", "causal-lm-tags"),
    ("LMHeadModel", "causal-lm-tags"),
)
# Qwen2.5-Math-PRM: custom code (`trust_remote_code=True`), its own separator and chat prompt.
QWEN_PRM = "Qwen2ForProcessRewardModel"
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
_MARK = "\x00ponder-solution\x00"  # stands for the solution when a chat template is rendered
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass
class Row:
    """One encoded pair: ids = prefix + body + suffix, the body being the solution; `marks` are
    the body positions whose logits give the step scores, one per step, in order."""

    prefix: list[int]
    body: list[int]
    suffix: list[int]
    marks: list[int]

    def fit(self, max_length: int) -> tuple[list[int], list[int]]:
        """The ids and absolute mark positions after cutting from the left of the body (keeping
        its last token, where the last step's mark is), then from the left of the prefix."""
        over = len(self.prefix) + len(self.body) + len(self.suffix) - max_length
        cut_body = min(max(over, 0), max(len(self.body) - 1, 0))
        cut_prefix = min(max(over - cut_body, 0), len(self.prefix))
        if over - cut_body - cut_prefix > 0:
            raise ConfigError("max_length", max_length,
                              "use a larger max_length: the template around the solution alone "
                              "is longer")
        prefix, body = self.prefix[cut_prefix:], self.body[cut_body:]
        marks = [len(prefix) + m - cut_body for m in self.marks if m >= cut_body]
        return prefix + body + self.suffix, marks


class PRMScorer:
    """A trained PRM or ORM loaded with transformers. `path` is a directory saved with
    `save_pretrained` (model and tokenizer) or, for users who are online, a hub id."""

    needs_logprobs = False

    def __init__(self, path: str | Path, *, format: str | None = None,
                 separator: str | None = None, good_token: str = "+", bad_token: str = "-",
                 step_tag: str = "ки", chat: bool | None = None, system_prompt: str | None = None,
                 max_length: int = 4096, batch_size: int = 8, device: str = "cpu",
                 dtype: str = "float32", trust_remote_code: bool = False) -> None:
        if format is not None and format not in FORMATS:
            raise ConfigError("format", format, f"use one of {', '.join(FORMATS)}")
        if max_length < 2:
            raise ConfigError("max_length", max_length, "use 2 tokens or more")
        if batch_size < 1:
            raise ConfigError("batch_size", batch_size, "use 1 or more")
        try:
            import torch
            import transformers
        except ImportError as e:
            raise ModelNotFound(f"the prm scorer needs torch and transformers ({e}); "
                                "install them with: pip install 'ponder[prm]'") from None
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ConfigError("dtype", dtype, "use a torch dtype name: float32, bfloat16, ...")
        self.torch = torch
        self.path = str(path)
        self.name = f"{'orm' if format == 'sequence-classification' else 'prm'}:{path}"
        config = _load(transformers.AutoConfig, self.path, trust_remote_code)
        arch = (getattr(config, "architectures", None) or [""])[0]
        qwen = arch == QWEN_PRM
        self.format = format or _detect(arch, self.path)
        self.tokenizer = _load(transformers.AutoTokenizer, self.path, trust_remote_code)
        remote = qwen and self.format == "token-classification"  # its class is its own code
        loader = getattr(transformers, "AutoModel" if remote else LOADERS[self.format])
        model = _load(loader, self.path, trust_remote_code)
        self.model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
        self.device = device
        self.separator = (separator or getattr(config, "step_separator", None)
                          or ("<extra_0>" if qwen else "\n"))
        self.chat = qwen if chat is None else chat
        self.system_prompt = system_prompt if system_prompt is not None else (
            QWEN_PRM_SYSTEM if qwen else None)
        self.step_tag = step_tag
        self.max_length, self.batch_size = max_length, batch_size
        self.pad_id = _pad_id(self.model.config, self.tokenizer)
        if self.format == "sequence-classification":
            self.model.config.pad_token_id = self.pad_id  # its pooling finds the last real token
        if self.format == "causal-lm-tags":
            self.tag_id = self._token_id("step_tag", step_tag)
            self.candidates = [self._token_id("good_token", good_token),
                               self._token_id("bad_token", bad_token)]
            if self.candidates[0] == self.candidates[1]:
                raise ConfigError("bad_token", bad_token, "use a token other than good_token")
        if self.format == "token-classification" and not self._encode(self.separator):
            raise ConfigError("separator", self.separator,
                              "use a separator the model's tokenizer turns into tokens")

    # -- the scorer ------------------------------------------------------------------------------

    def score(self, candidates: Sequence[Candidate]) -> list[float | None]:
        """The score of each candidate's last step (None where it has no step)."""
        scores = self.step_scores([c.prompt for c in candidates], [c.text for c in candidates],
                                  steps=[c.steps for c in candidates],
                                  problems=[c.problem for c in candidates])
        return [s[-1] if s else None for s in scores]

    def step_scores(self, prompts: Sequence[str], completions: Sequence[str], *,
                    steps: Sequence[Sequence[str]] | None = None,
                    problems: Sequence[Problem] | None = None) -> list[list[float]]:
        """Every step's score, per completion, in order (an ORM gives one per completion)."""
        questions = [p.question for p in problems] if problems is not None else list(prompts)
        if steps is None:
            delimiters = [p.step_delimiter for p in problems] if problems else ["\n\n"] * len(
                completions)
            steps = [c.split(d) for c, d in zip(completions, delimiters, strict=True)]
        rows = [self._row(q, [s.strip() for s in path if s.strip()], c)
                for q, path, c in zip(questions, steps, completions, strict=True)]
        out: list[list[float]] = []
        for start in range(0, len(rows), self.batch_size):
            out.extend(self._forward(rows[start:start + self.batch_size]))
        return out

    # -- encoding: one function per format -------------------------------------------------------

    def _row(self, question: str, steps: list[str], completion: str) -> Row | None:
        if self.format == "sequence-classification":
            return self._whole(question, completion, "")
        if not steps:
            return None
        if self.format == "causal-lm-tags":
            question = question.replace(self.step_tag, "")
            tagged = [f"{s.replace(self.step_tag, '')} {self.step_tag}" for s in steps]
            row = self._whole(question + " ", self.separator.join(tagged), "")
            row.marks = [i for i, t in enumerate(row.body) if t == self.tag_id]
            return row
        return self._pieces(question, steps)

    def _pieces(self, question: str, steps: list[str]) -> Row:
        """TRL's layout: every step and separator tokenized on its own; a step's mark is the last
        token of the separator after it."""
        if self.chat:
            head, tail = self._template(question)
            prefix, suffix = self._encode(head), self._encode(tail)
        else:
            bos = self.tokenizer.bos_token_id
            prefix, suffix = ([bos] if bos is not None else []) + self._encode(question), []
        sep = self._encode(self.separator)
        body: list[int] = []
        marks: list[int] = []
        for step in steps:
            body += self._encode(step) + sep
            marks.append(len(body) - 1)
        return Row(prefix, body, suffix, marks)

    def _whole(self, head: str, body: str, tail: str) -> Row:
        """The text tokenized at once (special tokens added), split back into prompt, solution
        and the rest by character offsets: a token overlapping the solution belongs to it."""
        if self.chat:
            head, tail = self._template(head.strip())
            enc = self.tokenizer(head + body + tail, add_special_tokens=False,
                                 return_offsets_mapping=True)
        else:
            enc = self.tokenizer(head + body + tail, return_offsets_mapping=True)
        ids, spans = list(enc["input_ids"]), enc["offset_mapping"]
        a, b = len(head), len(head) + len(body)
        inside = [k for k, (s, e) in enumerate(spans) if s < b and e > a]
        first, last = (inside[0], inside[-1]) if inside else (len(ids), len(ids) - 1)
        return Row(ids[:first], ids[first:last + 1], ids[last + 1:], [])

    def _template(self, question: str) -> tuple[str, str]:
        """The chat template's text before and after the assistant's turn."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": _MARK}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=False)
        if not isinstance(text, str) or _MARK not in text:
            raise ConfigError("chat", self.chat, "this tokenizer's chat template does not show "
                              "the assistant's turn; use chat=False")
        head, _, tail = text.partition(_MARK)
        return head, tail

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _token_id(self, param: str, token: str) -> int:
        """The id of a one-token string (its last id, as Math-Shepherd's reference code reads
        the tag, so a tokenizer that adds a word-start piece still works)."""
        ids = self._encode(token)
        if not ids:
            raise ConfigError(param, token, "use a string the model's tokenizer has a token for")
        return ids[-1]

    # -- the forward pass: one score function per format -----------------------------------------

    def _forward(self, rows: Sequence[Row | None]) -> list[list[float]]:
        torch = self.torch
        fitted = [row.fit(self.max_length) if row is not None else None for row in rows]
        live = [f for f in fitted if f is not None]
        if not live:
            return [[] for _ in rows]
        width = max(len(ids) for ids, _ in live)
        input_ids = torch.full((len(live), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(live), width), dtype=torch.long)
        for i, (ids, _) in enumerate(live):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            mask[i, :len(ids)] = 1
        with torch.no_grad():
            out = self.model(input_ids=input_ids.to(self.device),
                             attention_mask=mask.to(self.device))
        logits = (out.logits if hasattr(out, "logits") else out[0]).float().cpu()
        read = SCORES[self.format]
        scores = iter([read(self, logits[i], marks) for i, (_, marks) in enumerate(live)])
        return [next(scores) if f is not None else [] for f in fitted]


def _token_classes(scorer: PRMScorer, logits: Any, marks: list[int]) -> list[float]:
    """logits: (T, labels); P(label 1) at each mark (sigmoid for a single label)."""
    at = logits[marks]
    probs = at[:, 0].sigmoid() if at.shape[-1] == 1 else at.softmax(-1)[:, 1]
    return [float(p) for p in probs]


def _tags(scorer: PRMScorer, logits: Any, marks: list[int]) -> list[float]:
    """logits: (T, vocab); P(good) against P(bad) at each tag."""
    return [float(p) for p in logits[marks][:, scorer.candidates].softmax(-1)[:, 0]]


def _sequence(scorer: PRMScorer, logits: Any, marks: list[int]) -> list[float]:
    """logits: (labels,), the model's own pooling at the last real token."""
    return [float(logits[0].sigmoid() if logits.shape[-1] == 1 else logits.softmax(-1)[1])]


SCORES: dict[str, Callable[[PRMScorer, Any, list[int]], list[float]]] = {
    "token-classification": _token_classes,
    "causal-lm-tags": _tags,
    "sequence-classification": _sequence,
}


# -- loading ------------------------------------------------------------------------------------

def _load(auto_class: Any, path: str, trust_remote_code: bool) -> Any:
    """`auto_class.from_pretrained(path)` with one-line errors: missing -> ModelNotFound, there
    but unreadable -> ModelLoadError."""
    local = Path(path).expanduser()
    looks_local = path.startswith(("/", ".", "~")) or local.exists() or not _HUB_ID.match(path)
    if looks_local and not (local / "config.json").is_file():
        what = "no such directory" if not local.exists() else "no config.json in it"
        raise ModelNotFound(f"cannot load reward model {path!r}: {what}; pass a directory "
                            "written by save_pretrained (config, weights and tokenizer) or a "
                            "Hugging Face hub id")
    try:
        return auto_class.from_pretrained(str(local) if looks_local else path,
                                          trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "trust_remote_code" in str(e):
            raise ModelLoadError(f"reward model {path!r} runs its own code: pass "
                                 "trust_remote_code=True if you trust it") from None
        if not looks_local:
            raise ModelNotFound(f"cannot load reward model {path!r} from the hub ({reason}); "
                                "download it where you are online and pass its directory") from None
        raise ModelLoadError(f"cannot load reward model {path!r} ({reason}); save it again with "
                             "save_pretrained") from None


def _detect(architecture: str, path: str) -> str:
    for ending, format in ARCHITECTURES:
        if architecture.endswith(ending):
            return format
    raise ConfigError("format", None, f"cannot tell the format of {path!r} from its architecture "
                      f"{architecture or '(none)'!r}; pass one of {', '.join(FORMATS)}")


def _pad_id(config: Any, tokenizer: Any) -> int:
    for pad in (getattr(config, "pad_token_id", None), tokenizer.pad_token_id,
                tokenizer.eos_token_id):
        if isinstance(pad, int):
            return pad
    return 0
