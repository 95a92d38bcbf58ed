"""The GRPO recipe: every setting of a run, from a YAML file and `--set key=value` overrides.

    recipe = load_recipe(Path("recipes/grpo_smollm2_arith.yaml"), ["learning_rate=2e-6"])

`GRPORecipe` is a frozen dataclass that checks itself on construction: a bad value is a
ConfigError naming the key, the value and the fix; an unknown task or reward name is an
UnknownName listing the valid ones. `REWARDS` is the table of reward names a recipe may weight
(the functions live in ponder/verifiers/rewards.py; grpo.py builds them for a run).
`recipe_from_dict` coerces plain values (YAML's, or `--set`'s) to the fields' types,
`load_recipe` reads a file and applies overrides in order, and `recipe_yaml` writes a recipe back
in a form `load_recipe` reads. The keys are documented in docs/train_grpo.md;
ponder/train/grpo.py runs a recipe.

PyYAML is imported inside the functions that read or write YAML, so that importing this module
stays light.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError, UnknownName
from ponder.tasks import TASKS, Task
from ponder.tasks.arith import OPERATIONS
from ponder.verifiers.rewards import correctness_reward, format_reward, length_penalty

RewardFunc = Callable[..., list[float | None]]

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


def _default_rewards() -> dict[str, float]:
    return {"correctness": 1.0, "format": 0.1}


@dataclass(frozen=True)
class GRPORecipe:
    """Everything a GRPO run needs; a YAML file's keys are these fields' names."""

    # model and data
    model: str = "smollm2-135m"  # catalog name, .gguf path, save_pretrained folder or hub id
    dtype: str = "float32"  # bfloat16 on a GPU
    task: str = "arith"  # a ponder task name; arith is generated from the operand_* keys
    data: str | None = None  # the task's JSONL file; None: the hub copy (arith: generated)
    split: str = "train"  # the hub split, where `data` is None
    limit: int | None = None  # the first N records (arith: N problems)
    eval_size: int = 0  # the last N records are held out: greedy accuracy before/after training
    eval_steps: int = 0  # also measure held-out accuracy every N steps (0: only before/after)
    instruction: str | None = None  # the system message; None: the task's own, "": none
    operand_min: int = 1  # arith only (with `seed`)
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
        if self.task not in TASKS:
            raise UnknownName("task", self.task, TASKS)
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
    from ponder.models.gguf_files import catalog_names

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
    """The recipe as YAML, in field order; `load_recipe` reads it back to an equal recipe."""
    import yaml

    return str(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
