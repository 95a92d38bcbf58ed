"""Tasks: harness fidelity on the real benchmark files, and each task's checker.

The data lives in ../shared/data beside the repository (see its README); tests that need it are
skipped with the reason when it is absent. `arith` is generated and needs no data.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

import pytest

from ponder.core.errors import ConfigError
from ponder.eval.runner import EvalConfig, load_records
from ponder.tasks import get_task
from ponder.tasks.arith import arith_task
from ponder.tasks.game24 import solves
from ponder.tasks.rules import extract_yes_no, yes_no
from ponder.verifiers import canonical
from ponder.verifiers.mathverify import math_verify_equal

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found at {DATA}")


def params(table: list[tuple[Any, ...]]) -> list[Any]:
    """Rows `(id, *values)` as pytest params with that id."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


# --- GSM8K ------------------------------------------------------------------------------------

@needs_data
def test_gsm8k_gold_extraction_agrees_with_the_hashes_on_every_test_solution() -> None:
    task = get_task("gsm8k")
    records = task.load(DATA)
    assert len(records) == 1319
    for r in records:
        after_hashes = r.row["answer"].split("####")[-1].strip().replace(",", "")
        extracted = task.extract(r.row["answer"])  # the solution is a chain ending "#### 18"
        assert r.gold == after_hashes, r.id
        assert extracted is not None and canonical(extracted) == after_hashes, r.id
        assert task.check(extracted, after_hashes), r.id


GSM8K_NUMERIC = [
    ("boxed", r"so \boxed{18}", "18", True),
    ("boxed-dollars", r"\boxed{\$18.00}", "18", True),
    ("boxed-units", r"\boxed{18 \text{ dollars}}", "18", True),
    ("answer-is", "The answer is 70,000.", "70000", True),
    ("last-number-fallback", "9 eggs at $2 each make 18", "18", True),
    ("boxed-equation", r"\boxed{2 \times 9 = 18}", "18", True),
    # A boxed sum is the sum it states, not its last term (seen on the test split).
    ("boxed-sum", r"\boxed{180 + 120 + 45 + 200}", "545", True),
    ("boxed-sum-not-last-term", r"\boxed{180 + 120 + 45 + 200}", "200", False),
    ("boxed-product-latex", r"\boxed{\$1,200 \times 3}", "3600", True),
    ("boxed-fraction-decimal", r"\boxed{\frac{1}{2} \cdot 7.5}", "3.75", True),
    ("boxed-negative-sum", r"\boxed{-50 + 20}", "-30", True),
    ("boxed-power-refused", r"\boxed{2 ** 10}", "1024", False),
    ("boxed-division-by-zero", r"\boxed{18 / 0}", "18", False),
    ("boxed-variable", r"\boxed{L - 8}", "8", True),  # no arithmetic: the last number, as before
    ("wrong", r"\boxed{17}", "18", False),
    ("no-number", "I cannot tell", "18", False),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), params(GSM8K_NUMERIC))
def test_gsm8k_numeric_checker(completion: str, gold: str, expected: bool) -> None:
    task = get_task("gsm8k")
    pred = task.extract(completion)
    assert (pred is not None and task.check(pred, gold)) is expected


# --- MATH-500 ---------------------------------------------------------------------------------

# Records whose boxed solution answer the checker does not judge equal to `answer` (none today;
# a checker change that breaks one must name it here).
MATH500_EXCEPTIONS: set[str] = set()


@needs_data
def test_math500_solution_answers_agree_with_the_gold_answers() -> None:
    task = get_task("math500")
    records = task.load(DATA)
    assert len(records) == 500
    preds = [(r, task.extract(r.row["solution"])) for r in records]
    failures = {r.id for r, pred in preds if pred is None or not task.check(pred, r.gold or "")}
    assert failures <= MATH500_EXCEPTIONS
    assert 1 - len(failures) / len(records) >= 0.99


@needs_data
def test_math500_math_verify_alone_reads_every_gold_answer() -> None:
    """The checker's fast paths (canonical keys, numbers) answer the test above; this checks that
    math-verify itself parses and matches every gold answer form (matrices, intervals, ...)."""
    records = get_task("math500").load(DATA)
    failures = [r.id for r in records if not math_verify_equal(r.gold or "", r.gold or "")]
    assert failures == []


@needs_data
def test_math500_canonical_keys_keep_the_meaning() -> None:
    """Voting by `canonical` must not merge different answers: math-verify judges every
    rewritten key equivalent to the answer it came from."""
    records = get_task("math500").load(DATA)
    rewritten = [(r.id, canonical(r.gold or ""), r.gold or "") for r in records]
    failures = [rid for rid, key, gold in rewritten if key != gold
                and not math_verify_equal(key, gold)]
    assert failures == []


