"""Reasoning parsers: a native thinker's output split into its thinking and its reply.

One table (`PARSERS`), one entry per family, as vLLM's `vllm/reasoning/__init__.py` and SGLang's
`--reasoning-parser` have. Each parser splits a whole text (`split`) and a stream fed token by
token (`stream`); the two agree on every text however it is cut into deltas, a tag cut in two
(`<th` + `ink>`) included.

    deepseek-r1  the chat template opens the thinking (its generation prompt ends `<think>\\n`),
                 so the output holds only `</think>`: everything before it is reasoning.
                 DeepSeek-R1 and its distills, QwQ, Qwen3-Thinking-2507, Qwen3.5.
    qwen3        the model opens its reply with `<think>...</think>` (Qwen3's template;
                 `enable_thinking=False` puts an empty block in the prompt instead, and the
                 output, with no block, is all reply).
    think        generic: the first `<think>` anywhere opens the thinking, the first `</think>`
                 after it closes it; text before `<think>` is reply.

Choices made where vLLM leaves room (its parsers are the reference):
  * Thinking cut off before its end tag (the token budget ran out) is all reasoning and no
    reply: `Split.closed` is False, and the caller then reports finish_reason "length".
  * The reply's leading whitespace is dropped, before `<think>` and after `</think>` (SGLang
    strips it; vLLM keeps R1's "\\n\\n" after `</think>`); the reasoning is kept verbatim.
  * Text before `<think>` (`think` only) is reply, as vLLM's streaming parser has it (its
    whole-text parser drops it, so its two disagree). `qwen3` takes the block only at the
    start of the output: a `<think>` later on is text the model wrote about the tag.
  * `deepseek-r1` drops a `<think>` that opens the output (R1-0528 writes one itself).
  * The first `</think>` ends the thinking; a second one, or a second `<think>` block, is
    reply text, verbatim (vLLM partitions on the first end tag too).
  * `think` and `qwen3` with no `<think>` block give `reasoning=None` (the model did not
    think); a text holding only `</think>` is then all reply: a model whose template opens
    the thinking needs `deepseek-r1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from ponder.core.errors import UnknownName
from ponder.core.types import Completion

START, END = "<think>", "</think>"
Opens = Literal["prompt", "start", "anywhere"]


@dataclass(frozen=True)
class Split:
    """A whole output split. `reasoning` is None where no thinking began (a non-thinking
    reply); `closed` says the end tag came (False: cut off while thinking, and no reply)."""

    reasoning: str | None
    content: str
    closed: bool


@dataclass(frozen=True)
class ReasoningParser:
    """One family's tags. `opens` says where the thinking begins: in the `prompt` (the output
    is thinking from its first token), at the `start` of the output, or `anywhere` in it."""

    name: str
    opens: Opens

    def split(self, text: str) -> Split:
        """A whole output split by the rules in the module docstring."""
        if self.opens == "prompt":
            head = text.lstrip()
            body = head[len(START):] if head.startswith(START) else text
            reasoning, end, after = body.partition(END)
            return Split(reasoning, after.lstrip(), bool(end))
        if self.opens == "start":
            head = text.lstrip()
            if not head.startswith(START):
                return Split(None, head, False)  # thinking off: all reply
            before, body = "", head[len(START):]
        else:
            before, start, body = text.partition(START)
            if not start:
                return Split(None, text.lstrip(), False)
        reasoning, end, after = body.partition(END)
        return Split(reasoning, before.lstrip() + after.lstrip(), bool(end))

    def stream(self) -> ReasoningStream:
        return ReasoningStream(self)

    def apart(self, c: Completion) -> Completion:
        """A chat completion of a native thinker with its thinking taken out of `text` into
        `reasoning` (text: the reply; empty where the thinking was cut off)."""
        split = self.split(c.text)
        return replace(c, text=split.content, reasoning=split.reasoning)


class ReasoningStream:
    """A parser fed an output delta by delta: `feed(delta)` returns the (reasoning, content)
    it settles, `finish()` what was held back at the end. Text that may be the beginning of a
    tag is held until the next delta says whether it is one. Once the output is fed whole,
    `began` and `closed` are `split`'s `reasoning is not None` and `closed`."""

    def __init__(self, parser: ReasoningParser) -> None:
        self.opens = parser.opens
        self._state = "thinking" if self.opens == "prompt" else "before"  # then "reply"
        self.began = self._state == "thinking"  # R1: thinking from the first token
        self.closed = False
        self._at_start = self.opens != "anywhere"  # only whitespace yet: an opening tag may come
        self._held = ""
        self._strip = True  # the reply's leading whitespace is still to drop

    def feed(self, delta: str) -> tuple[str, str]:
        text, self._held = self._held + delta, ""
        reasoning, content = [], []
        while text:
            if self._state == "reply":
                content.append(self._reply(text))
                break
            if self._at_start:
                head = text.lstrip()
                if len(head) < len(START) and START.startswith(head):  # may become the tag
                    self._held = text
                    break
                self._at_start = False
                if head.startswith(START):
                    self._state, self.began, text = "thinking", True, head[len(START):]
                elif self._state == "before":  # qwen3 without its block: thinking off
                    self._state = "reply"
                continue
            thinking = self._state == "thinking"
            tag = END if thinking else START
            at = text.find(tag)
            if at < 0:  # keep back what may be the tag's beginning
                at = len(text) - _partial_tag(text, tag)
                self._held, tag = text[at:], ""
            if thinking:
                reasoning.append(text[:at])
            else:
                content.append(self._reply(text[:at]))
            text = text[at + len(tag):] if tag else ""
            if tag and thinking:
                self._state, self.closed, self._strip = "reply", True, True
            elif tag:
                self._state, self.began = "thinking", True
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """The end of the output: held text was no tag after all."""
        held, self._held = self._held, ""
        if self._state == "thinking":
            return held, ""
        return "", self._reply(held)

    def _reply(self, text: str) -> str:
        if self._strip:
            text = text.lstrip()
            self._strip = not text
        return text


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (a tag cut by the delta)."""
    return next((k for k in range(min(len(text), len(tag) - 1), 0, -1)
                 if tag.startswith(text[-k:])), 0)


PARSERS: dict[str, ReasoningParser] = {
    "deepseek-r1": ReasoningParser("deepseek-r1", opens="prompt"),
    "qwen3": ReasoningParser("qwen3", opens="start"),
    "think": ReasoningParser("think", opens="anywhere"),
}


def parser_setting(name: str | None, template: str | None) -> ReasoningParser | None:
    """A backend's `reasoning_parser=` setting: "auto" (the default) reads it off the chat
    template, "none" turns it off, any other name is a parser of the table."""
    if name is None or name == "auto":
        return parser_for_template(template) if template else None
    return None if name == "none" else get_parser(name)


def get_parser(name: str) -> ReasoningParser:
    """The parser named `name` (vLLM's spelling with `_`, `deepseek_r1`, works too)."""
    parser = PARSERS.get(name.strip().lower().replace("_", "-"))
    if parser is None:
        raise UnknownName("reasoning parser", name, PARSERS)
    return parser


# The generation prompt's branch of a template: what follows `add_generation_prompt` up to the
# branch's first `endif`, `else` or `elif`.
_GENERATION_PROMPT = re.compile(r"add_generation_prompt(.*?)(?:\bendif\b|\belse\b|\belif\b)",
                                re.S)
# A string literal that ends in the opening tag (and newlines, real or escaped).
_OPENS_THINKING = re.compile(r"<think>(?:\\n|\n)*['\"]")


def parser_for_template(template: str) -> ReasoningParser | None:
    """The parser a chat template (the jinja source) calls for, read off its text:
    a generation prompt that ends in `<think>` (DeepSeek-R1's distills: `<｜Assistant｜><think>
    \\n`) -> deepseek-r1; a template that mentions `enable_thinking` (Qwen3's) -> qwen3; one
    that mentions a think tag otherwise -> think; none -> None (the model does not think)."""
    for branch in _GENERATION_PROMPT.findall(template):
        if _OPENS_THINKING.search(branch) and END not in branch:
            return PARSERS["deepseek-r1"]
    if START not in template and END not in template:
        return None
    return PARSERS["qwen3" if "enable_thinking" in template else "think"]
