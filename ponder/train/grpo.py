"""GRPO with verifiable rewards: a ponder task's checker as the reward, TRL's GRPOTrainer as the
loop (Shao et al. 2024, DeepSeekMath §4.1.2: sample a group of G completions per prompt, score
them, use each reward minus its group's mean, divided by the group's std, as the advantage).

    ponder train grpo --recipe recipes/grpo_smollm2_arith.yaml --set learning_rate=2e-6

The story, top to bottom: a synthetic arithmetic task (verifiable problems a 135M model gets
partly right, so rewards vary within a group); the recipe (YAML + `--set` overrides, validated);
the data (task records -> TRL's conversational prompts, with `gold` as a column the rewards read);
the rewards (ponder/verifiers/rewards.py, by name, with weights); per-step logs and a greedy
held-out accuracy; `train`; and the typer command.

Where this departs from the paper (all TRL 1.16 defaults, kept on purpose):
- `beta` defaults to 0: no KL term and no reference model (DAPO, Dr. GRPO; half the memory).
- TRL's default `loss_type="dapo"` normalises the loss by tokens in the batch, not per sequence.
- One policy update per generation batch (`num_iterations=1`), so the clipped ratio is always 1
  and the loss is the advantage-weighted log-likelihood; a near-zero loss value is normal.

`accuracy` in the logs is the mean of the correctness reward (1 right / 0 wrong): the fraction of
sampled completions whose answer is correct. Correctness is always computed for that reason, with
weight 0 when a recipe leaves it out of `rewards`.

Nothing heavy is imported at module level (cli.py imports this file): torch, TRL, datasets and
PyYAML load inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ponder.core.errors import ConfigError, UnknownName
from ponder.tasks import TASKS, Record, Task, get_task
from ponder.tasks.rules import RULES
from ponder.verifiers.rewards import correctness_reward, format_reward, length_penalty

if TYPE_CHECKING:
    from datasets import DatasetDict

RewardFunc = Callable[..., list[float | None]]

# --- a synthetic arithmetic task ----------------------------------------------------------------

ARITHMETIC = Task(
    name="arithmetic",
    summary="synthetic 'What is a + b?' problems generated from the recipe's seed",
    rules=RULES["numeric"],  # the stated answer, else the last number written
    answer_field=None,
    instruction="",  # no system message: the 135M model answers best when simply asked
)
OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
}
MAX_ENUMERATED = 200_000  # problem spaces up to this size are listed and shuffled, larger sampled


def arithmetic_records(count: int | None, seed: int, low: int, high: int,
                       operators: str) -> list[Record]:
    """Distinct problems `a op b` with operands in [low, high], in a seeded random order, so a
    held-out slice never repeats a training problem. Subtraction has a >= b (no negatives).
    `count=None` gives every problem, up to 1,000."""
    ops = sorted(set(operators))
    n = high - low + 1
    space = sum(n * (n + 1) // 2 if op == "-" else n * n for op in ops)
    count = min(space, 1000) if count is None else count
    if count > space:
        raise ConfigError("limit", count, f"operands {low}..{high} with {''.join(ops)!r} make "
                          f"only {space} distinct problems; lower limit or widen the range")
    rng = random.Random(seed)
    if space <= MAX_ENUMERATED:
        triples = [(a, op, b) for op in ops for a in range(low, high + 1)
                   for b in range(low, high + 1) if op != "-" or a >= b]
        rng.shuffle(triples)
        triples = triples[:count]
    else:
        seen: dict[tuple[int, str, int], None] = {}
        while len(seen) < count:
            a, op, b = rng.randint(low, high), rng.choice(ops), rng.randint(low, high)
            seen.setdefault((max(a, b), op, min(a, b)) if op == "-" else (a, op, b))
        triples = list(seen)
    return [Record(id=f"arithmetic-{index}", question=f"What is {a} {op} {b}?",
                   gold=str(OPERATIONS[op](a, b)), row={"a": a, "op": op, "b": b})
            for index, (a, op, b) in enumerate(triples)]


# --- the recipe ---------------------------------------------------------------------------------


def _default_rewards() -> dict[str, float]:
    return {"correctness": 1.0, "format": 0.1}


@dataclass(frozen=True)
class GRPORecipe:
    """Everything a GRPO run needs; a YAML file's keys are these fields' names."""

    # model and data
    model: str = "smollm2-135m"  # catalog name, .gguf path, save_pretrained folder or hub id
    dtype: str = "float32"  # bfloat16 on a GPU
    task: str = "arithmetic"  # a ponder task name, or the synthetic "arithmetic"
    data: str | None = None  # the task's JSONL file; None: the hub copy (arithmetic: generated)
    split: str = "train"  # the hub split, where `data` is None
    limit: int | None = None  # the first N records (arithmetic: N problems)
    eval_size: int = 0  # the last N records are held out: greedy accuracy before/after training
    eval_steps: int = 0  # also measure held-out accuracy every N steps (0: only before/after)
    instruction: str | None = None  # the system message; None: the task's own, "": none
    operand_min: int = 1  # arithmetic only
    operand_max: int = 9
    operators: str = "+"
    # rewards: name -> weight (REWARDS lists the names)
    rewards: dict[str, float] = field(default_factory=_default_rewards)
    length_buffer: int | None = None  # length penalty ramps over the last N tokens (default 1/4)
    # sampling
    num_generations: int = 4  # G, completions per prompt
    max_completion_length: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    # optimisation
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "constant"
    beta: float = 0.0  # KL coefficient; 0 loads no reference model
    max_steps: int = -1  # -1: run `epochs` over the data
    epochs: float = 1.0
    batch_size: int = 4  # completions per device per micro-step (TRL's per_device_train_batch_size)
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    # output
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int | None = 2
    save_only_model: bool = False  # True: checkpoints without optimizer state (cannot resume)
    output_dir: str = "runs/grpo"
    # generation at scale (GPU only)
    use_vllm: bool = False
    vllm_mode: str = "colocate"  # or "server" (`trl vllm-serve` on other GPUs)
    vllm_gpu_memory_utilization: float = 0.3
    cpu_threads: int | None = None  # torch threads on CPU; None: torch's default (see the docs)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS and self.task != ARITHMETIC.name:
            raise UnknownName("task", self.task, [*TASKS, ARITHMETIC.name])
        for name, weight in self.rewards.items():
            if name not in REWARDS:
                raise UnknownName("reward", name, REWARDS)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ConfigError(f"rewards.{name}", weight, "give a number (a weight)")
        if not any(self.rewards.values()):
            raise ConfigError("rewards", self.rewards, "give at least one reward a non-zero weight")
        checks: list[tuple[str, bool, str]] = [
            ("model", bool(self.model.strip()), "name a model"),
            ("dtype", self.dtype in ("float32", "bfloat16", "float16"),
             "use float32, bfloat16 or float16"),
            ("limit", self.limit is None or self.limit > 0, "use a positive count or null"),
            ("eval_size", self.eval_size >= 0, "use 0 or more held-out problems"),
            ("eval_steps", self.eval_steps >= 0, "use 0 (before/after only) or a step interval"),
            ("operand_min", 0 <= self.operand_min <= self.operand_max,
             "use 0 <= operand_min <= operand_max"),
            ("operators", bool(self.operators) and set(self.operators) <= set(OPERATIONS),
             f"use some of {''.join(OPERATIONS)!r}"),
            ("length_buffer", self.length_buffer is None
             or 0 < self.length_buffer <= self.max_completion_length,
             "use a token count in (0, max_completion_length], or null"),
            ("num_generations", self.num_generations >= 2,
             "use 2 or more: advantages compare completions of the same prompt"),
            ("max_completion_length", self.max_completion_length > 0, "use a positive count"),
            ("temperature", self.temperature > 0, "use a positive temperature (GRPO samples)"),
            ("top_p", 0 < self.top_p <= 1, "use a value in (0, 1]"),
            ("learning_rate", self.learning_rate > 0, "use a positive learning rate"),
            ("lr_scheduler_type", self.lr_scheduler_type in ("constant", "linear", "cosine"),
             "use constant, linear or cosine"),
            ("beta", self.beta >= 0, "use 0 (no KL term) or a positive KL coefficient"),
            ("max_steps", self.max_steps == -1 or self.max_steps > 0,
             "use a positive number of steps, or -1 to run `epochs`"),
            ("epochs", self.epochs > 0, "use a positive number of epochs"),
            ("batch_size", self.batch_size > 0, "use a positive number of completions"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps > 0,
             "use a positive number of micro-steps"),
            ("batch_size", self.batch_size * self.gradient_accumulation_steps
             % self.num_generations == 0,
             f"batch_size × gradient_accumulation_steps must be a multiple of num_generations "
             f"({self.num_generations}): each step scores whole groups"),
            ("logging_steps", self.logging_steps > 0, "use a positive step interval"),
            ("save_steps", self.save_steps > 0, "use a positive step interval"),
            ("save_total_limit", self.save_total_limit is None or self.save_total_limit > 0,
             "use a positive count, or null to keep every checkpoint"),
            ("output_dir", bool(self.output_dir.strip()), "name an output folder"),
            ("cpu_threads", self.cpu_threads is None or self.cpu_threads > 0,
             "use a positive thread count, or null for torch's default"),
            ("vllm_mode", self.vllm_mode in ("colocate", "server"), "use colocate or server"),
            ("model", not self.use_vllm or not _is_gguf(self.model),
             "vLLM loads models by name: give a hub id or a save_pretrained folder, not a GGUF"),
            ("vllm_gpu_memory_utilization", 0 < self.vllm_gpu_memory_utilization <= 1,
             "use a fraction in (0, 1]"),
        ]
        for param, ok, fix in checks:
            if not ok:
                raise ConfigError(param, getattr(self, param), fix)

    @property
    def weights(self) -> dict[str, float]:
        """Reward name -> weight, with correctness always present (weight 0 when left out)."""
        return {"correctness": 0.0, **{k: float(v) for k, v in self.rewards.items()}}


def _is_gguf(spec: str) -> bool:
    from ponder.models.catalog import catalog_names

    return spec.endswith(".gguf") or spec in catalog_names()


def _keys() -> dict[str, str]:
    """Recipe key -> its annotation (a string, thanks to `from __future__ import annotations`)."""
    return {f.name: str(f.type) for f in dataclasses.fields(GRPORecipe)}


def _coerce(key: str, value: Any, kind: str) -> Any:
    """A YAML or `--set` value as the field's type; a wrong one is a ConfigError naming the key.
    Strings are accepted for numbers because PyYAML reads `1e-6` (no dot) as a string."""
    if value is None and "None" in kind:
        return None
    base = kind.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if isinstance(value, bool):
                return value
        elif base == "int" and not isinstance(value, bool | float):
            return int(value)
        elif base == "float" and not isinstance(value, bool):
            return float(value)
        elif base == "str" and isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        elif base.startswith("dict") and isinstance(value, Mapping):
            return {str(k): _coerce(f"{key}.{k}", v, "float") for k, v in value.items()}
    except ConfigError:  # a dict entry's own error, naming the entry
        raise
    except (TypeError, ValueError):
        pass
    raise ConfigError(key, value, f"expected {kind}")


def recipe_from_dict(values: Mapping[str, Any]) -> GRPORecipe:
    """A recipe from plain values; an unknown key is a ConfigError that lists the valid ones."""
    keys = _keys()
    for key, value in values.items():
        if key not in keys:
            raise ConfigError(key, value, f"{key!r} is not a recipe key; valid keys: "
                              f"{', '.join(keys)}")
    return GRPORecipe(**{k: _coerce(k, v, keys[k]) for k, v in values.items()})


def parse_override(text: str) -> tuple[str, Any]:
    """'key=value' -> (key, YAML-parsed value): `--set beta=0.04`, `--set data=null`. A text
    field keeps the raw text where YAML would read something else (`--set operators=-`)."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", text, "write key=value, e.g. --set learning_rate=2e-6")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if _keys().get(key, "").startswith("str") and not isinstance(value, str | None):
        value = raw
    return key, value


