"""The conversation a request sends: its messages by role, as they arrive and as a chat
template renders them (`message()`), and the check that each tool result answers a call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ponder.core.errors import ConfigError
from ponder.core.types import Message
from ponder.serve.tools import ToolCall


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class _Turn(_Body):
    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def message(self, called: Mapping[str, str]) -> Message:
        """The turn as a template renders it; `called`: each earlier call's function, by id."""
        return {"role": self.role, "content": self.text()}


class SystemMessage(_Turn):
    role: Literal["system", "developer"]
    content: str | list[TextPart]


class UserMessage(_Turn):
    role: Literal["user"]
    content: str | list[TextPart]


class AssistantTurn(_Turn):
    role: Literal["assistant"]
    # Accepted, and never sent back to the model: a reasoning model's earlier thoughts are
    # dropped from the next prompt (as DeepSeek-R1 and OpenAI do).
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None

    def message(self, called: Mapping[str, str]) -> Message:
        calls = {"tool_calls": [c.model_dump() for c in self.tool_calls]} if self.tool_calls else {}
        return {"role": "assistant", "content": self.text(), **calls}


class ToolMessage(_Turn):
    """A tool's result, answering the call `tool_call_id` an earlier assistant turn made."""

    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str

    def message(self, called: Mapping[str, str]) -> Message:
        return {"role": "tool", "content": self.text(), "tool_call_id": self.tool_call_id,
                "name": called[self.tool_call_id]}


# One message, told apart by its role: the schema says which roles may leave content out.
ChatMessage = Annotated[SystemMessage | UserMessage | AssistantTurn | ToolMessage,
                        Field(discriminator="role")]
ROLE_TAGS = frozenset({"system", "developer", "user", "assistant", "tool"})  # in error paths


def called_functions(messages: Sequence[_Turn]) -> dict[str, str]:
    """Each call's function by id; a tool result must answer a call made before it."""
    called: dict[str, str] = {}
    for k, m in enumerate(messages):
        if isinstance(m, AssistantTurn):
            called.update((c.id, c.function.name) for c in m.tool_calls or ())
        elif isinstance(m, ToolMessage) and m.tool_call_id not in called:
            raise ConfigError(f"messages[{k}].tool_call_id", m.tool_call_id, "answer a call "
                              "an earlier assistant message made (one of its tool_calls ids)")
    return called