# --- AIME 2024 --------------------------------------------------------------------------------

AIME_WITHOUT_BOXED_SOLUTION = {"60"}


@needs_data
def test_aime_answers_are_integers_and_solutions_agree() -> None:
    task = get_task("aime24")
    records = task.load(DATA)
    assert len(records) == 30
    for r in records:
        gold = r.gold or ""
        assert 0 <= int(gold) <= 999 and task.check(str(r.row["answer_int"]), gold), r.id
        pred = task.extract(r.row["solution"])
        if r.id in AIME_WITHOUT_BOXED_SOLUTION:
            assert pred is None
        else:
            assert pred is not None and task.check(pred, gold), r.id


# --- Game of 24 -------------------------------------------------------------------------------

@needs_data
def test_game24_every_reference_solution_is_accepted() -> None:
    task = get_task("game24")
    records = task.load(DATA)
    assert len(records) == 1362
    rejected = [r.id for r in records if not task.check(r.row["reference_solution"], r.gold or "")]
    assert rejected == []
    assert sum(r.row["tot_test_split"] for r in records) == 100


GAME24_WRITTEN_FORMS = [
    ("plain", "(10 - 4) * (13 - 9)", "4 9 10 13"),
    ("fraction-needed", "8 / (3 - 8 / 3)", "3 3 8 8"),
    ("with-equals", "(4 + 8) * (6 - 4) = 24", "4 4 6 8"),
    ("latex-times", r"(4 + 8) \times (6 - 4)", "4 4 6 8"),
    ("latex-div", r"8 \div (3 - 8 \div 3)", "3 3 8 8"),
    ("latex-frac", r"\frac{8}{3 - \frac{8}{3}}", "3 3 8 8"),
    ("unicode", "(4 + 8) × (6 − 4)", "4 4 6 8"),
    ("brackets", "[4 + 8] * [6 - 4]", "4 4 6 8"),
    ("numbers-as-list", "(1 - 1) + 4 * 6", [1, 1, 4, 6]),
]


@pytest.mark.parametrize(("answer", "puzzle"), params(GAME24_WRITTEN_FORMS))
def test_game24_accepts_the_ways_models_write_a_solution(answer: str, puzzle: Any) -> None:
    assert solves(answer, puzzle)


GAME24_WRONG = [
    ("number-used-twice", "(4 + 8) * (8 - 6)", "4 4 6 8"),
    ("number-missing", "4 * 6", "4 4 6 8"),
    ("extra-number", "(4 + 8) * (6 - 4) * 1", "4 4 6 8"),
    ("not-24", "4 + 4 + 6 + 8", "4 4 6 8"),
    ("near-24-decimal", "23.999", "4 4 6 8"),
    ("float-literal", "(4 + 8) * (6 - 4.0)", "4 4 6 8"),
    ("division-by-zero", "4 / (4 - 4) + 6 * 8", "4 4 6 8"),
    ("injected-import", "__import__('os').system('true')", "4 4 6 8"),
    ("injected-name", "(4 + 8) * (6 - 4) + x", "4 4 6 8"),
    ("huge-exponent", "9 ** 9 ** 9 ** 9", "9 9 9 9"),
    ("power", "4 ** 2 + 8", "2 4 8 8"),
    ("unary-minus", "-(4 - 8) * 6", "4 6 8 8"),
    ("hex-literal", "(0x1 - 1) + 4 * 6", "1 1 4 6"),
    ("leading-zero", "(04 + 8) * (6 - 4)", "4 4 6 8"),
    ("bool-literal", "(True + 3) * 6", "1 3 6 6"),
    ("empty", "", "4 4 6 8"),
    ("unbalanced", "((4 + 8) * (6 - 4)", "4 4 6 8"),
    ("too-long", "(" * 150 + "4" + ")" * 150, "4 4 6 8"),
]


@pytest.mark.parametrize(("answer", "puzzle"), params(GAME24_WRONG))
def test_game24_rejects_wrong_and_unsafe_expressions(answer: str, puzzle: str) -> None:
    assert not solves(answer, puzzle)


def test_game24_reads_the_boxed_expression_and_votes_by_it() -> None:
    task = get_task("game24")
    pred = task.extract(r"12 * 2 = 24, so \boxed{(4 + 8) \times (6 - 4) = 24}")
    assert pred is not None and task.check(pred, "4 4 6 8")
    assert task.key("(4+8) * (6-4)") == task.key("(4 + 8)*(6 - 4) = 24")
    assert task.step_delimiter == "\n"


# --- StrategyQA -------------------------------------------------------------------------------

