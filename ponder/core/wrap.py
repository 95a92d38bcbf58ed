"""A base for models that wrap another: everything but `generate` goes to the wrapped model.

Schemes meter a model (schemes/base.py), evaluation shares samples between schemes
(eval/shared.py), PRM labelling counts its rollouts (train/prm_labels.py); each overrides
`generate` and inherits the rest. `close` leaves the wrapped model open unless `owns` is set:
a wrapper usually borrows a model its caller closes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ponder.core.protocols import LanguageModel, OnText, ShouldStop
from ponder.core.types import Completion, GenerationRequest, Message, Tool


class Wrapper:
    def __init__(self, model: LanguageModel, *, owns: bool = False) -> None:
        self.model = model
        self.name = model.name
        self.reasoning_parser = model.reasoning_parser
        self.raw_prefix = model.raw_prefix
        self._owns = owns

    def generate(self, requests: Sequence[GenerationRequest], *, on_text: OnText | None = None,
                 should_stop: ShouldStop | None = None) -> list[list[Completion]]:
        return self.model.generate(requests, on_text=on_text, should_stop=should_stop)

    def render_chat(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                    tools: Sequence[Tool] = ()) -> str:
        if not tools:  # a model written before tools were offered still renders plain chats
            return self.model.render_chat(messages, add_generation_prompt=add_generation_prompt)
        return self.model.render_chat(messages, add_generation_prompt=add_generation_prompt,
                                      tools=tools)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def close(self) -> None:
        if self._owns:
            self.model.close()
