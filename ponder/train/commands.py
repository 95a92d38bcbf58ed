"""`ponder distill`, `ponder train grpo`, `ponder train prm` and `ponder export`: the typer
commands over distill.py (with sft.py), grpo.py (with recipe.py), prm.py (with prm_labels.py)
and export.py.

Registered in ponder/cli.py (`app.command("distill")(distill_command)`, and the `train` group).
The commands parse options (ponder/cli_args.py), check settings before any slow work, and report
progress one line at a time on stderr; the library modules take parsed values. User errors are
`PonderError`s: one line on stderr, exit code 2. The library modules (and torch, TRL) are
imported inside the commands, so that `ponder --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ponder.tasks import Record, Task
    from ponder.train.distill import CollectStats


def say(line: str) -> None:
    """One line of progress on stderr, flushed: a long run's log shows each step as it ends."""
    print(line, file=sys.stderr, flush=True)


# --- ponder distill -------------------------------------------------------------------------------

def distill_command(
    task: Annotated[str, typer.Argument(help="Task name: gsm8k, math500, game24, ...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: collect.jsonl "
                                      "(journal), dataset.jsonl, student/.")],
    data: Annotated[Path | None, typer.Option(help="Training questions: a JSONL file, e.g. "
                                              "gsm8k_train.jsonl. Default: the hub copy's "
                                              "--split.")] = None,
    split: Annotated[str, typer.Option(help="Hub split when --data is not given.")] = "train",
    limit: Annotated[int | None, typer.Option(help="Use the first N questions.")] = None,
    teacher: Annotated[str, typer.Option(help="Teacher model: catalog name, .gguf path, hub "
                                         "id, URL#model, or fake.")] = "qwen-1.5b",
    teacher_arg: Annotated[list[str] | None, typer.Option(
        "--teacher-arg", help="key=value for the teacher's backend (repeatable), e.g. "
        "n_ctx=8192.")] = None,
    scheme: Annotated[str, typer.Option(help="The teacher's scheme spec; every chain in its "
                                        "trace is a candidate.")] = "self-consistency@8",
    keep: Annotated[int, typer.Option(help="Distinct verified chains kept per question.")] = 2,
    prefer: Annotated[str, typer.Option(help="Which verified chains to keep: shortest or "
                                        "first (sample order).")] = "shortest",
    max_tokens: Annotated[int | None, typer.Option(help="Teacher tokens per chain.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling and training seed.")] = 0,
    student: Annotated[str, typer.Option(help="Student: catalog name, .gguf path, "
                                         "save_pretrained folder or hub id.")] = "default",
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (merged into the "
                                       "saved student) instead of every weight.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    epochs: Annotated[float, typer.Option(help="Passes over the dataset.")] = 1.0,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 1e-5, LoRA "
                                             "1e-4).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per device per step.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option(help="Tokens per training example (prompt + "
                                            "reply; longer replies are cut).")] = 1024,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    dataset_only: Annotated[bool, typer.Option("--dataset-only", help="Collect and write "
                                               "dataset.jsonl; do not train.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing "
                                            "OUT/student.")] = False,
    fmt: Annotated[str, typer.Option(
        "--format", help="plain: the chain is the reply; think: <think>REASONING</think> then "
        "the reply, and a student whose template opens the thinking (a native "
        "thinker).")] = "plain",
    export: Annotated[str | None, typer.Option(
        "--export", metavar="gguf[:QUANT]", help="Also write OUT/student.gguf (QUANT: f16 "
        "default, f32, bf16, q8_0, q4_k_m) for the llama.cpp backend.")] = None,
    from_store: Annotated[Path | None, typer.Option(
        "--from", metavar="RESULTS.db", help="Take the teacher's chains from a ponder eval "
        "results file (its --scheme rows) instead of generating them.")] = None,
) -> None:
    """Distil a teacher's verified reasoning into a student: collect, filter, fine-tune."""
    from ponder.cli_args import parse_model_args
    from ponder.core.errors import UnknownName
    from ponder.tasks import get_task, load_questions
    from ponder.train.distill import FORMATS, CollectStats, make_scheme
    from ponder.train.export import parse_export
    from ponder.train.sft import check_sft_args, sft, write_dataset

    if fmt not in FORMATS:
        raise UnknownName("dataset format", fmt, FORMATS)
    quant = parse_export(export) if export is not None else None
    if quant is not None and dataset_only:
        raise ConfigError("export", export, "--dataset-only trains no student to export; drop "
                          "one of them")
    chosen = get_task(task)
    records = load_questions(chosen, split=split, data=data, limit=limit)
    make_scheme(scheme, keep=keep, prefer=prefer, seed=seed, max_tokens=max_tokens)  # checked
    student_dir = out / "student"
    if not dataset_only:
        check_sft_args(lora_r=lora_r, epochs=epochs, lr=lr, batch_size=batch_size,
                       grad_accum=grad_accum, max_length=max_length, max_steps=max_steps)
        if student_dir.exists() and not overwrite:
            raise ConfigError("out", str(out), f"{student_dir} exists; pass --overwrite to "
                              "train it again, or use another --out")
    dataset = out / "dataset.jsonl"
    parallel = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if parallel and not dataset.exists():
        raise ConfigError("out", str(out), "collect in one process first (the same command "
                          "with --dataset-only), then train under accelerate launch")
    if from_store is not None:
        done = _stored_chains(from_store, chosen, records, scheme, keep=keep, prefer=prefer)
    else:
        done = _collect(out, chosen, records, data=data, split=split, teacher=teacher,
                        teacher_args=parse_model_args(teacher_arg or [], "teacher-arg"),
                        scheme=scheme, keep=keep, prefer=prefer, max_tokens=max_tokens,
                        seed=seed, parallel=parallel)
    examples = [FORMATS[fmt](e) for r in records if r.id in done for e in done[r.id][0]]
    total = CollectStats()
    for record in records:
        if record.id in done:
            total += done[record.id][1]
    if not parallel:
        write_dataset(examples, dataset)
    say(f"collected: {total.line()} → {dataset}")
    if dataset_only:
        return
    if not examples:
        raise DataError(f"no teacher chain checked on any of the {len(records)} questions; "
                        "nothing to train on (try more samples, another scheme or teacher)")
    outcome = sft(student, dataset, student_dir, lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r,
                  epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                  max_length=max_length, max_steps=max_steps, seed=seed,
                  think=fmt == "think", echo=say)
    last = f", last loss {outcome.losses[-1]:.4f}" if outcome.losses else ""
    say(f"student: {outcome.steps} steps on {outcome.examples} examples ({outcome.dropped} "
        f"dropped as too long){last}, {outcome.seconds:.0f} s → {student_dir}")
    if quant is not None:
        _export(student_dir, quant)


