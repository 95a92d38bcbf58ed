"""`ponder trace`: traces drawn as trees (chosen path starred, children under parents), its
options, the file shapes it reads, and one-line errors for files it cannot."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.types import Trace
from ponder.trace_view import render

runner = CliRunner()

# A node's line: guides (4 columns a level), "★" or " ", maybe "L<level>", then "#<id> ".
ROW = re.compile(r"^(?P<guide>(?:[│ ]   )*[├└]── )(?P<star>★| ) (?:L\d+ )?#(?P<id>\d+) ")


def rows(output: str) -> list[tuple[int, int, bool]]:
    """(node id, level, starred) for each node line, in printed order."""
    found = []
    for line in output.splitlines():
        if m := ROW.match(line):
            found.append((int(m["id"]), len(m["guide"]) // 4, m["star"] == "★"))
    return found


def line_of(output: str, node_id: int) -> str:
    return next(ln for ln in output.splitlines()
                if (m := ROW.match(ln)) and int(m["id"]) == node_id)


def chain_forest() -> Trace:
    """Self-consistency's shape: three whole chains as roots, the second chosen."""
    t = Trace(scheme="self-consistency", meta={"votes": {"42": 2, "41": 1}})
    for answer in ("41", "42", "42"):
        t.add(f"Six sevens.\nThe answer is {answer}.", tokens=9, answer=answer,
              finish_reason="stop")
    t.chosen = [1]
    return t


def small_tree() -> Trace:
    """Two roots; #0 -> #2 -> #4 chosen; #3 a sibling cut by length; #5 merges #2 and #4."""
    t = Trace(scheme="mcts", meta={"scorer": "judge"})
    a = t.add("Let me think.\nFirst, 6*7 means six sevens.", tokens=12, score=0.5, visits=4,
              value=0.61)
    t.add("Or add 7 six times.", tokens=8, score=0.25, meta={"rule": "dead end"})
    c = t.add("6*7 = 42.", parent=a.id, tokens=5, score=0.9, answer="42", visits=3)
    t.add("6*7 = [bold]48[/bold]?", parent=a.id, tokens=6, score=0.125,
          finish_reason="length")
    e = t.add("So the answer is \\boxed{42}.", parent=c.id, tokens=9, score=0.95, answer="42")
    t.add("Both agree: 42", tokens=4, answer="42",
          meta={"sources": [c.id, e.id], "kind": "aggregate"})
    t.chosen = t.path(e.id)
    return t


