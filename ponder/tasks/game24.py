r"""Game of 24 (Yao et al. 2023, Tree of Thoughts): combine four numbers with + - * / to make 24.

The gold "answer" of a puzzle is its numbers ("4 4 6 8"): any expression that uses each of them
exactly once and equals 24 is correct, so the checker evaluates the expression itself. It never
calls `eval`: the text is parsed with `ast` and only integer literals, the four binary operators
and parentheses are allowed; arithmetic is exact (`fractions.Fraction`), so `8 / (3 - 8 / 3)` is
24 and a float near 24 is not. Unary minus is not an operation of the game and is rejected.

The prompt is the paper's chain-of-thought prompt (five worked puzzles, then the puzzle; no system
message), as its CoT and self-consistency baselines ask it. So every scheme writes steps as
lines, "4 + 8 = 12 (left: 4 6 12)", then "Answer: (6 - 4) * (4 + 8) = 24"; `step_delimiter` is
"\n".

Gold-free checks (`Problem.verify`, `Problem.partial`): `verify` is `solves` against the
question's own numbers; `partial` replays a path's steps from the puzzle's numbers (each must
take two numbers still left, be exact arithmetic, and leave what its "left:" says) and searches
exactly, over every pair and operation in fractions, whether what is left can still make 24.
Tree searches use them to prune dead branches without asking the model; `replay` says which
check a path fails (benchmarks/search_doc.py counts them on the policy's steps).

The Tree-of-Thoughts prompts for this task (propose, value, value of the last step, and the
chain-of-thought prompt that writes the final answer) are at the end, verbatim from
princeton-nlp/tree-of-thought-llm src/tot/prompts/game24.py (MIT), with the wrappers of its
src/tot/tasks/game24.py; ponder/schemes/tot.py uses them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import combinations

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import Rules
from ponder.verifiers import extract_answer
from ponder.verifiers.arithmetic import evaluate, to_python

TARGET = 24

_EQUALS_TARGET = (re.compile(rf"=\s*{TARGET}\s*\.?\s*$"), re.compile(rf"^\s*{TARGET}\s*="))


def expression_of(answer: str) -> str:
    r"""The arithmetic in an answer: LaTeX operators made Python's, `\frac{a}{b}` -> `(a)/(b)`,
    and a trailing `= 24` (or leading `24 =`) dropped."""
    s = to_python(answer)
    for pattern in _EQUALS_TARGET:
        s = pattern.sub("", s)
    return s.strip()


def parse_numbers(puzzle: str | Sequence[int]) -> list[int]:
    return [int(n) for n in (puzzle.split() if isinstance(puzzle, str) else puzzle)]


def solves(answer: str, puzzle: str | Sequence[int]) -> bool:
    """Whether `answer` is an expression using exactly the puzzle's numbers that equals 24."""
    parsed = evaluate(expression_of(answer))  # integers, + - * / and parentheses only
    return (parsed is not None and parsed.value == TARGET
            and sorted(parsed.literals) == sorted(parse_numbers(puzzle)))


def puzzle_numbers(question: str) -> list[int]:
    """The puzzle's numbers: the integers in its question ("4 4 6 8"); never raises."""
    return [int(n) for n in re.findall(r"\d+", question)]


def verify(question: str, answer: str) -> bool:
    """The gold-free answer check: `solves` against the question's own numbers."""
    return solves(answer, puzzle_numbers(question))


