"""A process reward model from Monte-Carlo step labels (Math-Shepherd, Wang et al. 2024,
arXiv:2312.08935), trained in TRL's PRM format so that `prm:PATH` scores with it.

1. Sample solutions to training questions with the policy and cut them into steps at the task's
   step delimiter (the steps tree schemes expand).
2. Label each step as Math-Shepherd does (§3.3): from the prefix "steps 1..i" the policy writes
   `rollouts` completions; the step's *soft* label is the fraction that reach the gold answer,
   its *hard* label "any did" (hard estimation, HE) or "at least `threshold` did".
3. Train a token classifier (2 labels) on a causal LM's backbone: the input is TRL PRMTrainer's
   layout, [bos] + prompt + (step + separator) per step, and the loss is cross-entropy at the
   last token of each separator; `PRMScorer` reads P(label 1) at the same positions.

Where this departs from the paper and from TRL:
- Math-Shepherd completes with a separate "completer" model; here the policy that wrote the
  solution completes it (one model, served by ponder's own backend), so a label estimates how
  likely *this* policy is to finish right from that step: the value a search with it needs.
- The last step gets no rollouts: its label is whether the solution's own answer is right.
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
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.core.errors import ConfigError, DataError, ModelLoadError
from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel
from ponder.core.types import Completion, GenerationRequest, Message, SamplingParams

if TYPE_CHECKING:
    from ponder.tasks import Record, Task

SEPARATOR = "\n"  # TRL PRMConfig's default step_separator; saved as config.step_separator
IGNORE = -100  # positions without a label (prompt, step text, padding)
LABEL_NAMES = {0: "wrong", 1: "right"}  # PRMScorer reads P(label 1)


# -- 1. steps --------------------------------------------------------------------------------------

def split_steps(text: str, delimiter: str) -> list[str]:
    """`text` cut after each `delimiter`, every step keeping its delimiter, so that
    "".join(steps) == text. Blank pieces (a doubled delimiter) join the step after them, a
    blank end the last step; a text with no content has no steps."""
    pieces = text.split(delimiter)
    pieces = [p + delimiter for p in pieces[:-1]] + [pieces[-1]]
    steps: list[str] = []
    carry = ""
    for piece in pieces:
        carry += piece
        if carry.strip():
            steps.append(carry)
            carry = ""
    if steps and carry:
        steps[-1] += carry
    return steps


# -- 2. Monte-Carlo labels -------------------------------------------------------------------------

def mc_labels(model: LanguageModel, problem: Problem, solution_steps: Sequence[str], gold: str,
              check: Callable[[str, str], bool], *, rollouts: int = 8, max_tokens: int = 512,
              temperature: float = 0.7, seed: int | None = None) -> list[float]:
    """Soft labels, one per step: the fraction of `rollouts` completions from "steps 1..i" whose
    answer checks against `gold` (Math-Shepherd's MC estimate of step i).

    Every step but the last is continued, all in one batched `model.generate` call: request i
    is the raw prefix chat prompt + steps[:i+1] (the steps as written, delimiters included),
    with n = rollouts. The last step is not continued: its label is 1.0 if the solution's own
    answer is right, else 0.0. A rollout's answer is extracted from prefix + rollout, the whole
    solution it completes; a rollout with no answer counts as wrong."""
    if rollouts < 1:
        raise ConfigError("rollouts", rollouts, "use 1 or more completions per step")
    steps = list(solution_steps)
    if not steps:
        return []
    prompt = model.render_chat(problem.messages)
    prefixes = ["".join(steps[:i + 1]) for i in range(len(steps) - 1)]
    params = SamplingParams(n=rollouts, temperature=temperature, max_tokens=max_tokens,
                            seed=seed)
    outs = model.generate([GenerationRequest(prefix=prompt + p, params=params)
                           for p in prefixes]) if prefixes else []

    def right(text: str) -> bool:
        answer = problem.extract(text)
        return answer is not None and check(answer, gold)

    soft = [sum(right(p + c.text) for c in cs) / len(cs)
            for p, cs in zip(prefixes, outs, strict=True)]
    return [*soft, 1.0 if right("".join(steps)) else 0.0]


def hard_labels(soft: Sequence[float], threshold: float | None = None) -> list[bool]:
    """Hard labels from soft ones: any rollout right (`threshold=None`, Math-Shepherd's HE), or
    at least `threshold` of them right."""
    if threshold is None:
        return [s > 0 for s in soft]
    return [s >= threshold for s in soft]


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0 < threshold <= 1:
        raise ConfigError("threshold", threshold, "use a fraction in (0, 1], or leave it unset "
                          "for Math-Shepherd's rule: right if any rollout is")


# -- the labelled data set -------------------------------------------------------------------------

@dataclass
class LabelStats:
    """What labelling cost and found. `generations` counts solutions plus rollouts."""

    problems: int = 0
    solutions: int = 0
    right: int = 0  # solutions whose own answer is right
    steps: int = 0
    positive: int = 0  # steps with a True hard label
    generations: int = 0
    completion_tokens: int = 0  # of solutions and rollouts
    seconds: float = 0.0


def build_dataset(task: Task, records: Sequence[Record], policy: LanguageModel, *, out: Path,
                  samples_per_problem: int = 4, rollouts: int = 8,
                  threshold: float | None = None, max_tokens: int = 512,
                  temperature: float = 0.7, seed: int | None = 0,
                  progress: Callable[[str], None] | None = None) -> LabelStats:
    """Sample, cut and label solutions; write them to `out` (JSONL, written atomically).

    One row per solution, in TRL's stepwise-supervision format: `prompt` (the question),
    `completions` (the steps, stripped), `labels` (bools, `hard_labels`), plus `soft_labels`
    (the MC fractions), `id`, `sample`, `answer` and `gold`. Records without a gold answer are
    skipped. Cost: samples × (1 + (steps - 1) × rollouts) generations per problem."""
    if samples_per_problem < 1:
        raise ConfigError("samples", samples_per_problem, "use 1 or more solutions per problem")
    if rollouts < 1:
        raise ConfigError("rollouts", rollouts, "use 1 or more completions per step")
    check_threshold(threshold)
    stats, rows, start = LabelStats(), [], time.perf_counter()
    metered = Metered(policy)
    for record in records:
        if record.gold is None:
            continue
        problem = task.problem(record)
        params = SamplingParams(n=samples_per_problem, temperature=temperature,
                                max_tokens=max_tokens, seed=seed)
        [solutions] = metered.generate([GenerationRequest(messages=problem.messages,
                                                          params=params)])
        stats.problems += 1
        for j, solution in enumerate(solutions):
            steps = split_steps(solution.text, problem.step_delimiter)
            if not steps:
                continue
            soft = mc_labels(metered, problem, steps, record.gold, task.check,
                             rollouts=rollouts, max_tokens=max_tokens, temperature=temperature,
                             seed=seed)
            hard = hard_labels(soft, threshold)
            stats.solutions += 1
            stats.right += int(soft[-1] == 1.0)
            stats.steps += len(steps)
            stats.positive += sum(hard)
            rows.append({"id": record.id, "sample": j, "prompt": problem.question,
                         "completions": [s.strip() for s in steps], "labels": hard,
                         "soft_labels": soft, "answer": problem.extract(solution.text),
                         "gold": record.gold})
        stats.generations, stats.completion_tokens = metered.generations, metered.tokens
        if progress is not None:
            progress(f"{stats.problems}/{len(records)} {record.id}: {stats.solutions} "
                     f"solutions, {stats.steps} steps, {stats.generations} generations, "
                     f"{stats.completion_tokens} tokens")
    stats.seconds = time.perf_counter() - start
    if not rows:
        raise DataError("no solution was labelled: the records need gold answers and the "
                        "policy must write something; check --data and --policy")
    write_jsonl_atomic(out, rows)
    return stats


class Metered:
    """The policy, counting the completions and tokens it generates (the cost of labelling)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model, self.name = model, model.name
        self.generations = self.tokens = 0

    def generate(self, requests: Sequence[GenerationRequest], **kwargs: Any
                 ) -> list[list[Completion]]:
        outs = self.model.generate(requests, **kwargs)
        for completions in outs:
            self.generations += len(completions)
            self.tokens += sum(c.completion_tokens for c in completions)
        return outs

    def render_chat(self, messages: Sequence[Message], *,
                    add_generation_prompt: bool = True) -> str:
        return self.model.render_chat(messages, add_generation_prompt=add_generation_prompt)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def close(self) -> None:
        self.model.close()


def write_jsonl_atomic(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """A reader never sees half a file: write a temporary sibling, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_dataset(path: Path, target: str) -> list[dict[str, Any]]:
    """The rows of a labels file, checked: a bad row is a one-line DataError naming it."""
    from ponder.tasks import read_jsonl

    rows = list(read_jsonl(path))
    if not rows:
        raise DataError(f"{path} holds no rows; label some solutions first")
    for number, row in enumerate(rows, 1):
        steps, labels = row.get("completions"), row.get(TARGETS[target].column)
        if (not isinstance(row.get("prompt"), str) or not isinstance(steps, list) or not steps
                or not isinstance(labels, list) or len(labels) != len(steps)):
            raise DataError(f"{path} row {number} is not a PRM row: it needs a prompt, a "
                            f"non-empty completions list and {TARGETS[target].column} of the "
                            "same length")
    return rows


# -- 3. training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What the loss pulls P(correct) at a step towards."""

    column: str  # the data set column it reads
    value: Callable[[Any], float]


TARGETS = {
    "hard": Target("labels", lambda label: float(bool(label))),  # TRL PRMTrainer's loss
    "soft": Target("soft_labels", float),  # Math-Shepherd's soft estimation
}


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
    from ponder.train.models import load_trainable

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
    from ponder.train.models import require_training
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
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    settings = {"base": base if isinstance(base, str) else type(base[0]).__name__,
                "dataset": str(dataset_path), "steps": steps, "lr": lr,
                "batch_size": batch_size, "target": target, "separator": separator,
                "max_length": max_length, "seed": seed}
    result = Training(path=out_dir, losses=losses, rows=len(examples), settings=settings)
    (out_dir / "training.json").write_text(json.dumps(
        {**asdict(result), "path": str(out_dir)}, indent=1) + "\n")
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


# -- the command -----------------------------------------------------------------------------------

def prm_command(
    task: Annotated[str, typer.Argument(help="Task whose questions, prompt and answer checks "
                                        "to use: gsm8k, math500, ...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: labels.jsonl and the "
                                      "PRM in final/.")] = Path("runs/prm"),
    data: Annotated[Path | None, typer.Option(help="Training questions: a JSONL file (or a "
                                              "directory with the task's file). Default: the "
                                              "task's hub copy.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use the first N questions.")] = 50,
    policy: Annotated[str, typer.Option(help="Model that writes and completes solutions "
                                        "(catalog name, .gguf, URL#model).")] = "default",
    policy_arg: Annotated[list[str] | None, typer.Option(
        "--policy-arg", help="key=value for the policy's backend (repeatable), e.g. "
        "n_ctx=8192.")] = None,
    samples: Annotated[int, typer.Option(help="Solutions sampled per question.")] = 4,
    rollouts: Annotated[int, typer.Option(help="Completions per step (Math-Shepherd's "
                                          "N).")] = 8,
    threshold: Annotated[float | None, typer.Option(
        help="A step is right if at least this fraction of its rollouts is. Default: if any "
        "is (Math-Shepherd's hard estimation).")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of solutions and "
                                               "rollouts.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Tokens per solution or rollout.")] = 512,
    seed: Annotated[int, typer.Option(help="Sampling and training seed.")] = 0,
    base: Annotated[str, typer.Option(help="Causal LM the PRM starts from (catalog name, "
                                      ".gguf, folder, hub id), or a PRM to train on.")]
    = "smollm2-135m",
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 100,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-5,
    batch_size: Annotated[int, typer.Option(help="Rows per optimiser step.")] = 4,
    target: Annotated[str, typer.Option(help="hard: the bool labels (TRL's PRM loss); soft: "
                                        "the MC fractions.")] = "hard",
    max_length: Annotated[int, typer.Option(help="Tokens per training row (cut on the "
                                            "right).")] = 1024,
    separator: Annotated[str | None, typer.Option(help="Text after each step in the PRM's "
                                                  "input. Default: the task's step delimiter "
                                                  "(a blank line for most tasks).")] = None,
    labels_only: Annotated[bool, typer.Option("--labels-only", help="Write labels.jsonl and "
                                              "stop.")] = False,
    dataset: Annotated[Path | None, typer.Option(help="Train on this labels file instead of "
                                                 "labelling.")] = None,
) -> None:
    """Train a process reward model from Monte-Carlo step labels (Math-Shepherd)."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)

    def say(line: str) -> None:
        err.print(line, markup=False, soft_wrap=True)

    if labels_only and dataset is not None:
        raise ConfigError("dataset", str(dataset), "--labels-only labels; --dataset skips "
                          "labelling: give one of them")
    check_threshold(threshold)
    if target not in TARGETS:
        raise ConfigError("target", target, f"use one of {', '.join(TARGETS)}")
    from ponder.tasks import get_task

    separator = separator or get_task(task).step_delimiter
    if dataset is None:
        dataset = out / "labels.jsonl"
        stats = label_task(task, data, limit, policy, policy_arg or [], dataset,
                           samples=samples, rollouts=rollouts, threshold=threshold,
                           temperature=temperature, max_tokens=max_tokens, seed=seed,
                           say=say)
        say(f"labels → {dataset}: {stats.solutions} solutions ({stats.right} right), "
            f"{stats.steps} steps ({stats.positive} labelled right), {stats.generations} "
            f"generations, {stats.completion_tokens} tokens in {stats.seconds:.0f} s")
        if labels_only:
            return
    from ponder.train.models import require_training

    require_training()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the loss lines are the progress
    training = train_prm(base, dataset, out / "final", steps=steps, lr=lr,
                         batch_size=batch_size, target=target, separator=separator,
                         max_length=max_length, seed=seed,
                         log=lambda step, loss: say(f"step {step}/{steps} loss {loss:.4f}"))
    say(f"PRM → {training.path} (use it as scorer=prm:{training.path})")


def label_task(task_name: str, data: Path | None, limit: int | None, policy: str,
               policy_args: Sequence[str], out: Path, *, samples: int, rollouts: int,
               threshold: float | None, temperature: float, max_tokens: int, seed: int,
               say: Callable[[str], None]) -> LabelStats:
    """Load the task's records and the policy, label, close the policy (freeing its memory
    before training)."""
    from ponder.eval.runner import parse_model_args
    from ponder.models.catalog import load_model
    from ponder.tasks import get_task

    if limit is not None and limit < 1:
        raise ConfigError("limit", limit, "use 1 or more questions")
    task = get_task(task_name)
    records = task.load(data, limit=limit)
    model = load_model(policy, **parse_model_args(policy_args))
    try:
        return build_dataset(task, records, model, out=out, samples_per_problem=samples,
                             rollouts=rollouts, threshold=threshold, max_tokens=max_tokens,
                             temperature=temperature, seed=seed, progress=say)
    finally:
        model.close()
