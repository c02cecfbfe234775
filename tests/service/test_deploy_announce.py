"""`mark deployed ID` from a deploy hook, for the release the watcher has already seen deployed.

Capistrano's `after "deploy:published"` hook (examples/capistrano) runs seconds after the switch;
the watcher's own poll usually sees the new `current` first. Found by
tests/integrations/test_capistrano.py: the late hook journaled a second deploy of the same
release, which re-opened its watch window and reset every rule's state (a rule 2 of 3 failed
probes into a bad release started again from 0). A repeated announcement changes nothing; an
explicit `--at` still corrects the deploy time (test_requests.py).
"""

import json
from pathlib import Path

from support import run_cli, wait_for

REPO = Path(__file__).resolve().parents[2]
RULES = "rules:\n  - name: health\n    http: HEALTH_URL\n    failures: 3\n    action: rollback\n"


def cli(*args, **kwargs):
    kwargs.setdefault("cwd", REPO)
    return run_cli(*args, **kwargs)


def test_a_deploy_hook_announcing_the_release_already_seen_changes_nothing(symlink_host, start_watcher):
    host = symlink_host
    host.add_release("r1")
    host.add_release("r2")
    host.deploy("r1")
    cfg = host.write_config(RULES, watch_window="10m")
    cli("mark", "good", "r1", "--config", cfg, check=True)
    w = start_watcher(cfg)
    wait_for(lambda: "start" in host.kinds(), 30, what="the watcher to start")
    host.deploy("r2")
    seen = wait_for(lambda: [e for e in host.journal() if e["kind"] == "deploy" and e["release"] == "r2"], 30,
                    what="the poll to see the deploy of r2")
    before = json.loads(cli("status", "--json", "--config", cfg, check=True).stdout)

    out = cli("mark", "deployed", "r2", "--config", cfg, check=True).stdout
    assert "already" in out, out
    deploys = [e for e in host.journal() if e["kind"] == "deploy" and e["release"] == "r2"]
    assert deploys == seen, "a second deploy of r2 was journaled: its window and rule states started over"
    after = json.loads(cli("status", "--json", "--config", cfg, check=True).stdout)
    assert after["window_ends"] == before["window_ends"]
    assert w.stop() == 0
