"""`ponder serve`: load the models, build the app, run uvicorn.

    ponder serve --model default --model smollm=smollm2-135m --port 8000
    python -m ponder.serve --model fake --model-arg delay_per_token=0.05   # tests, demos

A `--model` is `NAME=SPEC` or a bare `SPEC`, served under a short name: a catalog name as it
is, an `http://...#name` URL under the name after `#`, a path or hub id under its last part
(`~/models/qwen.gguf` is `qwen`), so no client learns where a file lies. `--scorer
NAME=prm:PATH` loads a trained scorer once, at startup, for requests to name as `scorer=NAME`;
a request never names a path. `--max-request-chains/-tokens/-seconds` cap one request's work.
`--model-arg [NAME:]KEY=VALUE` passes a keyword to the backend of model NAME (or of every
model); VALUE is read as JSON when it parses (numbers, lists), else as a string.
`--keep-traces N` keeps the last N requests' traces to read or watch (traces.py).
`--effort-table FILE.json` replaces levels of the reasoning-effort table:
`{"medium": {"scheme": "self-consistency@4", "max_tokens": 512}}`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.types import POLICY, ROLES
from ponder.schemes.effort import EFFORTS, Effort

_NAME = re.compile(r"[\w.-]+")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def parse_models(specs: list[str]) -> dict[str, str]:
    """['default', 'smollm=smollm2-135m', 'http://h/v1#qwen'] -> {served name: catalog spec}."""
    served: dict[str, str] = {}
    for spec in specs:
        name, eq, rest = spec.partition("=")
        if eq and _NAME.fullmatch(name):
            name, spec = name, rest
        else:
            name = short_name(spec)
        if not name or not spec:
            raise ConfigError("--model", spec, "write NAME=SPEC or SPEC, e.g. smollm=smollm2-135m")
        if name in served:
            raise ConfigError("--model", name, "serve each name once; rename one with NAME=SPEC")
        served[name] = spec
    return served


def short_name(spec: str) -> str:
    """The name a bare model spec is served under: its `#name` for a URL, the last part of a
    path or hub id without `.gguf`, a catalog name as it is."""
    if re.match(r"https?://", spec):
        return spec.partition("#")[2]
    return Path(spec.rstrip("/\\")).name.removesuffix(".gguf")


def parse_roles(items: list[str], served: Iterable[str]) -> dict[str, str]:
    """['fallback=big'] -> {role: served model name}: the model a scheme's role gets when a
    request names none for it (reasoning_effort "auto" escalates to `fallback`)."""
    roles: dict[str, str] = {}
    served = list(served)
    for item in items:
        role, eq, name = item.partition("=")
        if not eq or role not in ROLES or role == POLICY:
            raise ConfigError("--role", item, "write ROLE=NAME with ROLE one of "
                              f"{', '.join(r for r in ROLES if r != POLICY)}, e.g. fallback=big")
        if name not in served:
            raise ConfigError("--role", item, f"name a model this server hosts (-m NAME=SPEC): "
                              f"{', '.join(served)}")
        roles[role] = name
    return roles


def parse_scorers(specs: list[str]) -> dict[str, str]:
    """['myprm=prm:runs/prm/final'] -> {name: scorer spec}; each a trained scorer (KIND:PATH)
    under a name that is not a built-in scorer's."""
    from ponder.scorers import PATH_SCORERS, SCORERS

    named: dict[str, str] = {}
    for item in specs:
        name, eq, spec = item.partition("=")
        kind = spec.partition(":")[0]
        if not eq or not _NAME.fullmatch(name) or kind not in PATH_SCORERS or ":" not in spec:
            raise ConfigError("--scorer", item, "write NAME=KIND:PATH with KIND one of "
                              f"{', '.join(PATH_SCORERS)}, e.g. myprm=prm:runs/prm/final")
        if name in SCORERS or name in named:
            raise ConfigError("--scorer", name, "name each scorer once, and not after a "
                              f"built-in one ({', '.join(SCORERS)})")
        named[name] = spec
    return named


