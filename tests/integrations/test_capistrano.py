"""Capistrano 3 (Debian's `capistrano`) deploys over real SSH to a sandbox host on 127.0.0.1,
watched by `rollback-watcher run` as a subprocess. Nothing is faked: the Capfile and
config/deploy.rb are examples/capistrano's very files (symlinked into the deployer's dir), the
server is a private OpenSSH sshd, the app comes from a file:// git repository, and the watcher
reads a real HTTP health endpoint that answers what the release `current` points at says
(SymlinkHost: the release's `health_status` file).

The scenario, in the order an operator lives it:
  v1 deployed with cap and marked good by a human; the watcher starts;
  v2 deployed with cap (healthy, in its watch window, not yet known-good);
  v3 deployed with cap: its /health answers 503 -> the watcher rolls back to v1, the newest
     known-good release (v2 never finished its window), and verifies;
  a human then runs `cap production deploy:rollback`, which picks v2 (second-newest by mtime):
     the watcher sees a deploy of v2 (the `mark deployed` hook and its own poll) and lets it be.
The timeline (deploy -> detection -> rollback verified) is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support import SymlinkHost, WatcherProcess, free_port, run_cli, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "capistrano"

RULES = """
rules:
  - name: health-endpoint
    http: HEALTH_URL
    expect_status: 200
    timeout: 2s
    failures: 3
    action: rollback