def write(tmp_path: Path, data: object, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def show(path: Path, *options: str) -> str:
    result = runner.invoke(app, ["trace", str(path), *options])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_chain_forest_is_roots_with_the_chosen_one_starred(tmp_path: Path) -> None:
    output = show(write(tmp_path, chain_forest().to_dict()))
    assert rows(output) == [(0, 1, False), (1, 1, True), (2, 1, False)]
    head = output.splitlines()[:2]
    assert head[0].startswith("self-consistency · 3 nodes · chosen #1")
    assert "votes 42 ×2, 41 ×1" in head[1]
    assert "Six sevens. ⏎ The answer is 42." in line_of(output, 1)  # one line per node
    assert "9 tok · answer 42" in line_of(output, 1)


def test_tree_nests_children_under_their_parents(tmp_path: Path) -> None:
    trace = small_tree()
    output = show(write(tmp_path, trace.to_dict()))
    printed = rows(output)
    assert [i for i, _, _ in printed] == [0, 2, 4, 3, 1, 5]  # depth first, in id order
    level = {i: lv for i, lv, _ in printed}
    position = {i: k for k, (i, _, _) in enumerate(printed)}
    for node in trace.nodes:
        if node.parent is None:
            assert level[node.id] == 1
            continue
        assert level[node.id] == level[node.parent] + 1
        between = printed[position[node.parent] + 1: position[node.id]]
        assert all(lv > level[node.parent] for _, lv, _ in between)  # still inside the parent
    assert {i for i, _, starred in printed if starred} == {0, 2, 4}


def test_node_lines_carry_their_stats(tmp_path: Path) -> None:
    output = show(write(tmp_path, small_tree().to_dict()))
    assert "12 tok · score 0.500 · value 0.610 · visits 4" in line_of(output, 0)
    assert "score 0.250 · dead end" in line_of(output, 1) and "value" not in line_of(output, 1)
    assert "finish length" in line_of(output, 3)
    assert "[bold]48[/bold]" in line_of(output, 3)  # a model's text is not rich markup
    merge = line_of(output, 5)
    assert "← merges #2, #4" in merge and "aggregate" in merge and "answer 42" in merge
    assert "scorer judge" in output.splitlines()[1]


def test_chosen_shows_only_the_chosen_path(tmp_path: Path) -> None:
    output = show(write(tmp_path, small_tree().to_dict()), "--chosen")
    assert rows(output) == [(0, 1, True), (2, 2, True), (4, 3, True)]


@pytest.mark.parametrize(
    ("depth", "shown", "hidden"),
    [pytest.param("1", [0, 1, 5], 3, id="roots-only"),
     pytest.param("2", [0, 2, 3, 1, 5], 1, id="no-grandchildren"),
     pytest.param("3", [0, 2, 4, 3, 1, 5], 0, id="everything")],
)
def test_depth_limits_the_levels_shown(tmp_path: Path, depth: str, shown: list[int],
                                       hidden: int) -> None:
    output = show(write(tmp_path, small_tree().to_dict()), "--depth", depth)
    assert [i for i, _, _ in rows(output)] == shown
    assert (f"({hidden} node{'s' * (hidden > 1)} below --depth {depth})" in output) == (hidden > 0)


def test_full_shows_whole_texts_and_the_default_cuts_them(tmp_path: Path) -> None:
    t = Trace(scheme="cot")
    t.add("First line.\n" + "word " * 60 + "END", tokens=70)
    t.chosen = [0]
    path = write(tmp_path, t.to_dict())
    short = show(path)
    assert "END" not in short and "…" in line_of(short, 0)
    assert all(len(line) <= 120 for line in short.splitlines())
    full = show(path, "--full")
    assert "END" in full and "⏎" not in full
    assert line_of(full, 0).endswith("#0 70 tok")  # stats first, then the text below
    assert [line.strip() for line in full.splitlines()][2] == "First line."


@pytest.mark.parametrize(
    "wrap",
    [pytest.param(lambda d: {"answer": "42", "usage": {}, "trace": d}, id="solve-result"),
     pytest.param(lambda d: {"question_id": "q1", "trace": json.dumps(d)}, id="eval-row")],
)
def test_reads_a_trace_inside_a_result_or_an_eval_row(tmp_path: Path, wrap) -> None:
    output = show(write(tmp_path, wrap(small_tree().to_dict())))
    assert [i for i, _, _ in rows(output)] == [0, 2, 4, 3, 1, 5]


def test_broken_parent_links_are_shown_or_reported_not_looped_on(tmp_path: Path) -> None:
    data = small_tree().to_dict()
    data["nodes"][3]["parent"] = 99  # no such node: #3 is shown as a root, with a note
    data["nodes"][1]["parent"] = 6  # #1 hangs under a cycle 6 -> 7 -> 6 that no root reaches
    data["nodes"] += [{"id": 6, "parent": 7, "text": "a"}, {"id": 7, "parent": 6, "text": "b"}]
    output = show(write(tmp_path, data))
    assert [(i, lv) for i, lv, _ in rows(output)] == [(0, 1), (2, 2), (4, 3), (3, 1), (5, 1)]
    assert "(parent #99 missing)" in line_of(output, 3)
    assert "(3 nodes not shown: no path from a root reaches them" in output


def test_large_and_deep_traces_render_every_node_within_the_width() -> None:
    rng = random.Random(0)
    wide = Trace(scheme="beam")
    for i in range(2000):
        wide.add(f"step {i} " + "word " * 30, parent=None if i < 8 else rng.randrange(i - 8, i))
    deep = Trace(scheme="chain")
    for i in range(400):  # deeper than the recursion limit allows per-level recursion to go
        deep.add(f"step {i}", parent=None if i == 0 else i - 1)
    deep.chosen = deep.path(399)
    for trace in (wide, deep):
        console = Console(file=StringIO(), width=120, color_system=None)
        console.print(render(trace, width=120)[0])
        output = console.file.getvalue()  # type: ignore[attr-defined]
        assert sorted(i for i, _, _ in rows(output)) == list(range(len(trace.nodes)))
        assert max(len(line) for line in output.splitlines()) <= 120
    assert "L400 #399 step 399" in output  # past the indent cap, levels are written out


def ponder(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "ponder.cli", *args],
                          capture_output=True, text=True, timeout=120)


def sqlite_file(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE results (trace TEXT)")


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        pytest.param(None, [], "does not exist", id="missing"),
        pytest.param("{not json", [], "is not JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00garbage", [], "is not JSON", id="binary"),
        pytest.param("[1, 2]", [], "holds no trace", id="a-list"),
        pytest.param('{"scheme": "cot"}', [], "holds no trace", id="no-nodes"),
        pytest.param('{"answer": "42", "usage": {}}', [], "without its trace",
                     id="solve-json-without-trace"),
        pytest.param('{"nodes": [{"id": 0}]}', [], "node 0 is not a trace node (no text)",
                     id="node-without-text"),
        pytest.param('{"nodes": [{"id": 0, "parent": null, "text": "", "colour": 1}]}', [],
                     "is not a trace", id="unknown-node-field"),
        pytest.param('{"nodes": [{"id": 0, "parent": null, "text": "a"}, '
                     '{"id": 0, "parent": null, "text": "b"}]}', [], "repeats node ids",
                     id="duplicate-ids"),
        pytest.param("sqlite", [], "is a results database", id="eval-db"),
        pytest.param('{"nodes": []}', ["--depth", "0"], "invalid --depth=0", id="depth-zero"),
    ],
)
def test_bad_files_give_one_line_and_exit_2(tmp_path: Path, content: str | bytes | None,
                                             options: list[str], message: str) -> None:
    path = tmp_path / "trace.json"
    if content == "sqlite":
        sqlite_file(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    proc = ponder("trace", str(path), *options)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("scheme", ["self-consistency@3", "beam@2"])
def test_solve_then_trace_end_to_end(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / "out.json"
    solved = ponder("solve", "What is 6*7?", "--model", "fake", "--scheme", scheme,
                    "--trace", str(path))
    assert solved.returncode == 0, solved.stderr
    shown = ponder("trace", str(path))
    assert shown.returncode == 0, shown.stderr
    saved = json.loads(path.read_text())
    printed = rows(shown.stdout)
    assert sorted(i for i, _, _ in printed) == [n["id"] for n in saved["nodes"]]
    assert [i for i, _, starred in printed if starred] == saved["chosen"] != []
    assert shown.stdout.startswith(saved["scheme"]) and "answer 42" in shown.stdout
