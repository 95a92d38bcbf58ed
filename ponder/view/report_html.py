"""`ponder report --html OUT.html`: the report as a page, each question linked to its traces.

OUT.html holds the table, its intervals and notes, the cost-by-role table, the plot of accuracy
against tokens (the report's own PNG, as a data URI) and a grid of questions × schemes (right,
wrong, or right in k of n seeds). Each question links to a page beside it, OUT_traces/qN.html
(N its position in the split), drawing every scheme's and seed's trace of it side by side; the
viewer's assets are written once into that folder and linked, not copied into every page. So
OUT.html stays small (a 100-question run: tens of kB plus the plot) and a question's page is
the size of its own traces; the folder opens from disk, offline, with no server.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ponder.core.errors import ConfigError
from ponder.core.files import write_text_atomic
from ponder.eval.report import (
    CI_METHODS,
    ROLE_HEADERS,
    SchemeSummary,
    comparison_note,
    headers,
    plot,
    role_table,
    table_cells,
    title,
)
from ponder.eval.store import Row, Store
from ponder.view.page import page, write_assets
from ponder.view.sources import StoredRun, parse_runs, question_rows, run_panels, task_check

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 20px auto; max-width: 1200px;
       padding: 0 16px; color: #1f2328; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e5e7eb; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.note { color: #6b7280; }
td.ok { color: #15803d; } td.bad { color: #b91c1c; } td.mixed { color: #b45309; }
.grid td { text-align: center; } .grid td.text { text-align: left; }
img { max-width: 100%; }
"""


def traces_folder(out: Path) -> Path:
    """Where the per-question pages of report `out` go: beside it, OUT_traces/."""
    return out.with_name(out.stem + "_traces")


def write_report(out: Path, dbs: Sequence[Path], meta: Mapping[str, Any],
                 summaries: Sequence[SchemeSummary], rows: Sequence[Row], ci: str) -> int:
    """Write OUT.html and its question pages; returns how many question pages."""
    folder = traces_folder(out)
    schemes = [s.scheme for s in summaries]
    questions = _questions(rows)
    written = _question_pages(folder, out.name, dbs, meta, questions, schemes)
    write_text_atomic(out, _summary_page(meta, summaries, rows, ci, questions, folder.name))
    return written


def _questions(rows: Sequence[Row]) -> dict[str, tuple[int, str]]:
    """Each question's (position, gold), in position order."""
    out: dict[str, tuple[int, str]] = {}
    for r in sorted(rows, key=lambda r: r.position):
        out.setdefault(r.question_id, (r.position, r.gold))
    return out


def _page_name(position: int) -> str:
    return f"q{position}.html"


# -- the summary page ------------------------------------------------------------------------


def _summary_page(meta: Mapping[str, Any], summaries: Sequence[SchemeSummary],
                  rows: Sequence[Row], ci: str, questions: Mapping[str, tuple[int, str]],
                  folder: str) -> str:
    heading = title(meta)
    parts = [f"<h1>{_e(heading)}</h1>",
             _table(headers(summaries), [table_cells(s) for s in summaries]),
             f'<p class="note">{_e(CI_METHODS[ci].description)}. tokens/q: mean completion '
             "tokens per question (discarded samples included).</p>"]
    if any(s.gain_vs_baseline is not None for s in summaries):
        parts.append(f'<p class="note">{_e(comparison_note(summaries))}</p>')
    if (roles := role_table(summaries)) is not None:
        parts += ["<h2>Cost by role and model, per question</h2>", _table(ROLE_HEADERS, roles)]
    parts += ["<h2>Accuracy against compute</h2>", _plot(summaries, heading)]
    parts += ["<h2>Questions</h2>",
              f'<p class="note">Each question links to its traces ({_e(folder)}/), every '
              "scheme and seed side by side. ✓ right, ✗ wrong, k/n right in k of n seeds.</p>",
              _grid(rows, questions, [s.scheme for s in summaries], folder)]
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<link rel="icon" href="data:,"><title>{_e(heading)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plot(summaries: Sequence[SchemeSummary], heading: str) -> str:
    """The report's PNG (ponder/eval/report.py `plot`) inlined as a data URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plot.png"
        try:
            plot(summaries, path, heading)
        except ConfigError:  # no matplotlib
            return '<p class="note">(the plot needs matplotlib: pip install matplotlib)</p>'
        data = base64.b64encode(path.read_bytes()).decode()
    return (f'<img alt="accuracy (95% CI) against mean completion tokens per question" '
            f'src="data:image/png;base64,{data}">')


def _grid(rows: Sequence[Row], questions: Mapping[str, tuple[int, str]],
          schemes: Sequence[str], folder: str) -> str:
    """Questions × schemes: each cell how many of the scheme's seeds got it right."""
    cells: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        cells[(r.question_id, r.scheme)].append(r)
    head = "".join(f"<th>{_e(s)}</th>" for s in ["#", "question", "gold", *schemes])
    lines = []
    for qid, (position, gold) in questions.items():
        link = f'<a href="{_e(folder)}/{_page_name(position)}">{_e(qid)}</a>'
        tds = [f"<td>{position}</td>", f'<td class="text">{link}</td>',
               f'<td class="text">{_e(_clip(gold, 24))}</td>']
        for scheme in schemes:
            runs = cells.get((qid, scheme), [])
            right = sum(r.correct for r in runs)
            mark, kind = ("", "") if not runs else (
                ("✓", "ok") if right == len(runs) else ("✗", "bad") if right == 0
                else (f"{right}/{len(runs)}", "mixed"))
            answers = ", ".join(sorted({str(r.answer) for r in runs}))
            tds.append(f'<td class="{kind}" title="{_e(answers)}">{mark}</td>')
        lines.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}'
            "</tbody></table>")


# -- the question pages ----------------------------------------------------------------------


def _question_pages(folder: Path, report: str, dbs: Sequence[Path], meta: Mapping[str, Any],
                    questions: Mapping[str, tuple[int, str]], schemes: Sequence[str]) -> int:
    """One page per question: its runs from every file, read a question at a time (a large
    run's traces never sit in memory at once)."""
    write_assets(folder)
    check = task_check(dict(meta))
    stores = [Store.read(p) for p in dbs]
    try:
        for qid, (position, gold) in questions.items():
            runs: list[StoredRun] = []
            for path, store in zip(dbs, stores, strict=True):
                rows = [r for r in question_rows(store.conn, qid) if r[0] in schemes]
                runs += parse_runs(path, qid, rows)
            order = {s: i for i, s in enumerate(schemes)}
            runs.sort(key=lambda r: (order.get(r.scheme, len(order)), r.seed))
            text = page(run_panels(runs, check), f"question {qid} · gold {_clip(gold, 40)}",
                        assets="", back=(f"../{report}", "← report"))
            (folder / _page_name(position)).write_text(text, encoding="utf-8")
    finally:
        for store in stores:
            store.close()
    return len(questions)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _e(text: object) -> str:
    return html.escape(str(text))
