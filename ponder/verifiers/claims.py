r"""Arithmetic claims in a chain of thought, found and judged exactly: a calculator's check.

`claims(text)` reads every `LEFT = RIGHT` a chain writes — `48 / 2 = 24`, `$5 + $7 = $12`,
`3 \times 12 = 36`, `\frac{48}{2} = 24`, `5 cm + 7 cm = 12 cm`, `1,200 + 300 = 1,500`, inside
`\[ … \]`, `\( … \)` or plain prose — and judges each with ponder's eval-free arithmetic
(verifiers/arithmetic.py, exact fractions). A chain `a = b = c` is its links `a = b` and `b = c`,
each checked (`2 + 3 = 5 + 1 = 6`: the first link, 5 = 6, is false; the second is true).

How a claim is read, line by line (fenced code blocks are skipped: code assigns, it does not
claim):
  1. list markers (`1.`, `-`), dates (2023-05-01, 5/12/2024), times (3:30), phone numbers,
     versions (1.2.3) and ranges (5-10 minutes) are masked, so none of them is read as arithmetic;
  2. LaTeX is rewritten: `\text{cm}` -> `cm`, `\frac{a}{b}` -> `((a)/(b))`, `\times` -> `*`,
     `\approx` -> `≈`, delimiters and `$` dropped; `3 x 4`, `3 times 4` -> `3 * 4`;
  3. the left side is the longest arithmetic that ends at the `=`, the right side the longest
     that starts after it; unit words after a number (`5 cm`, `12 inches/foot`) are dropped;
  4. a side cut short is not guessed at: a link is skipped when the left side follows an
     operator, a number, a variable (`3x = 15`) or a word that joins it to more arithmetic
     (`50% of 40 = 20`: "of"), or the right side runs on into more (`= 12 + x`).

Judging: exact, except that a right side written as a decimal is true if the left rounds to it
(`10 / 3 = 3.33`), `≈` allows half a unit of the last digit written (`≈ 133`), and `%` may be read
as /100 or not (`0.2 × 100 = 20%` and `20% = 0.2` are both what people write). Links that claim
nothing checkable are left out: neither side computes (`50% = 0.5`), or the left is a bare
quantity with a unit (`2 hours = 2 × 60`: a conversion, not a computation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from ponder.verifiers.arithmetic import evaluate

# --- 1. masking what looks like arithmetic but is not -------------------------------------------

MASK = " § "  # a token that no expression may touch
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)]|#{1,6})\s+")
_NOT_ARITHMETIC = [
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),  # ISO dates
    re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),  # 5/12/2024
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\b\.?)?"),  # 3:30, 10:15 pm
    re.compile(r"(?:\(\d{3}\)\s*|\b\d{3}[-.])\d{3}[-.]\d{4}\b"),  # (555) 123-4567, 555-123-4567
    re.compile(r"\bv?\d+(?:\.\d+){2,}\b|\bv\d+(?:\.\d+)+\b"),  # versions: 1.2.3, v2.1
    re.compile(r"\b\d+(?:\.\d+)?\s*[–—]\s*\d+(?:\.\d+)?\b"),  # 5–10 (dashes only ranges use)
]
_HYPHEN_RANGE = re.compile(r"\b(\d+)-(\d+)\b(?=\s*[A-Za-z%])")  # 5-10 minutes, not 20-5 apples


def _mask(line: str) -> str:
    for pattern in _NOT_ARITHMETIC:
        line = pattern.sub(MASK, line)
    return _HYPHEN_RANGE.sub(lambda m: MASK if int(m[1]) < int(m[2]) else m[0], line)


# --- 2. LaTeX and words made plain arithmetic ---------------------------------------------------

_TEXT = re.compile(r"\\(?:text|mathrm|textbf|textit|mbox|mathbf|operatorname)\s*{([^{}]*)}")
_FRAC = re.compile(r"\\[dt]?frac\s*{([^{}]*)}\s*{([^{}]*)}")
_NUMBER = re.compile(r"[\d.,]+")
_REWRITES = [  # in order; each (pattern, replacement)
    (re.compile(r"\\[\[\]()]|\\left|\\right|\\boxed|&|\\\\"), " "),
    (re.compile(r"\\[,;:! ]|\\q?quad|~"), " "),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\approx|\\simeq|≈"), " ≈ "),
    (re.compile(r"\\times|\\cdot|[×·∗]"), " * "),
    (re.compile(r"\\div|÷"), " / "),
    (re.compile(r"−"), "-"),
    (re.compile(r"\\?\$"), ""),
    (re.compile(r"(?<=\d)\s*\*\*\s*(?=\d)|\^"), " ^ "),  # powers: no claim reads through one
    (re.compile(r"\*\*"), " "),  # markdown bold
    (re.compile(r"\\[A-Za-z]+"), MASK),  # \sqrt, \pi, \ldots: nothing to evaluate
    (re.compile(r"[{}]"), " "),
    (re.compile(r"(?<=\d)\s*(?:x|times|multiplied by)\s+(?=\d)|(?<=\d)x(?=\d)"), " * "),
    (re.compile(r"(?<=\d)\s+divided by\s+(?=\d)"), " / "),
    (re.compile(r"(?<=\d)\s+plus\s+(?=\d)"), " + "),
    (re.compile(r"(?<=\d)\s+minus\s+(?=\d)"), " - "),
    (re.compile(r"(?<=\d)\s*(?:percent|per cent)\b"), "%"),
    (re.compile(r"(?<=\d)/(?=[A-Za-z]{2})"), " per "),  # $2/egg -> 2 per egg
    (re.compile(r"(?<=[\d)])\("), "*("),  # 2(3 + 4): implied multiplication
]


def plain(line: str) -> str:
    r"""One line with LaTeX, currency and worded operators rewritten as plain arithmetic."""
    line = _TEXT.sub(r" \1 ", line)
    while (m := _FRAC.search(line)) is not None:
        top, bottom = (p if _NUMBER.fullmatch(p.strip()) else f"({p})" for p in (m[1], m[2]))
        line = f"{line[:m.start()]}({top}/{bottom}){line[m.end():]}"
    for pattern, replacement in _REWRITES:
        line = pattern.sub(replacement, line)
    return line


# --- 3. tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?%)?|\.\d+(?:\s?%)?)
  | (?P<cmp>==|!=|<=|>=|=>|:=|[<>≤≥≠§^])
  | (?P<eq>[=≈])
  | (?P<op>[-+*/()])
  | (?P<word>[A-Za-z_][\w']*(?:/[A-Za-z]+)*)
  | (?P<punct>\S)""", re.X)
