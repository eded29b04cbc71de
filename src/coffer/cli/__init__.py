"""The `coffer` command line. Each command parses, calls one function, and shapes the output.

This module assembles `app` (the `coffer` entry point) from the command modules: `serve.py`
(serve, migrate, verify, demo), `bench.py`, `keys.py` (API keys and user tokens) and
`tasks.py`; `common.py` holds what they share. None of them imports prometheus_client at the
top: `serve --workers` must choose its multiprocess mode before the first import.
"""

from __future__ import annotations

import sys

import typer

from coffer.cli import bench, keys, serve, tasks

app = typer.Typer(
    name="coffer",
    help="Wallets, a double-entry ledger and payments for apps with an in-app currency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# In the order `coffer --help` lists them.
app.command()(serve.serve)
app.command()(serve.migrate)
app.command()(serve.verify)
app.command()(bench.bench)
app.command()(keys.token)
app.command()(serve.demo)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(tasks.tasks_app, name="tasks")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


__all__ = ["app", "main"]
