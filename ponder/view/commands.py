"""`ponder view`: traces drawn in the browser, served on localhost or written to one file.

    ponder view t.json                       # http://127.0.0.1:8765/ until Ctrl-C
    ponder view beam.json mcts.json --out both.html   # side by side, one self-contained file
    ponder view runs/gsm8k.db --question 12 --scheme beam@4 --scheme mcts@8

Served, the page is made again from the files on every load, so a trace written anew shows on
reload. Registered in ponder/cli.py; user mistakes are `PonderError`s (one line, exit 2).
"""

from __future__ import annotations

import contextlib
import sys
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import typer

from ponder.core.errors import ConfigError, PonderError
from ponder.core.files import check_writable, write_text_atomic
from ponder.view.page import page
from ponder.view.sources import checker, is_store, load_panels


def view_command(
    paths: Annotated[list[Path], typer.Argument(
        help="Trace JSON files (ponder solve --trace, GET /v1/traces/ID) or results stores "
        "(ponder eval --out), drawn side by side.", metavar="FILE...",
        readable=False)],  # read_json says why, in one line
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the page to this HTML file instead of serving it.")] = None,
    question: Annotated[str | None, typer.Option(
        help="For a results store: the question to draw, by id or position.")] = None,
    scheme: Annotated[list[str] | None, typer.Option(
        "--scheme", help="For a results store: only these scheme specs (repeatable); "
        "default: every scheme and seed of the question.")] = None,
    gold: Annotated[str | None, typer.Option(
        help="For trace files: the right answer, to mark each node's answer right or wrong "
        "(a store's rows carry their own).")] = None,
    check: Annotated[str, typer.Option(
        "--checker", help="How --gold is compared: numeric, math, exact, yesno.")] = "math",
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any "
                                      "free one).")] = 8765,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the page in the default browser.")] = False,
) -> None:
    """Draw reasoning traces in the browser: every node, the chosen path, side by side."""
    compare = checker(check) if gold is not None else None
    schemes = tuple(scheme or ())

    def render() -> str:
        panels = load_panels(paths, question=question, schemes=schemes, gold=gold,
                             check=compare)
        return page(panels, title_of(paths, question))

    if out is not None:
        check_writable(out, "--out")
        text = render()
        write_text_atomic(out, text)
        typer.echo(f"{len(text.encode()):,} bytes → {out}", err=True)
        return
    render()  # a bad file fails now, in one line, not on the first page load
    serve_page(render, host, port, open_browser=open_browser)


def title_of(paths: list[Path], question: str | None) -> str:
    names = " vs ".join(p.name for p in paths)
    where = f" · question {question}" if question is not None and any(map(is_store, paths)) else ""
    return f"{names}{where}"


def serve_page(render: Callable[[], str], host: str, port: int, *,
               open_browser: bool = False) -> None:
    """Serve `render()` at / until Ctrl-C, made afresh for every load."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404, "the page is at /")
                return
            try:
                body, status = render().encode(), 200
            except PonderError as e:  # a file broken since the start: say so, keep serving
                body, status = f"error: {e}\n".encode(), 500
                print(f"error: {e}", file=sys.stderr)
            self.send_response(status)
            kind = "text/html" if status == 200 else "text/plain"
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except (OSError, UnicodeError, ValueError, OverflowError) as e:  # busy, no such address
        why = getattr(e, "strerror", None) or e
        raise ConfigError("--host/--port", f"{host}:{port}", f"cannot listen there ({why}); "
                          "pass another --port (0: any free one) or --host") from None
    with server:
        url = f"http://{host}:{server.server_port}/"
        typer.echo(f"serving {url} (Ctrl-C stops)", err=True)
        if open_browser:
            webbrowser.open(url)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the end of a session
            server.serve_forever()
