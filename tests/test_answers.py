"""Answer extraction, voting keys, equivalence and rewards: table-driven, one id per case."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ponder.core.errors import ConfigError
from ponder.verifiers import canonical, extract_answer, is_equivalent, last_number, to_number
from ponder.verifiers.rewards import correctness_reward, format_reward, length_penalty


def params(table: list[tuple[Any, ...]]) -> list[Any]:
    """Rows `(id, *values)` as pytest params with that id."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


# --- extraction -------------------------------------------------------------------------------

EXTRACT = [
    ("boxed", r"so the total is \boxed{18}.", "18"),
    ("nested-boxed", r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
    ("deeply-nested", r"\boxed{\left\{ x : x^{2} > 1 \right\}}", r"\left\{ x : x^{2} > 1 \right\}"),
    ("last-of-many", r"first \boxed{1}, then, correcting, \boxed{2}", "2"),
    ("fbox", r"\fbox{7}", "7"),
    ("boxed-space-form", r"Answer: $\boxed 5$.", "5"),
    ("boxed-beats-phrase", r"The answer is 3. Actually \boxed{4}", "4"),
    ("unclosed-last-box", r"\boxed{1} ... \boxed{12", "1"),
    ("echoed-empty-box", r"I must put the answer in \boxed{}. The answer is 9.", "9"),
    ("hashes", "She makes 9 * 2 = $18.\n#### 18", "18"),
    ("hashes-last", "#### 1\nwait\n#### 2", "2"),
    ("answer-is-dollars", "The answer is $18$.", "18"),
    ("final-answer-is-bold", "So the final answer is **42**.", "42"),
    ("final-answer-colon", "Final Answer: 3.5", "3.5"),
    ("minerva", "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.",
     r"\frac{1}{2}"),
    ("answer-is-escaped-dollar", r"The answer is $\$18.50$.", r"\$18.50"),
    ("answer-is-word", "Therefore the answer is: yes", "yes"),
    ("decimal-not-sentence-end", "The answer is 3.25 dollars. Done.", "3.25 dollars"),
    ("no-answer", "I am not sure how to solve this.", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("text", "expected"), params(EXTRACT))
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


LAST_NUMBER = [
    ("plain", "3 apples and 4 pears make 7", "7"),
    ("thousands", "a total of $1,234.50 spent", "1234.50"),
    ("negative", "the change is -3", "-3"),
    ("none", "no digits here", None),
]


@pytest.mark.parametrize(("text", "expected"), params(LAST_NUMBER))
def test_last_number(text: str, expected: str | None) -> None:
    assert last_number(text) == expected


# --- canonical keys ---------------------------------------------------------------------------

# Every answer in a group has the same key, and no two groups share a key.
KEY_GROUPS = {
    "eighteen": ["18", "18.00", "+18", "$18", r"\$18.00", "18 dollars", r"18\text{ dollars}",
                 r"\boxed{18}", "18.", "x = 18", "$18$"],
    "three-thousand": ["3000", "3,000", r"3{,}000", r"3\,000", r"3\!000"],
    "half": ["0.5", "1/2", r"\frac{1}{2}", r"\dfrac{1}{2}", r"\tfrac12", r"\frac12", "0.50", ".5"],
    "third": ["1/3", r"\frac{2}{6}", r"\dfrac{1}{3}"],
    "minus-half": ["-0.5", r"-\frac{1}{2}", "-1/2"],
    "percent": ["50", r"50\%", "50%"],
    "degrees": ["90", r"90^\circ", r"90^{\circ}", "90°"],
    "area": ["15", r"15\mbox{ cm}^2", "15 square units"],
    "polar": [r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", r"(3, \dfrac{\pi}{2})"],
    "sqrt": [r"2\sqrt{2}", r"2\sqrt2", r"2 \sqrt{2}"],
    "yes": ["Yes", "yes", "YES", r"\text{Yes}"],
    "choice-c": ["(C)", r"\text{(C)}", "c"],
    "interval": [r"(1, 2]", r"\left(1,2\right]"],
}


@pytest.mark.parametrize("group", list(KEY_GROUPS), ids=list(KEY_GROUPS))
def test_canonical_groups_share_a_key(group: str) -> None:
    keys = {canonical(a) for a in KEY_GROUPS[group]}
    assert len(keys) == 1, keys


def test_canonical_groups_are_distinct() -> None:
    keys = [canonical(members[0]) for members in KEY_GROUPS.values()]
    assert len(set(keys)) == len(keys), keys


DIFFERENT_KEYS = [
    ("ints", "18", "19"), ("fractions", "1/2", "1/3"), ("rounded", "0.333", "1/3"),
    ("interval-ends", "(1,2]", "[1,2)"), ("signs", "x+1", "x-1"), ("tuple", "12", "1,2"),
]


@pytest.mark.parametrize(("a", "b"), params(DIFFERENT_KEYS))
def test_canonical_keeps_different_answers_apart(a: str, b: str) -> None:
    assert canonical(a) != canonical(b)


def test_canonical_formats_numbers_one_way() -> None:
    assert [canonical(a) for a in ["18.00", "1/2", r"\frac{2}{6}", "-0", "1,000,000"]] == [
        "18", "0.5", "1/3", "0", "1000000"]
    assert to_number("3,000") == 3000 and to_number("x+1") is None


# --- equivalence ------------------------------------------------------------------------------

EQUIVALENT = [
    ("half-decimal", "1/2", "0.5", True),
    ("frac-dfrac", r"\frac{1}{2}", r"\dfrac12", True),
    ("trailing-zeros", "18.00", "18", True),
    ("thousands", "3,000", "3000", True),
    ("repeating-decimal", "0.3333333", r"\frac{1}{3}", True),
    ("rounded-too-far", "0.33", r"\frac{1}{3}", False),
    ("integers-exact", "1000001", "1000000", False),
    ("interval-same", r"(1, 2]", r"\left(1,2\right]", True),
    ("interval-ends", r"[1,2)", r"(1,2]", False),
    ("interval-union", r"(-\infty, 0) \cup (1, \infty)", r"(-\infty,0)\cup(1,\infty)", True),
    ("set-order", r"\{1,2,3\}", r"\{3,2,1\}", True),
    ("set-different", r"\{1,2\}", r"\{1,3\}", False),
    ("sqrt-forms", r"2\sqrt{2}", r"\sqrt{8}", True),
    ("sqrt-rationalised", r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", True),
    ("sqrt-wrong", r"\sqrt{3}", r"\sqrt{2}", False),
    ("polynomial-order", "x^2+1", "1+x^2", True),
    ("pi", r"\frac{\pi}{2}", r"\frac12\pi", True),
    ("matrix", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", True),
    ("percent-unit", r"50\%", "50", True),
    ("wrong-number", "17", "18", False),
    ("wrong-fraction", r"\frac{2}{3}", r"\frac{3}{2}", False),
    ("wrong-expression", "x+1", "x-1", False),
    ("text-yes", "Yes", "yes", True),
    ("empty-pred", "", "18", False),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), params(EQUIVALENT))
def test_is_equivalent(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


def test_is_equivalent_from_worker_threads() -> None:
    """math-verify's signal timeouts fail off the main thread; ours must not, with several
    threads checking at once (as a server's worker threads do)."""
    cases = [(r"2\sqrt{2}", r"\sqrt{8}", True), (r"\{1,2\}", r"\{2,1\}", True),
             (r"\sqrt{3}", r"\sqrt{2}", False), ("1/2", "0.5", True), ("x^2+1", "1+x^2", True),
             (r"(1,2]", r"[1,2)", False)] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: is_equivalent(case[0], case[1]), cases))
    assert results == [expected for _, _, expected in cases]


RUNAWAY = (r"10^{10^{10}}", "1")  # sympy tries to evaluate a ten-billion-digit integer


def test_runaway_comparison_is_bounded_in_the_main_thread() -> None:
    started = time.monotonic()
    assert is_equivalent(*RUNAWAY, timeout=1.0) is False
    assert time.monotonic() - started < 3


def test_runaway_comparison_is_bounded_in_a_worker_thread() -> None:
    """Off the main thread the check runs in a child process, so neither the caller nor the
    other threads (the main one ticks meanwhile) are frozen by the GIL-holding computation."""
    verdict: list[bool] = []
    worker = threading.Thread(target=lambda: verdict.append(is_equivalent(*RUNAWAY, timeout=1.0)))
    started = time.monotonic()
    worker.start()
    ticks = 0
    while worker.is_alive() and time.monotonic() - started < 10:
        time.sleep(0.05)
        ticks += 1
    assert verdict == [False] and ticks > 5
    assert time.monotonic() - started < 6


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
def test_an_outer_timer_survives_a_check() -> None:
    old = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        assert is_equivalent(r"2\sqrt{2}", r"\sqrt{8}")
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < left <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- rewards ----------------------------------------------------------------------------------

def test_correctness_reward_shapes_and_none() -> None:
    completions = [r"so \boxed{18}", "#### 17", "no idea", r"\boxed{\frac12}"]
    gold = ["18", "18", "18", None]
    assert correctness_reward(["q"] * 4, completions, gold=gold, extra_column=[1] * 4) == [
        1.0, 0.0, 0.0, None]


def test_rewards_read_chat_completions() -> None:
    chats = [[{"role": "assistant", "content": r"\boxed{0.5}"}],
             [{"role": "user", "content": r"\boxed{1}"}, {"role": "assistant", "content": "hm"}]]
    assert correctness_reward([[]] * 2, chats, gold=[r"\frac{1}{2}", "1"]) == [1.0, 0.0]
    assert format_reward([[]] * 2, chats) == [1.0, 0.0]


def test_correctness_reward_rejects_mismatched_gold() -> None:
    with pytest.raises(ValueError, match="gold"):
        correctness_reward(["q"], ["a", "b"], gold=["1"])


def test_length_penalty() -> None:
    penalty = length_penalty(100, buffer_tokens=20)
    ids = [[0] * n for n in (10, 80, 90, 100, 150)]
    assert penalty(["q"] * 5, [""] * 5, completion_ids=ids) == [0.0, 0.0, -0.5, -1.0, -1.0]
    by_words = length_penalty(4, buffer_tokens=2, count_tokens=lambda t: len(t.split()))
    assert by_words(["q"] * 2, ["a b", "a b c"]) == [0.0, -0.5]
    assert penalty.__name__ == "length_penalty"


@pytest.mark.parametrize(("max_tokens", "buffer", "param"),
                         params([("zero-max", 0, None, "max_tokens"),
                                 ("buffer-too-big", 10, 11, "buffer_tokens")]))
def test_length_penalty_validates(max_tokens: int, buffer: int | None, param: str) -> None:
    with pytest.raises(ConfigError, match=param):
        length_penalty(max_tokens, buffer)


def test_length_penalty_needs_a_length() -> None:
    with pytest.raises(ConfigError, match="completion_ids"):
        length_penalty(10)(["q"], ["text"])
