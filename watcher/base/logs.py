"""Log lines under systemd: journald files each line of a service's stdout at the priority its
`<N>` prefix names (sd-daemon's convention), and at PRIORITY 6 (info) without one.

The prefix is written only when stdout really is the journal stream systemd gave us
(`$JOURNAL_STREAM` names its device and inode), never on a terminal or into a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import IO

# Python's levels to syslog priorities (syslog(3): 2 crit, 3 err, 4 warning, 6 info, 7 debug).
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python log level; levels between two named ones round down."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def journald_stream(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream of `$JOURNAL_STREAM` ("DEVICE:INODE")."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class SyslogPrefixFormatter(logging.Formatter):
    """Wraps a formatter and puts `<N>` before every line of what it formats."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines())
