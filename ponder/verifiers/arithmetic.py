r"""Exact, safe arithmetic on answers: `(6 - 4) * (4 + 8)`, `180 + 120 + 45`, `\frac{3}{4} \cdot 8`.

Two readers need it: Game of 24's checker (the answer *is* an expression) and the numeric checker
(a model that boxes `180 + 120 + 45 + 200` instead of `545` stated the sum). Neither calls `eval`:
the text is first held to digits, `.`, spaces, `+ - * /` and parentheses, then parsed with `ast`,
and only number literals, the four binary operators (and, where allowed, unary minus) are
evaluated, in `fractions.Fraction`, so `8 / (3 - 8 / 3)` is exactly 24 and `0.1 + 0.2` exactly
3/10. LaTeX and typographic operators (`\times`, `\cdot`, `×`, `\div`, `÷`, `−`, `\frac{a}{b}`)
are rewritten first; `**`, names, calls and anything else is refused.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 200  # longer is not an answer someone wrote by hand

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_SYMBOLS = [("\\times", "*"), ("\\cdot", "*"), ("×", "*"), ("·", "*"), ("\\div", "/"),
            ("÷", "/"), ("−", "-"), ("\\left", ""), ("\\right", ""), ("[", "("), ("]", ")"),
            ("\\$", ""), ("$", "")]
_FRAC = re.compile(r"\\[dt]?frac\s*{([^{}]*)}\s*{([^{}]*)}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_INTEGERS_ONLY = re.compile(r"^[\d\s+\-*/()]+$")
_WITH_DECIMALS = re.compile(r"^[\d\s.+\-*/()]+$")


@dataclass(frozen=True)
class Value:
    value: Fraction
    literals: tuple[Fraction, ...]  # the numbers written, in order


def to_python(text: str) -> str:
    r"""LaTeX and typographic operators made Python's; `\frac{a}{b}` -> `(a)/(b)`."""
    for symbol, replacement in _SYMBOLS:
        text = text.replace(symbol, replacement)
    while (m := _FRAC.search(text)) is not None:
        text = text[: m.start()] + f"({m[1]})/({m[2]})" + text[m.end() :]
    return text


class _NotAllowed(Exception):
    pass


def evaluate(text: str, *, decimals: bool = False, negation: bool = False) -> Value | None:
    """The exact value of an arithmetic expression, or None if `text` is not one (or divides by
    zero). `decimals` admits `2.5` (and thousands commas, `1,200`); `negation` admits unary
    minus (`-3 + 5`). Game of 24 allows neither."""
    expression = to_python(text).strip()
    if decimals:
        expression = _THOUSANDS.sub("", expression)
    allowed = _WITH_DECIMALS if decimals else _INTEGERS_ONLY
    if not expression or len(expression) > MAX_CHARS or not allowed.match(expression):
        return None  # names, calls, strings, hex: never parsed; `**` is, and is then refused
    literals: list[Fraction] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            return _BINARY[type(node.op)](left, right)
        if negation and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Constant) and type(node.value) in ((int, float) if decimals
                                                                   else (int,)):
            literals.append(Fraction(repr(node.value)))  # repr: `0.1` -> 1/10, exactly
            return literals[-1]
        raise _NotAllowed(type(node).__name__)

    try:
        return Value(value(ast.parse(expression, mode="eval").body), tuple(literals))
    except (SyntaxError, _NotAllowed, ZeroDivisionError, RecursionError, MemoryError, ValueError):
        return None
