"""The command line's repeatable `key=value` options, parsed for the commands that take them.

This is the command layer: `ponder solve`, `ponder eval`, `ponder distill` and `ponder train prm`
parse their options here, and the library code under them (eval/runner.py, train/distill.py,
train/prm_labels.py) takes the parsed dicts. A malformed item is a one-line ConfigError that
shows the form to write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ponder.core.errors import ConfigError, UnknownName


def parse_model_args(items: Sequence[str], option: str = "model-arg") -> dict[str, Any]:
    """`--model-arg key=value` pairs; values are JSON where they parse (0.01, true, ["a"]),
    else strings. `option` names the flag in errors (`teacher-arg`, `policy-arg`)."""
    args: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(option, item, f"write key=value, e.g. --{option} n_ctx=8192")
        try:
            args[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            args[key.strip()] = value
    return args


def parse_fields(items: Sequence[str]) -> dict[str, str]:
    """`--field` items for a JSONL task file: ['question=problem', 'answer=solution'] ->
    {'question': 'problem', 'answer': 'solution'}."""
    fields: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise ConfigError("field", item, "write KEY=COLUMN, e.g. --field question=problem")
        fields[key.strip()] = column.strip()
    return fields


def parse_role_models(items: Sequence[str], option: str = "model") -> dict[str, str]:
    """Repeatable `--model` items -> a model spec per role: a bare SPEC is the policy, and
    ROLE=SPEC gives a model for another role (`--model default --model judge=qwen-1.5b`).
    No bare spec: the policy is `default`."""
    from ponder.core.types import POLICY, ROLES

    specs: dict[str, str] = {}
    for item in items:
        head, eq, spec = item.partition("=")
        role = head.strip() if eq and re.fullmatch(r"[A-Za-z_]+", head.strip()) else POLICY
        spec = spec.strip() if role != POLICY or head.strip() == POLICY else item.strip()
        if role not in ROLES:
            raise UnknownName("role", role, ROLES, also=f"or a bare model spec for the {POLICY}")
        if not spec:
            raise ConfigError(option, item, f"write SPEC or ROLE=SPEC, e.g. --{option} "
                              "default --model judge=qwen-1.5b")
        if role in specs:
            what = "one bare SPEC (the policy)" if role == POLICY else f"{role}= once"
            raise ConfigError(option, item, f"give {what}; name other roles ROLE=SPEC")
        specs[role] = spec
    return {POLICY: specs.pop(POLICY, "default"), **specs}
