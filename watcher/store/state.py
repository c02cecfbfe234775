"""What the watcher remembers (docs/design.md section 8).

    state_dir/state.json      the current state, rewritten atomically (temp, fsync, rename)
    state_dir/journal.jsonl   the append-only audit log: one JSON object a line, fsynced
    state_dir/watcher.lock    held by the running service: two watchers never act on one host
    state_dir/requests/       what a human asked (`mark`, `pause`, `resolve`, `rollback`) while
                              the service runs; the service applies them at its next tick, so
                              that state.json has one writer

Files are created 0600 and the directory 0700: the journal holds incident details.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from watcher.base.clock import RELEASE_TIMES, RULE_TIMES, STATE_TIMES
from watcher.base.errors import StateError
from watcher.base.files import write_file_atomically
from watcher.core.incident import Incident
from watcher.core.model import ReleaseRecord
from watcher.core.rules import RuleState
from watcher.store.locks import held_by_other

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class State:
    version: int = FORMAT_VERSION
    current: str | None = None
    deployed_at: float | None = None  # of the current release (None: not deployed while we watched)
    window_ends: float | None = None  # end of the current release's watch window
    # When `current` last changed (a deploy, a rollback's switch, a human's switch): `[$window]`
    # starts here, so a restored release is not judged on the bad release's samples.
    changed_at: float | None = None
    # The last change was a deploy seen by a tick's read of `current` (not a first start, not a
    # rollback's switch): it happened at some moment since the tick before, so Prometheus'
    # newest sample may be a scrape of its restart (evaluate.held_before_change, `settle`).
    deploy_seen_late: bool = False
    # Wall time minus the watcher's steady time when this was saved (clock.Timebase): times in
    # this file are steady time; a new process converts them once, by this offset.
    clock_offset: float = 0.0
    # The saver's steady time and monotonic clock at the save, and its boot: a new process in the
    # same boot knows how much time passed since, whatever the wall clock did (clock.restart_shift).
    saved_at: float | None = None
    saved_monotonic: float | None = None
    boot_id: str = ""
    releases: dict[str, ReleaseRecord] = field(default_factory=dict)
    baselines: dict[str, float | None] = field(default_factory=dict)  # rule -> value, this deploy
    rules: dict[str, RuleState] = field(default_factory=dict)
    incident: Incident | None = None  # the open incident, with its timeline
    paused_until: float | None = None
    halted: str | None = None  # why the watcher stopped acting (a human runs `resolve`)
    intent: dict[str, Any] | None = None  # a switch recorded before it was made, cleared after
    last_rollback_at: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    # A switched rollback waiting for the rules that fired to clear on the restored release:
    # from, to, rules, findings, switched_at, until (confirm.confirm).
    confirming: dict[str, Any] | None = None
    # Why the backend cannot say which release is current, once said (status shows it).
    current_problem: str | None = None
    # A deploy lock held while a rollback rule fires: since, last, notified (the window waits);
    # "for": "backend" when the wait is for a backend read tried again (window.hold_for_retry).
    lock_wait: dict[str, Any] | None = None
    # A deploy held the deploy lock during the last tick: once it lets go, what the rules saw
    # meanwhile is discarded (window.discard_deploy_evidence), across a restart too.
    lock_seen: bool = False
    # When the deploy lock was let go (window.lock_settling): Prometheus' newest samples are
    # still the deploy's for a while after, and count as seen under the lock.
    lock_let_go_at: float | None = None
    # `host:` rules' counter readings, rule -> [[time, value], ...] (hostsignals.HostSignals):
    # kept here so that growth since the deploy is counted across a restart or a reload.
    host_counters: dict[str, list[Any]] = field(default_factory=dict)

    def release(self, release_id: str, now: float | None = None) -> ReleaseRecord:
        rec = self.releases.get(release_id)
        if rec is None:
            rec = self.releases[release_id] = ReleaseRecord(release_id, first_seen=now)
        return rec

    def in_watch_window(self, now: float) -> bool:
        return self.window_ends is not None and now < self.window_ends

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    # JSON form -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rules"] = {name: rs.to_dict() for name, rs in self.rules.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        if not isinstance(d, dict):
            raise ValueError("the top level is not an object")
        version = d.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version!r}, this watcher reads version {FORMAT_VERSION}")
        poisoned = _poisoned_times(d)
        if poisoned:
            raise ValueError("it holds times that are not finite epoch seconds: " + ", ".join(poisoned[:6])
                             + " (`mark deployed --at nan` wrote such values before it was refused)")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["releases"] = {
            k: ReleaseRecord(**{f: x for f, x in v.items() if f in ReleaseRecord.__dataclass_fields__})
            for k, v in (d.get("releases") or {}).items()
        }
        known["rules"] = {k: RuleState.from_dict(v) for k, v in (d.get("rules") or {}).items()}
        known["incident"] = Incident.from_dict(d["incident"]) if d.get("incident") else None
        return cls(**known)




def _poisoned_times(d: dict[str, Any]) -> list[str]:
    """Where a time field is not None or a finite number. NaN compares false with everything:
    such a window never holds, and a string "nan" (how _dumps writes NaN) raises TypeError in
    the first comparison, on every start."""
    def bad(value: Any) -> bool:
        if value is None:
            return False
        return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)

    found = [f"{k}={d[k]!r}" for k in STATE_TIMES if bad(d.get(k))]
    for group, fields in (("releases", RELEASE_TIMES), ("rules", RULE_TIMES)):
        records = d.get(group) or {}
        if not isinstance(records, dict):
            continue
        for name, rec in records.items():
            if isinstance(rec, dict):
                found += [f"{group}.{name}.{k}={rec[k]!r}" for k in fields if bad(rec.get(k))]
    return found


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _dumps(obj: Any) -> str:
    # NaN is not JSON; a rule's last value may be NaN (0/0 on an idle service).
    return json.dumps(_finite(obj), default=_json_default, sort_keys=True, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def lock_holder(path: Path) -> str:
    """Who holds the instance lock, as far as this process can tell: the PID its holder wrote
    into the lock file, that process's command line (when /proc shows it: the unit's
    ProtectProc=invisible hides other users' processes) and since when."""
    from watcher.base.format import format_duration, format_time

    try:
        text = path.read_text().strip()
        since = path.stat().st_mtime
    except OSError:
        return "a process whose PID cannot be read"
    if not text.isdigit():
        return "a process whose PID cannot be read"
    who = f"PID {text}"
    try:
        argv = Path(f"/proc/{text}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)
        if command:
            who += f" (`{command[:160]}`)"
    except OSError:
        pass
    # The file's own time against the real clock: both are the machine's, not the watcher's.
    return f"{who}, since {format_time(since)} ({format_duration(time.time() - since)} ago)"


class StateStore:
    """state.json and journal.jsonl under one directory."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time, redact: Callable[[str], str] = str):
        self.dir = Path(state_dir)
        self.clock = clock
        # The config's secrets never reach a file (scrub.Redactor): an error text may carry one.
        self.redact = redact
        self.state_path = self.dir / "state.json"
        self.journal_path = self.dir / "journal.jsonl"
        self.lock_path = self.dir / "watcher.lock"
        self.requests_dir = self.dir / "requests"
        self._lock_fd: int | None = None

    def owner(self) -> tuple[int, int] | None:
        """Whom the files this process writes here must belong to, or None for itself.

        `sudo rollback-watcher pause|mark|rollback ...` runs as root against the state dir of a
        service that runs as its own user (systemd/rollback-watcher.service: User=, state dir
        0700, UMask=0077). A root-owned 0600 request file is one the running service cannot read
        (it skipped it, and the CLI waited 60 s), and a root-owned state.json one it cannot load
        at its next start. So as root every file goes to the state dir's owner. Any other user
        writes as itself: it can write into the 0700 dir only as its owner."""
        if os.geteuid() != 0:
            return None
        try:
            st = self.dir.stat()
        except OSError:
            return None
        return None if st.st_uid == 0 else (st.st_uid, st.st_gid)

    def ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = not self.requests_dir.is_dir()
            self.requests_dir.mkdir(exist_ok=True, mode=0o700)
            if created and (owner := self.owner()) is not None:
                os.chown(self.requests_dir, *owner)
        except OSError as exc:
            raise StateError(f"cannot create the state dir {self.dir}: {exc.strerror}. "
                             "Create it and give the watcher's user write access.") from None
        if not os.access(self.dir, os.W_OK):
            raise StateError(f"the state dir {self.dir} is not writable. Give the watcher's user write access.")

    # the instance lock -----------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the instance lock or raise StateError: one watcher per state dir."""
        self.ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        if (owner := self.owner()) is not None:
            os.fchown(fd, *owner)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # Permanent: starting again every RestartSec would only find it held again (`run`
            # exits 78); a person stops one of the two.
            raise StateError(f"another watcher runs on {self.dir}: {lock_holder(self.lock_path)} holds "
                             f"{self.lock_path}. Two watchers must never act on one host: stop it first (or give "
                             "this one another state_dir).", permanent=True) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def service_running(self) -> bool:
        """Whether a watcher holds the instance lock (this process excluded)."""
        return self._lock_fd is None and held_by_other(self.lock_path)

    # state.json ------------------------------------------------------------------------------

    def load(self) -> State:
        """The saved state, or a new one when there is none. Raises StateError when the file
        exists but cannot be trusted: the watcher must not act on a state it cannot read."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.state_path}: {exc.strerror}") from None
        try:
            return State.from_dict(json.loads(raw.decode("utf-8")))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise StateError(
                f"{self.state_path} is damaged ({_brief(exc)}). The journal {self.journal_path} is intact. "
                f"To recover: move the file aside (mv {self.state_path} {self.state_path}.bad) and restart; "
                "the watcher starts fresh and treats the current release as just deployed; "
                "re-mark known-good releases with `rollback-watcher mark good ID`.",
                permanent=True,
            ) from None

    def save(self, state: State) -> None:
        data = (self.redact(_dumps(state.to_dict())) + "\n").encode()
        try:
            write_file_atomically(self.state_path, data, mode=0o600, owner=self.owner())
        except OSError as exc:
            raise StateError(f"cannot write {self.state_path}: {exc.strerror}; the previous state is kept. "
                             f"Free space in (or give the watcher write access to) {self.dir}.") from None

    # journal.jsonl ---------------------------------------------------------------------------

    def journal(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one event, flushed and fsynced before returning."""
        event = {"time": round(self.clock(), 3), "kind": kind, **fields}
        line = (self.redact(_dumps(event)) + "\n").encode()
        try:
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if (owner := self.owner()) is not None:
                    os.fchown(fd, *owner)  # created by root here, the service appends next
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot append to {self.journal_path}: {exc.strerror}. Nothing more is done until "
                             f"it can be: every action is journaled before it is taken. Free space in (or give "
                             f"the watcher write access to) {self.dir}; the journal written so far is intact.") from None
        return event

    def events(self) -> Iterator[dict[str, Any]]:
        """Every journal event, oldest first; a damaged line is skipped with a warning."""
        try:
            fh = open(self.journal_path, "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"cannot read {self.journal_path}: {exc.strerror}") from None
        with fh:
            for number, raw in enumerate(fh, 1):
                try:
                    event = json.loads(raw.decode("utf-8"))
                    if not isinstance(event, dict):
                        raise ValueError("not an object")
                except (ValueError, UnicodeDecodeError) as exc:
                    log.warning("journal line skipped file=%s line=%d reason=%s", self.journal_path, number, _brief(exc))
                    continue
                yield event

    # requests from humans while the service runs ---------------------------------------------

    def submit_request(self, command: str, **args: Any) -> str:
        self.ensure_dir()
        request_id = f"{int(self.clock() * 1000)}-{uuid.uuid4().hex[:8]}"
        data = _dumps({"id": request_id, "command": command, "args": args}).encode()
        write_file_atomically(self.requests_dir / f"{request_id}.json", data, mode=0o600, owner=self.owner())
        return request_id

    def withdraw_request(self, request_id: str) -> bool:
        """Take back a request no service took: True if its file was still there (now gone),
        False if a service had taken it (it reads, then removes)."""
        try:
            (self.requests_dir / f"{request_id}.json").unlink()
        except FileNotFoundError:
            return False
        return True

    def take_requests(self) -> list[dict[str, Any]]:
        """Pending requests, oldest first; each file is removed once read. One that cannot be
        read comes out as {"id": its file's name, "unreadable": why}: the CLI waiting for it
        hears the refusal at once instead of waiting out its timeout."""
        if not self.requests_dir.is_dir():
            return []
        out = []
        for path in sorted(self.requests_dir.glob("*.json")):
            try:
                request = json.loads(path.read_text())
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                out.append(request)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                log.warning("request skipped file=%s reason=%s", path, _brief(exc))
                out.append({"id": path.stem, "unreadable": _brief(exc)})
            try:
                path.unlink()
            except OSError:
                pass
        return out


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 400 else text[:400] + "..."
