"""A restart finds a rollback intent on record, but the config has no backend any more: the
watcher halts and says it cannot tell whether the switch happened (it used to crash in start())."""

from __future__ import annotations

from watcher.config.load import load_config
from watcher.service.build import build_watcher
from watcher.store.state import State


def test_an_intent_left_under_a_config_without_backend_halts_at_start(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules:\n  - name: oom\n    host: oom_kills\n    action: rollback\n")
    (tmp_path / "watcher.yaml").write_text(f"service: shop\nrules: [rules.yaml]\nstate_dir: {tmp_path / 'state'}\n"
                                           "telemetry: false\n")
    w = build_watcher(load_config(tmp_path / "watcher.yaml"), notify=False)
    try:
        w.store.ensure_dir()
        w.store.save(State(current="r2", intent={"id": "i1", "from": "r2", "to": "r1", "reason": "test", "at": 0.0}))
        w.start()
        assert w.state.halted is not None and "no backend is configured" in w.state.halted
    finally:
        w.reader.close()
