"""`python -m ponder.serve ...`: the same command as `ponder serve` (tests start it this way)."""

import typer

from ponder.cli import main
from ponder.serve.commands import serve_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(serve_command)

if __name__ == "__main__":
    main(app)
