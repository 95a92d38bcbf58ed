r"""Game of 24 (Yao et al. 2023, Tree of Thoughts): combine four numbers with + - * / to make 24.

The gold "answer" of a puzzle is its numbers ("4 4 6 8"): any expression that uses each of them
exactly once and equals 24 is correct, so the checker evaluates the expression itself. It never
calls `eval`: the text is parsed with `ast` and only integer literals, the four binary operators
and parentheses are allowed; arithmetic is exact (`fractions.Fraction`), so `8 / (3 - 8 / 3)` is
24 and a float near 24 is not. Unary minus is not an operation of the game and is rejected.

Steps are lines ("4 + 8 = 12 (left: 6 8 12)" in the paper), so `step_delimiter` is "\n".
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

from ponder.tasks.base import HubSource, Task
from ponder.tasks.rules import Rules
from ponder.verifiers import extract_answer

TARGET = 24
MAX_EXPRESSION_CHARS = 200  # 4 numbers need ~30 characters; longer is not an answer

_OPERATORS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_SYMBOLS = [("\\times", "*"), ("\\cdot", "*"), ("×", "*"), ("·", "*"), ("\\div", "/"),
            ("÷", "/"), ("−", "-"), ("\\left", ""), ("\\right", ""), ("[", "("), ("]", ")"),
            ("$", "")]
_FRAC = re.compile(r"\\[dt]?frac\s*{([^{}]*)}\s*{([^{}]*)}")
_ALLOWED = re.compile(r"^[\d\s+\-*/()]+$")


def expression_of(answer: str) -> str:
    r"""The arithmetic in an answer: LaTeX operators made Python's, `\frac{a}{b}` -> `(a)/(b)`,
    and a trailing `= 24` (or leading `24 =`) dropped."""
    s = answer
    for symbol, replacement in _SYMBOLS:
        s = s.replace(symbol, replacement)
    while (m := _FRAC.search(s)) is not None:
        s = s[: m.start()] + f"({m[1]})/({m[2]})" + s[m.end() :]
    s = re.sub(rf"=\s*{TARGET}\s*\.?\s*$", "", s)
    s = re.sub(rf"^\s*{TARGET}\s*=", "", s)
    return s.strip()


class _NotAllowed(Exception):
    pass


def _evaluate(node: ast.AST, literals: list[int]) -> Fraction:
    """Exact value of an allowed expression tree, collecting its integer literals."""
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, literals), _evaluate(node.right, literals)
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Constant) and type(node.value) is int:  # not bool, not float
        literals.append(node.value)
        return Fraction(node.value)
    raise _NotAllowed(type(node).__name__)


def parse_numbers(puzzle: str | Sequence[int]) -> list[int]:
    return [int(n) for n in (puzzle.split() if isinstance(puzzle, str) else puzzle)]


def solves(answer: str, puzzle: str | Sequence[int]) -> bool:
    """Whether `answer` is an expression using exactly the puzzle's numbers that equals 24."""
    expression = expression_of(answer)
    if len(expression) > MAX_EXPRESSION_CHARS or not _ALLOWED.match(expression):
        return False  # names, calls, strings, hex: never parsed; `**` is, and is then refused
    try:
        tree = ast.parse(expression, mode="eval")
        literals: list[int] = []
        value = _evaluate(tree.body, literals)
    except (SyntaxError, _NotAllowed, ZeroDivisionError, RecursionError, MemoryError):
        return False
    return value == TARGET and sorted(literals) == sorted(parse_numbers(puzzle))


def expression_key(answer: str) -> str:
    """Voting key: the expression without spaces (different solutions are different answers)."""
    return re.sub(r"\s+", "", expression_of(answer))


def prompt(puzzle: str) -> str:
    return (f"Use the numbers {puzzle} and basic arithmetic operations (+ - * /) to obtain "
            f"{TARGET}. Use each number exactly once; parentheses are allowed. Your final answer "
            "is the expression alone, for example (a + b) * (c - d).")


TASK = Task(
    name="game24",
    summary="Game of 24 (Tree of Thoughts): 1,362 puzzles; the checker evaluates the expression",
    rules=Rules(extract=extract_answer, check=solves, key=expression_key),
    question_field="puzzle",
    answer_field="puzzle",  # the gold is the puzzle itself: any valid expression is correct
    id_field="rank",  # the one id both copies share (the local file's `index` is rank - 1)
    prompt=prompt,
    step_delimiter="\n",
    data_file="game24.jsonl",
    hub=HubSource("test-time-compute/game-of-24", split="train",
                  rename={"Puzzles": "puzzle", "Rank": "rank"}),
)
