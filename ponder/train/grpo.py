"""GRPO with verifiable rewards: a ponder task's checker as the reward, TRL's GRPOTrainer as the
loop (Shao et al. 2024, DeepSeekMath §4.1.2: sample a group of G completions per prompt, score
them, use each reward minus its group's mean, divided by the group's std, as the advantage).

    ponder train grpo --recipe recipes/grpo_smollm2_arith.yaml --set learning_rate=2e-6

The story, top to bottom: the data (a task's records -> TRL's conversational prompts, with `gold`
as a column the rewards read); the rewards (ponder/verifiers/rewards.py, by name, with weights);
a greedy held-out accuracy; and `train`. The per-step log is ponder/train/grpo_log.py; the
recipe (YAML + `--set` overrides, validated) and its table of reward names are
ponder/train/recipe.py; the typer command is in ponder/train/commands.py. The default task,
`arith`, is generated from the recipe (ponder/tasks/arith.py): sums a 135M model gets partly
right, so rewards vary within a group.

Where this departs from the paper (all TRL 1.16 defaults, kept on purpose):
- `beta` defaults to 0: no KL term and no reference model (DAPO, Dr. GRPO; half the memory).
- TRL's default `loss_type="dapo"` normalises the loss by tokens in the batch, not per sequence.
- One policy update per generation batch (`num_iterations=1`), so the clipped ratio is always 1
  and the loss is the advantage-weighted log-likelihood; a near-zero loss value is normal.

`accuracy` in the logs is the mean of the correctness reward (1 right / 0 wrong): the fraction of
sampled completions whose answer is correct. Correctness is always computed for that reason, with
weight 0 when a recipe leaves it out of `rewards`.

Nothing heavy is imported at module level: torch, TRL, datasets and PyYAML load inside the
functions that need them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.core.errors import ConfigError
from ponder.tasks import Task, arith, get_task, load_questions
from ponder.train.grpo_log import log_callback
from ponder.train.recipe import REWARDS, GRPORecipe, RewardFunc, recipe_yaml
from ponder.verifiers.rewards import correctness_reward

if TYPE_CHECKING:
    from datasets import DatasetDict

# --- data ---------------------------------------------------------------------------------------


def recipe_task(recipe: GRPORecipe) -> Task:
    """The task the recipe trains on, with its instruction as the recipe says."""
    task = get_task(recipe.task)
    if task is arith.TASK:  # generated from the recipe's operand range, operators and seed
        task = arith.arith_task(recipe.operand_min, recipe.operand_max, recipe.operators,
                                seed=recipe.seed)
    if task.answer_field is None:
        raise ConfigError("task", recipe.task, "GRPO needs a task with gold answers")
    if recipe.instruction is not None:
        task = dataclasses.replace(task, instruction=recipe.instruction)
    return task


def build_dataset(recipe: GRPORecipe) -> DatasetDict:
    """`train` (and `heldout`, the last `eval_size` records) in TRL's conversational format:
    {"prompt": [{"role": ..., "content": ...}, ...], "gold": "42", "id": "gsm8k-7"}.
    TRL passes `gold` (and `id`) to every reward function as keyword arguments."""
    from datasets import Dataset, DatasetDict

    task = recipe_task(recipe)
    records = load_questions(task, split=recipe.split, data=recipe.data, limit=recipe.limit)
    if len(records) <= recipe.eval_size:
        raise ConfigError("eval_size", recipe.eval_size, f"only {len(records)} records were "
                          "loaded; hold out fewer so some are left to train on")
    cut = len(records) - recipe.eval_size
    rows = [{"prompt": [dict(m) for m in task.render(r.question)], "gold": r.gold, "id": r.id}
            for r in records]
    splits = {"train": Dataset.from_list(rows[:cut])}
    if recipe.eval_size:
        splits["heldout"] = Dataset.from_list(rows[cut:])
    return DatasetDict(splits)


# --- rewards ------------------------------------------------------------------------------------


class NamedReward:
    """A reward function under a short name: TRL logs `rewards/<name>/mean` from `__name__`."""

    def __init__(self, name: str, func: RewardFunc) -> None:
        self.__name__, self.func = name, func

    def __call__(self, *args: Any, **kwargs: Any) -> list[float | None]:
        return self.func(*args, **kwargs)


def build_rewards(recipe: GRPORecipe, task: Task) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions (recipe.REWARDS, by name) and their weights. A zero weight drops a
    reward, except correctness, which is always scored so that accuracy is logged."""
    funcs: list[RewardFunc] = []
    weights: list[float] = []
    for name, weight in recipe.weights.items():
        if weight or name == "correctness":
            funcs.append(NamedReward(name, REWARDS[name](recipe, task)))
            weights.append(weight)
    return funcs, weights


# --- logs and held-out accuracy -----------------------------------------------------------------


