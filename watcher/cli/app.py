"""The command line (docs/design.md section 9): parses, wires, prints. No decisions live here.

One module per command group (check.py, service.py, journal.py, human.py, tuning.py,
fleet.py), each a typer app merged into the one below; `main` turns every error into one
readable line and an exit code. Heavy modules (apprise, httpx, the Prometheus client) are
imported inside the commands that use them, so that `--help` and `check` start fast.
"""

from __future__ import annotations

import sys

import typer

from watcher import __version__
from watcher.base.errors import ConfigError, WatcherError
from watcher.cli import about, check, fleet, human, init, journal, service, tuning
from watcher.cli.common import json_error, show_config_error

# rich_markup_mode=None: click's plain help, where a boolean option shows as a flag (rich mode
# printed `--json <bool>`) and each command's first sentence is its one-line summary.
app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for group in (check, service, journal, human, tuning, fleet, init, about):
    app.add_typer(group.app)


def main() -> None:
    """Entry point: a usage error prints click's usage and exits 2; every WatcherError ends as one
    readable `Error: ...` line (or one per config problem) and exit 1; a command that cannot do its job exits
    non-zero. Never a traceback for something the user typed. With --json, stdout holds JSON
    even then (common.json_error); the human text goes to stderr as always."""
    try:
        # Outside standalone mode click returns the code of typer.Exit instead of exiting.
        code = app(standalone_mode=False)
    except ConfigError as exc:
        show_config_error(exc)
        sys.exit(1)
    except WatcherError as exc:
        # As click writes its own errors: "Error: ..." on stderr. The class name is for machines
        # only (`--json`'s "error" key), never for people.
        print(f"Error: {exc}", file=sys.stderr)
        json_error(exc, str(exc))
        sys.exit(1)
    except typer.Abort:
        print("Aborted; nothing was changed.", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # typer 0.28 (pyproject.toml pins the tested range) raises the exceptions of its own
        # vendored click (typer._click), whose base is the public typer.TyperException:
        # UsageError (exit 2), BadParameter, NoSuchOption...
        _show_usage_error(exc)
        json_error(exc, exc.format_message())
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _show_usage_error(exc: typer.TyperException) -> None:
    show = getattr(exc, "show", None)
    if show is None:
        print(f"Error: {exc.format_message()}", file=sys.stderr)
    else:
        show()
    option = getattr(exc, "option_name", None)
    if option and option.startswith("-") and not getattr(exc, "possibilities", None):
        # A release id such as "-rc1" looks like an option: the POSIX `--` ends the options.
        # click names "-r" for "-rc1" (a cluster of short options): show what was typed.
        typed = next((a for a in sys.argv[1:] if a.startswith(option)), option)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "rollback-watcher COMMAND"
        print(f"If {typed} is a value (a release id), not an option, put it after `--`: "
              f"{command} -- {typed}", file=sys.stderr)


def _print_version(value: bool) -> None:
    if value:
        print(f"rollback-watcher {__version__}")
        raise typer.Exit(0)


@app.callback()
def _top(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """Watch a fresh deploy through Prometheus and health probes; roll the host back to the last
    known-good release when a rule fires, verify it, and tell people."""