CONNECTORS = {"of", "times", "by", "per", "plus", "minus", "over", "and", "to", "into", "than",
              "multiplied", "divided", "thousand", "million", "billion", "hundred", "dozen"}
ARTICLES = {"a", "A", "I"}  # single letters that are words, not variables
MAX_TOKENS = 100  # a longer side is past arithmetic.MAX_CHARS anyway: not tried


@dataclass(frozen=True)
class Token:
    kind: str  # num, cmp, eq, op, word, punct
    text: str
    glued: bool  # no space between it and the token before


def tokens(line: str) -> list[Token]:
    """A plain line as tokens, each knowing whether it touches the one before."""
    out, end = [], 0
    for m in _TOKEN.finditer(line):
        kind = m.lastgroup
        assert kind is not None
        out.append(Token(kind, m[0], m.start() == end and end > 0))
        end = m.end()
    return out


def _variable(t: Token) -> bool:
    """A word that names a quantity rather than a unit: `x`, `3b`, `apples_count`."""
    return t.kind == "word" and ((len(t.text) == 1 and t.text not in ARTICLES)
                                 or "_" in t.text or any(ch.isdigit() for ch in t.text))


def _units(seg: list[Token]) -> list[bool]:
    """Which words of a segment are units: up to three words after a number (or a closing
    parenthesis) and before an operator or the segment's end, none a variable or connector."""
    unit = [False] * len(seg)
    i = 0
    while i < len(seg):
        if seg[i].kind != "word":
            i += 1
            continue
        j = i
        while j < len(seg) and seg[j].kind == "word":
            j += 1
        after_number = i > 0 and (seg[i - 1].kind == "num" or seg[i - 1].text == ")")
        before_op = j == len(seg) or (seg[j].kind == "op" and seg[j].text != "(")
        words = seg[i:j]
        if (after_number and before_op and j - i <= 3 and not _variable(words[0])
                and words[0].text.lower() not in CONNECTORS - {"per"}):
            unit[i:j] = [True] * (j - i)
        i = j
    return unit


