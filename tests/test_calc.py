"""The calculator check: arithmetic claims found and judged (ponder/verifiers/claims.py), and the
`calc` scorer in best-of-n and beam search on the scripted fake."""

from __future__ import annotations

import math
import re

import pytest

from ponder.core.problem import Problem
from ponder.core.protocols import Candidate
from ponder.core.types import user
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.scorers import get_scorer
from ponder.scorers.calc import Calc
from ponder.verifiers.claims import claims, false_claims

T, F = True, False


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("48 / 2 = 24", [("48 / 2", "24", T)], id="division"),
    pytest.param("16 - 7 = 8", [("16 - 7", "8", F)], id="false-subtraction"),
    pytest.param("$5 + $7 = $12", [("5 + 7", "12", T)], id="dollars"),
    pytest.param(r"\$5 + \$7 = \$13", [("5 + 7", "13", F)], id="latex-dollars-false"),
    pytest.param(r"3 \times 12 = 36", [("3 * 12", "36", T)], id="latex-times"),
    pytest.param("3 × 12 = 38", [("3 * 12", "38", F)], id="unicode-times-false"),
    pytest.param("3 x 12 = 36", [("3 * 12", "36", T)], id="x-between-numbers"),
    pytest.param(r"\frac{48}{2} = 24", [("(48/2)", "24", T)], id="frac"),
    pytest.param(r"\dfrac{48}{3} = 24", [("(48/3)", "24", F)], id="dfrac-false"),
    pytest.param("2 + 3 = 5 + 1 = 6", [("2 + 3", "5 + 1", F), ("5 + 1", "6", T)],
                 id="chain-with-one-false-link"),
    pytest.param("2 + 3 = 5 = 10 / 2", [("2 + 3", "5", T), ("5", "10 / 2", T)],
                 id="chain-every-link-true"),
    pytest.param("1,200 + 300 = 1,500", [("1,200 + 300", "1,500", T)], id="thousands"),
    pytest.param("1,200 + 300 = 1,600", [("1,200 + 300", "1,600", F)], id="thousands-false"),
    pytest.param("5 cm + 7 cm = 12 cm", [("5 + 7", "12", T)], id="units"),
    pytest.param(r"9 \text{ eggs} \times 2 \text{ dollars/egg} = 18 \text{ dollars}",
                 [("9 * 2", "18", T)], id="text-units"),
    pytest.param("43 brownies * $3 per brownie = $128", [("43 * 3", "128", F)],
                 id="per-unit-false"),
    pytest.param(r"\[ 16 - (3 + 4) = 16 - 7 = 9 \text{ eggs} \]",
                 [("16 - (3 + 4)", "16 - 7", T), ("16 - 7", "9", T)], id="display-math"),
    pytest.param(r"So it weighs \( \frac{1}{2} \times 30 = 15 \) pounds.",
                 [("(1/2) * 30", "15", T)], id="inline-math-in-prose"),
    pytest.param("The total is $500 + $800 = $1300.", [("500 + 800", "1300", T)],
                 id="prose-around"),
    pytest.param("10 / 3 = 3.33", [("10 / 3", "3.33", T)], id="rounded-to-decimals-written"),
    pytest.param("10 / 3 = 3.3", [("10 / 3", "3.3", T)], id="rounded-one-decimal"),
    pytest.param("10 / 3 = 3.34", [("10 / 3", "3.34", F)], id="badly-rounded"),
    pytest.param("10 / 3 = 3", [("10 / 3", "3", F)], id="an-integer-is-exact"),
    pytest.param(r"\frac{400}{3} \approx 133", [("(400/3)", "133", T)], id="approx"),
    pytest.param("40 * 20% = 8", [("40 * 20%", "8", T)], id="percent-as-hundredths"),
    pytest.param("0.2 * 100 = 20%", [("0.2 * 100", "20%", T)], id="percent-as-written"),
    pytest.param("2(3 + 4) = 14", [("2*(3 + 4)", "14", T)], id="implied-product"),
    pytest.param("-3 + 5 = 2", [("-3 + 5", "2", T)], id="negation"),
    pytest.param("3 + 4 = 7, 7 + 5 = 13", [("3 + 4", "7", T), ("7 + 5", "13", F)],
                 id="two-claims-one-line"),
    pytest.param("3 + 4 = 7\n7 * 2 = 15", [("3 + 4", "7", T), ("7 * 2", "15", F)],
                 id="two-lines"),
])
def test_claims_found_and_judged(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert [(c.left, c.right, c.true) for c in claims(text)] == expected


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("1. 3 + 4 = 7", [("3 + 4", "7", T)], id="list-number"),
    pytest.param("2) 3 + 4 = 7", [("3 + 4", "7", T)], id="list-parenthesis"),
    pytest.param("Step 2: 5 * 3 = 15", [("5 * 3", "15", T)], id="step-label"),
    pytest.param("On 2023-05-01 she paid 3 + 4 = 7", [("3 + 4", "7", T)], id="iso-date"),
    pytest.param("On 5/12/2024 she bought 3 + 4 = 7 apples", [("3 + 4", "7", T)],
                 id="slash-date"),
    pytest.param("5/12/2024 = 12", [], id="slash-date-is-not-a-division"),
    pytest.param("It takes 5-10 minutes, so 2 * 5 = 10", [("2 * 5", "10", T)], id="range"),
    pytest.param("5-10 minutes = 2", [], id="range-is-not-a-subtraction"),
    pytest.param("3:30 + 15 = 3:45", [], id="time-of-day"),
    pytest.param("Call 555-123-4567 = 7", [], id="phone-number"),
    pytest.param("version 1.2.3 = 1 + 2", [], id="version"),
    pytest.param("50% of 40 = 20", [], id="of-joins-more-arithmetic"),
    pytest.param("3x = 15", [], id="variable-glued"),
    pytest.param("2W = 22 - 8", [], id="variable-left"),
    pytest.param("R = b + 0.5b = 1.5b", [], id="algebra"),
    pytest.param("x - x - 2 = -2", [], id="after-a-variable"),
    pytest.param("apples - 2 = 3", [], id="after-a-word-minus"),
    pytest.param("2 ** 3 = 8", [], id="power"),
    pytest.param("2^3 = 8", [], id="latex-power"),
    pytest.param("x == 5 and 3 <= 4", [], id="comparisons"),
    pytest.param("= 12 + x", [], id="right-runs-on"),
    pytest.param("1 hour = 60 minutes", [], id="conversion"),
    pytest.param("2 hours = 2 * 60 = 120 minutes", [("2 * 60", "120", T)],
                 id="conversion-then-product"),
    pytest.param("5 million + 3 million = 8 million", [], id="scale-words"),
    pytest.param(r"\sqrt{16} = 4", [], id="unknown-latex"),
    pytest.param("1 + " * 150 + "1 = 151", [], id="longer-than-arithmetic-reads"),
    pytest.param("```python\ntotal = 3 * 4\nprint(2 + 2 == 5)\n```\n", [], id="code-block"),
    pytest.param("```python\nx = 1\n```\n3 * 4 = 13", [("3 * 4", "13", F)],
                 id="prose-after-code"),
])
def test_not_fooled(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert [(c.left, c.right, c.true) for c in claims(text)] == expected


def test_approximate_claims_are_marked() -> None:
    [claim] = claims(r"\frac{46}{31.5} \approx 1.486")
    assert claim.approximate and not claim.true  # 46 / 31.5 = 1.4603...


# --- the scorer ---------------------------------------------------------------------------------

def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


PROBLEM = Problem(question="q", messages=user("What is 3 * 4 + 3?"), extract=boxed)


def candidate(text: str) -> Candidate:
    return Candidate("prompt", text, (text,), PROBLEM, boxed(text))


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("No arithmetic here. \\boxed{5}", 1.0, id="no-claims"),
    pytest.param("3 * 4 = 12, 12 + 3 = 15", 1.0, id="all-true"),
    pytest.param("3 * 4 = 13, 13 + 3 = 16", math.exp(-1), id="one-false"),
    pytest.param("3 * 4 = 13, 13 + 3 = 17", math.exp(-2), id="two-false"),
])
def test_calc_score_is_exp_of_minus_false_claims(text: str, expected: float) -> None:
    [score] = Calc().score([candidate(text)])
    assert score == pytest.approx(expected)
    assert false_claims(text) == round(-math.log(expected))


