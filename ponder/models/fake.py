"""A scripted language model for fast tests (after DSPy's `DummyLM` and nanochat's `MockModel`).

It honours the whole `LanguageModel` contract — n, stop strings, max_tokens, finish reasons,
token counts, streaming callbacks, cancellation — so schemes and the server can be tested in
milliseconds. A "token" is a whitespace-separated word (plus the whitespace before it).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable, Sequence

from ponder.core.protocols import OnText, ShouldStop
from ponder.core.reasoning import ReasoningParser
from ponder.core.tool_calls import hermes
from ponder.core.types import Completion, GenerationRequest, Message, Tool

# script(prompt_text, sample_index) -> the full text the model "wants" to write
Script = Callable[[str, int], str]
_TOKEN = re.compile(r"\s*\S+|\s+$")
ASSISTANT = "<|assistant|>\n"  # where the chat template hands over to the model


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


class ScriptedModel:
    """Returns scripted text. `script` is a function of (prompt, sample index) or a list of
    strings handed out in order, cycling. `logprob(text)` gives a completion's total logprob,
    spread evenly over its tokens, for scorers that read logprobs; without it a request that
    asks for logprobs gets -1.0 per token, as a real backend always returns some."""

    def __init__(
        self,
        script: Script | Sequence[str],
        *,
        name: str = "fake",
        logprob: Callable[[str], float] | None = None,
        delay_per_token: float = 0.0,
        reasoning_parser: ReasoningParser | None = None,
    ) -> None:
        if callable(script):
            self._script: Script = script
        else:
            texts = itertools.cycle(list(script))
            lock = threading.Lock()

            def next_text(_prompt: str, _i: int) -> str:
                with lock:
                    return next(texts)

            self._script = next_text
        self.name = name
        # a scripted native thinker: its chat output is split as a real backend splits it
        self.reasoning_parser = reasoning_parser
        self.raw_prefix = True
        self._logprob = logprob
        self._delay = delay_per_token
        self.calls: list[list[GenerationRequest]] = []  # for tests to inspect

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        """A chat as `<|role|>` blocks; tools offered as one `<|tools|>` block of JSON before
        it, and earlier calls in the Hermes form, as Qwen2.5's template writes them."""
        head = f"<|tools|>\n{json.dumps(list(tools))}\n" if tools else ""
        text = "".join(f"<|{m['role']}|>\n{m['content'] or ''}{_calls(m)}\n" for m in messages)
        return head + text + (ASSISTANT if add_generation_prompt else "")

    def count_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def close(self) -> None:
        pass

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_text: OnText | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[list[Completion]]:
        self.calls.append(list(requests))
        out = []
        for r, req in enumerate(requests):
            prompt = req.prefix if req.prefix is not None else self._chat(req)
            completions = [self._one(prompt, r, i, req, on_text, should_stop)
                           for i in range(req.params.n)]
            if self.reasoning_parser is not None and req.messages is not None:
                completions = [self.reasoning_parser.apart(c) for c in completions]
            out.append(completions)
        return out

    def _chat(self, req: GenerationRequest) -> str:
        if req.tools:  # only then: a subclass that renders its own way may not know tools
            return self.render_chat(req.messages or (), tools=req.tools)
        return self.render_chat(req.messages or ())

    def _one(
        self, prompt: str, r: int, i: int, req: GenerationRequest,
        on_text: OnText | None, should_stop: ShouldStop | None,
    ) -> Completion:
        p = req.params
        full = self._script(prompt, p.first_sample + i)  # the sample's number in its seed
        # A raw prefix that already holds the start of the scripted answer (a tree scheme
        # continuing a path) gets the rest of it, as a real model would continue.
        written = prompt.rsplit(ASSISTANT, 1)[1] if req.prefix and ASSISTANT in prompt else ""
        if written and full.startswith(written):
            full = full[len(written):]
        stop_at, stop_string = len(full), None
        for s in p.stop:
            k = full.find(s)
            if 0 <= k < stop_at:
                stop_at, stop_string = k, s
        pieces = tokenize(full[:stop_at])
        finish = "stop"
        if len(pieces) > p.max_tokens:
            pieces, finish, stop_string = pieces[: p.max_tokens], "length", None
        emitted: list[str] = []
        for piece in pieces:
            if should_stop is not None and should_stop():
                finish, stop_string = "cancelled", None
                break
            if self._delay:
                threading.Event().wait(self._delay)
            emitted.append(piece)
            if on_text is not None:
                on_text(r, i, piece)
        text = "".join(emitted)
        lp = (self._logprob(text) if self._logprob
              else -float(len(emitted)) if p.logprobs is not None else None)
        return Completion(
            text=text,
            token_ids=[hash(t) & 0xFFFF for t in emitted],
            finish_reason=finish,  # type: ignore[arg-type]
            prompt_tokens=self.count_tokens(prompt),
            completion_tokens=len(emitted),
            token_logprobs=[lp / max(len(emitted), 1)] * len(emitted) if lp is not None else None,
            stop_string=stop_string,
        )


def _calls(message: Message) -> str:
    return "".join("\n" + hermes(c["function"]["name"], c["function"]["arguments"])
                   for c in message.get("tool_calls") or ())
