"""How a task reads and judges answers: extract, check, key — one small bundle per answer kind.

`RULES` is the table behind `jsonl_task(..., checker=NAME)`:

    numeric  GSM8K-style numbers: boxed / `####` / "the answer is", else the last number written;
             judged as exact rationals (`numbers_equal`), never by sympy
    math     LaTeX answers: boxed answer, judged by `is_equivalent` (numbers, then math-verify)
    exact    free text: equal `canonical` keys (case, spacing, `$`, `\\text{}` ignored)
    yesno    Yes/No questions: the first word of the answer, yes/true or no/false

Game of 24 has its own rules (ponder/tasks/game24.py): its "answer" is an expression to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from ponder.verifiers import canonical, extract_answer, is_equivalent, last_number, numbers_equal
from ponder.verifiers.answers import to_number
from ponder.verifiers.arithmetic import evaluate


@dataclass(frozen=True)
class Rules:
    extract: Callable[[str], str | None]  # completion text -> answer, None if there is none
    check: Callable[[str, str], bool]  # (predicted answer, gold answer) -> correct?
    key: Callable[[str], str] = canonical  # answer -> voting key; equal keys = same answer


# --- numeric ------------------------------------------------------------------------------------


def extract_number(text: str) -> str | None:
    """The stated final answer, or failing that the last number in the text (GSM8K's classic
    fallback for models that forget the format)."""
    return extract_answer(text) or last_number(text)


def numeric_equal(pred: str, gold: str) -> bool:
    """Both sides as exact rationals. An answer that is not a plain number is read as the
    arithmetic it states (`180 + 120 + 45` is 345; `13205 - 8080 = 5225` by its last side), else
    by its last number (`18 \\text{ eggs}` is handled by `canonical`, `x = 18` by this fallback)."""
    expected = to_number(gold)
    got = stated_number(pred)
    return expected is not None and got is not None and numbers_equal(got, expected)


def stated_number(answer: str) -> Fraction | None:
    """A numeric answer's value: the number, the arithmetic, or the last number written."""
    if (number := to_number(answer)) is not None:
        return number
    arithmetic = evaluate(answer.rsplit("=", 1)[-1], decimals=True, negation=True)
    if arithmetic is not None:
        return arithmetic.value
    return to_number(last) if (last := last_number(answer)) is not None else None


# --- exact --------------------------------------------------------------------------------------


def exact_equal(pred: str, gold: str) -> bool:
    return canonical(pred) == canonical(gold)


# --- yes / no -----------------------------------------------------------------------------------

_YES, _NO = {"yes", "true", "correct"}, {"no", "false", "incorrect"}
_FIRST_WORD = re.compile(r"[a-z]+")
_LATEX_WORD = re.compile(r"\\[a-zA-Z]+")  # `\text{Yes}` -> `{Yes}`
_LAST_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def yes_no(answer: str | bool | None) -> str | None:
    r"""'Yes' / 'No' from an answer's first word (`Yes.`, `**no**`, `\text{True}`, a bool), else
    None."""
    if isinstance(answer, bool):
        return "Yes" if answer else "No"
    if not answer:
        return None
    word = _FIRST_WORD.search(_LATEX_WORD.sub("", answer).lower())
    if word is None:
        return None
    return "Yes" if word.group() in _YES else "No" if word.group() in _NO else None


def extract_yes_no(text: str) -> str | None:
    """The stated answer as Yes/No; with none stated, the last standalone yes/no in the text."""
    if (stated := extract_answer(text)) is not None:
        return yes_no(stated)
    words = _LAST_YES_NO.findall(text)
    return yes_no(words[-1]) if words else None


def yes_no_equal(pred: str, gold: str) -> bool:
    answer = yes_no(pred)
    return answer is not None and answer == yes_no(gold)


def yes_no_key(answer: str) -> str:
    return yes_no(answer) or canonical(answer)


RULES: dict[str, Rules] = {
    "numeric": Rules(extract_number, numeric_equal),
    "math": Rules(extract_answer, is_equivalent),
    "exact": Rules(extract_answer, exact_equal),
    "yesno": Rules(extract_yes_no, yes_no_equal, yes_no_key),
}