_LEFT = re.compile(r"left:\s*([^)\n]*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def numbers_left(text: str) -> str | None:
    """What follows the last "left:" of a path ("4 6 12" from "... (left: 4 6 12)"), or None
    (ToT's `get_current_numbers`, over the whole text rather than its last line)."""
    found = _LEFT.findall(text)
    return found[-1].strip() if found else None


_EQUATION = re.compile(r"(-?\d+(?:\.\d+)?(?:/\d+)?)\s*([-+*/])\s*(-?\d+(?:\.\d+)?(?:/\d+)?)"
                       r"\s*=\s*(-?\d+(?:\.\d+)?(?:/\d+)?)")
_STEP = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


# What `replay` finds, in the order it checks: the first failing check names a path's fault.
ALIVE, NOT_LEFT, ARITHMETIC, LEFT_LIST, DEAD_END = (
    "can still make 24", "a number not left", "wrong arithmetic", 'a wrong "left:" list',
    "cannot make 24")


def replay(question: str, text: str) -> str:
    """Replays the steps so far from the puzzle's own numbers and says what, if anything, is
    wrong: each "a op b = c" must take two numbers still left (else NOT_LEFT) and be exact
    arithmetic (ARITHMETIC), and each "left:" list must be what the steps leave (LEFT_LIST);
    then the numbers left must still make 24 (DEAD_END, or ALIVE). ToT reads only the last
    "left:", which a small model's bookkeeping makes wrong ("9 - 6 = 3.5 (left: 3 6 3.5)").
    Decimals and fractions are read exactly ("8/3" is 8/3, "2.67" is not)."""
    numbers = [Fraction(n) for n in puzzle_numbers(question)]
    try:
        for line in text.splitlines():
            line = to_python(line)
            for a, op, b, c in _EQUATION.findall(line):
                x, y, z = Fraction(a), Fraction(b), Fraction(c)
                if not (_take(numbers, x) and _take(numbers, y)):
                    return NOT_LEFT
                if _STEP[op](x, y) != z:
                    return ARITHMETIC
                numbers.append(z)
            left = numbers_left(line)
            if left is not None and sorted(map(Fraction, _NUMBER.findall(left))) != sorted(numbers):
                return LEFT_LIST
    except ZeroDivisionError:  # "6 / 0 = 6", or a number written "8/0"
        return ARITHMETIC
    return ALIVE if can_make(numbers) else DEAD_END


def is_step(line: str) -> bool:
    """Whether a line writes an operation "a op b = c"; an "Answer:" line is not a step."""
    return (not line.lstrip().lower().startswith("answer")
            and _EQUATION.search(to_python(line)) is not None)


def partial(question: str, text: str) -> bool:
    """Whether the steps so far are right and can still make 24 (`replay` finds no fault)."""
    return replay(question, text) == ALIVE


def _take(numbers: list[Fraction], x: Fraction) -> bool:
    if x not in numbers:
        return False
    numbers.remove(x)
    return True


def can_make(numbers: Sequence[Fraction | int]) -> bool:
    """Whether + - * / can combine all of `numbers`, each once, into 24: exact search."""
    return _reachable(tuple(sorted(Fraction(n) for n in numbers)))


@lru_cache(maxsize=1 << 16)
def _reachable(numbers: tuple[Fraction, ...]) -> bool:
    """Replace any pair by one of its results, recursively, until one number is left."""
    if len(numbers) == 1:
        return numbers[0] == TARGET
    for i, j in combinations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [x for k, x in enumerate(numbers) if k not in (i, j)]
        results = {a + b, a - b, b - a, a * b}
        results |= {x / y for x, y in ((a, b), (b, a)) if y}
        if any(_reachable(tuple(sorted([*rest, x]))) for x in results):
            return True
    return False


def expression_key(answer: str) -> str:
    """Voting key: the expression without spaces (different solutions are different answers)."""
    return re.sub(r"\s+", "", expression_of(answer))


def prompt(puzzle: str) -> str:
    return f"Input: {puzzle}"


def cot_shots() -> tuple[str, tuple[tuple[str, str], ...]]:
    """ToT's chain-of-thought prompt (`TOT_COT`, below) as a chat: its first line the system
    message, each worked puzzle a user turn ("Input: 4 4 6 8") and an assistant turn ("Steps:
    ... Answer: ..."). A 0.5B chat model given the whole prompt as one message solves its first
    example instead of the puzzle."""
    head, *examples = TOT_COT.split("Input: ")
    shots = tuple((f"Input: {puzzle}", solution.strip())
                  for puzzle, _, solution in (e.partition("\n") for e in examples)
                  if solution.strip())
    return head.strip(), shots


# --- Tree of Thoughts prompts -------------------------------------------------------------------
# Verbatim from princeton-nlp/tree-of-thought-llm src/tot/prompts/game24.py (MIT licence).

TOT_COT = '''Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Each step, you are only allowed to choose two of the remaining numbers to obtain a new number.
Input: 4 4 6 8
Steps:
4 + 8 = 12 (left: 4 6 12)
6 - 4 = 2 (left: 2 12)
2 * 12 = 24 (left: 24)
Answer: (6 - 4) * (4 + 8) = 24
Input: 2 9 10 12
Steps:
12 * 2 = 24 (left: 9 10 24)
10 - 9 = 1 (left: 1 24)
24 * 1 = 24 (left: 24)
Answer: (12 * 2) * (10 - 9) = 24
Input: 4 9 10 13
Steps:
13 - 10 = 3 (left: 3 4 9)
9 - 3 = 6 (left: 4 6)
4 * 6 = 24 (left: 24)
Answer: 4 * (9 - (13 - 10)) = 24
Input: 1 4 8 8
Steps:
8 / 4 = 2 (left: 1 2 8)
1 + 2 = 3 (left: 3 8)
3 * 8 = 24 (left: 24)
Answer: (1 + 8 / 4) * 8 = 24
Input: 5 5 5 9
Steps:
5 + 5 = 10 (left: 5 9 10)
10 + 5 = 15 (left: 9 15)
15 + 9 = 24 (left: 24)
Answer: ((5 + 5) + 5) + 9 = 24
Input: {input}
'''  # noqa: E501

TOT_PROPOSE = '''Input: 2 8 8 14
Possible next steps:
2 + 8 = 10 (left: 8 10 14)
8 / 2 = 4 (left: 4 8 14)
14 + 2 = 16 (left: 8 8 16)
2 * 8 = 16 (left: 8 14 16)
8 - 2 = 6 (left: 6 8 14)
14 - 8 = 6 (left: 2 6 8)
14 /  2 = 7 (left: 7 8 8)
14 - 2 = 12 (left: 8 8 12)
Input: {input}
Possible next steps:
'''

TOT_VALUE = '''Evaluate if given numbers can reach 24 (sure/likely/impossible)
10 14
10 + 14 = 24
sure
11 12
11 + 12 = 23
12 - 11 = 1
11 * 12 = 132
11 / 12 = 0.91
impossible
4 4 10
4 + 4 + 10 = 8 + 10 = 18
4 * 10 - 4 = 40 - 4 = 36
(10 - 4) * 4 = 6 * 4 = 24
sure
4 9 11
9 + 11 + 4 = 20 + 4 = 24
sure
5 7 8
5 + 7 + 8 = 12 + 8 = 20
(8 - 5) * 7 = 3 * 7 = 21
I cannot obtain 24 now, but numbers are within a reasonable range
likely
5 6 6
5 + 6 + 6 = 17
(6 - 5) * 6 = 1 * 6 = 6
I cannot obtain 24 now, but numbers are within a reasonable range
likely
10 10 11
10 + 10 + 11 = 31
(11 - 10) * 10 = 10
10 10 10 are all too big
impossible
1 3 3
1 * 3 * 3 = 9
(1 + 3) * 3 = 12
1 3 3 are all too small
impossible
{input}
'''

TOT_VALUE_LAST_STEP = '''Use numbers and basic arithmetic operations (+ - * /) to obtain 24. Given an input and an answer, give a judgement (sure/impossible) if the answer is correct, i.e. it uses each input exactly once and no other numbers, and reach 24.
Input: 4 4 6 8
Answer: (4 + 8) * (6 - 4) = 24
Judge: 
sure
Input: 2 9 10 12
Answer: 2 * 12 * (10 - 9) = 24
Judge: 
sure
Input: 4 9 10 13
Answer: (13 - 9) * (10 - 4) = 24
Judge: 
sure
Input: 4 4 6 8
Answer: (4 + 8) * (6 - 4) + 1 = 25
Judge: 
impossible
Input: 2 9 10 12
Answer: 2 * (12 - 10) = 24
Judge: 
impossible
Input: 4 9 10 13
Answer: (13 - 4) * (10 - 9) = 24
Judge: 
impossible
Input: {input}
Answer: {answer}
Judge:'''  # noqa: E501, W291


def tot_propose(puzzle: str, path: str) -> tuple[str, str]:
    """ToT's `propose_prompt_wrap`: the propose prompt on the numbers left; once only 24 is
    left, the CoT prompt with the steps so far, for the model to write "Answer: ...". Returns
    (user message, start of the reply)."""
    left = numbers_left(path) if path else None
    if left == str(TARGET):
        return TOT_COT.format(input=puzzle), "Steps:\n" + path
    return TOT_PROPOSE.format(input=puzzle if left is None else left), ""


def tot_value(puzzle: str, path: str) -> str:
    """ToT's `value_prompt_wrap`: the value prompt on the numbers left, or, for a last line
    without "left:" (the answer), the last-step prompt that judges the answer."""
    last = path.strip().split("\n")[-1]
    if "left:" not in last.lower():
        answer = re.sub(r"^\s*answer:\s*", "", last, flags=re.IGNORECASE)
        return TOT_VALUE_LAST_STEP.format(input=puzzle, answer=answer)
    return TOT_VALUE.format(input=numbers_left(last))


# --- the task --------------------------------------------------------------------------------

_SYSTEM, _SHOTS = cot_shots()

TASK = Task(
    name="game24",
    summary="Game of 24 (Tree of Thoughts): 1,362 puzzles; the checker evaluates the expression",
    rules=Rules(extract=extract_answer, check=solves, key=expression_key),
    question_field="puzzle",
    answer_field="puzzle",  # the gold is the puzzle itself: any valid expression is correct
    id_field="rank",  # the one id both copies share (the local file's `index` is rank - 1)
    prompt=prompt,
    instruction=_SYSTEM,  # the worked examples set the form: "Answer: ...", not \boxed{}
    shots=_SHOTS,
    step_delimiter="\n",
    verify=verify,
    partial=partial,
    data_file="game24.jsonl",
    hub=HubSource("test-time-compute/game-of-24", split="train",
                  rename={"Puzzles": "puzzle", "Rank": "rank"}),
)
