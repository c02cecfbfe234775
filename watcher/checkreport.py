"""What `check --online` found, counted apart: signals that did not answer, host problems (the
telemetry port), and warnings that do not fail the check (a rule's metric has no series yet)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OnlineReport:
    signal_failures: int = 0
    host_problems: list[str] = field(default_factory=list)
    fleet_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.signal_failures or self.host_problems or self.fleet_problems)

    def lines(self, signals: int, notify_targets: int) -> list[str]:
        # Notify targets are validated offline (Apprise parses each URL); delivering one is
        # `notify-test`'s job, so they are never subtracted from the signal count.
        notify = (f"{notify_targets} target(s) valid (send a test with `rollback-watcher notify-test`)"
                  if notify_targets else "no targets")
        out = [f"online: {signals - self.signal_failures} of {signals} signals answered; notify: {notify}"]
        out += [f"FAIL: {p}" for p in self.host_problems]
        out += [f"fleet: {p}" for p in self.fleet_problems]
        out += [f"warning: {w}" for w in self.warnings]
        return out

    def as_json(self) -> dict:
        return {"online_failures": self.signal_failures, "host_problems": self.host_problems,
                "fleet_problems": self.fleet_problems, "warnings": self.warnings}
