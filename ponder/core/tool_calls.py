"""Tool calls in a model's text: the Hermes format that Qwen2.5 writes, read and written.

Qwen2.5's chat template (after NousResearch's Hermes 2 Pro) lists the offered tools in the
system message and asks for each call as

    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>

one block per call, several in a row for parallel calls. `parse` reads them out of a chain;
`hermes` writes one (the HTTP backend writes the calls a server parsed back into the chain, so
every backend's calls are read here); `for_template` hands templates the arguments as the
objects they print (`tool_call.arguments | tojson`) where OpenAI's messages carry JSON text.

Rules (vLLM's hermes tool parser is the reference; where it leaves room):
  * a native thinker's thinking is not searched: a call written inside `<think>...</think>` is
    a thought about calling, not a call, and a chain cut off while thinking has none;
  * a call is a JSON object whose `name` is among the tools offered and whose `arguments` are
    an object (absent: `{}`; JSON text that holds an object is read as that object);
  * one repair: a block whose JSON is followed by stray text (`{...}}`, `{...} Now I wait`) is
    read to the end of its first JSON value; a last block left unclosed is read the same way;
  * all or nothing: if any block is malformed (not JSON, an unknown name, arguments that are
    not an object), the text has no calls and `error` says why; the caller shows it as text;
  * without tags, a reply that is nothing but one such object, bare or in one code fence, is
    a call too: the embedded Qwen2.5-Coder-0.5B, offered tools, writes its call as a fenced
    `json` block (measured: tests/test_tool_calls_real.py). Anything else is text, silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from ponder.core.errors import shown
from ponder.core.reasoning import END, START, get_parser
from ponder.core.types import Message

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)
_THINK = get_parser("think")
_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n?```", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object as text, as OpenAI's `function.arguments` carries it


@dataclass(frozen=True)
class Parsed:
    """A text read for calls. `text` is what is left outside them (all of it where there are
    none); `written` the calls as the model wrote them; `error` why blocks were refused."""

    calls: tuple[ToolCall, ...]
    text: str
    written: str = ""
    error: str | None = None


def parse(text: str, names: Collection[str]) -> Parsed:
    """The calls in `text` to the functions `names` (the module docstring has the rules)."""
    start = _reply_start(text)
    head, reply = text[:start], text[start:]
    blocks = list(_BLOCK.finditer(reply))
    calls = []
    for k, block in enumerate(blocks):
        call = _call(block.group(1), names)
        if isinstance(call, str):
            return Parsed((), text, error=f"tool call {k + 1}: {call}")
        calls.append(call)
    if not blocks:
        bare = _bare(reply, names)
        return Parsed((bare,), head, reply) if bare is not None else Parsed((), text)
    outside = _BLOCK.sub("", reply).strip()
    return Parsed(tuple(calls), head + outside, "".join(b.group(0) for b in blocks))


def _reply_start(text: str) -> int:
    """Where the search for calls begins: after a native thinker's `</think>`."""
    split = _THINK.split(text)
    if split.reasoning is None:
        return 0
    if not split.closed:
        return len(text)  # cut off while thinking: no reply, so no call
    return text.index(END, text.index(START) + len(START)) + len(END)


def _call(body: str, names: Collection[str]) -> ToolCall | str:
    """One block's call, or why it is none."""
    body = body.strip()
    try:
        value = json.loads(body)
    except ValueError:
        value = _first_value(body)
    if value is None:
        return f"not JSON ({shown(body)})"
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return f"not an object with a name ({shown(body)})"
    name = value["name"]
    if name not in names:
        return f"unknown function {shown(name)}; offered: {', '.join(sorted(names)) or 'none'}"
    arguments = value.get("arguments", {})
    if isinstance(arguments, str) and _object(arguments) is not None:
        arguments = _object(arguments)
    if not isinstance(arguments, dict):
        return f"the arguments of {name} are not an object ({shown(arguments)})"
    return ToolCall(name, json.dumps(arguments, ensure_ascii=False))


def _bare(reply: str, names: Collection[str]) -> ToolCall | None:
    """A reply that is one call and nothing else, bare or fenced; else None."""
    body = reply.strip()
    fenced = _FENCED.fullmatch(body)
    body = fenced.group(1).strip() if fenced else body
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    call = _call(body, names) if isinstance(value, dict) and "name" in value else None
    return call if isinstance(call, ToolCall) else None


def _first_value(body: str) -> Any:
    """The repair: the first JSON object in `body`, stray text after it ignored; None if
    there is none."""
    start = body.find("{")
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(body, start)[0]
    except ValueError:
        return None


def hermes(name: str, arguments: str) -> str:
    """One call as Qwen2.5's template writes it into an assistant turn."""
    return f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {arguments or "{}"}}}\n{CLOSE}'


def for_template(messages: Iterable[Message]) -> list[Message]:
    """Messages as chat templates read them: each earlier call's `arguments` an object (OpenAI
    sends JSON text; Qwen's template would print text as a quoted string)."""
    return [{**m, "tool_calls": [_with_object(c) for c in m["tool_calls"]]}
            if m.get("tool_calls") else m for m in messages]


def _with_object(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    value = _object(arguments) if isinstance(arguments, str) else None
    return call if value is None else {**call, "function": {**function, "arguments": value}}


def _object(text: str) -> dict[str, Any] | None:
    """The JSON object `text` holds, else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
