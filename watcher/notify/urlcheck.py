"""Offline validation of the notify targets for `check`, by Apprise itself, remembered.

Apprise is the only judge of its URLs (`slakc://`, `ntfy:/`, a bare `https://` must fail before
`run` starts with them), but asking it costs its import and the loading of its ~200 plugins:
about 0.3 s + 0.6 s on this machine, three times `check`'s whole budget (300 ms on
examples/watcher.yaml; bench/check_speed.py measures both). So a target that Apprise accepted is
remembered, and the next `check` asks Apprise only about targets it has not seen accept:

    $XDG_CACHE_HOME/rollback-watcher/notify-targets.json   (~/.cache/...; mode 0600)
        {"apprise": "<where apprise is installed, its size and mtime>", "accepted": [sha256...]}

A key is the SHA-256 of the URL (and of the Apprise config file's bytes, for a file target):
the URLs themselves (tokens, passwords) are never written. Upgrading Apprise changes its
fingerprint and empties the list; a rejected target is never remembered, so it is asked again.
No cache dir (unwritable, no HOME) only means Apprise is asked every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote

from watcher.base.redact import (
    config_path,
    is_config_path,
    query_key,
    redact_url,
    secret_query_value,
    split_url,
)

# Not from watcher.notify.notifier, which re-exports both: its import (threads, queues, the delivery code)
# is ~5 ms that `check` does not use unless Apprise must be asked.
from watcher.core.envelope import NotifyTarget
from watcher.notify.targets import check_targets

CACHE_FILE = "notify-targets.json"
_URL_TYPO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/?(?!/)")  # "ntfy:/x", "slack:x": not a path


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or (str(Path(env["HOME"]) / ".cache") if env.get("HOME") else "")
    return Path(base) / "rollback-watcher" if base else None


def apprise_fingerprint() -> str:
    """Which Apprise is installed, without importing it (find_spec does not run the package)."""
    spec = importlib.util.find_spec("apprise")
    if spec is None or not spec.origin:
        return "absent"
    st = os.stat(spec.origin)
    return f"{spec.origin}:{st.st_size}:{st.st_mtime_ns}"


def _key(target: NotifyTarget) -> str:
    h = hashlib.sha256(target.url.encode())
    if target.is_config_file:
        try:
            h.update(b"\0" + Path(config_path(target.url)).read_bytes())
        except OSError:
            return ""  # unreadable: never remembered, Apprise says why
    return h.hexdigest()


def target_problems(targets: Iterable[NotifyTarget], directory: Path | None) -> list[str]:
    """Problems with the targets, redacted ("notify[i]: ..."); imports Apprise only for targets
    not remembered as accepted by the installed Apprise."""
    targets = list(targets)
    fingerprint = apprise_fingerprint()
    accepted = _read(directory, fingerprint)
    keys = [_key(t) for t in targets]
    unseen = [i for i, k in enumerate(keys) if not k or k not in accepted]
    if not unseen:
        return []


    problems: list[str] = []
    for i in unseen:
        found = [p.replace("notify[0]", f"notify[{i}]", 1) for p in check_targets([targets[i]])]
        if found and targets[i].is_config_file and _URL_TYPO.match(targets[i].url):
            found = [f"notify[{i}]: {targets[i].url.split(':', 1)[0]}:/... is neither a URL (scheme://...) "
                     f"Apprise understands nor a readable Apprise config file"]
        problems += found
        if not found and keys[i]:
            accepted.add(keys[i])
    _write(directory, fingerprint, accepted)
    return problems


def _read(directory: Path | None, fingerprint: str) -> set[str]:
    if directory is None:
        return set()
    try:
        data = json.loads((directory / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("apprise") != fingerprint or not isinstance(data.get("accepted"), list):
        return set()
    return {k for k in data["accepted"] if isinstance(k, str)}


def _write(directory: Path | None, fingerprint: str, accepted: set[str]) -> None:
    if directory is None:
        return
    path = directory / CACHE_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"apprise": fingerprint, "accepted": sorted(accepted)[-256:]}, fh)
        os.replace(tmp, path)
    except OSError:
        # A cache we cannot write only costs the next `check` Apprise's import again.
        tmp.unlink(missing_ok=True)


# --- credentials typed into the file ---------------------------------------------------------

_TOKEN_PART = re.compile(r"^[A-Za-z0-9_\-:]{16,}$")


def typed_credentials(written: dict[int, str]) -> list[tuple[int, str]]:
    """The notify targets whose URL, as watcher.yaml writes it, carries a credential typed in
    rather than `${VAR}` from the environment (docs/config.md: EnvironmentFile=): (index, what
    and where, redacted). Never the secret itself, and never Apprise (too slow for `check`):
    a password, a user that is an ntfy token (`tk_...@`), a header or a query value with a
    secret-sounding name (`&token=`, `+X-Api-Key=`), a host or path part shaped like a token
    (Slack's, Discord's, Telegram's, Gotify's). Each found part that holds no `${` is typed in."""
    found: list[tuple[int, str]] = []
    for index, url in sorted(written.items()):
        parts = None if is_config_path(url) else split_url(url)
        if parts is None:
            continue
        kinds: list[str] = []
        if parts.password and "${" not in parts.password:
            kinds.append("a password")
        if parts.has_userinfo and parts.password is None and parts.user.startswith("tk_"):
            kinds.append("an access token as its user")
        for key, value in parts.query:
            if value and "${" not in value and secret_query_value(key, value):
                name = query_key(key)
                kinds.append(f"its {name[1:]} header" if name.startswith("+") else f"its {name.lstrip(':-')} value")
        host = parts.host.split("@")[-1]
        segments = [host] + parts.path.split("/")
        if any(_token_part(s) for s in segments):
            kinds.append("a token in its address")
        if kinds:
            found.append((index, f"{redact_url(url, use_apprise=False)} has {', '.join(dict.fromkeys(kinds))} typed in"))
    return found


def _token_part(raw: str) -> bool:
    """A host or path part that is a credential, not a name: long, letters and digits mixed, no
    dot (a DNS name), no `${`."""
    text = unquote(raw)
    if "${" in text or "." in text or not _TOKEN_PART.match(text):
        return False
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)
