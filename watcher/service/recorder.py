"""What a tick's steps record through (tick.Watcher is the one implementation): the journal,
written at once; the tick's outbox of messages, sent by `tell` at the end of the tick; and the
open incident's timeline. Each step module narrows it to what it needs (confirm.Confirmer,
rollback.Rollbacks, requests.Requests, coordinator.Seat), so that no step imports the tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from watcher.core.envelope import Message, MessageContext
from watcher.core.rules import Finding


class Recorder(Protocol):
    @property
    def ctx(self) -> MessageContext: ...

    def journal(self, kind: str, **fields: Any) -> None: ...

    def notify(self, message: Message | None, findings: Sequence[Finding] = ()) -> None: ...

    def timeline(self, what: str) -> None:
        """A line in the open incident's timeline, if one is open."""