"""


def _production_rb(sshd) -> str:
    return (
        f'server "127.0.0.1", user: "{sshd.user}", port: {sshd.port}, roles: %w[app],\n'
        f'  ssh_options: {{keys: ["{sshd.client_key}"], keys_only: true, auth_methods: %w[publickey],\n'
        "                verify_host_key: :never, user_known_hosts_file: \"/dev/null\"}\n"
    )


class Cap:
    """`cap production TASK` in a deployer dir made of the example files."""

    def __init__(self, cap_bin: str, workdir: Path, sshd, env: dict):
        self.cap_bin = cap_bin
        self.dir = workdir
        (workdir / "config" / "deploy").mkdir(parents=True)
        os.symlink(EXAMPLES / "Capfile", workdir / "Capfile")
        os.symlink(EXAMPLES / "config" / "deploy.rb", workdir / "config" / "deploy.rb")
        (workdir / "config" / "deploy" / "production.rb").write_text(_production_rb(sshd))
        self.env = {**os.environ, **env}

    def run(self, *task: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([self.cap_bin, "production", *task], cwd=self.dir, capture_output=True, text=True,
                                env={**self.env, **(extra_env or {})}, timeout=300)
        if result.returncode != 0:
            log = self.dir / "log" / "capistrano.log"
            raise AssertionError(f"cap production {' '.join(task)} exited {result.returncode}:\n{result.stdout}\n"
                                 f"{result.stderr}\n{log.read_text() if log.exists() else ''}")
        return result


def _evaluations(metrics_url: str) -> float:
    """How many times the watcher evaluated its rule: a tick counter that needs no sleep."""
    try:
        text = httpx.get(metrics_url, timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.findall(r'^rollback_watcher_evaluations_total\{[^}]*rule="health-endpoint"[^}]*\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def test_cap_deploy_of_a_bad_release_is_rolled_back_and_a_human_cap_rollback_is_a_deploy(
    tmp_path, sshd, app_repo, cap_bin
):
    watcher_bin = Path(sys.executable).parent / "rollback-watcher"
    assert watcher_bin.exists(), f"{watcher_bin} missing: run `make deps`"
    deploy_to = tmp_path / "srv" / "shop-api"
    host = SymlinkHost(deploy_to)  # /health answers current/health_status
    lock = tmp_path / "lock" / "deploy.lock"
    lock.parent.mkdir()
    telemetry_port = free_port()
    config = host.write_config(RULES, deploy_lock=str(lock), watch_window="10m",
                               telemetry={"listen": f"127.0.0.1:{telemetry_port}"})
    metrics_url = f"http://127.0.0.1:{telemetry_port}/metrics"
    cap = Cap(cap_bin, tmp_path / "deployer", sshd, {
        "APP_NAME": "shop-api", "REPO_URL": app_repo.url, "DEPLOY_TO": str(deploy_to),
        "WATCHER_BIN": str(watcher_bin), "WATCHER_CONFIG": str(config), "WATCHER_LOCK": str(lock),
        "WATCHER_LOCK_WAIT": "60",
    })
    watcher = None
    try:
        # v1: deployed before the watcher runs (the hook applies `mark deployed` itself), then
        # marked good by a human: the host's known-good starting point.
        app_repo.commit("v1", 200)
        cap.run("deploy")
        v1 = host.current_id()
        assert (deploy_to / "current" / "VERSION").read_text().strip() == "v1"
        run_cli("mark", "good", v1, "--config", config, check=True)

        watcher = WatcherProcess(config, tmp_path / "watcher.log")
        wait_for(lambda: _evaluations(metrics_url) >= 2, timeout=60, what="the watcher's first ticks")

        time.sleep(1.1)  # Capistrano names releases by the second
        app_repo.commit("v2", 200)
        cap.run("deploy")
        v2 = host.current_id()
        wait_for(lambda: any(e["kind"] == "deploy" and e["release"] == v2 for e in host.journal()), timeout=60,
                 what=f"the watcher to see the deploy of {v2}")

        # The hook and the poll both report the deploy; whichever comes second changes nothing.
        assert [e["release"] for e in host.journal() if e["kind"] == "deploy"][-1:] == [v2]
        assert len([e for e in host.journal() if e["kind"] == "deploy" and e["release"] == v2]) == 1

        time.sleep(1.1)
        app_repo.commit("v3", 503)
        t_cap = time.time()
        cap.run("deploy")
        t_cap_done = time.time()
        events = wait_for(lambda: [e for e in host.journal() if e["kind"] in ("rollback_verified", "verify_failed",
                                                                               "rollback_failed")],
                          timeout=120, what="the watcher to roll v3 back")
        assert events[0]["kind"] == "rollback_verified", events
        journal = host.journal()
        deploy_v3 = next(e for e in journal if e["kind"] == "deploy" and e["release"] not in (v1, v2))
        v3 = deploy_v3["release"]
        firing = next(e for e in journal if e["kind"] == "rule" and e.get("after") == "firing" and e["release"] == v3)
        intent = next(e for e in journal if e["kind"] == "rollback_intent")
        verified = events[0]
        assert (intent["release"], intent["target"]) == (v3, v1), "newest known-good: v2 never finished its window"
        assert host.current_id() == v1
        assert httpx.get(host.health_url, timeout=5).status_code == 200

        # The journal's first deploy of v3 is when the watcher learnt it: its poll, or the
        # `mark deployed` hook, whichever came first (the hook runs after deploy:published).
        timeline = sorted([(t_cap, "cap production deploy (v3) started"),
                           (deploy_v3["time"], "watcher saw the deploy of v3"),
                           (t_cap_done, "cap production deploy (v3) returned"),
                           (firing["time"], "health-endpoint firing (3 failed probes)"),
                           (intent["time"], "rollback v3 -> v1 journaled before acting"),
                           (verified["time"], "rollback verified: v1 current, /health 200")])
        print(f"\nCapistrano timeline (v1={v1} v2={v2} v3={v3}):")
        for at, label in timeline:
            print(f"  +{at - t_cap:6.2f}s  {label}")

        # A human rolls back with Capistrano: the second-newest release by mtime, v2.
        before = len(host.journal())
        rolled = cap.run("deploy:rollback")
        assert host.current_id() == v2, rolled.stdout
        after_rollback = wait_for(lambda: [e for e in host.journal()[before:] if e["kind"] == "deploy"
                                           and e["release"] == v2], timeout=60, what=f"the deploy of {v2} to be seen")
        assert after_rollback[0]["previous"] == v1
        wait_for(lambda: "request_done" in [e["kind"] for e in host.journal()[before:]], timeout=60,
                 what="the mark deployed hook of the rollback")
        # Not fought: several more ticks (the rule needs 3 failed probes to fire) change nothing.
        ticks = _evaluations(metrics_url)
        wait_for(lambda: _evaluations(metrics_url) >= ticks + 6, timeout=120, what="six more ticks")
        later = host.journal()[before:]
        assert not [e for e in later if e["kind"].startswith("rollback_")], later
        assert len([e for e in later if e["kind"] == "deploy" and e["release"] == v2]) == 1, later
        assert host.current_id() == v2
        status = json.loads(run_cli("status", "--json", "--config", config, check=True).stdout)
        assert json.dumps(status).count(v2) >= 1
    finally:
        if watcher is not None:
            code = watcher.stop()
            if code not in (0, None):
                print(watcher.output())
        host.close()
