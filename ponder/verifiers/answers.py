r"""Final answers: pull them out of a chain of thought, key them for voting, and check them.

Three jobs, in the order a scheme needs them:

1. `extract_answer(text)` finds the final answer of a chain of thought: the last `\boxed{}`
   (the format Qwen2.5-Math and DeepSeek-R1 are trained to write), else GSM8K's `#### X`, else
   "the answer is X" / "Final Answer: X". `last_number` is a separate fallback for numeric tasks.
2. `canonical(answer)` is a cheap string key for majority voting (self-consistency groups samples
   by it). Pure regex work, no sympy, so voting over hundreds of samples costs nothing.
3. `is_equivalent(pred, gold)` decides correctness: exact rational comparison for plain numbers,
   math-verify (LaTeX -> sympy) for everything else, bounded by a timeout in any thread.

Canonical rules (one key per answer; equal answers written differently get equal keys):
- Wrappers go: `$...$`, `\(...\)`, a whole-answer `\boxed{}`, `\text{}`/`\mathrm{}`/`\mbox{}`
  (their content stays), `\left`/`\right`, `\displaystyle`, LaTeX spacing (`\!`, `\,`, `~`, ...),
  all whitespace, a trailing period, a leading single-letter assignment (`x = 5` -> `5`).
- Decorations that do not change the value go: `\$`/`$`, `%`/`\%` (so `50\%` == `50`: benchmark
  golds write percentages as the number of percent), degrees (`^\circ`), trailing unit words after
  a number (`18 dollars`, `5\text{ cm}` -> the number).
- `\dfrac`/`\tfrac` -> `\frac`, `\frac12` -> `\frac{1}{2}`, `\sqrt2` -> `\sqrt{2}`.
- Numbers become exact rationals printed one way: integers as `18` (so `18.00`, `+18`,
  `18,000`-style thousands are canonical), terminating fractions as decimals (`1/2`, `\frac{1}{2}`,
  `0.50` -> `0.5`), other fractions as `p/q` (`\frac{2}{6}` -> `1/3`).
- Purely alphabetic answers are lower-cased (`Yes` == `yes`); `(A)` -> `a`, `(073)` -> `73`.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext
from fractions import Fraction

from ponder.verifiers.mathverify import math_verify_equal

REL_TOL = 1e-6  # numeric answers within this relative distance are equal (unless both integers)
MAX_NUMBER_CHARS = 200

# ---------------------------------------------------------------------------------------------
# 1. Extraction
# ---------------------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)\b")
_HASHES = re.compile(r"####\s*(.+)")
_PHRASE = re.compile(r"(?:final\s+answer|\banswer)\s*(?:is\b|:)\s*:?\s*", re.IGNORECASE)
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_SENTENCE = re.compile(r"^(.*?)(?:\.\s|\.?$)")
_NUMBER_IN_TEXT = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def _brace_pairs(text: str) -> dict[int, int]:
    """Position of each unescaped `{` -> its matching `}`, in one pass (unclosed ones left out),
    so finding every box stays linear even in a degenerate `\\boxed{\\boxed{...` generation."""
    pairs, opened = {}, []
    for i, ch in enumerate(text):
        if ch in "{}" and text[i - 1 : i] == "\\":
            continue
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            pairs[opened.pop()] = i
    return pairs


def _box(text: str, m: re.Match[str], pairs: dict[int, int]) -> tuple[str, int] | None:
    """The content of the box whose macro `m` matched, and where the box ends; None if empty or
    left open (a generation cut off mid-answer). Empty boxes are skipped: a model that echoes the
    instruction "within \\boxed{}" has not answered."""
    j = m.end()
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "{":
        if j not in pairs:
            return None
        content, end = text[j + 1 : pairs[j]], pairs[j] + 1
    elif j > m.end() and (token := re.match(r"[^\s$]+", text[j:])):
        content, end = token.group().rstrip(".,"), j + token.end()  # `\boxed 5.` -> 5
    else:
        return None
    return (content.strip(), end) if content.strip() else None


def boxed_contents(text: str) -> list[str]:
    r"""Every non-empty, closed `\boxed{...}` / `\fbox{...}` / `\boxed 5` content, in order."""
    pairs = _brace_pairs(text)
    return [box[0] for m in _BOX.finditer(text) if (box := _box(text, m, pairs))]


def last_boxed(text: str) -> str | None:
    """The content of the last non-empty, closed box (searched from the end: cheap on long text)."""
    matches = list(_BOX.finditer(text))
    pairs = _brace_pairs(text) if matches else {}
    for m in reversed(matches):
        if box := _box(text, m, pairs):
            return box[0]
    return None


def _clean_phrase_answer(rest: str) -> str | None:
    """The answer after "the answer is": first line, first sentence, no `$`/`**` around it."""
    rest = rest.strip().split("\n", 1)[0].replace("**", "").strip()
    if rest.startswith("$"):  # "$18$. I hope it is correct." -> the math span
        inner = rest.lstrip("$")
        end = _UNESCAPED_DOLLAR.search(inner)
        rest = inner[: end.start()] if end else inner
    else:
        m = _SENTENCE.match(rest)
        rest = m.group(1) if m else rest
    rest = rest.strip().strip("$").strip().rstrip(".").strip()
    return rest or None


def extract_answer(text: str) -> str | None:
    r"""The final answer of a chain of thought, or None.

    Priority: the last closed `\boxed{}`/`\fbox{}` (nested braces handled), else the last `#### X`
    line, else the last "the (final) answer is X" / "Final Answer: X" (first sentence, `$`, `**`
    and a trailing period stripped). The answer is returned as written; `canonical` normalises it.
    """
    if (boxed := last_boxed(text)) is not None:
        return boxed
    if hashes := _HASHES.findall(text):
        return hashes[-1].strip().rstrip(".").strip() or None
    phrases = list(_PHRASE.finditer(text))
    if phrases:
        return _clean_phrase_answer(text[phrases[-1].end() :])
    return None


def last_number(text: str) -> str | None:
    """The last number written in `text` (thousands commas removed): the classic GSM8K fallback
    when a model forgot the answer format. Kept apart from `extract_answer` because on non-numeric
    tasks the last number of a chain of thought is rarely its answer."""
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


# ---------------------------------------------------------------------------------------------
# 2. Canonical keys
# ---------------------------------------------------------------------------------------------

_TEXT_MACRO = re.compile(
    r"\\(?:text|textbf|textit|textnormal|mathrm|mathbf|mbox|operatorname)\s*{([^{}]*)}"
)
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\[dt]binom"), r"\\binom"),
    (re.compile(r"\\(?:left|right)(?![a-zA-Z])|\\displaystyle"), ""),
    (re.compile(r"\^\s*{?\s*\\circ\s*}?|°|\\degree"), ""),  # 90^\circ -> 90
    (re.compile(r"\\?%|\\\$|\$"), ""),
    (re.compile(r"(?<!\\)\\[!,;: ]|\\q?quad|~"), " "),  # not in a `\\` row break
    (re.compile(r"\{,\}"), ","),  # 3{,}000
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*(?={)"), r"\\frac{\1}"),
    (re.compile(r"\\frac\s*({[^{}]*})\s*(\d)"), r"\\frac\1{\2}"),
    (re.compile(r"\\sqrt\s*(\d+)"), r"\\sqrt{\1}"),
]
_ASSIGNMENT = re.compile(r"^[a-zA-Z]\s*=\s*(?=\S)")
# "18 dollars" -> "18", "5 cm^2" -> "5"
_TRAILING_WORDS = re.compile(r"^(.*?\d\.?)\s+[a-zA-Z][a-zA-Z .]+(?:\^{?\d}?)?$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")  # unambiguous: no backtracking
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SLASH = re.compile(r"^([+-]?\d+)/(\d+)$")
_FRAC = re.compile(r"^([+-]?)\\frac{([+-]?\d+)}{([+-]?\d+)}$")
_SPACES = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])|\s+")  # keep `\pi r` from becoming `\pir`
_CHOICE = re.compile(r"^\(([A-Za-z])\)$")
_PARENTHESISED = re.compile(r"^\(([^(),]*)\)$")


def _parse_number(s: str) -> Fraction | None:
    r"""An exact rational for `18`, `-0.50`, `3,000`, `1/2`, `\frac{1}{2}`; None otherwise
    (also for numbers longer than `MAX_NUMBER_CHARS`: not an answer, and past int()'s limit)."""
    if len(s) > MAX_NUMBER_CHARS:
        return None
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if _DECIMAL.match(s):
        return Fraction(s.rstrip(".") or "0")
    if m := _SLASH.match(s):
        return Fraction(int(m[1]), int(m[2])) if int(m[2]) else None
    if m := _FRAC.match(s):
        num, den = int(m[2]), int(m[3])
        return None if den == 0 else (-1 if m[1] == "-" else 1) * Fraction(num, den)
    return None


def _format_number(x: Fraction) -> str:
    """Integers plainly, terminating fractions as decimals, the rest as `p/q`."""
    if x.denominator == 1:
        return str(x.numerator)
    den = x.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return f"{x.numerator}/{x.denominator}"
    with localcontext() as ctx:
        ctx.prec = 60 + len(str(x.denominator))
        text = format((Decimal(x.numerator) / Decimal(x.denominator)).normalize(), "f")
    return text


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        while s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    if (m := _BOX.match(s)) and (box := _box(s, m, _brace_pairs(s))):
        content, end = box
        if not s[end:].strip(" ."):  # the whole answer is one box
            s = content
    return s


def canonical(answer: str) -> str:
    """The voting key of an answer (rules in the module docstring). Equal keys mean equal answers;
    unequal keys may still be equivalent (`x+1` vs `1+x`): `is_equivalent` decides those."""
    s = _strip_wrappers(answer)
    for _ in range(3):  # \text{\textbf{5}} nests rarely deeper
        s = _TEXT_MACRO.sub(r"\1", s)
    for pattern, repl in _REWRITES:
        s = pattern.sub(repl, s)
    s = s.strip().rstrip(".").strip()
    s = _ASSIGNMENT.sub("", s)
    if m := _TRAILING_WORDS.match(s):
        s = m.group(1)
    s = _SPACES.sub(lambda m: f"{m[1]} " if m[1] else "", s).rstrip(".")
    if (m := _PARENTHESISED.match(s)) and _parse_number(m[1]) is not None:
        s = m[1]  # AIME solutions box `\textbf{(073)}`
    if (number := _parse_number(s)) is not None:
        return _format_number(number)
    if m := _CHOICE.match(s):
        s = m.group(1)
    return s.lower() if s.isalpha() else s


def to_number(answer: str) -> Fraction | None:
    """The answer as an exact rational if it is a plain number (after `canonical`), else None."""
    return _parse_number(canonical(answer))


def numbers_equal(a: Fraction, b: Fraction) -> bool:
    """Exact for integers (1000000 != 1000001); within `REL_TOL` otherwise, so a repeating decimal
    written out (`0.3333333`) matches its fraction (`1/3`)."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


# ---------------------------------------------------------------------------------------------
# 3. Equivalence
# ---------------------------------------------------------------------------------------------


def is_equivalent(pred: str, gold: str, *, timeout: float = 5.0) -> bool:
    """Whether the predicted answer equals the gold one.

    Plain numbers on both sides compare exactly as rationals (`numbers_equal`: exact for integers,
    relative tolerance 1e-6 otherwise) without touching sympy; equal `canonical` keys are equal;
    everything else goes to math-verify, bounded by `timeout` seconds in total. Safe to call from
    any thread (see `ponder.verifiers.mathverify`).
    """
    if not pred or not gold or not pred.strip() or not gold.strip():
        return False
    p, g = canonical(pred), canonical(gold)
    if p == g:
        return True
    a, b = _parse_number(p), _parse_number(g)
    if a is not None and b is not None:
        return numbers_equal(a, b)
    return math_verify_equal(pred, gold, timeout=timeout)