# --- 4. sides: the arithmetic either side of an `=` ---------------------------------------------

@dataclass(frozen=True)
class Side:
    text: str  # the arithmetic as read, units dropped
    values: tuple[Fraction, ...]  # its value, with `%` read as /100 and, if it has one, not
    literal: bool  # a single number, no operator
    decimals: int  # digits after the point, where it is a single number
    unit: bool  # a unit word was dropped from it


def _side(seg: list[Token], unit: list[bool], start: int, end: int) -> Side | None:
    kept = [t for t, u in zip(seg[start:end], unit[start:end], strict=True) if not u]
    if not kept or (kept[0].kind == "op" and kept[0].text not in "(-"):
        return None
    readings = {" ".join(f"({t.text.rstrip('% ')}/100)" if t.text.endswith("%") else t.text
                         for t in kept),
                " ".join(t.text.rstrip("% ") for t in kept)}
    values = [v.value for r in sorted(readings)
              if (v := evaluate(r, decimals=True, negation=True)) is not None]
    if not values:
        return None
    literal = len(kept) == 1
    decimals = len(kept[0].text.rstrip("% ").partition(".")[2]) if literal else 0
    text = "".join(("" if t.glued or i == 0 else " ") + t.text for i, t in enumerate(kept))
    return Side(text, tuple(values), literal, decimals, any(unit[start:end]))


def _blocks(t: Token, *, before: bool) -> bool:
    """Whether a token next to a side means the side was cut out of longer arithmetic."""
    if t.kind in ("num", "cmp") or _variable(t):
        return True
    if t.kind == "op":
        return t.text != ("(" if before else ")")
    if t.kind == "word":  # a unit may follow the right side; a connector is more arithmetic
        return before and t.text.lower() in CONNECTORS
    return False  # punctuation: a sentence around the claim


def _arithmetic(seg: list[Token], unit: list[bool]) -> list[bool]:
    """Which tokens may belong to an expression: numbers, operators, units."""
    return [t.kind in ("num", "op") or u for t, u in zip(seg, unit, strict=True)]


def left_side(seg: list[Token]) -> Side | None:
    """The longest arithmetic that ends where the segment does (just before an `=`)."""
    unit = _units(seg)
    arith = _arithmetic(seg, unit)
    first = len(seg)
    while first > 0 and arith[first - 1]:
        first -= 1
    for start in range(max(first, len(seg) - MAX_TOKENS), len(seg)):
        t = seg[start]
        if unit[start] or not (t.kind == "num" or t.text == "(" or (t.text == "-" and
                                                                    start == first)):
            continue
        side = _side(seg, unit, start, len(seg))
        if side is None:
            continue
        prev = seg[start - 1] if start else None
        if prev is not None and (_blocks(prev, before=True) or (t.glued and prev.kind != "op")
                                 or (t.text == "-" and prev.kind == "word")):
            return None
        return side
    return None