def load_recipe(path: Path | None, overrides: Iterable[str] = ()) -> GRPORecipe:
    """The recipe in a YAML file (or the defaults), then `key=value` overrides in order.
    `rewards.NAME=W` sets one reward's weight; `rewards={...}` replaces them all."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError("recipe", str(path), "no such file; give a YAML recipe")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError("recipe", str(path), f"not valid YAML ({' '.join(str(e).split())})"
                              ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("recipe", str(path), "the file must hold a mapping of key: value")
        values = dict(loaded or {})
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("rewards."):
            rewards = values.get("rewards", _default_rewards())
            if not isinstance(rewards, dict):
                raise ConfigError("rewards", rewards, "give a mapping of reward name: weight")
            values["rewards"] = {**rewards, key.removeprefix("rewards."): value}
        else:
            values[key] = value
    return recipe_from_dict(values)


def recipe_yaml(recipe: GRPORecipe) -> str:
    import yaml

    return str(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))


# --- data ---------------------------------------------------------------------------------------


def recipe_task(recipe: GRPORecipe) -> Task:
    """The task the recipe trains on, with its instruction and hub split as the recipe says."""
    if recipe.task == ARITHMETIC.name:
        task = ARITHMETIC
    else:
        task = get_task(recipe.task)
        if task.answer_field is None:
            raise ConfigError("task", recipe.task, "GRPO needs a task with gold answers")
        if task.hub is not None:
            task = dataclasses.replace(task, hub=dataclasses.replace(task.hub, split=recipe.split))
    if recipe.instruction is not None:
        task = dataclasses.replace(task, instruction=recipe.instruction)
    return task


def load_records(recipe: GRPORecipe, task: Task) -> list[Record]:
    if task.name == ARITHMETIC.name:
        return arithmetic_records(recipe.limit, recipe.seed, recipe.operand_min,
                                  recipe.operand_max, recipe.operators)
    if recipe.data is not None and Path(recipe.data).is_dir():
        # a directory resolves to the task's default file, which is its *test* split
        raise ConfigError("data", recipe.data, "give the JSONL file itself, e.g. "
                          "gsm8k_train.jsonl (a directory would pick the task's test file)")
    return task.load(recipe.data, limit=recipe.limit)


def build_dataset(recipe: GRPORecipe) -> DatasetDict:
    """`train` (and `heldout`, the last `eval_size` records) in TRL's conversational format:
    {"prompt": [{"role": ..., "content": ...}, ...], "gold": "42", "id": "gsm8k-7"}.
    TRL passes `gold` (and `id`) to every reward function as keyword arguments."""
    from datasets import Dataset, DatasetDict

    task = recipe_task(recipe)
    records = load_records(recipe, task)
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


# name -> (recipe, task) -> reward function; the functions live in ponder/verifiers/rewards.py
REWARDS: dict[str, Callable[[GRPORecipe, Task], RewardFunc]] = {
    # 1 when the task's checker accepts the extracted answer, else 0
    "correctness": lambda recipe, task: functools.partial(
        correctness_reward, extract=task.extract, check=task.check),
    # 1 when the completion states a final answer (\boxed{}, ####, "the answer is"), else 0
    "format": lambda recipe, task: format_reward,
    # DAPO's soft overlong penalty: 0, then down to -1 over the last `length_buffer` tokens
    "length": lambda recipe, task: length_penalty(recipe.max_completion_length,
                                                  recipe.length_buffer),
}


def build_rewards(recipe: GRPORecipe, task: Task) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and their weights. A zero weight drops a reward, except correctness,
    which is always scored so that accuracy is logged."""
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


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def log_callback(path: Path, reward_names: Sequence[str], echo: Callable[[str], None],
                 heldout: Callable[[Any], tuple[float, list[str]]] | None,
                 eval_steps: int) -> Any:
    """A TrainerCallback that writes one JSONL record per logging step (and per held-out
    measurement) to `path` and one line to `echo`. Defined here, inside a function, so that
    importing this module does not import transformers."""
    from transformers import TrainerCallback

    class GRPOLog(TrainerCallback):
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []
            self.step_seconds: list[float] = []
            self.started = self.step_started = time.perf_counter()
            self.logged = 0  # step_seconds already reported
            self.main = True  # the main process writes; the others only train
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

        def write(self, record: dict[str, Any], line: str) -> None:
            self.records.append(record)
            if self.main:
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                echo(line)

        def evaluate(self, step: int, model: Any) -> float | None:
            if heldout is None:
                return None
            accuracy, completions = heldout(model)
            self.write({"event": "heldout", "step": step, "accuracy": accuracy,
                        "size": len(completions), "example": completions[0]},
                       f"step {step}  held-out accuracy {accuracy:.3f} "
                       f"({len(completions)} problems, greedy)")
            return accuracy

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.main = state.is_world_process_zero
            self.started = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                        **kwargs: Any) -> None:
            self.step_seconds.append(time.perf_counter() - self.step_started)
            if eval_steps and state.global_step % eval_steps == 0 \
                    and state.global_step < state.max_steps:  # the last one train() measures
                self.evaluate(state.global_step, model)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not logs or "reward" not in logs:  # e.g. the end-of-training summary
                return
            recent = self.step_seconds[self.logged:]
            self.logged = len(self.step_seconds)
            rewards = {name: logs.get(f"rewards/{name}/mean") for name in reward_names}
            record = {
                "event": "train", "step": state.global_step, "epoch": logs.get("epoch"),
                "loss": logs.get("loss"), "reward": logs["reward"],
                "reward_std": logs.get("reward_std"), "rewards": rewards,
                "accuracy": rewards.get("correctness"),
                "completion_length": logs.get("completions/mean_length"),
                "clipped_ratio": logs.get("completions/clipped_ratio"),
                "frac_reward_zero_std": logs.get("frac_reward_zero_std"),
                "kl": logs.get("kl"), "entropy": logs.get("entropy"),
                "grad_norm": logs.get("grad_norm"), "learning_rate": logs.get("learning_rate"),
                "step_seconds": sum(recent) / len(recent) if recent else None,
                "elapsed": time.perf_counter() - self.started,
            }
            parts = ", ".join(f"{k} {_fmt(v)}" for k, v in rewards.items())
            self.write(record, f"step {state.global_step}/{state.max_steps}  "
                       f"loss {_fmt(record['loss'], '.4f')}  reward {_fmt(record['reward'])} "
                       f"({parts})  accuracy {_fmt(record['accuracy'])}  "
                       f"length {_fmt(record['completion_length'], '.1f')}  "
                       f"{_fmt(record['step_seconds'], '.1f')} s/step")

    return GRPOLog()


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
    from ponder.train.models import require_training

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

    from ponder.train.models import load_trainable

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
            _heldout, tokenizer=tokenizer, rows=list(data["heldout"]), task=task,
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


def _heldout(model: Any, *, tokenizer: Any, rows: list[dict[str, Any]], task: Task,
             max_new_tokens: int) -> tuple[float, list[str]]:
    return heldout_accuracy(model, tokenizer, rows, task, max_new_tokens=max_new_tokens)


# --- the command --------------------------------------------------------------------------------


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
) -> None:
    """Train a model with GRPO on a task's verifiable rewards (TRL's GRPOTrainer)."""
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
    _stderr(f"{result.steps} steps in {result.seconds:.0f} s ({result.seconds_per_step:.1f} s a "
            f"step){moved}; model -> {result.final_dir}, log -> {result.log_path}")
