"""The trace viewer in a real headless browser: Debian's Chromium driven by Playwright (pip
`playwright`, launched on the system browser: nothing is downloaded). Skipped, with the reason,
where either is missing; .ci/run installs Chromium, so CI runs them.

The page draws a node element per trace node and marks the chosen path, logs no console error,
renders something (a screenshot that is not one colour), searches and collapses; and a page
opened on a running `ponder serve --keep-traces` request gains nodes as the search adds them.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_view import PROBLEM, STEPS, beam_trace

from ponder.core.types import Trace
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.serve.process import serving
from ponder.view.page import Panel, page

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright "
                                 "(make setup-dev) to run the viewer's browser tests")
CHROMIUM = os.environ.get("PONDER_CHROMIUM") or next(
    (p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))),
    None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install -y "
                                "chromium (.ci/run does), or set PONDER_CHROMIUM")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Tab:
    """A page, its console errors and uncaught exceptions."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1300, "height": 800})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.wait_for_function("window.ponderRendered !== undefined")

    def ids(self, selector: str) -> list[int]:
        return [int(i) for i in self.page.eval_on_selector_all(
            selector, "els => els.map(e => e.getAttribute('data-id'))")]


def open_page(browser: Any, tmp_path: Path, panels: list[Panel]) -> Tab:
    html = tmp_path / "view.html"
    html.write_text(page(panels, "test"), encoding="utf-8")
    return Tab(browser, html.as_uri())


def test_every_node_is_drawn_and_the_chosen_path_stands_out(browser: Any, tmp_path: Path
                                                             ) -> None:
    trace = beam_trace()
    tab = open_page(browser, tmp_path, [Panel(trace, "beam", gold="42",
                                              right={n.id: True for n in trace.nodes
                                                     if n.answer})])
    assert sorted(tab.ids("g.node")) == [n.id for n in trace.nodes]
    assert sorted(tab.ids("g.node.chosen")) == sorted(trace.chosen)
    assert tab.page.locator("path.link.chosen").count() == len(trace.chosen)
    assert tab.page.locator("g.node.right").count() == sum(n.answer is not None
                                                           for n in trace.nodes)
    shot = tab.page.screenshot(path=str(tmp_path / "view.png"))
    assert distinct_colours(tmp_path / "view.png") > 10, "the screenshot is blank"
    assert len(shot) > 5000
    assert tab.errors == []


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    return len(colours)


def test_two_traces_side_by_side_search_collapse_and_details(browser: Any, tmp_path: Path
                                                             ) -> None:
    beam = beam_trace()
    chains = get_scheme("self-consistency@3")(PROBLEM, model=ScriptedModel([STEPS])).trace
    tab = open_page(browser, tmp_path, [Panel(beam, "beam"), Panel(chains, "chains")])
    panels = tab.page.locator("section.panel")
    assert panels.count() == 2
    assert panels.nth(1).locator("g.node").count() == 3  # three roots under the question
    assert panels.nth(1).locator("g.vroot").count() == 1

    tab.page.fill("#search", "halve")
    tab.page.wait_for_function("document.querySelectorAll('g.node.match').length > 0")
    halving = [n.id for n in beam.nodes if "halve" in n.text.lower()]
    assert sorted(tab.ids("section.panel >> nth=0 >> g.node.match")) == halving
    assert panels.nth(1).locator("g.node.match").count() == 3  # each chain says it too
    tab.page.fill("#search", "")
    tab.page.wait_for_function("document.querySelectorAll('g.node.dim').length === 0")

    root = next(n for n in beam.nodes if n.parent is None and n.children)
    below = len(descendants(beam, root.id))
    panels.nth(0).locator(f'[data-toggle="{root.id}"]').click()
    assert panels.nth(0).locator("g.node").count() == len(beam.nodes) - below
    panels.nth(0).locator(f'[data-toggle="{root.id}"]').click()
    assert panels.nth(0).locator("g.node").count() == len(beam.nodes)

    panels.nth(0).locator(f'g.node[data-id="{root.id}"]').click()
    assert root.text.strip() in panels.nth(0).locator(".details pre").inner_text()
    assert tab.errors == []


def descendants(trace: Trace, id: int) -> list[int]:
    out, todo = [], list(trace.nodes[id].children)
    while todo:
        out.append(todo.pop())
        todo += trace.nodes[out[-1]].children
    return out


@pytest.mark.server
def test_a_live_page_grows_while_the_server_searches(browser: Any) -> None:
    steps = "".join(f"Step {i} of the sum.\n\n" for i in range(5)) + "So \\boxed{42}."
    with serving("--model", "fake", "--task", "math", "--keep-traces", "4",
                 "--api-key", "sekrit", "--model-arg", "delay_per_token=0.03",
                 "--model-arg", f"script={json.dumps([steps])}", ready_seconds=60) as url:
        ids: queue.Queue[str] = queue.Queue()
        asker = threading.Thread(target=ask_streaming, args=(url, ids), daemon=True)
        asker.start()
        id = ids.get(timeout=30)
        tab = Tab(browser, f"{url}/view/{id}?key=sekrit")
        counts, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            counts.append(tab.page.locator("g.node").count())
            if "searching" not in tab.page.inner_text("#status"):  # done, or stopped
                break
            time.sleep(0.2)
        asker.join(timeout=60)
        body = httpx.get(f"{url}/v1/traces/{id}", headers={"Authorization": "Bearer sekrit"}
                         ).json()
    assert body["status"] == "done"
    assert counts[-1] == len(body["traces"][0]["nodes"]) > 10
    grew = sorted(set(counts))
    assert len(grew) >= 3, f"the page did not grow as the search ran: {counts}"
    assert counts == sorted(counts)
    assert tab.errors == []


def ask_streaming(url: str, ids: queue.Queue[str]) -> None:
    """A streamed beam search; its first chunk's `ponder.trace_id` goes to `ids`."""
    body = {"model": "fake", "stream": True, "messages": [{"role": "user", "content": "q?"}],
            "ponder": {"scheme": "beam@2:expansions=2:scorer=uniform"}}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": "Bearer sekrit"}) as r:
        lines = (ln for ln in r.iter_lines() if ln.startswith("data: {"))
        ids.put(json.loads(next(lines).removeprefix("data: "))["ponder"]["trace_id"])
        for _ in lines:  # read to the end: a client that leaves stops the search
            pass
