"""Issue 21, items 4 and 5: how a rollback's confirmation ends, as a table of what the fired rule
read on each tick after the switch (service/confirm.py), in simulated time.

- The restored release is judged on its own samples: `[$window]` rules are not read until
  `min_window` after the switch (before, the clamp read the bad release's errors back in and
  the rule went pending at 40% on the known-good release).
- A rule that breached on the restored release did not clear: "probably not the cause", halt.
- Rules that saw nothing of it (no request: NaN, no data; Prometheus not answering) leave the
  rollback unconfirmed: said, and no halt (before: a halt, and "probably not the cause").

`Service` stands in for the Watcher (the confirm.Confirmer protocol: state, config, journal,
messages): the confirmation's logic is pure given the tick's evaluation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from watcher.base.errors import SourceError
from watcher.core.envelope import MessageContext
from watcher.core.evaluate import evaluate, watch_window
from watcher.core.model import Mark, ReleaseRecord
from watcher.core.rules import Finding, HttpCheck, ProbeResult, PromQuery, Rule, Sample
from watcher.service import confirm
from watcher.store.state import State

RATIO = Rule("http-5xx-ratio", PromQuery("(sum(rate(e[$window])) or vector(0)) / sum(rate(t[$window]))"),
             "rollback", above=0.1, for_=20.0)
PROBE = Rule("health", HttpCheck("http://127.0.0.1:1/health"), "rollback", failures=3)
SWITCH = 1000.0
INTERVAL = 15.0


class Service:
    """What confirm.py needs of the Watcher, recorded in lists."""

    def __init__(self, rules):
        self.config = SimpleNamespace(rules=rules, min_window=45.0, max_window=60.0, interval=INTERVAL,
                                      verify=SimpleNamespace(clear_within=None))
        self.state = State(current="r1", releases={"r1": ReleaseRecord("r1", mark=Mark.GOOD.value),
                                                   "r2": ReleaseRecord("r2", mark=Mark.BAD.value)})
        self.backend = None
        self.now = SWITCH
        self.events: list[dict] = []
        self.messages: list = []
        self.counted: list[str] = []
        self.closed: list[str] = []

    def clock(self) -> float:
        return self.now

    @property
    def ctx(self):
        return MessageContext("shop", "web-3").at(self.now)

    def journal(self, kind, **fields):
        self.events.append({"kind": kind, **fields})

    def notify(self, message, findings=()):
        self.messages.append(message)

    def timeline(self, what):
        pass

    def close_incident(self, why, resolution):
        self.closed.append(resolution)

    def count_rollback(self, result):
        self.counted.append(result)


class Answers:
    """Prometheus' answer to the ratio on each tick (a list per tick), and the probe's."""

    def __init__(self, ratio, probe=True):
        self.ratio, self.probe = ratio, probe
        self.read: list[str] = []

    def read_all(self, rules, now, window_s, at=None, since=None):
        self.read += [r.name for r in rules if not r.name.endswith("[trailing]")]
        out = {}
        for r in rules:
            if isinstance(r.signal, HttpCheck):
                out[r.name] = (ProbeResult(True, "200") if self.probe else ProbeResult(False, "connect error"), 0.0)
            else:
                out[r.name] = (self.ratio, 0.0)
        return out


def confirmation(ticks: list, rules=(RATIO, PROBE), fired=("http-5xx-ratio",)) -> Service:
    """The switch at SWITCH, then one tick every INTERVAL with the ratio's answers in `ticks`."""
    w = Service(list(rules))
    findings = [Finding(name, "rollback", "> 0.1", 0.4) for name in fired]
    confirm.start_confirmation(w, "r2", "r1", findings, SWITCH, "probes pass")
    for answer in ticks:
        w.now += INTERVAL
        if w.state.confirming is None:
            break
        reader = Answers(answer)
        ev = evaluate(w.config.rules, reader, w.now, watch_window(w.now, w.state, w.config), w.state.rules, {}, 4,
                      scrape_interval=INTERVAL, held=confirm.too_early(w.state, w.config, w.now))
        for e in ev.rules:
            w.state.rules[e.rule.name] = e.after
        w.reads = getattr(w, "reads", []) + [reader.read]
        confirm.confirm(w, ev, w.now)
    return w


def ends(w: Service) -> str:
    kinds = [e["kind"] for e in w.events]
    for end in ("rollback_verified", "rollback_unconfirmed", "rollback_not_cleared"):
        if end in kinds:
            return end
    return "still confirming"


def v(x):
    return [Sample({}, x)]


NAN, NO_DATA, ERROR = v(math.nan), [], SourceError("timeout")

# (the ratio per tick, 15 s apart from the switch; how the confirmation ends; halted?)
TABLE = {
    "traffic on the restored release: verified": ([v(0.0)] * 12, "rollback_verified", False),
    "no request after the switch (NaN): unconfirmed, not a halt": ([NAN] * 12, "rollback_unconfirmed", False),
    "a fresh process, no request series (no data): unconfirmed": ([NO_DATA] * 12, "rollback_unconfirmed", False),
    "Prometheus does not answer: unconfirmed": ([ERROR] * 12, "rollback_unconfirmed", False),
    "errors on the restored release too: not the cause, halt": ([v(0.4)] * 12, "rollback_not_cleared", True),
    "errors on the restored release, then no request: halt": ([v(0.4)] * 5 + [NAN] * 7, "rollback_not_cleared", True),
    "quiet at first, then traffic: verified": ([NAN] * 4 + [v(0.0)] * 8, "rollback_verified", False),
}


@pytest.mark.parametrize("name", TABLE)
def test_how_a_confirmation_ends(name):
    ticks, end, halted = TABLE[name]
    w = confirmation(ticks)
    assert ends(w) == end, w.events
    assert bool(w.state.halted) is halted, w.state.halted
    if end == "rollback_unconfirmed":
        [message] = [m for m in w.messages if m.kind == "rollback_unconfirmed"]
        assert "unconfirmed (no" in message.title and "r2 → r1" in message.title
        assert w.closed == ["rolled_back_unconfirmed"] and w.counted == ["unconfirmed"]
        assert w.state.confirming is None and w.state.current == "r1"


def test_the_bad_releases_samples_are_not_read_into_the_restored_releases_window():
    """Prometheus' ratio over a window clamped up to min_window still held the bad release's
    errors (the rule pended at 40% on the known-good release). Here the ratio is not read before min_window (45 s, the 3rd tick)."""
    w = confirmation([v(0.0)] * 6)
    assert [("http-5xx-ratio" in r) for r in w.reads] == [False, False, True]  # verified on the 3rd
    assert not [e for e in w.events if e["kind"] == "rule"], "no transition on the restored release"
    assert ends(w) == "rollback_verified"


def test_a_probe_that_fired_clears_on_its_own_answer_without_traffic():
    """A crash rolled back by the health probe: its answer on the restored release confirms it,
    whatever the traffic."""
    w = confirmation([NAN] * 3, fired=("health",))
    assert ends(w) == "rollback_verified"
