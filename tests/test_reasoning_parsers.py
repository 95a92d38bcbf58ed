"""Reasoning parsers (ponder/core/reasoning.py), in the layout of vLLM's tests/reasoning: one
table of cases `(output, reasoning, content, closed)` per family, each run on the whole text
AND streamed — one delta per character, per token-like piece (`<`, `think`, `>` apart), and
cut in two at every position — all of which must give the same split."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ponder.core.errors import UnknownName
from ponder.core.reasoning import (
    PARSERS,
    Split,
    get_parser,
    parser_for_template,
    parser_setting,
)
from ponder.core.types import GenerationRequest, user
from ponder.models.fake import ScriptedModel

# (id, parser, output, reasoning, content, closed)
CASES = [
    # deepseek-r1: the prompt opened the thinking; the output has only </think>.
    ("r1-no-opening-tag", "deepseek-r1", "Let me think.</think>\n\nThe answer is 4.",
     "Let me think.", "The answer is 4.", True),
    ("r1-only-end-tag", "deepseek-r1", "</think>The answer", "", "The answer", True),
    ("r1-end-tag-last", "deepseek-r1", "Done thinking.</think>", "Done thinking.", "", True),
    ("r1-never-closed", "deepseek-r1", "Let me think about", "Let me think about", "", False),
    ("r1-empty", "deepseek-r1", "", "", "", False),
    ("r1-multiple-lines", "deepseek-r1", "This\nThat</think>rest\nmore", "This\nThat",
     "rest\nmore", True),
    ("r1-writes-its-opening-tag", "deepseek-r1", "<think>\nplan</think>answer", "\nplan",
     "answer", True),
    ("r1-opening-tag-after-newline", "deepseek-r1", "\n<think>plan</think>answer", "plan",
     "answer", True),
    ("r1-opening-tag-only", "deepseek-r1", "<think>", "", "", False),
    ("r1-leading-whitespace-kept", "deepseek-r1", "\n\nOkay</think>4", "\n\nOkay", "4", True),
    ("r1-repeated-end-tag", "deepseek-r1", "a</think>b</think>c", "a", "b</think>c", True),
    ("r1-nested-opening-tag", "deepseek-r1", "a<think>b</think>c", "a<think>b", "c", True),
    ("r1-whitespace-after-end-tag", "deepseek-r1", "a</think>\n\n \nB\n", "a", "B\n", True),
    ("r1-cut-inside-the-end-tag", "deepseek-r1", "so 4 </thi", "so 4 </thi", "", False),
    ("r1-lookalike-tag", "deepseek-r1", "a </thinking> b</think>c", "a </thinking> b", "c", True),
    # qwen3: the output opens with <think>...</think>, or (thinking off) has no block at all.
    ("qwen3-thinking", "qwen3", "<think>\nLet me see.\n</think>\n\n4", "\nLet me see.\n", "4",
     True),
    ("qwen3-thinking-off", "qwen3", "The answer is 4.", None, "The answer is 4.", False),
    ("qwen3-empty-thinking", "qwen3", "<think>\n\n</think>\n\nHi", "\n\n", "Hi", True),
    ("qwen3-never-closed", "qwen3", "<think>hmm, 2+2", "hmm, 2+2", "", False),
    ("qwen3-whitespace-before-block", "qwen3", "\n\n<think>x</think>y", "x", "y", True),
    ("qwen3-tag-later-is-text", "qwen3", "I use <think> tags</think>.", None,
     "I use <think> tags</think>.", False),
    ("qwen3-only-end-tag", "qwen3", "abc</think>def", None, "abc</think>def", False),
    ("qwen3-cut-inside-the-opening-tag", "qwen3", "<thi", None, "<thi", False),
    ("qwen3-empty", "qwen3", "", None, "", False),
    # think: the first <think> anywhere opens, the first </think> after it closes.
    ("think-empty-thinking", "think", "<think></think>answer", "", "answer", True),
    ("think-text-before-opening-tag", "think", "Sure. <think>plan</think>\nDone", "plan",
     "Sure. Done", True),
    ("think-no-tags", "think", "Just text", None, "Just text", False),
    ("think-never-closed", "think", "<think>plan", "plan", "", False),
    ("think-text-before-never-closed", "think", "Hi <think>plan", "plan", "Hi ", False),
    ("think-second-block-is-text", "think", "<think>a</think>b<think>c</think>d", "a",
     "b<think>c</think>d", True),
    ("think-end-tag-without-opening", "think", "abc</think>def", None, "abc</think>def",
     False),
    ("think-angle-brackets-in-text", "think", "a < b <think>x<y</think>z", "x<y", "a < b z",
     True),
    ("think-whitespace-only", "think", " \n ", None, "", False),
    ("think-cut-inside-the-opening-tag", "think", "text <thin", None, "text <thin", False),
]


def tokens(text: str) -> list[str]:
    """Token-like pieces: the tags come apart (`<`, `/`, `think`, `>`), as a tokenizer without
    them as special tokens would cut them; words keep their leading space."""
    return re.findall(r"[<>/]|think|\s*[^\s<>/]+|\s+", text) or [""]


def cuts(text: str) -> Iterator[list[str]]:
    yield [text]
    yield list(text) or [""]
    yield tokens(text)
    for at in range(1, len(text)):
        yield [text[:at], text[at:]]


def streamed(parser: str, deltas: list[str]) -> tuple[str | None, str, bool]:
    stream = PARSERS[parser].stream()
    reasoning, content = [], []
    for delta in deltas:
        r, c = stream.feed(delta)
        reasoning.append(r)
        content.append(c)
    r, c = stream.finish()
    said = "".join([*reasoning, r])
    assert stream.began or not said  # no reasoning before thinking began
    return said if stream.began else None, "".join([*content, c]), stream.closed


@pytest.mark.parametrize(("parser", "output", "reasoning", "content", "closed"),
                         [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_whole_and_streamed_agree(parser: str, output: str, reasoning: str | None, content: str,
                                  closed: bool) -> None:
    assert PARSERS[parser].split(output) == Split(reasoning, content, closed)
    for deltas in cuts(output):
        assert "".join(deltas) == output
        assert streamed(parser, deltas) == (reasoning, content, closed), deltas


PIECES = ["<think>", "</think>", "<", "</", "th", "ink>", "a", " ", "\n"]


@pytest.mark.parametrize("parser", list(PARSERS))
def test_any_text_cut_anywhere_splits_as_whole(parser: str) -> None:
    """Beyond the table: texts built of tags, tag fragments and whitespace, cut at random."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
    @hypothesis.given(st.lists(st.sampled_from(PIECES), max_size=12), st.randoms())
    def check(pieces: list[str], rng: Any) -> None:
        text = "".join(pieces)
        at = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 4))))
        deltas = [text[a:b] for a, b in zip([0, *at], [*at, len(text)], strict=True)]
        whole = PARSERS[parser].split(text)
        assert streamed(parser, deltas) == (whole.reasoning, whole.content, whole.closed)

    check()


