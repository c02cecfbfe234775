"""Writing a file so that readers see the old content or the new, never a part: state.json,
the request inbox and the files backends rewrite (nginx's upstream, docker's history) all go
through `write_file_atomically`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def write_file_atomically(path: Path, data: str | bytes, mode: int | None = None,
                          owner: tuple[int, int] | None = None) -> None:
    """Temp file in the same directory, fsync, rename over `path`, fsync the directory.
    `mode`: the new file's mode; None keeps the old file's (0644 for a new file). `owner`:
    (uid, gid) given to the file before the rename (needs root), so that it never appears with
    another owner. Raises OSError; the temp file never stays behind."""
    path = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644
    raw = data.encode() if isinstance(data, str) else data
    # mkstemp creates the file 0600: nothing is readable by others before the chmod.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