def right_side(seg: list[Token]) -> Side | None:
    """The longest arithmetic that starts where the segment does (just after an `=`)."""
    unit = _units(seg)
    arith = _arithmetic(seg, unit)
    last = 0
    while last < len(seg) and arith[last]:
        last += 1
    for end in range(min(last, MAX_TOKENS), 0, -1):
        if unit[end - 1]:
            continue
        side = _side(seg, unit, 0, end)
        if side is None:
            continue
        if end < len(seg) and _blocks(seg[end], before=False):
            return None
        return side
    return None


# --- 5. claims ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One link `left = right` (or `left ≈ right`) as read: units, `$` and LaTeX rewritten."""

    left: str
    right: str
    true: bool
    approximate: bool = False  # written with ≈


def _judge(left: Side, right: Side, approximate: bool) -> bool:
    """Equal exactly, or (a decimal written on the right, or `≈`) within rounding."""
    if any(a == b for a in left.values for b in right.values):
        return True
    if not right.literal or not (approximate or right.decimals):
        return False
    tolerance = Fraction(5, 10 ** (right.decimals + 1))  # half a unit of the last digit
    return any(abs(a - b) <= tolerance for a in left.values for b in right.values)


def line_claims(line: str) -> list[Claim]:
    """The claims of one line of text: each `=` links the arithmetic ending before it to the
    arithmetic starting after it."""
    toks = tokens(plain(_mask(_LIST_MARKER.sub(" ", line, count=1))))
    segments: list[list[Token]] = [[]]
    links: list[str] = []
    for t in toks:
        if t.kind == "eq":
            segments.append([])
            links.append(t.text)
        else:
            segments[-1].append(t)
    found = []
    for i, link in enumerate(links):
        left, right = left_side(segments[i]), right_side(segments[i + 1])
        if left is None or right is None or (left.literal and (right.literal or left.unit)):
            continue
        found.append(Claim(left.text, right.text, _judge(left, right, link == "≈"),
                           link == "≈"))
    return found


def claims(text: str) -> list[Claim]:
    """Every arithmetic claim of a text, in order, each judged."""
    return [c for line in _FENCE.sub("\n", text).splitlines() if "=" in line or "≈" in line
            or "approx" in line for c in line_claims(line)]


def false_claims(text: str) -> int:
    """How many of the text's arithmetic claims are false."""
    return sum(not c.true for c in claims(text))


def pending_value(text: str) -> Fraction | None:
    """The exact value of the arithmetic a text ends in, just before an `=` it is about to
    write (`... so 17 \\times 20 + 17 \\times 4`), read as `claims` reads a left side; None
    where it ends in no computation (a bare number, a variable, words), inside a code block,
    or where `%` leaves the value open. A calculator fills in what the chain was to write."""
    if text.count("```") % 2:
        return None
    line = text.rsplit("\n", 1)[-1]
    segment = [t for t in tokens(plain(_mask(_LIST_MARKER.sub(" ", line, count=1))))]
    for i in range(len(segment) - 1, -1, -1):
        if segment[i].kind == "eq":
            segment = segment[i + 1:]
            break
    side = left_side(segment)
    if side is None or side.literal or side.unit or len(set(side.values)) != 1:
        return None
    return side.values[0]


def right_agrees(value: Fraction, text: str) -> bool | None:
    """Whether what a chain wrote after an `=` (`text`, to the end of its line or the next
    `=`) states `value`, judged as `claims` judges a link; None where it states no arithmetic
    (words, a variable, an expression cut off at the end of `text`)."""
    line = text.split("\n", 1)[0]
    seg = tokens(plain(_mask(line)))
    right = right_side(seg)
    if right is None:
        return None
    whole = sum(1 for _ in tokens(plain(_mask(right.text))))
    if whole >= len(seg) and not text.startswith(line + "\n") and "=" not in text[len(line):]:
        return None  # the arithmetic runs to the end of what was written: it may go on
    left = Side("", (value,), literal=False, decimals=0, unit=False)
    return _judge(left, right, approximate=False)
