"""`ponder eval` and `ponder report`: thin typer commands over runner.py and report.py.

Registered in ponder/cli.py (`app.command("eval")(eval_command)`); `python -m ponder.eval` runs
them on their own. User errors are `PonderError`s: one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.files import check_writable
from ponder.core.types import POLICY

if TYPE_CHECKING:
    from ponder.eval.report import SchemeSummary

# A pipe or file gets 120 columns (rich's 80 would fold the table); a terminal its own width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False)


def eval_command(
    task: Annotated[str, typer.Argument(help="Task name (gsm8k, math500, aime24, game24, "
                                        "strategyqa, ...) or a JSONL file of questions.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Results database (SQLite) to "
                                           "write, e.g. runs/gsm8k.db.",
                                           readable=False)],  # check_out says why, in one line
    schemes: Annotated[str, typer.Option(help="Comma-separated scheme specs (name@N sets N).")]
    = "cot,self-consistency@8",
    seeds: Annotated[int, typer.Option(help="Seeds per sampled scheme (greedy cot runs "
                                       "once).")] = 1,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="The policy: catalog name, .gguf path, hub id, OpenAI-compatible "
        "URL#model, or fake (default: default); repeat as ROLE=SPEC for a model in another "
        "role, e.g. --model judge=qwen-1.5b.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(
        "--model-arg", help="key=value passed to the model backend (repeatable; values parsed "
        "as JSON where they can be), e.g. n_ctx=8192.")] = None,
    split: Annotated[str, typer.Option(help="Dataset split (hub copies; a label for "
                                       "--data).")] = "test",
    data: Annotated[Path | None, typer.Option(help="Local JSONL file, or a directory holding "
                                              "the task's file. Default: the hub copy.")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N questions (after "
                                              "--start).")] = None,
    start: Annotated[int, typer.Option(help="Skip the first N questions of the file.")] = 0,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per chain, for every "
                                                   "scheme.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run stored in --out "
                                         "(same model, task, split, data).")] = False,
    temperature: Annotated[float | None, typer.Option(
        help="Temperature of the sampled schemes (greedy ones, like cot, stay greedy).")] = None,
    concurrency: Annotated[int, typer.Option(help="Questions worked on at once; a batching "
                                             "backend decodes them together.")] = 1,
    share_samples: Annotated[bool, typer.Option(
        "--share-samples", help="Schemes on a question draw from one pool of seeded samples "
        "(self-consistency@4 reuses the first 4 of @16's); see docs/eval.md.")] = False,
    field: Annotated[list[str] | None, typer.Option(
        "--field", help="For a JSONL task file: which column holds the question, answer or id "
        "(repeatable), e.g. --field question=problem --field answer=solution.")] = None,
    checker: Annotated[str | None, typer.Option(
        help="For a JSONL task file: how answers are judged: numeric, math (default), exact, "
        "yesno.")] = None,
    instruction: Annotated[str | None, typer.Option(
        help="System message asked before every question, in place of the task's (\"\": "
        "none).")] = None,
) -> None:
    """Evaluate schemes on a task: every question × scheme × seed, stored as it finishes."""
    from ponder.cli_args import parse_fields, parse_model_args, parse_role_models
    from ponder.eval.report import summarize
    from ponder.eval.runner import EvalConfig, run_eval
    from ponder.eval.store import Store, check_out, command_line

    specs = tuple(s.strip() for s in schemes.split(",") if s.strip())
    if not specs:
        raise ConfigError("schemes", schemes, "name at least one, e.g. cot,self-consistency@8")
    roles = parse_role_models(model or [])
    cfg = EvalConfig(task=task, schemes=specs, out=out_path, model=roles.pop(POLICY),
                     roles=roles, model_args=parse_model_args(model_arg or []), split=split,
                     data=data, limit=limit, start=start, seeds=seeds, max_tokens=max_tokens,
                     resume=resume, concurrency=concurrency, share_samples=share_samples,
                     temperature=temperature, fields=parse_fields(field or []), checker=checker,
                     instruction=instruction)
    check_out(out_path)  # an unusable --out fails now, not after the questions are loaded
    outcome = run_eval(cfg, command=command_line())
    err.print(f"{outcome.written} rows written, {outcome.resumed} already stored, "
              f"{outcome.planned} planned → {out_path}", markup=False)
    with Store.read(out_path) as store:
        print_table(summarize(store.rows(traces=False), order=specs), "wilson")
    if outcome.drained:  # the rows stored are whole questions; the rest waits for --resume
        err.print("stopped on request: run the same command with --resume to finish",
                  markup=False)
        raise typer.Exit(130)


def report_command(
    dbs: Annotated[list[Path], typer.Argument(
        help="Results database(s) written by `ponder eval`; several files of one task, split "
        "and model are reported together (e.g. chain schemes from one run, search from "
        "another).", metavar="DB...", readable=False)],  # Store.read says why, in one line
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="A Markdown table on "
                                           "stdout.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write accuracy vs tokens to this "
                                              "PNG.")] = None,
    plot_x: Annotated[str, typer.Option(help="The plot's x axis: tokens or seconds (per "
                                        "question).")] = "tokens",
    ci: Annotated[str, typer.Option(help="Confidence interval: wilson (rows) or bootstrap "
                                    "(questions).")] = "wilson",
    positions: Annotated[str | None, typer.Option(
        help="Only questions at these positions of the split, START:STOP (either may be "
        "left out), e.g. :100 for the first hundred.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Compare tokens and accuracy to this scheme (default: cot), e.g. "
        "self-consistency@8.")] = None,
    equal_tokens: Annotated[bool, typer.Option(
        "--equal-tokens", help="Also set each scheme next to self-consistency (or adaptive, "
        "best-of-n) run at several sizes, at the same tokens per question: one long chain "
        "against parallel samples (see docs/eval.md).")] = False,
    html_out: Annotated[Path | None, typer.Option(
        "--html", help="Also write the report as a page: table, intervals, plot, and each "
        "question linked to its traces (pages in OUT_traces/ beside it; docs/view.md).")]
    = None,
) -> None:
    """Accuracy (95% CI), cost per question and relative cost of each scheme in results DBs."""
    from ponder.eval.equal_tokens import HEADERS, at_equal_tokens, cells
    from ponder.eval.equal_tokens import to_markdown as equal_markdown
    from ponder.eval.report import PLOT_X, read_rows, summarize, title, to_json, to_markdown
    from ponder.eval.report import plot as draw

    if as_json and markdown:
        raise ConfigError("format", "--json --markdown", "choose one of --json and --markdown")
    if plot is not None and plot.is_dir():
        raise ConfigError("plot", str(plot), f"give a file, e.g. --plot {plot / 'plot.png'}")
    if plot_x not in PLOT_X:
        raise UnknownName("plot axis", plot_x, PLOT_X)
    if html_out is not None:
        check_writable(html_out, "--html")
    meta, rows = read_rows(dbs, positions)
    summaries = summarize(rows, ci=ci, order=meta.get("schemes", ()), baseline=baseline)
    if not summaries:
        err.print(f"{', '.join(map(str, dbs))}: no results yet"
                  + (f" at positions {positions}" if positions else ""), markup=False)
    matched = at_equal_tokens(summaries) if equal_tokens else []
    if equal_tokens and not matched:
        err.print("--equal-tokens: no parallel curve to compare with; run a voting scheme at "
                  "two or more sizes, e.g. --schemes self-consistency@2,self-consistency@4",
                  markup=False)
    if as_json:  # plain writes: rich would wrap long lines at the console width
        payload = json.loads(to_json(summaries, meta, ci))
        if equal_tokens:
            payload["equal_tokens"] = [asdict(m) for m in matched]
        typer.echo(json.dumps(payload, indent=1))
    elif markdown:
        typer.echo(to_markdown(summaries, meta, ci), nl=False)
        if matched:
            typer.echo("\nAt equal tokens (`--equal-tokens`):\n\n" + equal_markdown(matched),
                       nl=False)
    else:
        out.print(title(meta), style="bold", markup=False)
        print_table(summaries, ci)
        if matched:
            table = Table(*HEADERS, box=None, pad_edge=False, title="at equal tokens")
            for m in matched:
                table.add_row(*cells(m))
            out.print(table)
    if plot is not None and summaries:
        try:
            draw(summaries, plot, title(meta), axis=plot_x)
        except OSError as e:  # a path under a file, no permission: atomic, so no file is left
            raise DataError(f"cannot write the plot to {plot} ({e.strerror or e}); choose "
                            "another --plot") from e
        err.print(f"plot → {plot}", markup=False)
    if html_out is not None:
        from ponder.view.report_html import traces_folder, write_report
        try:
            pages = write_report(html_out, dbs, meta, summaries, rows, ci)
        except OSError as e:
            raise DataError(f"cannot write the report to {html_out} ({e.strerror or e}); "
                            "choose another --html") from e
        err.print(f"report → {html_out} ({pages} question pages in "
                  f"{traces_folder(html_out)}/)", markup=False)


def print_table(summaries: Sequence[SchemeSummary], ci: str) -> None:
    from ponder.eval.report import (
        CI_METHODS,
        ROLE_HEADERS,
        comparison_note,
        headers,
        role_table,
        table_cells,
    )

    table = Table(*headers(summaries), box=None, pad_edge=False)
    for column in table.columns[1:]:
        column.justify = "right"
    for s in summaries:
        table.add_row(*table_cells(s))
    out.print(table)
    out.print(CI_METHODS[ci].description, style="dim", markup=False)
    if any(s.gain_vs_baseline is not None for s in summaries):
        out.print(comparison_note(summaries), style="dim", markup=False)
    if (roles := role_table(summaries)) is not None:
        by_role = Table(*ROLE_HEADERS, box=None, pad_edge=False, title="cost by role and model")
        for column in by_role.columns[3:]:
            column.justify = "right"
        for cells in roles:
            by_role.add_row(*cells)
        out.print(by_role)


def fit_cascade_command(
    cheap: Annotated[Path, typer.Argument(help="Results DB of the cheap rung (the small model).",
                                          readable=False)],
    strong: Annotated[Path, typer.Argument(help="Results DB of the strong rung (the big model; "
                                           "may be the same file).", readable=False)],
    cheap_scheme: Annotated[str, typer.Option(help="The cheap rung's voting scheme in CHEAP, "
                                              "e.g. self-consistency@4.")] = "self-consistency@4",
    strong_scheme: Annotated[str, typer.Option(help="The strong rung's scheme in STRONG.")
                             ] = "cot",
    tolerance: Annotated[float, typer.Option(help="Accuracy (0-1) the cascade may lose "
                                             "against the strong rung alone.")] = 0.01,
    n: Annotated[int | None, typer.Option(help="The cascade's cheap answers: the first N "
                                          "chains of each stored pool (default: all).")
                 ] = None,
) -> None:
    """Fit a cascade's threshold from stored rows, generating nothing (fit on a train split)."""
    from ponder.eval.cascade_fit import choose, fit
    from ponder.eval.runner import task_of
    from ponder.eval.store import Store
    from ponder.schemes import parse_spec

    pool = parse_spec(cheap_scheme)[1]
    if pool is None or pool < 2:
        raise ConfigError("--cheap-scheme", cheap_scheme, "name a voting scheme with its N, "
                          "e.g. self-consistency@4")
    if n is not None and not 2 <= n <= pool:
        raise ConfigError("--n", n, f"use 2 to {pool}: the chains each stored pool holds")
    with Store.read(cheap) as store:
        low = [r for r in store.rows(traces=True) if r.scheme == cheap_scheme]
        task = task_of(store.meta())
    with Store.read(strong) as store:
        high = [r for r in store.rows(traces=False) if r.scheme == strong_scheme]
    for rows, name, path in ((low, cheap_scheme, cheap), (high, strong_scheme, strong)):
        if not rows:
            raise DataError(f"{path} holds no {name} rows; run it with ponder eval first")
    n = n or pool
    points, strong_alone = fit(low, high, n, task.key, task.check)
    best = choose(points, strong_alone, tolerance)
    timed = all(p.seconds is not None for p in points)
    table = Table("accept", "accuracy", "tokens/q", *(["model s/q"] if timed else []),
                  "escalated", box=None, pad_edge=False)
    for p in points:
        table.add_row(f"{p.threshold:.2f}", f"{p.accuracy:.1%}", f"{p.tokens:.0f}",
                      *([f"{p.seconds:.2f}"] if p.seconds is not None else []),
                      f"{p.escalated:.0%}")
    out.print(table)
    out.print(f"{strong_scheme} alone on these questions: {strong_alone:.1%}. Chosen: "
              f"cascade@{n}:accept={best.threshold:.2f}:then={strong_scheme} "
              f"({best.accuracy:.1%} at {best.tokens:.0f} tokens a question)", markup=False)