def test_tokens_cut_the_tags_apart() -> None:
    assert tokens("a<think>b</think>") == ["a", "<", "think", ">", "b", "<", "/", "think", ">"]


def test_a_tag_cut_across_deltas_is_held_until_it_is_whole() -> None:
    stream = PARSERS["think"].stream()
    assert stream.feed("Hi <th") == ("", "Hi ")  # "<th" may be the tag: held back
    assert stream.feed("ink>I") == ("I", "")
    assert stream.feed(" plan</") == (" plan", "")
    assert stream.feed("think>\n\nDone") == ("", "Done")
    assert stream.finish() == ("", "")
    assert (stream.began, stream.closed) == (True, True)


def test_held_text_that_is_no_tag_is_given_back() -> None:
    stream = PARSERS["deepseek-r1"].stream()
    assert stream.feed("x </th") == ("x ", "")
    assert stream.feed("ought") == ("</thought", "")
    assert stream.finish() == ("", "")


# ---- the table and its names -------------------------------------------------------------

def test_every_parser_in_the_table_runs() -> None:
    for name, parser in PARSERS.items():
        assert parser.name == name
        assert parser.split("<think>a</think>b") == Split("a", "b", True)


def test_names() -> None:
    assert get_parser("qwen3") is PARSERS["qwen3"]
    assert get_parser("deepseek_r1") is PARSERS["deepseek-r1"]  # vLLM's spelling
    with pytest.raises(UnknownName) as err:
        get_parser("r2")
    assert str(err.value) == ("unknown reasoning parser 'r2'; valid names: deepseek-r1, qwen3, "
                              "think")


