"""StrategyQA (Geva et al. 2021): yes/no questions needing implicit multi-step reasoning.

The local copy is BIG-bench's StrategyQA task (answers "Yes"/"No"); the hub fallback is
ChilleD/StrategyQA's test split (answers are booleans), read into the same fields.
"""

from __future__ import annotations

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import RULES, yes_no

INSTRUCTION = ("Please reason step by step, and put your final answer (Yes or No) "
               "within \\boxed{}.")

TASK = Task(
    name="strategyqa",
    summary="StrategyQA (BIG-bench): 2,290 yes/no questions needing implicit reasoning",
    rules=RULES["yesno"],
    question_field="question",
    answer_field="answer",
    id_field="index",
    gold_of=yes_no,
    instruction=INSTRUCTION,
    data_file="strategyqa_bigbench.jsonl",
    hub=HubSource("ChilleD/StrategyQA", split="test", rename={"qid": "index"}),
)
