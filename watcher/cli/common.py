"""What every command shares: the --config and --json options, loading the config (after which
nothing the process prints shows its secrets), logging, and printing times, durations and
journal fields as every other output writes them."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import typer
from typer import _click
from typer.core import TyperCommand

from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigError
from watcher.base.format import format_number, format_time
from watcher.base.logs import SyslogPrefixFormatter, journald_stream

if TYPE_CHECKING:
    from watcher.config.schema import WatcherConfig

DEFAULT_CONFIG = "/etc/rollback-watcher/watcher.yaml"

# Metavars name what a value is (FILE, DURATION, RELEASE), as click tools write them, never
# typer's own `<str>` or `{release}` (tests/cli/test_usage_errors.py walks every command).
ConfigOpt = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", envvar="ROLLBACK_WATCHER_CONFIG", help="watcher.yaml to read.", show_default=True,
    metavar="FILE",
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")
PlotOpt = typer.Option(None, "--plot", metavar="FILE",
                       help="Also write a PNG picture of the rule's values from Prometheus to FILE.")

# Each command group is a typer app of its own, merged into the main one (cli/app.py).
SETTINGS: dict[str, Any] = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"]}}


class Command(TyperCommand):
    """A command whose usage line names a required argument as click does (`gate [OPTIONS]
    RELEASE`), not in typer's braces (`{RELEASE}`): `@app.command(cls=Command)` for commands
    that take an argument."""

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


def load(config: str) -> WatcherConfig:
    """Load the config; from here on, nothing this process prints or logs shows its secrets."""
    # The config loader and what it reads with (YAML, the rules, the backends): ~40 ms CPU of
    # import that --help and `version` must not pay.
    from watcher.config.load import load_config
    from watcher.config.scrub import RedactingStream, redact_logs, redactor_for

    cfg = load_config(config)
    redact = redactor_for(cfg)
    if redact:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            setattr(sys, name, RedactingStream(stream.inner if isinstance(stream, RedactingStream) else stream, redact))
        redact_logs(redact)
    return cfg


def setup_logging(verbose: bool = False) -> None:
    # One line per event, key=value, to stdout: journald keeps the time itself, but people
    # reading a terminal or a file want it too.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    logging.Formatter.converter = time.gmtime
    if journald_stream(sys.stdout, os.environ):
        # Under systemd, stdout goes to journald, which would file every line at PRIORITY 6
        # and `journalctl -u rollback-watcher -p warning` would show nothing, not even a
        # refused reload. A `<N>` prefix gives each line its own priority.
        for handler in logging.getLogger().handlers:
            handler.setFormatter(SyslogPrefixFormatter(handler.formatter))
    # httpx logs every request at INFO: one line per probe per tick drowns the events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text)


def duration_option(text: str, option: str) -> float:
    """A CLI duration, through the parser watcher.yaml uses; a bad one is a usage error (exit 2)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def when(t: float | None) -> str:
    """A time as every output writes it (watcher.base.format), "-" when there is none."""
    return format_time(t) if t else "-"


def journal_field(key: str, value: object) -> str:
    """`key=value` of a journal event for people: times as times, numbers rounded (the journal
    itself keeps the raw values for machines), text on one line without terminal escapes (a
    verdict another host wrote to etcd is journaled as it came)."""
    from watcher.base.format import untrusted

    if isinstance(value, float) and (key in ("until", "at", "window_ends", "deployed_at") or key.endswith("_at")):
        return f"{key}={when(value)}"
    if isinstance(value, float):
        return f"{key}={format_number(value)}"
    return f"{key}={untrusted(value, 1000)}"




def current_release(cfg: WatcherConfig, state_current: str | None, running: bool) -> tuple[str | None, str]:
    """The release to show as current, and a note on where it comes from. While the service
    runs, its state says (it reads the backend every tick); when it does not, the state may be
    old or empty (a fresh host, a stopped service): the backend is asked, as `releases` does."""
    if running or cfg.backend is None:
        return state_current, ""
    from watcher.backends import build_backend
    from watcher.base.errors import WatcherError

    try:
        found = build_backend(cfg.backend.type, cfg.backend.options).current().id
    except (WatcherError, OSError, ValueError) as exc:
        return state_current, f"the watcher is not running and the backend cannot say what is current: {exc}"
    if state_current and state_current != found:
        return found, f"read from the backend: the watcher is not running; its state last saw {state_current}"
    return found, "" if state_current else "read from the backend: the watcher is not running"


def show_config_error(exc: ConfigError) -> None:
    """Every problem as FILE:LINE: KEY: message, then a summary (and the JSON error)."""
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)
    summary = f"{len(exc.problems)} problem(s); nothing was changed."
    print(summary, file=sys.stderr)
    json_error(exc, summary, [{"file": p.file, "line": p.line, "key": p.key, "message": p.message, "text": str(p)}
                              for p in exc.problems])


def json_error(exc: Exception, message: str, problems: list[dict[str, Any]] | None = None) -> None:
    """`--json` promises JSON on stdout: an error is a JSON object too, never an empty stdout."""
    argv = sys.argv[1:]
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" not in options:
        return
    error: dict[str, Any] = {"error": type(exc).__name__, "message": message}
    if problems is not None:
        error["valid"] = False
        error["problems"] = problems
    print(json.dumps(error, indent=2, sort_keys=True))
