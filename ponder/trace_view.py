"""`ponder trace FILE.json`: a reasoning trace as an indented tree in the terminal.

    ponder solve "What is 6*7?" --scheme beam --trace t.json && ponder trace t.json
    ponder trace t.json --chosen          # only the chosen path, root to leaf
    ponder trace t.json --depth 2 --full  # two levels of steps, whole texts

Reads what `ponder solve --trace` writes, a dict that holds one under a "trace" key (a
`Result.to_dict()`, an exported eval row), or an eval DB row's `trace` column. One line per node:
a ★ on the chosen path, `#id`, the start of its text, then its stats. The tree follows the parent
links; a graph merge says which nodes it merged (`← merges #3, #5`, from `meta["sources"]`).
Building the tree is linear in the nodes, so a search of thousands prints in a moment.
`ponder view` (ponder/view) draws the same traces in the browser.

Registered in ponder/cli.py (`app.command("trace")(trace_command)`); bad files are `DataError`s:
one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.control import strip_control_codes
from rich.text import Span, Text
from rich.tree import Tree

from ponder.core.errors import ConfigError, DataError
from ponder.core.types import Node, Trace

# A pipe or file gets 120 columns; a terminal its own width (as `ponder report` does).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False)

PREVIEW = 80  # characters of a step's text on its one line
NEWLINE = " ⏎ "
WRITE_ONE = "write one with `ponder solve QUESTION --trace FILE.json`"


def trace_command(
    path: Annotated[Path, typer.Argument(help="Trace JSON written by `ponder solve --trace`, "
                                         "or a JSON object holding one under \"trace\".")],
    full: Annotated[bool, typer.Option("--full", help="Whole step texts, wrapped, instead of "
                                       f"their first {PREVIEW} characters.")] = False,
    chosen: Annotated[bool, typer.Option("--chosen", help="Only the chosen path, root to "
                                         "leaf.")] = False,
    depth: Annotated[int | None, typer.Option(help="Show N levels of steps (1 = the roots "
                                              "only).")] = None,
) -> None:
    """Print a reasoning trace as a tree: the chosen path starred, each step with its stats."""
    if depth is not None and depth < 1:
        raise ConfigError("--depth", depth, "use 1 or more levels (1 shows the roots only)")
    trace = load_trace(path)
    tree, hidden = render(trace, full=full, chosen_only=chosen, depth=depth, width=out.width)
    out.print(tree)
    if hidden:
        nodes = f"{hidden:,} node{'' if hidden == 1 else 's'}"
        why = (f"below --depth {depth}" if depth is not None
               else "not shown: no path from a root reaches them (a cycle of parent links)")
        out.print(f"({nodes} {why})", style="dim", markup=False)


# -- reading ---------------------------------------------------------------------------------


def load_trace(path: Path) -> Trace:
    """The trace in `path`, or a one-line DataError that says what to pass instead."""
    return parse_trace(read_json(path), str(path))


def read_json(path: Path) -> Any:
    """The JSON in `path` (a trace file, or one holding traces), or a one-line DataError."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"{path} {what}; pass a trace JSON file ({WRITE_ONE})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check its permissions"
                        ) from None
    if raw.startswith(b"SQLite format 3"):
        raise DataError(f"{path} is a results database, not a trace; draw a question's traces "
                        f"with `ponder view {path} --question ID`, or export one row's trace: "
                        f"sqlite3 {path} \"SELECT trace FROM results LIMIT 1\" > trace.json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise DataError(f"{path} is not JSON{where}; pass a trace file ({WRITE_ONE})") from None


def parse_trace(data: Any, source: str = "input") -> Trace:
    """A Trace from a trace dict, or from a dict holding one (or its JSON text) under "trace"."""
    if isinstance(data, dict) and "trace" in data and "nodes" not in data:
        data = data["trace"]
        if isinstance(data, str):  # an eval DB row keeps its trace as JSON text
            try:
                data = json.loads(data)
            except json.JSONDecodeError:
                raise DataError(f"{source}: its \"trace\" is text that is not JSON; "
                                f"{WRITE_ONE}") from None
    elif isinstance(data, dict) and {"answer", "usage"} <= data.keys():
        raise DataError(f"{source} is a result without its trace (`--json` leaves it out); "
                        f"write the trace with `ponder solve QUESTION --trace FILE.json`")
    if not (isinstance(data, dict) and isinstance(data.get("nodes"), list)):
        raise DataError(f"{source} holds no trace (an object with a \"nodes\" list, or one "
                        f"under a \"trace\" key); {WRITE_ONE}")
    for i, node in enumerate(data["nodes"]):
        problem = _node_problem(node)
        if problem:
            raise DataError(f"{source}: node {i} is not a trace node ({problem}); {WRITE_ONE}")
    try:
        trace = Trace.from_dict(data)
    except (TypeError, ValueError) as e:  # an unknown node field, meta that is not a dict
        raise DataError(f"{source} is not a trace ({e}); {WRITE_ONE}") from None
    if not all(isinstance(i, int) for i in trace.chosen):
        raise DataError(f"{source}: \"chosen\" must list node ids; {WRITE_ONE}")
    if not isinstance(trace.scheme, str):
        raise DataError(f"{source}: \"scheme\" must be a name; {WRITE_ONE}")
    if len({n.id for n in trace.nodes}) != len(trace.nodes):
        raise DataError(f"{source} repeats node ids; every node needs its own id ({WRITE_ONE})")
    return trace


def _node_problem(node: Any) -> str:
    """What makes `node` unreadable as a Node ('' if nothing); checked before rendering, so
    that a hand-edited file fails with a message rather than a traceback halfway through."""
    if not isinstance(node, dict):
        return "not an object"
    if not isinstance(node.get("id"), int) or isinstance(node.get("id"), bool):
        return "no integer id"
    if node.get("parent") is not None and not isinstance(node["parent"], int):
        return "parent is not a node id"
    if not isinstance(node.get("text"), str):
        return "no text"
    if not isinstance(node.get("answer"), (str, type(None))):
        return "answer is not text"
    if not isinstance(node.get("meta", {}), dict):
        return "meta is not an object"
    for key in ("tokens", "visits"):
        if not isinstance(node.get(key, 0), int):
            return f"{key} is not an integer"
    for key in ("score", "value"):
        if not isinstance(node.get(key, 0.0), (int, float, type(None))):
            return f"{key} is not a number"
    return ""


# -- rendering -------------------------------------------------------------------------------

GUIDE = 4  # columns rich's tree guides take per level ("├── ")


def header(trace: Trace) -> Text:
    """A line of scheme, size and chosen path, and one of the trace's meta if it has any."""
    ids = [f"#{i}" for i in trace.chosen]
    path = " → ".join(ids) if ids else "none"
    if len(ids) > 12:  # a long chain: its ends and its length
        path = f"{' → '.join(ids[:5])} → … → {' → '.join(ids[-5:])} ({len(ids)} steps)"
    count = f"{len(trace.nodes):,} node{'' if len(trace.nodes) == 1 else 's'}"
    line = Text.assemble((trace.scheme or "(unnamed scheme)", "bold"), f" · {count} · chosen ",
                         (path, "green"))
    if trace.meta:
        line.append("\n" + " · ".join(_meta_item(k, v) for k, v in trace.meta.items()),
                    style="dim")
    return line


def _meta_item(key: str, value: Any) -> str:
    if key == "votes" and isinstance(value, dict):  # {answer: count}, best first
        votes = [f"{_clip(str(a), 24)} ×{c}" for a, c in value.items()]
        more = f", … {len(votes) - 8} more" if len(votes) > 8 else ""
        return "votes " + ", ".join(votes[:8]) + more
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"{key} {_clip(shown, 40)}"


def render(trace: Trace, *, full: bool = False, chosen_only: bool = False,
           depth: int | None = None, width: int = 120) -> tuple[Tree, int]:
    """The trace as a rich Tree under its header, and how many nodes it leaves out (below
    `depth`, or cut off from every root by a cycle of parent links).

    Children come from the parent links (what `Trace.add` records); a node whose parent is not
    in the trace is shown as a root. With `chosen_only`, the chosen path as one chain. Lines are
    cut to `width` unless `full`. Below the level where guides would take half the width, steps
    stop indenting and show their level instead (`L31`), so a long chain stays readable.
    """
    by_id = {n.id: n for n in trace.nodes}
    on_path = set(trace.chosen)
    max_indent = max(4, width // 2 // GUIDE)
    tree = Tree(header(trace), guide_style="dim")
    if chosen_only:
        nodes = [by_id[i] for i in trace.chosen if i in by_id][:depth]
        branch = tree
        for level, node in enumerate(nodes, start=1):
            deep = level >= max_indent
            child = branch.add(_label(node, True, level if deep else None,
                                      None if full else width - GUIDE * min(level, max_indent)))
            branch = branch if level >= max_indent else child
        return tree, 0

    children: dict[int | None, list[Node]] = {}
    for n in trace.nodes:
        parent = n.parent if n.parent in by_id else None
        children.setdefault(parent, []).append(n)
    shown = 0
    # Depth-first with an explicit stack: a long chain of steps must not hit the recursion limit.
    stack = [(tree, n, 1) for n in reversed(children.get(None, []))]
    while stack:
        branch, node, level = stack.pop()
        deep = level >= max_indent
        label = _label(node, node.id in on_path, level if deep else None,
                       None if full else width - GUIDE * min(level, max_indent))
        if node.parent is not None and node.parent not in by_id:
            label.append(f"  (parent #{node.parent} missing)", style="red")
        kids = children.get(node.id, [])
        if kids and depth is not None and level >= depth:
            label.append(f"  ▸ {len(kids)} child{'ren' if len(kids) > 1 else ''}", style="dim")
            kids = []
        child = branch.add(label)
        shown += 1
        # Past max_indent children join their parent's branch: listed after it, not indented.
        below = branch if level >= max_indent else child
        stack.extend((below, k, level + 1) for k in reversed(kids))
    return tree, len(trace.nodes) - shown


def _label(node: Node, chosen: bool, level: int | None, room: int | None) -> Text:
    """`★ #3 The first step…  12 tok · score 0.750 · answer 42`, fitted into `room` columns
    (None: the stats, then the whole text wrapped below them). Markup-free: a model's `[bold]`
    prints as written."""
    head = [("★ " if chosen else "  ", "bold green"),
            (f"L{level} " if level is not None else "", "dim"),
            (f"#{node.id} ", "bold" if chosen else "cyan")]
    tail = []
    sources = node.meta.get("sources")
    if isinstance(sources, list) and sources:
        merged = ", ".join(f"#{s}" for s in sources[:8]) + (" …" if len(sources) > 8 else "")
        tail.append((f"  ← merges {merged}", "magenta"))
    tail.append(("  " + " · ".join(_stats(node)), "dim"))
    if node.answer is not None:
        tail += [(" · ", "dim"), (f"answer {_clip(strip_control_codes(node.answer), 30)}",
                                  "bold yellow" if chosen else "yellow")]
    text = strip_control_codes(node.text.strip())
    if room is None:  # stats first, then the whole text below them, wrapped
        tail[0] = (tail[0][0].lstrip(), tail[0][1])
        return _text([*head, *tail, ("\n" + (text or "(empty)"), "" if text else "dim")],
                     wrap=True)
    # Cut the text, not the stats: the line should fit without wrapping.
    fit = max(20, room - cell_len("".join(t for t, _ in head + tail)))
    return _text([*head, (_preview(text, fit) or "(empty)", "" if text else "dim"), *tail],
                 wrap=False)


def _text(pieces: list[tuple[str, str]], *, wrap: bool) -> Text:
    """One Text from (text, style) pieces; spans by hand, as Text.append is slow per piece."""
    spans, at = [], 0
    for piece, style in pieces:
        if style and piece:
            spans.append(Span(at, at + len(piece), style))
        at += len(piece)
    return Text("".join(p for p, _ in pieces), spans=spans, no_wrap=not wrap,
                overflow="fold" if wrap else "ellipsis")


def _stats(node: Node) -> Iterable[str]:
    yield f"{node.tokens} tok"
    if node.score is not None:
        yield f"score {_num(node.score)}"
    if node.value:
        yield f"value {_num(node.value)}"
    if node.visits > 0:
        yield f"visits {node.visits}"
    for key in ("kind", "rule"):  # refine's plan/critique/...; ToT's rule verdict (dead end)
        if node.meta.get(key):
            yield _clip(strip_control_codes(str(node.meta[key])), 20)
    if node.role != "policy":
        yield node.role
    if node.finish_reason not in (None, "stop"):
        yield f"finish {node.finish_reason}"


def _preview(text: str, width: int = PREVIEW) -> str:
    """The text on one line, newlines as ⏎ and runs of spaces as one, cut to fit `width`
    columns (and PREVIEW characters)."""
    head = text[: PREVIEW * 8]  # enough to fill the line: a long chain costs no more
    lines = [" ".join(line.split()) for line in head.splitlines()]
    one = _clip(NEWLINE.join(line for line in lines if line), min(width, PREVIEW))
    if one.isascii() or cell_len(one) <= width:  # the common case: a column per character
        return one
    fitted = Text(one)  # wide characters (CJK): two columns each
    fitted.truncate(width, overflow="ellipsis")
    return fitted.plain


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _num(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else str(x)
