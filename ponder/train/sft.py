"""Supervised fine-tuning with TRL's SFTTrainer: full or LoRA, loss on the assistant reply only.

    outcome = sft("qwen-0.5b", "runs/d/dataset.jsonl", "runs/d/student", lora=True)

Holds `sft` (train a student on chat examples, save it whole or not at all), `SFTOutcome` (what
it did), `check_sft_args` (its settings, checked before any work), and `write_dataset` /
`read_dataset` (the chat examples it trains on, written atomically and read back checked;
`ponder.train.distill` collects them). Then helpers
other trainers (GRPO, PRM) can share: `step_log_callback` (a Trainer callback appending every log
to a JSONL file and echoing one line a step), `publish_folder` (move a finished model folder into
place atomically).

Choices where TRL leaves room:
  * Loss on the assistant reply only, for any chat template: TRL 1.16's `assistant_only_loss`
    needs `{% generation %}` markers, which it can patch in only for templates it knows (Qwen2.5's
    exact text, Llama 3, ...; not SmolLM2's), so instead each example is given to TRL as a
    conversational prompt-completion pair (prompt = system + user, completion = the reply).
    TRL then masks every token of the templated prompt and trains on the reply and its
    end-of-turn token (its `completion_only_loss`).
  * LoRA (rank `lora_r` on all linear layers) is merged into the weights before saving, so the
    saved student is a plain model that loads without peft.
  * A thinking student (`think=True`, data in `ponder distill --format think`'s format): its
    chat template gets a generation prompt that opens the thinking (`thinking_template`), as
    DeepSeek-R1's does, so that ponder's reasoning parser reads it as deepseek-r1 once loaded
    (from the folder or exported to GGUF). That `<think>\n` is then part of the prompt, and the
    reply only continues it: each example is tokenized here (`masked_example`), the prompt with
    its opened thinking labelled -100, the loss on the reasoning, the reply and the end of turn.

Nothing here imports torch, transformers or TRL at module import; `sft` does.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, DataError
from ponder.core.files import atomic_file, fsync_dir

DEFAULT_LR = {False: 1e-5, True: 1e-4}  # full fine-tuning, LoRA


@dataclass
class SFTOutcome:
    out_dir: Path
    examples: int  # trained on
    dropped: int  # examples whose prompt alone filled max_length
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step
    seconds: float = 0.0
    lora: bool = False


def sft(student: Any, dataset_path: str | Path, out_dir: str | Path, *,
        tokenizer: Any = None, lora: bool = False, lora_r: int = 16, lora_alpha: int = 32,
        epochs: float = 1.0, lr: float | None = None, batch_size: int = 4,
        grad_accum: int = 1, max_length: int = 1024, max_steps: int | None = None,
        seed: int = 0, think: bool = False, echo: Callable[[str], None] | None = None,
        trainer_args: Mapping[str, Any] | None = None) -> SFTOutcome:
    """Fine-tune `student` (a spec for `load_trainable`, or a model with its `tokenizer`) on the
    chat examples at `dataset_path`; save the plain HF model and tokenizer into `out_dir`.

    Loss is on the assistant reply only (module docstring). Loss and learning rate of every
    step go to `out_dir/train_log.jsonl` and to `echo` (stderr by default). `lr` defaults to
    1e-5 for full fine-tuning, 1e-4 for LoRA (rank `lora_r` on all linear layers; the adapter is
    merged before saving). `trainer_args` override the SFTConfig settings made here (e.g.
    `warmup_ratio`, `activation_checkpointing=True`). `think`: the replies are in the thinking
    format, and the student is given a template that opens the thinking (module docstring).
    Runs on the GPU where there is one, else CPU; under `accelerate launch` on every process,
    with one process saving. The result appears in `out_dir` whole or not at all: training and
    saving happen in `.<name>.partial` beside it, renamed into place at the end (an existing
    `out_dir` is replaced)."""
    from ponder.models.torch_gguf import load_trainable, require_training

    require_training()
    check_sft_args(lora_r=lora_r, epochs=epochs, lr=lr, batch_size=batch_size,
                    grad_accum=grad_accum, max_length=max_length, max_steps=max_steps)
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    if isinstance(student, str):
        model, tokenizer = load_trainable(student)
    elif tokenizer is None:
        raise ConfigError("tokenizer", None, "pass the student's tokenizer with a model object")
    else:
        model = student
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("student", getattr(model, "name_or_path", "model"),
                          "the student's tokenizer has no chat template; use an instruct model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = read_dataset(dataset_path)
    if think:
        _check_thinking(rows, dataset_path)
        tokenizer.chat_template = thinking_template(tokenizer.chat_template)
    dataset, dropped = _prompt_completion(rows, tokenizer, max_length, masked=think)

    work = out_dir.with_name(f".{out_dir.name}.partial")
    trainer = _trainer(model, tokenizer, dataset, work, lora=lora, lora_r=lora_r,
                       lora_alpha=lora_alpha, epochs=epochs,
                       lr=lr if lr is not None else DEFAULT_LR[lora], batch_size=batch_size,
                       grad_accum=grad_accum, max_length=max_length, max_steps=max_steps,
                       seed=seed, echo=echo, trainer_args=trainer_args or {})
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trained = trainer.model.merge_and_unload() if lora else trainer.model
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    outcome = SFTOutcome(out_dir, examples=len(dataset), dropped=dropped,
                         steps=trainer.state.global_step, losses=losses, seconds=seconds,
                         lora=lora)
    if trainer.is_world_process_zero():
        shutil.rmtree(work / "_trainer", ignore_errors=True)
        trained.save_pretrained(work)
        tokenizer.save_pretrained(work)
        info = {"dataset": str(Path(dataset_path).resolve()), "lora": lora, "lora_r": lora_r,
                "lora_alpha": lora_alpha, "epochs": epochs, "lr": trainer.args.learning_rate,
                "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length,
                "max_steps": max_steps, "seed": seed, "think": think, "examples": len(dataset),
                "dropped": dropped, "steps": outcome.steps, "losses": losses,
                "seconds": round(seconds, 2)}
        (work / "distill.json").write_text(json.dumps(info, indent=1) + "\n")
        publish_folder(work, out_dir)
    trainer.accelerator.wait_for_everyone()
    return outcome


def check_sft_args(*, lora_r: int, epochs: float, lr: float | None, batch_size: int,
                   grad_accum: int, max_length: int, max_steps: int | None) -> None:
    """`sft`'s settings, checked before any work (the command checks them before collecting)."""
    checks = [("lora_r", lora_r, lora_r >= 1, "use a rank of at least 1"),
              ("epochs", epochs, epochs > 0, "use a positive number of epochs"),
              ("lr", lr, lr is None or lr > 0, "use a positive learning rate"),
              ("batch_size", batch_size, batch_size >= 1, "use at least 1"),
              ("grad_accum", grad_accum, grad_accum >= 1, "use at least 1"),
              ("max_length", max_length, max_length >= 8, "use at least 8 tokens"),
              ("max_steps", max_steps, max_steps is None or max_steps >= 1,
               "use at least 1, or leave it unset to train for --epochs")]
    for name, value, ok, fix in checks:
        if not ok:
            raise ConfigError(name, value, fix)