Collected = dict[str, "tuple[list[dict[str, Any]], CollectStats]"]


def _collect(out: Path, task: Task, records: list[Record], *, data: Path | None, split: str,
             teacher: str, teacher_args: dict[str, Any], scheme: str, keep: int, prefer: str,
             max_tokens: int | None, seed: int, parallel: bool) -> Collected:
    """The teacher asked now, each finished question kept in the journal OUT/collect.jsonl."""
    from ponder.train.distill import Journal, collect_one, make_scheme

    header = {"task": task.name, "data": str(data.resolve()) if data else None,
              "split": None if data else split, "teacher": teacher, "teacher_args": teacher_args,
              "scheme": scheme, "keep": keep, "prefer": prefer, "max_tokens": max_tokens,
              "seed": seed}
    journal = Journal(out / "collect.jsonl", header)
    todo = [r for r in records if r.id not in journal.done]
    if parallel and todo:
        raise ConfigError("out", str(out), "collect in one process first (the same command "
                          "with --dataset-only), then train under accelerate launch")
    if todo:
        from ponder.models.catalog import load_model

        spec = make_scheme(scheme, keep=keep, prefer=prefer, seed=seed, max_tokens=max_tokens)
        say(f"teacher {teacher} on {len(todo)} questions ({len(records) - len(todo)} already "
            f"in {journal.path})")
        model = load_model(teacher, **teacher_args)
        try:
            for position, record in enumerate(todo, len(records) - len(todo) + 1):
                kept, stats = collect_one(task, record, model, spec, keep=keep, prefer=prefer,
                                          spec=scheme)
                journal.add(record.id, kept, stats)
                say(f"[{position}/{len(records)}] {record.id}: {stats.verified}/"
                    f"{stats.chains} chains verified, {stats.kept} kept")
        finally:
            model.close()
    return journal.done


