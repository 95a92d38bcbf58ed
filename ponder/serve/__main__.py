"""`python -m ponder.serve ...`: the same command as `ponder serve` (tests start it this way)."""

from __future__ import annotations

import sys

import typer

from ponder.core.errors import PonderError
from ponder.serve.commands import serve_command


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve_command)
    try:
        app()
    except PonderError as e:  # a user mistake: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
