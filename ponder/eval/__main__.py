"""`python -m ponder.eval eval|report ...`: the same commands as `ponder eval|report`."""

from ponder.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