def parse_model_args(args: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """['delay_per_token=0.05', 'smollm:n_ctx=4096'] -> keyword arguments per served model."""
    kwargs: dict[str, dict[str, Any]] = {name: {} for name in names}
    for arg in args:
        target, eq, raw = arg.partition("=")
        name, colon, key = target.rpartition(":") if ":" in target else ("", "", target)
        if not eq or not _NAME.fullmatch(key) or (colon and name not in kwargs):
            raise ConfigError("--model-arg", arg, f"write [NAME:]KEY=VALUE with NAME one of "
                              f"{', '.join(names)}, e.g. delay_per_token=0.05")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        for served in [name] if colon else names:
            kwargs[served][key] = value
    return kwargs


def load_effort_table(path: Path) -> dict[str, Effort]:
    """The default table with the file's levels replaced; each level is checked by building
    its scheme, so a typo fails at startup, not on a request."""
    from ponder.schemes import get_scheme, parse_spec
    from ponder.serve.protocol import check_types

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read the effort table {path}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object: {{level: {{scheme, ...settings}}}}")
    table = dict(EFFORTS)
    for level, entry in data.items():
        if level not in EFFORTS:  # the levels OpenAI's reasoning_effort takes
            raise UnknownName("reasoning effort level", level, EFFORTS)
        if not isinstance(entry, dict) or not isinstance(entry.get("scheme"), str):
            raise DataError(f"{path}: level {level!r} needs an object with a \"scheme\" name")
        settings = {k: v for k, v in entry.items() if k != "scheme"}
        try:
            name, _, in_spec = parse_spec(entry["scheme"])
            check_types(name, {**settings, **in_spec})
            get_scheme(entry["scheme"], **settings)
        except (ConfigError, UnknownName) as e:
            raise DataError(f"{path}: level {level!r}: {e}") from None
        table[level] = Effort(entry["scheme"], settings)
    return table


def serve_command(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="NAME=SPEC or SPEC, repeatable. SPEC: a catalog name, .gguf path, "
        "hub id, OpenAI-compatible URL#model, or fake.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="PONDER_API_KEY", help="Require Authorization: Bearer KEY on /v1.")] = None,
    max_concurrency: Annotated[int, typer.Option(
        min=1, help="Requests running at once (worker threads).")] = 8,
    max_queue: Annotated[int, typer.Option(
        min=0, help="Requests waiting beyond those; more get 503.")] = 64,
    effort_table: Annotated[Path | None, typer.Option(
        help="JSON file replacing levels of the reasoning-effort table.")] = None,
    task: Annotated[str, typer.Option(help="How questions are prompted and answers "
                                      "read (ponder/tasks); chat: any prompt, a reply after the "
                                      "reasoning.")] = "chat",
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="[NAME:]KEY=VALUE keyword for a model's backend, repeatable "
        "(e.g. delay_per_token=0.05 for fake).")] = None,
    scorer: Annotated[list[str] | None, typer.Option(
        "--scorer", help="NAME=prm:PATH or NAME=orm:PATH, repeatable: a trained scorer loaded "
        "once at startup, which requests name as scorer=NAME.")] = None,
    max_request_chains: Annotated[int, typer.Option(
        min=1, help="Most chains one request may ask for (n x the scheme's N).")] = 64,
    max_request_tokens: Annotated[int, typer.Option(
        min=1, help="Most completion tokens one request's runs may spend.")] = 65_536,
    max_request_seconds: Annotated[float, typer.Option(
        min=0.001, help="Wall seconds after which a request's runs stop and answer with what "
        "they have (finish reason length).")] = 600.0,
    role: Annotated[list[str] | None, typer.Option(
        "--role", help="ROLE=NAME, repeatable: the served model a scheme's role gets when a "
        "request names none (ponder.roles), e.g. fallback=big for reasoning_effort auto.")] = None,
    keep_traces: Annotated[int, typer.Option(
        min=0, help="Keep the last N requests' traces, at /v1/traces/ID (JSON) and /view/ID "
        "(drawn, live while they run); 0: none.")] = 0,
    log_level: Annotated[str, typer.Option(help=f"{', '.join(LOG_LEVELS)}.")] = "info",
) -> None:
    """Serve models as an OpenAI-compatible reasoning API (POST /v1/chat/completions)."""
    import uvicorn

    from ponder.models.catalog import load_model
    from ponder.scorers import get_scorer
    from ponder.serve.app import create_app
    from ponder.serve.protocol import Limits
    from ponder.tasks import get_task

    if log_level not in LOG_LEVELS:
        raise ConfigError("--log-level", log_level, f"use one of {', '.join(LOG_LEVELS)}")
    specs = parse_models(model or ["default"])
    kwargs = parse_model_args(model_arg or [], list(specs))
    scorer_specs = parse_scorers(scorer or [])
    roles = parse_roles(role or [], specs)
    efforts = load_effort_table(effort_table) if effort_table else EFFORTS
    problem_for = get_task(task).problem
    limits = Limits(max_chains=max_request_chains, max_tokens=max_request_tokens,
                    max_seconds=max_request_seconds)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s %(message)s")
    models = {}
    try:
        for name, spec in specs.items():
            models[name] = load_model(spec, **kwargs[name])
        policy = next(iter(models.values()))  # a trained scorer loads its own model
        scorers = {name: get_scorer(spec, policy) for name, spec in scorer_specs.items()}
        app = create_app(models, problem_for, efforts=efforts, api_key=api_key,
                         max_concurrency=max_concurrency, max_queue=max_queue,
                         scorers=scorers, limits=limits, keep_traces=keep_traces,
                         roles=roles)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=5)
    finally:
        for loaded in models.values():
            loaded.close()