def _stored_chains(path: Path, task: Task, records: list[Record], scheme: str, *, keep: int,
                   prefer: str) -> Collected:
    """The teacher's chains as `ponder eval` stored them: each question's `scheme` row (its
    first seed), filtered as if generated now. Questions the file lacks are left out, said."""
    import json

    from ponder.core.types import Trace
    from ponder.eval.store import Store
    from ponder.train.distill import examples_of

    with Store.read(path) as store:
        meta = store.meta()
        rows = {}
        for row in sorted(store.rows(traces=True), key=lambda r: r.seed, reverse=True):
            if row.scheme == scheme:
                rows[row.question_id] = row
    stored_task = str(meta.get("task"))
    if stored_task != task.name and Path(stored_task).name != Path(str(task.path)).name:
        raise ConfigError("from", str(path), f"it holds {stored_task!r} results, not "
                          f"{task.name!r}; give the task it was evaluated on")
    if not rows:
        raise DataError(f"{path} holds no {scheme} rows; name the teacher's scheme in it "
                        "with --scheme")
    teacher = str(meta.get("model"))
    done: Collected = {}
    for record in records:
        if (stored := rows.get(record.id)) is not None:
            trace = Trace.from_dict(json.loads(stored.trace))
            done[record.id] = examples_of(task, record, trace, keep=keep, prefer=prefer,
                                          teacher=teacher, spec=scheme)
    missing = len(records) - len(done)
    say(f"teacher {teacher}'s {scheme} chains from {path}: {len(done)} questions"
        + (f" ({missing} of the {len(records)} asked are not in it)" if missing else ""))
    return done


def _export(model_dir: Path, quant: str) -> None:
    """A training command's `--export gguf[:QUANT]`: the final model as `<folder>.gguf`, written
    by one process (under accelerate launch, the first)."""
    from ponder.train.export import export_gguf

    if int(os.environ.get("RANK", "0")) == 0:
        path = export_gguf(model_dir, quant=quant, echo=say)
        say(f"load it with: ponder solve QUESTION -m {path}")


# --- ponder train grpo ----------------------------------------------------------------------------

def grpo_command(
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", "-r", metavar="YAML", help="YAML recipe (keys: docs/train_grpo.md). "
        "Default: SmolLM2-135M on synthetic arithmetic.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="key=value over the recipe (repeatable; values "
        "read as YAML), e.g. --set learning_rate=2e-6 --set rewards.format=0.2.")] = None,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", metavar="N", help="Optimizer steps (overrides the recipe's "
        "max_steps).")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", metavar="DIR", help="Checkpoints, log.jsonl, summary.json and "
        "final/.")] = None,
    export: Annotated[str | None, typer.Option(
        "--export", metavar="gguf[:QUANT]", help="Also write final.gguf beside final/ (QUANT: "
        "f16 default, f32, bf16, q8_0, q4_k_m) for the llama.cpp backend.")] = None,
) -> None:
    """Train a model with GRPO on a task's verifiable rewards (TRL's GRPOTrainer)."""
    from ponder.train.export import parse_export
    from ponder.train.grpo import train
    from ponder.train.recipe import load_recipe

    quant = parse_export(export) if export is not None else None
    cfg = load_recipe(recipe, overrides or [])
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, max_steps=max_steps)
    if output_dir is not None:
        cfg = dataclasses.replace(cfg, output_dir=str(output_dir))
    result = train(cfg)
    moved = ""
    if result.heldout_before is not None:
        moved = (f"; held-out accuracy {result.heldout_before:.3f} -> "
                 f"{result.heldout_after:.3f}")
    say(f"{result.steps} steps in {result.seconds:.0f} s ({result.seconds_per_step:.1f} s a "
        f"step){moved}; model -> {result.final_dir}, log -> {result.log_path}")
    if quant is not None:
        _export(result.final_dir, quant)


# --- ponder export --------------------------------------------------------------------------------

