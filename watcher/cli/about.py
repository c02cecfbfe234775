"""`demo` (what `make demo` runs) and `version`."""

from __future__ import annotations

import typer

from watcher import __version__
from watcher.cli.common import SETTINGS

app = typer.Typer(**SETTINGS)


@app.command()
def demo() -> None:
    """A bad deploy rolled back on a sandbox host, in about 30 s.

    What `make demo` runs."""
    from watcher.demo.run import demo as run_demo  # the whole service and the sandbox: ~165 ms CPU

    raise typer.Exit(run_demo())


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)