DATASET_FORMATS = (".jsonl", ".json", ".parquet")


def write_dataset(examples: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write examples as JSONL (`.jsonl`/`.json`, one object a line) or Parquet (`.parquet`), so
    that a reader never sees half a file: a temporary file beside it, fsync, rename."""
    path = Path(path)
    if path.suffix not in DATASET_FORMATS:
        raise ConfigError("dataset path", str(path),
                          f"end it in one of {', '.join(DATASET_FORMATS)}")
    rows = [dict(e) for e in examples]
    with atomic_file(path, "wb") as fh:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), fh)
        else:
            for row in rows:
                fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
    return path


def read_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Examples from a file `write_dataset` wrote (or any chat
    JSONL/Parquet with `messages` ending in an assistant reply); a bad row is a one-line
    DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no dataset file at {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    else:
        from ponder.tasks import read_jsonl

        rows = list(read_jsonl(path))
    for number, row in enumerate(rows, 1):
        messages = row.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 \
                or not all(isinstance(m, dict) and {"role", "content"} <= set(m)
                           for m in messages) \
                or messages[-1]["role"] != "assistant":
            raise DataError(f"{path} example {number} has no chat 'messages' list ending in an "
                            "assistant reply; write it with `ponder distill --dataset-only`")
    return rows


def _prompt_completion(rows: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int, *,
                       masked: bool = False) -> tuple[Any, int]:
    """Chat examples as TRL conversational prompt-completion pairs, dropping those whose prompt
    alone fills `max_length` (no reply token would be left to learn from). Replies longer than
    the rest are truncated at the end, as TRL does. Where any example has `forced` spans in its
    reply (text ponder inserted), every example is tokenized here instead, into input ids and
    labels that leave the prompt and the forced tokens out of the loss (`masked_example`), as
    they are with `masked` (a thinking student, whose prompt ends inside the reply)."""
    from datasets import Dataset

    masked = masked or any(row.get("forced") for row in rows)
    pairs, dropped = [], 0
    for row in rows:
        *prompt, reply = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, Mapping) else ids
        if len(ids) >= max_length:
            dropped += 1
            continue
        pairs.append(masked_example(prompt, reply, row.get("forced") or [], tokenizer,
                                    max_length) if masked
                     else {"prompt": prompt, "completion": [reply]})
    if not pairs:
        raise DataError(f"no example left to train on ({len(rows)} in the dataset, {dropped} "
                        f"with prompts of max_length={max_length} tokens or more); raise "
                        "--max-length or collect more examples")
    return Dataset.from_list(pairs), dropped


def masked_example(prompt: Sequence[Mapping[str, str]], reply: Mapping[str, str],
                   forced: Sequence[Sequence[int]], tokenizer: Any,
                   max_length: int) -> dict[str, list[int]]:
    """One chat example as `input_ids` and `labels` (TRL takes both as they are): the labels are
    -100 on the prompt and on every token that overlaps a forced span of the reply (character
    offsets into its content), the token id elsewhere, the reply's end-of-turn included; cut at
    `max_length`. A generation prompt may end inside the reply (a thinking template's
    `<think>\n`, which the reply also opens with): those characters are prompt. Needs a fast
    tokenizer (character offsets)."""
    head = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template([*prompt, reply], tokenize=False)
    start = _reply_start(head, whole, reply["content"]) if whole.startswith(head) else -1
    if start < 0:
        raise DataError("this tokenizer's chat template does not write the reply after the "
                        "prompt as given; train without forced spans (drop 'forced')")
    spans = [(start + a, start + b) for a, b in forced]
    enc = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
    labels = [-100 if e <= len(head) or any(s < b and e > a for a, b in spans) else token
              for token, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)]
    return {"input_ids": list(enc["input_ids"])[:max_length], "labels": labels[:max_length]}


def _reply_start(head: str, whole: str, content: str) -> int:
    """Where `content` begins in `whole`, at or before the end of the prompt `head` (the
    longest overlap first); -1 where it does not follow the prompt."""
    for k in range(min(len(head), len(content), 256), -1, -1):
        if head.endswith(content[:k]) and whole.startswith(content, len(head) - k):
            return len(head) - k
    return -1


def thinking_template(template: str) -> str:
    """`template` with a generation prompt that opens the thinking: `<think>\n` after its own
    (a template's generation prompt is the last thing it writes). One that already opens it, or
    a Qwen3 template (the model opens its own thinking), is kept as it is."""
    from ponder.core.reasoning import parser_for_template

    parser = parser_for_template(template)
    if parser is not None and parser.name in ("deepseek-r1", "qwen3"):
        return template
    body = template[:-1] if template.endswith("\n") else template  # jinja drops one at the end
    return body + "{% if add_generation_prompt %}{{ '<think>\\n' }}{% endif %}"


def _check_thinking(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    for number, row in enumerate(rows, 1):
        if not row["messages"][-1]["content"].startswith("<think>"):
            raise DataError(f"{path} example {number} is not in the thinking format (its reply "
                            "does not open with <think>); write it with `ponder distill "
                            "--format think`")


def _trainer(model: Any, tokenizer: Any, dataset: Any, work: Path, *, lora: bool, lora_r: int,
             lora_alpha: int, epochs: float, lr: float, batch_size: int, grad_accum: int,
             max_length: int, max_steps: int | None, seed: int,
             echo: Callable[[str], None], trainer_args: Mapping[str, Any]) -> Any:
    import torch
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    if int(os.environ.get("RANK", "0")) == 0:  # one process prepares the folder (and saves)
        shutil.rmtree(work, ignore_errors=True)  # what a killed run left
    work.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    settings: dict[str, Any] = dict(
        output_dir=str(work / "_trainer"), use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(), activation_checkpointing=False,
        num_train_epochs=epochs, max_steps=max_steps if max_steps is not None else -1,
        learning_rate=lr, per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, max_length=max_length,
        completion_only_loss=True, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, seed=seed, data_seed=seed)
    args = SFTConfig(**{**settings, **trainer_args})
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[step_log_callback(work / "train_log.jsonl", echo)])
    for noisy in (PrinterCallback, ProgressCallback):  # our callback prints one line a step
        trainer.remove_callback(noisy)
    return trainer


# --- helpers other trainers share -------------------------------------------------------------

def step_log_callback(path: Path, echo: Callable[[str], None]) -> Any:
    """A callback that appends every log (loss each step, then the run's summary) to a JSONL
    file, flushed as it goes so a killed run keeps its curve, and echoes one line a step."""
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        last_step = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last_step = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row = {"step": state.global_step, "epoch": state.epoch,
                   **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
            if "loss" in logs:
                now = time.perf_counter()
                row["seconds"] = round(now - self.last_step, 3)
                self.last_step = now
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if "loss" in logs:
                echo(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                     f"lr {logs.get('learning_rate', 0.0):.2e}  "
                     f"grad_norm {logs.get('grad_norm', float('nan')):.3g}  "
                     f"({row['seconds']:.1f} s)")

    return StepLog()


def publish_folder(work: Path, out_dir: Path) -> None:
    """Move a finished folder into place, replacing an older one; `out_dir` is never half
    written (between the two renames it is briefly absent). Train and save into
    `.<name>.partial` beside `out_dir`, then call this."""
    for file in work.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(work, out_dir)
    fsync_dir(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)