# ---- chat templates ------------------------------------------------------------------------
#
# Abridged from the models' tokenizer_config.json (jinja source, `\n` escaped as it is there).

R1_DISTILL = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}"
    "{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- endfor -%}{% if add_generation_prompt and not ns.is_tool %}"
    "{{'<｜Assistant｜><think>\\n'}}{% endif %}")
QWEN3 = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' and '</think>' in message.content %}"
    "{%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}")
QWEN3_THINKING_2507 = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if '</think>' in message.content %}{%- set reasoning_content = "
    "message.content.split('</think>')[0] %}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n<think>\\n' }}\n"
    "{%- endif %}")
R1_0528 = (  # the model writes its own <think>; the template only strips it from history
    "{%- if message['role'] == 'assistant' %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{%- endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.mark.parametrize(("template", "expected"), [
    pytest.param(R1_DISTILL, "deepseek-r1", id="deepseek-r1-distill"),
    pytest.param(R1_DISTILL.replace("\\n'}}{% endif %}", "\n'}}{% endif %}"), "deepseek-r1",
                 id="real-newline"),
    pytest.param(QWEN3_THINKING_2507, "deepseek-r1", id="qwen3-thinking-2507"),
    pytest.param(QWEN3, "qwen3", id="qwen3"),
    pytest.param(R1_0528, "think", id="deepseek-r1-0528"),
    pytest.param(CHATML, None, id="chatml"),
    pytest.param("", None, id="empty"),
])
def test_parser_for_template(template: str, expected: str | None) -> None:
    parser = parser_for_template(template)
    assert (parser.name if parser else None) == expected


@pytest.mark.parametrize(("setting", "template", "expected"), [
    pytest.param("auto", R1_DISTILL, "deepseek-r1", id="auto-reads-the-template"),
    pytest.param(None, QWEN3, "qwen3", id="unset-is-auto"),
    pytest.param("auto", CHATML, None, id="auto-no-thinking"),
    pytest.param("auto", None, None, id="auto-no-template"),
    pytest.param("none", R1_DISTILL, None, id="none-turns-it-off"),
    pytest.param("think", CHATML, "think", id="a-name-wins"),
])
def test_a_backends_reasoning_parser_setting(setting: str | None, template: str | None,
                                             expected: str | None) -> None:
    parser = parser_setting(setting, template)
    assert (parser.name if parser else None) == expected
    with pytest.raises(UnknownName):
        parser_setting("r2", CHATML)


def test_a_native_thinkers_chat_completions_come_apart_raw_prefixes_do_not() -> None:
    """A model whose template opens the thinking (R1): its chat output is thinking up to
    `</think>`, then the reply; a raw prefix (budget forcing, tree steps) is left whole."""
    model = ScriptedModel(lambda _p, _i: "17 x 24 is 408</think>It is 408.",
                          reasoning_parser=get_parser("deepseek-r1"))
    [[chat], [raw]] = model.generate([GenerationRequest(messages=user("17 * 24?")),
                                      GenerationRequest(prefix="raw")])
    assert (chat.reasoning, chat.text) == ("17 x 24 is 408", "It is 408.")
    assert (raw.reasoning, raw.text) == (None, "17 x 24 is 408</think>It is 408.")
    cut = ScriptedModel(lambda _p, _i: "thinking and thinking",
                        reasoning_parser=get_parser("deepseek-r1"))
    [[c]] = cut.generate([GenerationRequest(messages=user("q"))])
    assert (c.reasoning, c.text) == ("thinking and thinking", "")  # cut off: no reply