YES_NO = [
    ("yes", "Yes", "Yes"),
    ("no-period", "No.", "No"),
    ("lower", "yes", "Yes"),
    ("bold", "**No**", "No"),
    ("with-reason", "Yes, because frost is common in December.", "Yes"),
    ("latex-text", r"\text{No}", "No"),
    ("true", "True", "Yes"),
    ("false", "false", "No"),
    ("bool", True, "Yes"),
    ("neither", "Maybe", None),
    ("empty", "", None),
    ("not-first-word", "I think yes", None),
]


@pytest.mark.parametrize(("answer", "expected"), params(YES_NO))
def test_yes_no_parsing(answer: Any, expected: str | None) -> None:
    assert yes_no(answer) == expected


EXTRACT_YES_NO = [
    ("boxed", r"Frost happens in December. \boxed{Yes}", "Yes"),
    ("answer-is", "So the answer is no.", "No"),
    ("last-word-fallback", "Pears float, so no", "No"),
    ("nothing", "Pears float.", None),
]


@pytest.mark.parametrize(("text", "expected"), params(EXTRACT_YES_NO))
def test_extract_yes_no(text: str, expected: str | None) -> None:
    assert extract_yes_no(text) == expected


@needs_data
def test_strategyqa_golds_and_targets_agree() -> None:
    task = get_task("strategyqa")
    records = task.load(DATA)
    assert len(records) == 2290 and {r.gold for r in records} == {"Yes", "No"}
    for r in records:  # BIG-bench `target` is "Yes. <explanation>"
        assert task.check(r.row["target"], r.gold or "") and r.gold == yes_no(r.row["answer_bool"])


# --- arith ------------------------------------------------------------------------------------

def test_arith_records_are_seeded_distinct_and_right() -> None:
    task = arith_task(1, 9, "+-*", seed=3)
    records = task.load()
    assert len(records) == 81 + 45 + 81  # every pair for + and *, a >= b for -
    assert len({r.question for r in records}) == len(records)
    assert [r.id for r in records[:2]] == ["arith-0", "arith-1"]
    assert records == arith_task(1, 9, "+-*", seed=3).load()
    assert records != arith_task(1, 9, "+-*", seed=4).load()
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul}
    for r in records:
        a, op, b = r.question.removeprefix("What is ").removesuffix("?").split()
        assert r.gold == str(ops[op](int(a), int(b))) and int(r.gold) >= 0
    assert len(get_task("arith").load()) == 81  # the table's: 1..9, "+", seed 0


@pytest.mark.parametrize(("low", "high", "operators"), [
    pytest.param(1, 12, "+", id="listed"),
    pytest.param(0, 999, "-", id="sampled"),  # 500,500 problems: drawn, not listed
])
def test_arith_heldout_tail_is_disjoint_from_training(low: int, high: int,
                                                      operators: str) -> None:
    """A smaller limit gives a prefix of the same order, so the held-out tail (GRPO's last
    `eval_size`, `ponder eval arith --start N`) repeats no problem before it."""
    task = arith_task(low, high, operators, seed=0)
    records = task.load(limit=144)
    assert task.load(limit=100) == records[:100]
    train, heldout = records[:100], records[100:]
    assert not {r.question for r in train} & {r.question for r in heldout}
    assert len({r.question for r in records}) == 144


def test_arith_limit_beyond_the_problems_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"limit=100: .* only 81 distinct problems"):
        arith_task().load(limit=100)


def test_eval_reads_the_arith_slice_it_is_asked_for(tmp_path: Path) -> None:
    cfg = EvalConfig(task="arith", schemes=("cot",), out=tmp_path / "a.db", start=70, limit=11)
    records = load_records(cfg, get_task("arith"))
    assert records == get_task("arith").load()[70:]


def test_arith_reads_a_jsonl_file_too(tmp_path: Path) -> None:
    path = tmp_path / "sums.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 2?", "answer": 4}) + "\n")
    [record] = get_task("arith").load(path)
    assert (record.id, record.question, record.gold) == ("arith-0", "What is 2 + 2?", "4")


ARITH_CHECKS = [
    ("equation", "3 + 5 = 8", True),
    ("answer-is", "The answer is 8.", True),
    ("boxed", r"\boxed{8}", True),
    ("stated-before-a-check", "The answer is 8. Check: 8 - 5 = 3", True),
    ("decimal", "8.0", True),
    ("boxed-wrong", r"So the sum is \boxed{9}.", False),
    ("cut-off", "To add 3 and 5, we first", False),  # the last number is 5
    ("negative", "-8", False),
    ("no-number", "I cannot say.", False),
]


@pytest.mark.parametrize(("completion", "expected"), params(ARITH_CHECKS))
def test_arith_numeric_checker(completion: str, expected: bool) -> None:
    task = get_task("arith")
    pred = task.extract(completion)
    assert (pred is not None and task.check(pred, "8")) is expected