def test_calc_is_in_the_scorer_table() -> None:
    scorer = get_scorer("calc", ScriptedModel(["x"]))
    assert scorer.name == "calc" and not scorer.needs_logprobs


RIGHT = "3 * 4 = 12\n\n12 + 3 = 15\n\nso \\boxed{15}"
WRONG = "3 * 4 = 13\n\n13 + 3 = 16\n\nso \\boxed{16}"


@pytest.mark.parametrize(("scorer", "selection", "expected"), [
    pytest.param("calc", "weighted", "15", id="calc-weighted-vote"),
    pytest.param("calc", "plain", "15", id="calc-best-of"),
    pytest.param("uniform", "weighted", "16", id="unguided-majority-is-wrong"),
])
def test_best_of_n_with_calc_picks_the_chain_without_false_claims(
        scorer: str, selection: str, expected: str) -> None:
    model = ScriptedModel([WRONG, RIGHT, WRONG])  # two wrong chains outvote one right one
    result = get_scheme(f"best-of-n@3:scorer={scorer}:selection={selection}")(PROBLEM,
                                                                                model=model)
    assert result.answer == expected
    if scorer == "calc":
        assert [n.score for n in result.trace.nodes] == pytest.approx(
            [math.exp(-1), 1.0, math.exp(-1)])  # 3 * 4 = 13 is false; 13 + 3 = 16 true


def step_script(prompt: str, i: int) -> str:
    """First step: child 0 miscalculates, child 1 does not; then the answer its step implies."""
    path = prompt.split("<|assistant|>\n", 1)[1]
    if "\n\n" not in path:
        return f"3 * 4 = {13 if i % 2 == 0 else 12}\n\nmore text a stop string cuts off"
    return f"so the answer is \\boxed{{{16 if '= 13' in path else 15}}}"


@pytest.mark.parametrize(("scorer", "expected"), [
    pytest.param("calc", "15", id="calc-prunes-the-false-step"),
    pytest.param("uniform", "16", id="unguided-keeps-the-first"),
])
def test_beam_with_calc_keeps_the_step_without_false_claims(scorer: str, expected: str) -> None:
    result = get_scheme(f"beam@1:expansions=2:scorer={scorer}")(
        PROBLEM, model=ScriptedModel(step_script))
    assert result.answer == expected
    first = [n for n in result.trace.nodes if n.depth == 1]
    if scorer == "calc":
        assert sorted(n.score or 0.0 for n in first) == pytest.approx([math.exp(-1), 1.0])
