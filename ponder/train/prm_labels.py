"""Monte-Carlo step labels for a process reward model (Math-Shepherd, Wang et al. 2024,
arXiv:2312.08935): the data set `ponder.train.prm` trains on.

1. Sample solutions to training questions with the policy and cut them into steps at the task's
   step delimiter (the steps tree schemes expand): `split_steps`.
2. Label each step as Math-Shepherd does (§3.3): from the prefix "steps 1..i" the policy writes
   `rollouts` completions; the step's *soft* label is the fraction that reach the gold answer
   (`mc_labels`), its *hard* label "any did" (hard estimation, HE) or "at least `threshold`
   did" (`hard_labels`).
3. Write one row per solution in TRL's stepwise-supervision format (`build_dataset`, through
   `Metered`, which counts what labelling cost; `label_task` loads a task and a policy for it),
   and read such a file back, checked, for training (`read_dataset`, `TARGETS`).

Where this departs from the paper:
- Math-Shepherd completes with a separate "completer" model; here the policy that wrote the
  solution completes it (one model, served by ponder's own backend), so a label estimates how
  likely *this* policy is to finish right from that step: the value a search with it needs.
- The last step gets no rollouts: its label is whether the solution's own answer is right.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ponder.core.errors import ConfigError, DataError
from ponder.core.files import write_text_atomic
from ponder.core.problem import Problem
from ponder.core.protocols import LanguageModel
from ponder.core.types import Completion, GenerationRequest, SamplingParams
from ponder.core.wrap import Wrapper

if TYPE_CHECKING:
    from ponder.tasks import Record, Task

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
    write_text_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return stats


class Metered(Wrapper):
    """The policy, counting the completions and tokens it generates (the cost of labelling)."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__(model, owns=True)
        self.generations = self.tokens = 0

    def generate(self, requests: Sequence[GenerationRequest], **kwargs: Any
                 ) -> list[list[Completion]]:
        outs = self.model.generate(requests, **kwargs)
        for completions in outs:
            self.generations += len(completions)
            self.tokens += sum(c.completion_tokens for c in completions)
        return outs


# -- the labels file -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What the loss pulls P(correct) at a step towards."""

    column: str  # the data set column it reads
    value: Callable[[Any], float]


TARGETS = {
    "hard": Target("labels", lambda label: float(bool(label))),  # TRL PRMTrainer's loss
    "soft": Target("soft_labels", float),  # Math-Shepherd's soft estimation
}


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


# -- labelling a task ------------------------------------------------------------------------------

def label_task(task_name: str, data: Path | None, limit: int | None, policy: str,
               policy_args: Mapping[str, Any], out: Path, *, samples: int, rollouts: int,
               threshold: float | None, temperature: float, max_tokens: int, seed: int,
               say: Callable[[str], None]) -> LabelStats:
    """Load the task's training questions (with gold answers and unique ids, as every run
    reads them) and the policy (`load_model(policy, **policy_args)`), label, close the policy
    (freeing its memory before training)."""
    from ponder.models.catalog import load_model
    from ponder.tasks import get_task
    from ponder.tasks.records import load_questions

    task = get_task(task_name)
    records = load_questions(task, split="train", data=data, limit=limit)
    model = load_model(policy, **policy_args)
    try:
        return build_dataset(task, records, model, out=out, samples_per_problem=samples,
                             rollouts=rollouts, threshold=threshold, max_tokens=max_tokens,
                             temperature=temperature, seed=seed, progress=say)
    finally:
        model.close()
