"""GRPO's training log: one JSONL record per logging step and per held-out measurement, and one
line a step on the terminal (loss, reward per reward function, accuracy, completion length,
seconds a step). `ponder.train.grpo.train` installs it; the record's fields are documented in
docs/train_grpo.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


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
