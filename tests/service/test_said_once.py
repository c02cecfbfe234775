"""What the service says about a state it stays in is said once, not on every tick: "no baseline:
cannot fire" once per deploy (a rollback's switch and its verification reset the rule states,
and each reset said it again), and "tick overran the interval" once per run of slow ticks.

The signals come from a table reader (a fake at the Prometheus boundary: the values per tick
are the point, not the HTTP); the state store, the journal and the Watcher are the real ones."""

from __future__ import annotations

import logging
from pathlib import Path

from watcher.config.load import load_config
from watcher.core.rules import Sample
from watcher.service import deploys
from watcher.service.daemon import Daemon
from watcher.service.tick import Watcher
from watcher.store.state import StateStore

T0 = 1_800_000_000.0
RULES = """rules:
  - name: p95-latency-regression
    query: histogram_quantile(0.95, sum by (le) (rate(latency_bucket[$window])))
    above_baseline: 5
    floor: 0.2
    value_unit: s
    action: rollback
"""


class SteadyReader:
    """Every rule reads 0.05 (50 ms): healthy, and a baseline rule without a baseline cannot fire."""

    prometheus = None

    def __init__(self, on_read=None):
        self.on_read = on_read or (lambda: None)

    def read_all(self, rules, now, window_s, at=None, since=None):
        self.on_read()
        return {r.name: ([Sample({}, 0.05)], 0.0) for r in rules}

    def keep_host_counters(self, history):
        pass

    def close(self):
        pass


def watcher(tmp_path: Path, clock, reader) -> Watcher:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "watcher.yaml").write_text(f"service: shop\nhost: web-1\ninterval: 1s\nrules: [rules.yaml]\n"
                                           f"prometheus: {{url: 'http://127.0.0.1:9'}}\n"
                                           f"state_dir: {tmp_path / 'state'}\n")
    cfg = load_config(tmp_path / "watcher.yaml", environ={})
    store = StateStore(tmp_path / "state", clock=clock)
    store.ensure_dir()
    return Watcher(cfg, None, reader, None, store, clock=clock)


def test_no_baseline_is_said_once_per_deploy_not_again_after_a_rollbacks_resets(tmp_path):
    now = [T0]
    w = watcher(tmp_path, lambda: now[0], SteadyReader())
    w.on_deploy("r2", T0)  # a deploy with no data before it: no baseline
    for i in range(3):
        now[0] = T0 + i
        w.tick()
    deploys.restored(w.state, "r1", now[0])  # the rollback's switch (confirm.start_confirmation)
    for i in range(3, 6):
        now[0] = T0 + i
        w.tick()
    deploys.restored(w.state, "r1", now[0])  # its verification (confirm.after_verified)
    for i in range(6, 40):
        now[0] = T0 + i
        w.tick()
    said = [e for e in w.store.events() if e["kind"] == "rule" and e["transition"] == "no_baseline"]
    assert [e["release"] for e in said] == ["r2"]
    w.on_deploy("r3", now[0])  # the next deploy is news again
    w.tick()
    said = [e for e in w.store.events() if e["kind"] == "rule" and e["transition"] == "no_baseline"]
    assert [e["release"] for e in said] == ["r2", "r3"]


def test_ticks_that_overrun_the_interval_are_said_once_then_once_when_they_keep_time_again(tmp_path, caplog):
    now = [T0]
    ticks = []
    daemon = None

    def read():
        ticks.append(now[0])
        if len(ticks) <= 5:
            now[0] += 3.0  # five slow reads in a row: 3 s each, against an interval of 1 s
        if len(ticks) == 7:
            daemon.stop()

    w = watcher(tmp_path, lambda: now[0], SteadyReader(read))
    w.on_deploy("r2", T0)
    daemon = Daemon(w)
    with caplog.at_level(logging.INFO, logger="watcher.service.daemon"):
        daemon.run()
    overran = [r for r in caplog.records if "overran" in r.getMessage()]
    again = [r for r in caplog.records if "keep the interval again" in r.getMessage()]
    assert len(overran) == 1, [r.getMessage() for r in overran]
    assert len(again) == 1 and "5 time(s)" in again[0].getMessage()

