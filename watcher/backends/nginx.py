"""Blue/green behind nginx: two slots on two addresses, the active one named in an include.

The main nginx config includes `upstream_file` inside an `upstream` block:

    upstream app { include /etc/nginx/app-upstream.conf; }

and the watcher writes that file as one server line for the active slot:

    # Managed by rollback-watcher: the active slot of a blue/green pair.
    server 127.0.0.1:8001; # slot blue

A deploy script may write the file its own way: any file with exactly one `server ADDRESS`
line that is not `backup` or `down`, where ADDRESS is one of the slots' addresses, is read.
The switch writes the file atomically, runs `nginx -t`, then `nginx -s reload`; if either
fails the old file is put back, so nginx never loads, now or at its next reload, a config
that failed its test.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcher.backends.base import Option, OptionKind, Release, check_release_id
from watcher.base.errors import RollbackError, UnsafeReleaseId
from watcher.base.files import write_file_atomically
from watcher.base.process import CommandResult, run_or_127, transcript

log = logging.getLogger(__name__)

# Slot names and addresses go into an nginx config file: nothing that could end a directive
# or start a comment may pass.
_SLOT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ADDRESS = re.compile(r"^[^\s;{}#\"'\\]+$")
_SERVER_LINE = re.compile(r"^\s*server\s+([^\s;]+)([^;]*);")


class NginxBlueGreenBackend:
    # The keys of `backend:` for `type: nginx-bluegreen`.
    OPTIONS = {
        "upstream_file": Option(OptionKind.PATH, required=True),
        "slots": Option(OptionKind.NAMES, required=True),
        "nginx": Option(OptionKind.ARGV),
        "version_url": Option(OptionKind.TEXT),
        "version_file": Option(OptionKind.TEXT),
        "timeout": Option(OptionKind.DURATION),
    }

    @staticmethod
    def identity(options: Mapping[str, Any]) -> str:
        """What this backend acts on: the upstream include it rewrites."""
        return f"nginx-bluegreen:{os.path.realpath(options['upstream_file'])}"

    def __init__(
        self,
        upstream_file: Path,
        slots: dict[str, str],
        nginx: tuple[str, ...] = ("nginx",),
        version_url: str | None = None,
        version_file: str | None = None,
        timeout: float = 10.0,
    ):
        if len(slots) != 2:
            raise ValueError(f"nginx-bluegreen needs exactly two slots, got {len(slots)}")
        for name, address in slots.items():
            if not _SLOT_NAME.match(name):
                raise ValueError(f"slot name {name!r} may only hold letters, digits, '_', '.', '-'")
            if not _ADDRESS.match(address):
                raise ValueError(f"slot {name}: address {address!r} is not a plain nginx server address")
        if len(set(slots.values())) != 2:
            raise ValueError("the two slots need different addresses")
        if version_url and version_file:
            raise ValueError("set version_url or version_file, not both")
        self.upstream_file = Path(upstream_file)
        self.slots = dict(slots)
        self.nginx = tuple(nginx)
        self.version_url = version_url
        self.version_file = version_file
        self.timeout = timeout

    def releases(self) -> list[Release]:
        """[active slot, other slot]: with two slots "newest first" means nothing, but the
        active one is what runs. The other slot is left out, with a warning, when its release
        id cannot be read (it is down): nothing could switch to it anyway."""
        active = self._active_slot()
        found = [self._release(active, active=True)]
        other = self._other(active)
        try:
            found.append(self._release(other, active=False))
        except RollbackError as e:
            log.warning("slot %s left out of the releases: %s", other, e.reason)
        return found

    def current(self) -> Release:
        return self._release(self._active_slot(), active=True)

    def preflight(self, target: Release) -> None:
        self._target_slot(target)

    def switch(self, target: Release, reason: str = "") -> str:
        slot = self._target_slot(target)
        if slot is None:
            log.info("release %s is already on the active slot; nothing to switch", target.id)
            return ""
        address = self.slots[slot]
        old_text = self.upstream_file.read_text()
        write_file_atomically(self.upstream_file, self._render(slot))
        results = []
        for action in (("-t",), ("-s", "reload")):
            results.append(self._nginx(action))
            if not results[-1].ok:
                write_file_atomically(self.upstream_file, old_text)
                raise RollbackError(
                    f"{results[-1].describe()} after pointing {self.upstream_file} at slot {slot} "
                    f"({address}); restored the previous file, nginx still serves the old slot",
                    transcript(results),
                )
        why = reason or "no reason given"
        log.info("switched nginx to slot %s (%s) serving %s (%s)", slot, address, target.id, why)
        return transcript(results)

    def _target_slot(self, target: Release) -> str | None:
        """The inactive slot that serves `target`, checked to answer; None when the active
        slot serves it already."""
        check_release_id(target.id)
        active = self._active_slot()
        if self._release(active, active=True).id == target.id:
            return None
        other = self._other(active)
        served = self._release(other, active=False).id
        if served != target.id:
            raise RollbackError(f"no slot serves release {target.id} (slot {other} serves {served})")
        problem = _unreachable(self.slots[other], self.timeout)
        if problem:
            raise RollbackError(f"slot {other} ({self.slots[other]}) does not answer: {problem}")
        return other

    def _active_slot(self) -> str:
        try:
            text = self.upstream_file.read_text()
        except OSError as e:
            raise RollbackError(f"cannot read {self.upstream_file}: {e.strerror}") from e
        active = []
        for line in text.splitlines():
            match = _SERVER_LINE.match(line.split("#", 1)[0])
            if match and not {"backup", "down"} & set(match.group(2).split()):
                active.append(match.group(1))
        if len(active) != 1:
            raise RollbackError(f"{self.upstream_file} names {len(active)} active servers; expected one")
        for name, address in self.slots.items():
            if address == active[0]:
                return name
        raise RollbackError(f"{self.upstream_file} points at {active[0]}, which is none of the slots")

    def _other(self, slot: str) -> str:
        return next(name for name in self.slots if name != slot)

    def _release(self, slot: str, active: bool) -> Release:
        address = self.slots[slot]
        release_id = self._read_version(slot, address)
        return Release(
            release_id,
            location=f"slot {slot} ({address})",
            details={"slot": slot, "address": address, "active": active},
        )

    def _read_version(self, slot: str, address: str) -> str:
        if self.version_url:
            import httpx  # ~65 ms CPU of import, and `check` imports this module: only version_url needs it

            url = self.version_url.format(address=address, slot=slot)
            try:
                # The slots are this host's own servers: no proxy from the environment.
                response = httpx.get(url, timeout=self.timeout, trust_env=False)
                response.raise_for_status()
            except httpx.HTTPError as e:
                raise RollbackError(f"slot {slot}: cannot read its version from {url}: {e}") from e
            text = response.text
        elif self.version_file:
            path = Path(self.version_file.format(slot=slot))
            try:
                text = path.read_text()
            except OSError as e:
                raise RollbackError(f"slot {slot}: cannot read its version from {path}: {e.strerror}") from e
        else:
            return slot
        try:
            return check_release_id(text.strip())
        except UnsafeReleaseId as e:
            raise UnsafeReleaseId(f"slot {slot}: {e.reason}") from e

    def _render(self, slot: str) -> str:
        return (
            "# Managed by rollback-watcher: the active slot of a blue/green pair.\n"
            f"server {self.slots[slot]}; # slot {slot}\n"
        )

    def _nginx(self, action: tuple[str, ...]) -> CommandResult:
        return run_or_127(self.nginx + action, self.timeout)


def _unreachable(address: str, timeout: float) -> str:
    """Why a TCP or unix-socket connect to an nginx server address fails, or "" if it works."""
    try:
        if address.startswith("unix:"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(address[len("unix:") :])
            return ""
        host, _, port = address.rpartition(":")
        if not host:
            host, port = address, "80"
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return ""
    except (OSError, OverflowError, ValueError) as e:
        return str(e)