def heldout_accuracy(model: Any, tokenizer: Any, rows: Iterable[Mapping[str, Any]], task: Task, *,
                     max_new_tokens: int, batch_size: int = 16) -> tuple[float, list[str]]:
    """Greedy accuracy on held-out prompts (the same budget as training), and the completions.
    Greedy, so that two measurements differ only by the weights."""
    import torch

    rows = list(rows)
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # generation continues the right end of every row
    right, completions = 0.0, []
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False,
                                                   add_generation_prompt=True) for r in batch]
            enc = tokenizer(texts, return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id)
            done = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                          skip_special_tokens=True)
            scores = correctness_reward(texts, done, gold=[r["gold"] for r in batch],
                                        extract=task.extract, check=task.check)
            right += sum(s or 0.0 for s in scores)
            completions.extend(done)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return right / max(len(rows), 1), completions


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- training -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GRPOResult:
    output_dir: Path
    final_dir: Path  # the trained model and tokenizer (save_pretrained)
    log_path: Path  # one JSON record per logging step and per held-out measurement
    steps: int
    seconds: float  # trainer.train() wall time
    seconds_per_step: float  # mean optimizer step (generation + scoring + update)
    heldout_before: float | None
    heldout_after: float | None
    records: list[dict[str, Any]]


def _require_trl() -> None:
    from ponder.core.errors import ModelNotFound
    from ponder.models.torch_gguf import require_training

    require_training()
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        raise ModelNotFound(f"GRPO training needs TRL, datasets and PyYAML ({e.name} is "
                            "missing); run: pip install 'ponder[train]'") from e


def train(
    recipe: GRPORecipe,
    *,
    model: Any = None,
    tokenizer: Any = None,
    extra_rewards: Sequence[tuple[RewardFunc, float]] = (),
    echo: Callable[[str], None] = _stderr,
) -> GRPOResult:
    """Run GRPO as the recipe says; checkpoints every `save_steps`, the final model and
    tokenizer in output_dir/final, logs in output_dir/log.jsonl, totals in summary.json.
    `model`/`tokenizer` replace loading `recipe.model`; `extra_rewards` add (function, weight)
    pairs to the recipe's rewards (tests use both)."""
    _require_trl()
    import importlib.util

    import torch
    from transformers import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from ponder.models.torch_gguf import load_trainable

    cuda = torch.cuda.is_available()
    if recipe.use_vllm and not (cuda and importlib.util.find_spec("vllm")):
        raise ConfigError("use_vllm", True, "vLLM generation needs a GPU and `pip install vllm`;"
                          " set use_vllm: false to generate with transformers")
    task = recipe_task(recipe)
    data = build_dataset(recipe)
    if model is None:
        model, tokenizer = load_trainable(recipe.model, dtype=recipe.dtype)
    assert tokenizer is not None, "pass the tokenizer with the model"
    recipe_funcs, weights = build_rewards(recipe, task)
    funcs: list[Any] = [*recipe_funcs, *(f for f, _ in extra_rewards)]
    weights += [w for _, w in extra_rewards]

    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(recipe_yaml(recipe), encoding="utf-8")
    config = GRPOConfig(
        output_dir=str(out), seed=recipe.seed, use_cpu=not cuda,
        bf16=cuda and recipe.dtype == "bfloat16", report_to="none",
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature, top_p=recipe.top_p, reward_weights=weights,
        learning_rate=recipe.learning_rate, lr_scheduler_type=recipe.lr_scheduler_type,
        beta=recipe.beta, max_steps=recipe.max_steps, num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        gradient_checkpointing=recipe.gradient_checkpointing,
        logging_steps=recipe.logging_steps, save_strategy="steps", save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit, save_only_model=recipe.save_only_model,
        use_vllm=recipe.use_vllm, vllm_mode=recipe.vllm_mode,
        vllm_gpu_memory_utilization=recipe.vllm_gpu_memory_utilization,
    )
    heldout = None
    if "heldout" in data:
        heldout = functools.partial(
            heldout_accuracy, tokenizer=tokenizer, rows=list(data["heldout"]), task=task,
            max_new_tokens=recipe.max_completion_length)
    names = [getattr(f, "__name__", type(f).__name__) for f in funcs]
    callback = log_callback(out / "log.jsonl", names, echo, heldout, recipe.eval_steps)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=config,
                          train_dataset=data["train"], processing_class=tokenizer,
                          callbacks=[callback])
    for noisy in (PrinterCallback, ProgressCallback):  # GRPOLog prints one line a step instead
        trainer.remove_callback(noisy)
    callback.main = trainer.is_world_process_zero()
    threads = torch.get_num_threads()
    if recipe.cpu_threads and not cuda:
        torch.set_num_threads(recipe.cpu_threads)
    try:
        before = callback.evaluate(0, trainer.model)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        steps = trainer.state.global_step
        after = callback.evaluate(steps, trainer.model)
    finally:
        torch.set_num_threads(threads)
    final = out / "final"
    trainer.save_model(str(final))  # model + tokenizer; gathers sharded weights under DeepSpeed
    per_step = sum(callback.step_seconds) / max(len(callback.step_seconds), 1)
    result = GRPOResult(output_dir=out, final_dir=final, log_path=out / "log.jsonl", steps=steps,
                        seconds=seconds, seconds_per_step=per_step, heldout_before=before,
                        heldout_after=after, records=callback.records)
    if callback.main:
        summary = {"steps": steps, "seconds": seconds, "seconds_per_step": per_step,
                   "heldout_before": before, "heldout_after": after,
                   "heldout_size": recipe.eval_size, "final_dir": str(final),
                   "device": "cuda" if cuda else "cpu"}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result