def export_command(
    model_dir: Annotated[Path, typer.Argument(
        metavar="MODEL_DIR", help="A folder written by save_pretrained: runs/distill/student, "
        "runs/grpo/final, ...")],
    to: Annotated[Path | None, typer.Option(
        "--to", metavar="FILE.gguf", help="Where to write it. Default: MODEL_DIR.gguf beside "
        "the folder.")] = None,
    quant: Annotated[str, typer.Option(
        help="f16 (default), f32, bf16, q8_0 (by llama.cpp's converter) or q4_k_m (then "
        "llama.cpp's quantiser).")] = "f16",
) -> None:
    """Export a trained model folder to one GGUF file for the llama.cpp backend, with its chat
    template (and so its reasoning parser): `ponder solve ... -m FILE.gguf`."""
    from ponder.train.export import export_gguf

    export_gguf(model_dir, to, quant=quant, echo=say)


# --- ponder train prm -----------------------------------------------------------------------------

def prm_command(
    task: Annotated[str, typer.Argument(help="Task whose questions, prompt and answer checks "
                                        "to use: gsm8k, math500, ...")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: labels.jsonl and the "
                                      "PRM in final/.")] = Path("runs/prm"),
    data: Annotated[Path | None, typer.Option(help="Training questions: a JSONL file. "
                                              "Default: the task's hub copy (train "
                                              "split).")] = None,
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
    from ponder.cli_args import parse_model_args
    from ponder.models.torch_gguf import require_training
    from ponder.tasks import get_task
    from ponder.train.prm import train_prm
    from ponder.train.prm_labels import TARGETS, check_threshold, label_task

    if labels_only and dataset is not None:
        raise ConfigError("dataset", str(dataset), "--labels-only labels; --dataset skips "
                          "labelling: give one of them")
    check_threshold(threshold)
    if target not in TARGETS:
        raise ConfigError("target", target, f"use one of {', '.join(TARGETS)}")
    policy_args = parse_model_args(policy_arg or [], "policy-arg")
    separator = separator or get_task(task).step_delimiter
    if dataset is None:
        dataset = out / "labels.jsonl"
        stats = label_task(task, data, limit, policy, policy_args, dataset,
                           samples=samples, rollouts=rollouts, threshold=threshold,
                           temperature=temperature, max_tokens=max_tokens, seed=seed,
                           say=say)
        say(f"labels → {dataset}: {stats.solutions} solutions ({stats.right} right), "
            f"{stats.steps} steps ({stats.positive} labelled right), {stats.generations} "
            f"generations, {stats.completion_tokens} tokens in {stats.seconds:.0f} s")
        if labels_only:
            return
    require_training()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the loss lines are the progress
    training = train_prm(base, dataset, out / "final", steps=steps, lr=lr,
                         batch_size=batch_size, target=target, separator=separator,
                         max_length=max_length, seed=seed,
                         log=lambda step, loss: say(f"step {step}/{steps} loss {loss:.4f}"))
    say(f"PRM → {training.path} (use it as scorer=prm:{training.path})")


# --- ponder train verifier ------------------------------------------------------------------------

def verifier_command(
    stores: Annotated[list[Path], typer.Argument(help="Results files of `ponder eval` on the "
                                                 "train split, with sampled chains (e.g. "
                                                 "self-consistency@8 rows).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the verifier "
                                      "(JSON).")] = Path("runs/verifier.json"),
    l2: Annotated[float, typer.Option(help="L2 penalty on the weights.")] = 0.01,
    steps: Annotated[int, typer.Option(help="Gradient descent steps.")] = 2000,
    any_split: Annotated[bool, typer.Option("--any-split", help="Train on results that are "
                                            "not of the train split too.")] = False,
) -> None:
    """Train an outcome verifier on the policy's own chains: a logistic regression over answer
    agreement, false arithmetic claims, length and format. Sample first, e.g. `ponder eval
    gsm8k --split train --schemes self-consistency@8 -o runs/train.db` (resumable)."""
    from ponder.train.verifier import FEATURES, train_verifier

    verifier = train_verifier(stores, out, any_split=any_split, l2=l2, steps=steps, say=say)
    weights = ", ".join(f"{n} {w:+.2f}" for n, w in zip(FEATURES, verifier.weights, strict=True))
    say(f"weights: {weights}; train AUROC {verifier.stats['train_auroc']:.3f}")
    say(f"verifier → {out} (use it as scorer=verifier:{out})")
