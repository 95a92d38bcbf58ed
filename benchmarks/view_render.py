"""How fast the trace viewer draws, and how big its page is (ponder/view, issue 27).

A synthetic search tree of --nodes nodes (seeded: each node hangs under a random earlier node
at most 12 levels deep, steps of ~160 characters, scores, answers at a third of the leaves, a
chosen root-to-leaf path) is written as a self-contained page, as `ponder view --out` writes
it, and opened --runs times in headless Chromium (Debian's, driven by Playwright), each in a
fresh page. Time to first render is the page's own `performance.now()` — milliseconds since
navigation started — taken right after the last node element is in the DOM
(`window.ponderRendered`, viewer.js). The page's size is given with the trace and without any.

    .venv/bin/python benchmarks/view_render.py

writes docs/results/view_render.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from ponder.core.types import Trace
from ponder.view.page import Panel, page

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("so", "the", "total", "is", "we", "add", "then", "each", "of", "apples", "times",
         "minus", "left", "which", "gives", "half", "twice", "per", "day", "cost")


def synthetic_trace(nodes: int, seed: int = 0) -> Trace:
    rng = random.Random(seed)
    trace = Trace(scheme="mcts")
    for i in range(nodes):
        shallow = [n.id for n in trace.nodes if n.depth < 12]
        parent = rng.choice(shallow) if shallow and i >= 4 else None
        depth = 1 if parent is None else trace.nodes[parent].depth + 1
        text = " ".join(rng.choice(WORDS) for _ in range(28)) + f" = {rng.randint(1, 99)}.\n\n"
        trace.add(text, parent, tokens=40, score=round(rng.random(), 3), depth=depth,
                  visits=rng.randint(0, 9), value=round(rng.random(), 3))
    leaves = [n for n in trace.nodes if not n.children]
    for leaf in leaves[::3]:
        leaf.answer, leaf.terminal = str(rng.choice([42, 41, 7])), True
    trace.chosen = trace.path(leaves[0].id)
    return trace


def chromium() -> str:
    found = os.environ.get("PONDER_CHROMIUM") or next(
        (p for name in ("chromium", "chromium-browser", "google-chrome")
         if (p := shutil.which(name))), None)
    if not found:
        sys.exit("no Chromium found: apt-get install chromium (or set PONDER_CHROMIUM)")
    return found


def measure(html: Path, runs: int) -> tuple[list[float], int]:
    from playwright.sync_api import sync_playwright

    times, drawn = [], 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            for _ in range(runs):
                tab = browser.new_page(viewport={"width": 1400, "height": 900})
                tab.goto(html.as_uri())
                tab.wait_for_function("window.ponderRendered !== undefined")
                rendered = tab.evaluate("window.ponderRendered")
                times.append(float(rendered["ms"]))
                drawn = int(rendered["nodes"])
                tab.close()
        finally:
            browser.close()
    return times, drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/view_render.md")
    args = parser.parse_args()
    empty = len(page([], "empty").encode())
    load = os.getloadavg()[0]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nodes:
            trace = synthetic_trace(n)
            html = Path(tmp) / f"trace{n}.html"
            html.write_text(page([Panel(trace, "mcts")], f"{n} nodes"), encoding="utf-8")
            times, drawn = measure(html, args.runs)
            assert drawn == n, f"{drawn} node elements drawn for {n} nodes"
            size = html.stat().st_size
            lines.append(f"| {n} | {statistics.median(times):.0f} | {min(times):.0f} | "
                         f"{max(times):.0f} | {size:,} | {size - empty:,} |")
            print(lines[-1], flush=True)
    command = "    .venv/bin/python benchmarks/view_render.py " + " ".join(
        [f"--nodes {' '.join(map(str, args.nodes))}", f"--runs {args.runs}"])
    text = "\n".join([
        "# Trace viewer: time to first render and page size", "",
        f"Headless Chromium ({Path(chromium()).name}), a 1400×900 viewport, {args.runs} loads of "
        f"each page from disk; {platform.machine()}, {os.cpu_count()} cores, 1-minute load "
        f"average {load:.1f} at the start (a benchmark was running on the same cores).", "",
        command, "",
        "| nodes | first render, median ms | min ms | max ms | page bytes | of which the trace |",
        "|---:|---:|---:|---:|---:|---:|", *lines, "",
        f"The page without any trace is {empty:,} bytes: viewer.js, viewer.css and "
        "d3-hierarchy (14.8 kB minified, with its ISC licence), all inlined. First render is "
        "`performance.now()` (from navigation start) when the last node element is in the DOM: "
        "parsing the page and its JSON, the tidy-tree layout, and building the SVG. The "
        "target was ≤ 1 s for 500 nodes.", ""])
    args.out.write_text(text, encoding="utf-8")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
