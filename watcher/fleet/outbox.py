"""What this host owes the fleet, kept on disk until etcd has it (watcher/fleet/link.py flushes it).

`state_dir/fleet-outbox.json`, written atomically on every change: a list of
{"kind": "verdict", "release", "value"} and {"kind": "survived", "release", "host", "at"}.
A rollback during an etcd outage, or just before a restart, is published when etcd is back.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from watcher.base.files import write_file_atomically

log = logging.getLogger(__name__)

OUTBOX = "fleet-outbox.json"


class Outbox:
    """What this host owes the fleet, kept on disk until etcd has it."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.items: list[dict[str, Any]] = self._load()

    def _load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("fleet outbox unreadable, starting empty path=%s reason=%s", self.path, exc)
            return []
        return [d for d in data if isinstance(d, dict) and d.get("kind") in ("verdict", "survived")] \
            if isinstance(data, list) else []

    def add(self, item: dict[str, Any]) -> None:
        with self._lock:
            if item not in self.items:
                self.items.append(item)
            self._save()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.items)

    def done(self, item: dict[str, Any]) -> None:
        with self._lock:
            if item in self.items:
                self.items.remove(item)
            self._save()

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(self.path, json.dumps(self.items), mode=0o600)
        except OSError as exc:
            # Still held in memory: only a restart during this state would lose it.
            log.error("fleet outbox not written path=%s reason=%s", self.path, exc)
