"""A process reward model trained on Monte-Carlo step labels (Math-Shepherd, Wang et al. 2024,
arXiv:2312.08935) in TRL's PRM format, so that `prm:PATH` scores with it. The `ponder train
prm` command (ponder/train/commands.py) labels (`ponder.train.prm_labels`) and then trains here.

Holds `encode_row` (a labelled row as token ids and per-token targets), `token_classifier` and
`load_base` (the model to train), `step_loss` and `train_prm` (the loop, and saving).

A token classifier (2 labels) on a causal LM's backbone: the input is TRL PRMTrainer's layout,
[bos] + prompt + (step + separator) per step, and the loss is cross-entropy at the last token of
each separator; `PRMScorer` reads P(label 1) at the same positions.

Where this departs from Math-Shepherd and from TRL (the labels' departures are in
`ponder.train.prm_labels`):
- Math-Shepherd's PRM is a causal LM predicting "+"/"-" at a tag token; this one is TRL's
  token-classification PRM (the format Qwen2.5-Math-PRM also uses).
- TRL 1.16 no longer ships `PRMTrainer` (removed in huggingface/trl#7133), so the loop is
  transformers' `Trainer` with PRMTrainer's tokenisation rewritten here (`encode_row`; right
  truncation, as PRMTrainer's `max_length`) and one loss for both targets: cross-entropy
  against a target P(correct) per step, 0/1 for hard labels (exactly PRMTrainer's loss) or the
  MC fraction for soft ones (Math-Shepherd's soft estimation, SE). Hard is the default.
- Dropout is switched off (PRMTrainer's `disable_dropout=True`).

    ponder train prm gsm8k --data ../shared/data/gsm8k_train.jsonl --limit 50 \\
        --policy qwen-0.5b --samples 4 --rollouts 8 --base smollm2-135m --out runs/prm
    ponder solve "..." --scheme beam@4:scorer=prm:runs/prm/final

torch and transformers are imported inside the functions that train: `import ponder` (and the
CLI) stays light.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, ModelLoadError
from ponder.train.prm_labels import TARGETS, read_dataset
from ponder.train.sft import publish_folder

SEPARATOR = "\n"  # TRL PRMConfig's default step_separator; saved as config.step_separator
IGNORE = -100  # positions without a label (prompt, step text, padding)
LABEL_NAMES = {0: "wrong", 1: "right"}  # PRMScorer reads P(label 1)


# -- training --------------------------------------------------------------------------------------

def encode_row(tokenizer: Any, prompt: str, steps: Sequence[str], targets: Sequence[float], *,
               separator: str = SEPARATOR, max_length: int | None = None
               ) -> tuple[list[int], list[float]]:
    """TRL PRMTrainer's layout, as `PRMScorer` reads it: [bos] + prompt + (step + separator)
    for each step, every piece tokenized on its own; the target of a step sits on the last
    token of its separator, IGNORE elsewhere. Cut on the right to `max_length` (a causal
    backbone's score at a step sees only the tokens before it, so the steps kept are exact)."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    bos = tokenizer.bos_token_id
    ids = ([bos] if bos is not None else []) + encode(prompt)
    labels = [float(IGNORE)] * len(ids)
    sep = encode(separator)
    for step, target in zip(steps, targets, strict=True):
        piece = encode(step.strip()) + sep
        ids += piece
        labels += [float(IGNORE)] * (len(piece) - 1) + [target]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def token_classifier(causal: Any) -> Any:
    """A 2-label token classifier whose backbone is a copy of `causal`'s (the same
    architecture's `...ForTokenClassification`, built from its config; the backbone's weights
    loaded strictly; a fresh linear head). In memory, so a GGUF-dequantised model from
    `load_trainable` needs no trip through disk."""
    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(causal.config)
    config.architectures = None
    config.id2label = dict(LABEL_NAMES)
    config.label2id = {v: k for k, v in LABEL_NAMES.items()}
    try:
        model = AutoModelForTokenClassification.from_config(config, dtype=causal.dtype)
    except ValueError as e:
        raise ModelLoadError(f"transformers has no token-classification model for "
                             f"{config.model_type!r} ({str(e).splitlines()[0]}); use a llama or "
                             "qwen2 base such as smollm2-135m") from None
    backbone = getattr(causal, causal.base_model_prefix)
    try:
        getattr(model, model.base_model_prefix).load_state_dict(backbone.state_dict())
    except RuntimeError as e:
        raise ModelLoadError(f"the base's backbone does not fit {type(model).__name__} "
                             f"({str(e).splitlines()[0]})") from None
    return model


def load_base(base: str | tuple[Any, Any]) -> tuple[Any, Any]:
    """(token classifier, tokenizer) from a model spec (load_trainable's: catalog name, .gguf,
    save_pretrained folder, hub id) or a (model, tokenizer) pair. A causal LM gets a new head
    (`token_classifier`); a token classifier (a PRM saved by `train_prm`) is trained further."""
    from ponder.models.torch_gguf import load_trainable

    if isinstance(base, tuple):
        model, tokenizer = base
    else:
        saved = _saved_architecture(base)
        if saved.endswith("ForTokenClassification"):
            from transformers import AutoModelForTokenClassification, AutoTokenizer
            return (AutoModelForTokenClassification.from_pretrained(base),
                    AutoTokenizer.from_pretrained(base))
        model, tokenizer = load_trainable(base)
    if not type(model).__name__.endswith("ForTokenClassification"):
        model = token_classifier(model)
    return model, tokenizer


def _saved_architecture(spec: str) -> str:
    config = Path(spec).expanduser() / "config.json"
    if not config.is_file():
        return ""
    return str((json.loads(config.read_text()).get("architectures") or [""])[0])


def step_loss(logits: Any, targets: Any) -> Any:
    """Cross-entropy against a target P(correct) at the labelled positions.
    logits: (B, T, 2); targets: (B, T), IGNORE where unlabelled. With 0/1 targets this is the
    token-classification loss PRMTrainer trains with."""
    mask = targets != IGNORE
    logp = logits[mask].float().log_softmax(-1)  # (M, 2)
    p = targets[mask]  # (M,)
    return -(p * logp[:, 1] + (1 - p) * logp[:, 0]).mean()


@dataclass
class Training:
    """What `train_prm` did: the loss at every optimiser step, where the PRM was saved."""

    path: Path
    losses: list[float] = field(default_factory=list)
    rows: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def train_prm(base: str | tuple[Any, Any], dataset_path: Path, out_dir: Path, *,
              steps: int = 100, lr: float = 2e-5, batch_size: int = 4, target: str = "hard",
              separator: str = SEPARATOR, max_length: int = 1024, seed: int = 0,
              log: Callable[[int, float], None] | None = None) -> Training:
    """Train a PRM on a labels file and save it (model, tokenizer, `config.step_separator`) to
    `out_dir`, where `get_scorer("prm:" + out_dir, model)` loads it. The loss of every step is
    logged (`log(step, loss)`) and returned; `training.json` in `out_dir` records the run."""
    if steps < 1:
        raise ConfigError("steps", steps, "use 1 or more optimiser steps")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError("lr", lr, "use a positive learning rate, e.g. 2e-5")
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "use 1 or more rows per step")
    if target not in TARGETS:
        raise ConfigError("target", target, f"use one of {', '.join(TARGETS)}")
    if not separator:
        raise ConfigError("separator", separator, "use a non-empty string, e.g. a newline")
    rows = read_dataset(dataset_path, target)
    from ponder.models.torch_gguf import require_training

    require_training()
    import torch
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(seed)  # the new head's initial weights
    model, tokenizer = load_base(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    for module in model.modules():  # PRMTrainer's disable_dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if not tokenizer(separator, add_special_tokens=False)["input_ids"]:
        raise ConfigError("separator", separator, "the tokenizer turns it into no tokens")
    value = TARGETS[target].value
    encoded = [encode_row(tokenizer, r["prompt"], r["completions"],
                          [value(x) for x in r[TARGETS[target].column]],
                          separator=separator, max_length=max_length) for r in rows]
    examples = [{"input_ids": ids, "targets": t} for ids, t in encoded
                if any(x != IGNORE for x in t)]  # a row cut before its first step teaches nothing
    if not examples:
        raise ConfigError("max_length", max_length, "every row's first step is cut off; use a "
                          "larger max_length")

    losses: list[float] = []

    class LogLoss(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                if log is not None:
                    log(state.global_step, float(logs["loss"]))

    class StepTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            targets = inputs.pop("targets")
            outputs = model(**inputs)
            loss = step_loss(outputs.logits, targets)
            return (loss, outputs) if return_outputs else loss

    out_dir = Path(out_dir)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=steps, learning_rate=lr,
        per_device_train_batch_size=batch_size, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, seed=seed, data_seed=seed,
        remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available())
    trainer = StepTrainer(model=model, args=args, train_dataset=examples,
                          data_collator=Collator(tokenizer.pad_token_id), callbacks=[LogLoss()])
    trainer.remove_callback(PrinterCallback)  # LogLoss reports the loss, one line a step
    trainer.train()

    model.config.step_separator = separator  # PRMScorer reads it back
    work = out_dir.with_name(f".{out_dir.name}.partial")  # out_dir appears whole or not at all
    shutil.rmtree(work, ignore_errors=True)
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    settings = {"base": base if isinstance(base, str) else type(base[0]).__name__,
                "dataset": str(dataset_path), "steps": steps, "lr": lr,
                "batch_size": batch_size, "target": target, "separator": separator,
                "max_length": max_length, "seed": seed}
    result = Training(path=out_dir, losses=losses, rows=len(examples), settings=settings)
    (work / "training.json").write_text(json.dumps(
        {**asdict(result), "path": str(out_dir)}, indent=1) + "\n")
    publish_folder(work, out_dir)
    return result


class Collator:
    """Pads a batch on the right: input_ids with the pad id, targets with IGNORE."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[Mapping[str, list[Any]]]) -> dict[str, Any]:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        targets = torch.full((len(batch), width), float(IGNORE))
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            mask[i, :n] = 1
            targets[i, :n] = torch.tensor(b["targets"])
        return {"input_ids": ids, "attention_mask": mask, "targets": targets}
