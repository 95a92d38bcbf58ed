"""The viewer page: HTML that draws traces with the assets shipped in ponder/view/assets.

A page holds its data as JSON in `<script id="ponder-data" type="application/json">` and the
script that draws it (viewer.js on d3-hierarchy's tidy-tree layout, vendored with its ISC
licence). `page()` inlines every asset, so the file works offline, from disk, with no server and
nothing fetched (a browser's favicon request included); `page(..., assets="DIR/")` links them
instead, for many pages beside one copy (`ponder report --html`'s per-question pages).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ponder.core.types import Trace

# What `page(..., assets=...)` links and `write_assets` copies; the licence goes with the code.
ASSETS = ("viewer.css", "d3-hierarchy.min.js", "LICENSE.d3-hierarchy", "viewer.js")
POLL_MS = 500  # how often a live page asks for its trace


@dataclass
class Panel:
    """One trace drawn in its own pane. `right` marks the nodes whose answer was checked
    against `gold` (node id -> right?); `correct` is the run's own verdict, where known."""

    trace: Trace | dict[str, Any]
    label: str = ""
    question: str | None = None
    gold: str | None = None
    correct: bool | None = None
    right: dict[int, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        trace = self.trace.to_dict() if isinstance(self.trace, Trace) else self.trace
        return {"label": self.label or trace.get("scheme", ""), "question": self.question,
                "gold": self.gold, "correct": self.correct,
                "right": {str(k): v for k, v in self.right.items()}, "trace": trace}


def asset(name: str) -> str:
    return resources.files("ponder.view").joinpath("assets", name).read_text(encoding="utf-8")


def write_assets(folder: Path) -> None:
    """Copy the viewer's assets into `folder` (made if missing), for pages that link them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        (folder / name).write_text(asset(name), encoding="utf-8")


def page(panels: list[Panel], title: str, *, status: str | None = None,
         live_url: str | None = None, assets: str | None = None,
         back: tuple[str, str] | None = None) -> str:
    """The page for `panels`, side by side. `live_url`: the JSON a page still `running`
    polls for its traces as they grow. `assets`: a folder (relative URL, ending in /) to
    link the assets from, instead of inlining them. `back`: (href, text) of a link home."""
    data = {"panels": [p.to_dict() for p in panels], "status": status,
            "live": {"url": live_url, "every_ms": POLL_MS} if live_url else None}
    if assets is None:
        style = f"<style>\n{asset('viewer.css')}</style>"
        scripts = (f"<script>\n/*\n{_comment(asset('LICENSE.d3-hierarchy'))}*/\n"
                   f"{asset('d3-hierarchy.min.js')}\n</script>\n"
                   f"<script>\n{asset('viewer.js')}</script>")
    else:
        src = html.escape(assets)
        style = f'<link rel="stylesheet" href="{src}viewer.css">'
        scripts = (f'<script src="{src}d3-hierarchy.min.js"></script>\n'
                   f'<script src="{src}viewer.js"></script>')
    home = (f'<a href="{html.escape(back[0])}">{html.escape(back[1])}</a>' if back else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
{style}
</head><body>
<div class="top">{home}<h1>{html.escape(title)}</h1>
<input id="search" type="search" placeholder="search step text (/)" aria-label="search">
<span id="status" class="status"></span><button id="fit" type="button">fit</button></div>
<main id="panels"></main>
<script id="ponder-data" type="application/json">{script_json(data)}</script>
{scripts}
</body></html>
"""


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end or bend it (every
    `<` is written \\u003c), and U+2028/9 are escaped as JSON.parse never minds but editors do."""
    text = json.dumps(finite(data), ensure_ascii=False, allow_nan=False, default=str)
    return (text.replace("<", "\\u003c").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity as its name ("-inf"): JSON has no such numbers, and
    a score of -inf (a log probability of nothing) is a real trace's."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _comment(text: str) -> str:
    return text.replace("*/", "* /")
