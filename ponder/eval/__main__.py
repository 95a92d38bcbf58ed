"""`python -m ponder.eval eval|report ...`: the evaluation commands on their own, with the same
error handling as `ponder` (one line on stderr, exit code 2)."""

from __future__ import annotations

import sys

import typer

from ponder.core.errors import PonderError
from ponder.eval.commands import err, eval_command, report_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Evaluate reasoning schemes and report on the results.")
app.command("eval")(eval_command)
app.command("report")(report_command)


def main() -> None:
    try:
        app()
    except PonderError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
