"""Evaluation: run a task × schemes × seeds grid into a resumable SQLite store, and report on it.

    runner.py   the grid, its order, seeds, resume (`ponder eval`)
    progress.py its progress on stderr: a bar, or plain lines in a log
    store.py    the SQLite results store and its durability
    report.py   accuracy with 95% intervals, cost, plots (`ponder report`)
    commands.py the typer commands
"""
