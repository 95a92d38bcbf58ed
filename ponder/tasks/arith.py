"""`arith`: synthetic "What is a op b?" problems, generated from settings instead of read.

Every distinct problem `a op b` with operands in [low, high] (subtraction only with a >= b, so no
answer is negative), in an order shuffled by `seed`. A smaller `limit` gives a prefix of the same
order, so a tail slice (GRPO's held-out problems, `ponder eval arith --start N`) never repeats a
problem before it. The gold is the number; answers are judged by the numeric checker (the stated
answer, else the last number written). There is no system message: SmolLM2-135M answers best
when simply asked, and it is the model GRPO trains on this task (docs/train_grpo.md).

`TASK` (the table's `arith`) has the defaults, operands 1..9, "+" and seed 0: the 81 sums that
`ponder train grpo` trains on with no recipe. `arith_task(...)` builds one with other settings;
GRPO does, from its recipe's `operand_min`, `operand_max`, `operators` and `seed`. With a JSONL
file of question/answer rows, `load(path)` reads it like any task's.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from ponder.core.errors import ConfigError
from ponder.tasks.base import Task
from ponder.tasks.rules import RULES

OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
}
MAX_ENUMERATED = 200_000  # problem spaces up to this size are listed and shuffled, larger sampled


def arith_rows(limit: int | None, *, low: int, high: int, operators: str,
               seed: int) -> list[dict[str, Any]]:
    """The first `limit` distinct problems as raw rows ({"question", "answer", "a", "op",
    "b"}); `limit=None` gives every problem, up to 1,000. More than there are is a ConfigError."""
    ops = sorted(set(operators))
    n = high - low + 1
    space = sum(n * (n + 1) // 2 if op == "-" else n * n for op in ops)
    count = min(space, 1000) if limit is None else limit
    if count > space:
        raise ConfigError("limit", count, f"operands {low}..{high} with {''.join(ops)!r} make "
                          f"only {space} distinct problems; lower limit or widen the range")
    rng = random.Random(seed)
    if space <= MAX_ENUMERATED:
        triples = [(a, op, b) for op in ops for a in range(low, high + 1)
                   for b in range(low, high + 1) if op != "-" or a >= b]
        rng.shuffle(triples)
        triples = triples[:count]
    else:  # drawn in order until `count` are distinct: a smaller count draws a prefix
        seen: dict[tuple[int, str, int], None] = {}
        while len(seen) < count:
            a, op, b = rng.randint(low, high), rng.choice(ops), rng.randint(low, high)
            seen.setdefault((max(a, b), op, min(a, b)) if op == "-" else (a, op, b))
        triples = list(seen)
    return [{"question": f"What is {a} {op} {b}?", "answer": str(OPERATIONS[op](a, b)),
             "a": a, "op": op, "b": b} for a, op, b in triples]


def arith_task(low: int = 1, high: int = 9, operators: str = "+", *, seed: int = 0) -> Task:
    """The task with these settings (GRPORecipe checks them, naming its keys, before this)."""
    assert 0 <= low <= high and operators and set(operators) <= set(OPERATIONS)
    return Task(
        name="arith",
        summary=f"synthetic 'What is a op b?' problems (op in {operators!r}, operands "
                f"{low}..{high}, seed {seed})",
        rules=RULES["numeric"],
        instruction="",  # no system message (module docstring)
        generate=functools.partial(arith_rows, low=low, high=high, operators=operators,
                                   seed=seed),
    )


TASK = arith_task()
