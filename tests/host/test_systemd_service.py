"""The shipped unit, install script, polkit rule and docs under a real systemd (PID 1 of a booted
Debian 12 container), with the demo app as `shop-api.service` run by its own user and a real
Prometheus scraping it.

One boot serves the whole module (installing takes most of its time): the tests run in file
order and each leaves the site as it found it — r1 current and known-good, the watcher active
with the site's config — or says in its docstring what it changes.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from pathlib import Path

import pytest
from host.machine import BootedSystem
from host.provision import (
    APP_PORT,
    CLI,
    CONFIG,
    NOTIFY_SINK_DIR,
    PREFIX,
    RULES,
    TELEMETRY,
    http_get,
    install_polkit_rule,
    install_shop_api,
    install_watcher,
    watcher_config,
)

from support import wait_for

UNIT = "rollback-watcher.service"
EXPOSURE_LIMIT = 1.2  # measured 1.1 inside a booted Debian 12 (systemd 252); issue 15 asks for 2.0 or lower
DROPIN = "/etc/systemd/system/rollback-watcher.service.d/site.conf"


class Site:
    def __init__(self, machine: BootedSystem, install_output: str, start_seconds: float):
        self.m = machine
        self.install_output = install_output
        self.start_seconds = start_seconds

    def journal_events(self) -> list[dict]:
        text = self.m.run("cat", "/var/lib/rollback-watcher/journal.jsonl", check=False).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self, kind: str, **fields) -> list[dict]:
        return [e for e in self.journal_events()
                if e["kind"] == kind and all(e.get(k) == v for k, v in fields.items())]

    def version(self) -> str:
        return http_get(self.m, f"http://127.0.0.1:{APP_PORT}/version")[1].strip()

    def as_watcher(self, *argv: str, check: bool = True):
        return self.m.run("runuser", "-u", "rollback-watcher", "--", *argv, check=check)

    def deploy(self, rid: str, settings: dict) -> None:
        """What a deploy script does: a new release dir, `current` swapped atomically, the app
        reloaded (as root, as the deploy user's own privileges would)."""
        self.m.write(f"/srv/shop-api/releases/{rid}/settings.json", json.dumps(settings) + "\n")
        self.m.sh(f"""
            chown -R shop-api:shop-api /srv/shop-api/releases/{rid}
            ln -sfn releases/{rid} /srv/shop-api/.current.tmp
            mv -T /srv/shop-api/.current.tmp /srv/shop-api/current
            systemctl reload shop-api.service
        """)
        wait_for(lambda: self.version() == rid, timeout=20, what=f"the app to serve {rid}")

    def configure(self, **options) -> None:
        self.m.write(CONFIG, watcher_config(**options))

    def wait_active(self, timeout: float = 60) -> None:
        wait_for(lambda: self.m.show(UNIT, "ActiveState") == "active" and self.m.show(UNIT, "SubState") == "running",
                 timeout=timeout, what=f"{UNIT} active")


@pytest.fixture(scope="module")
def site(booted) -> Site:
    m = booted("rollback-watcher-site")
    install_output = install_watcher(m)
    install_shop_api(m)
    install_polkit_rule(m)
    m.write(CONFIG, watcher_config())
    m.write("/etc/rollback-watcher/rules/site.yaml", RULES)
    m.run("rm", "-f", "/etc/rollback-watcher/rules/default.yaml")
    # docs/deployment.md section 3: the watcher's user joins the app's group to switch `current`.
    m.write(DROPIN, "[Service]\nSupplementaryGroups=shop-api\n")
    m.run(CLI, "check", "--config", CONFIG)
    wait_for(lambda: http_get(m, f"http://127.0.0.1:{APP_PORT}/version")[1].strip() == "r1", timeout=30,
             what="shop-api serving r1")
    m.systemctl("daemon-reload")
    started = time.monotonic()
    m.systemctl("enable", "--now", UNIT, timeout=120)
    site = Site(m, install_output, time.monotonic() - started)
    print(f"systemctl enable --now returned after {site.start_seconds:.1f}s")
    # r1 ran before the watcher came: a human vouches for it, as the docs' first start says.
    site.as_watcher(CLI, "mark", "good", "r1", "--config", CONFIG)
    return site


def test_install_follows_the_docs_and_start_returns_once_the_watcher_is_ready(site):
    m = site.m
    assert "installed /opt/rollback-watcher/bin/rollback-watcher" in site.install_output
    # Type=notify: `systemctl start` returned only after READY=1, so the unit is running and
    # its STATUS= line and /healthz are there at once, without waiting.
    assert m.show(UNIT, "ActiveState") == "active"
    assert m.show(UNIT, "SubState") == "running"
    assert m.show(UNIT, "Type") == "notify"
    assert m.show(UNIT, "User") == "rollback-watcher"
    assert m.show(UNIT, "StatusText").startswith("release r1"), m.show(UNIT, "StatusText")
    status, body = http_get(m, f"http://{TELEMETRY}/healthz")
    assert status == 200, body
    assert m.show(UNIT, "UnitFileState") == "enabled"
    # state_dir is the unit's StateDirectory, 0700 and owned by the watcher's user.
    assert m.run("stat", "-c", "%a %U", "/var/lib/rollback-watcher").stdout.split() == ["700", "rollback-watcher"]


def test_security_exposure_inside_the_booted_system_stays_at_the_measured_figure(site):
    out = site.m.run("systemd-analyze", "security", UNIT, check=False).stdout
    match = re.search(r"Overall exposure level for rollback-watcher\.service: (\d+\.\d+)", out)
    assert match, out[-1500:]
    print(f"exposure inside the booted system: {match.group(1)}")
    assert float(match.group(1)) <= EXPOSURE_LIMIT, out


def test_host_signals_are_readable_under_the_shipped_sandbox(site):
    """`host: oom_kills` reads /proc/vmstat and `host: unit_restarts` asks systemd: both must
    see under ProcSubset=/ProtectProc=/PrivateUsers= (the shipped unit hid /proc/vmstat)."""
    m = site.m

    def evaluated() -> dict[str, dict[str, float]]:
        text = http_get(m, f"http://{TELEMETRY}/metrics")[1]
        seen: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            if line.startswith("rollback_watcher_evaluations_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                seen.setdefault(labels["rule"], {})[labels["outcome"]] = float(line.rsplit(" ", 1)[1])
        return seen

    # error_limit (4) ticks of 1 s and more: a rule that cannot read would be blind by now.
    counts = wait_for(lambda: (c := evaluated()) and sum(c.get("oom-kills", {}).values()) >= 6 and c, timeout=60,
                      what="six evaluations of the host rules")
    for rule in ("oom-kills", "app-restarts"):
        assert counts[rule].get("error", 0) == 0, (rule, counts[rule], site.m.journal(UNIT)[-2000:])
        assert counts[rule].get("ok", 0) > 0, (rule, counts[rule])
    assert "rule blind" not in m.journal(UNIT)


def test_polkit_rule_lets_the_watcher_user_reload_the_app_and_nothing_else(site):
    m = site.m
    assert site.as_watcher("systemctl", "reload", "shop-api.service", check=False).ok
    # examples/watcher.yaml names the unit without its suffix: polkit sees the full name.
    assert site.as_watcher("systemctl", "reload", "shop-api", check=False).ok
    denied = site.as_watcher("systemctl", "stop", "shop-api.service", check=False)
    # polkit found no rule granting it: systemctl asks for a password nobody can type.
    assert not denied.ok and "Interactive authentication required" in denied.stderr, denied.describe()
    assert not site.as_watcher("systemctl", "restart", "prometheus.service", check=False).ok
    # The signal the examples once used cannot reach an app run by another user.
    app_pid = m.show("shop-api.service", "MainPID")
    hup = site.as_watcher("kill", "-HUP", app_pid, check=False)
    assert not hup.ok and "Operation not permitted" in hup.stderr, hup.describe()
    # Without the rule the reload is refused: the rule is what grants it.
    m.run("mv", "/etc/polkit-1/rules.d/50-rollback-watcher.rules", "/root/")
    try:
        wait_for(lambda: not site.as_watcher("systemctl", "reload", "shop-api.service", check=False).ok,
                 timeout=20, what="polkit to drop the rule")
    finally:
        m.run("mv", "/root/50-rollback-watcher.rules", "/etc/polkit-1/rules.d/")
    wait_for(lambda: site.as_watcher("systemctl", "reload", "shop-api.service", check=False).ok, timeout=20,
             what="polkit to load the rule again")
    assert m.show("shop-api.service", "ActiveState") == "active"


def test_bad_deploy_is_rolled_back_verified_and_journaled_under_systemd(site):
    """r2 answers 50% 500s: the Prometheus rule fires, the watcher (non-root, PrivateUsers=)
    swaps `current` in the group-writable releases dir, reloads shop-api through systemctl and
    polkit, verifies. Leaves r2 marked bad, r1 current."""
    m = site.m
    site.deploy("r2", {"release": "r2", "error_ratio": 0.5})
    verified = wait_for(lambda: site.events("rollback_verified", release="r2", target="r1"), timeout=90,
                        what="the rollback r2 -> r1 to verify")
    assert verified
    assert m.run("readlink", "/srv/shop-api/current").stdout.strip() == "releases/r1"
    assert m.run("stat", "-c", "%U", "/srv/shop-api/current").stdout.strip() == "rollback-watcher"
    assert site.version() == "r1"
    (switched,) = site.events("rollback_switched", release="r2", target="r1")
    assert "systemctl reload shop-api.service" in switched["output"]
    assert not site.events("rollback_failed")
    # The reload was the watcher's, through systemd: shop-api's journal says so.
    assert "Reloaded shop-api" in m.journal("shop-api.service") or "Reloading shop-api" in m.journal("shop-api.service")
    log = m.journal(UNIT)
    assert "deploy seen release=r2" in log
    assert "rollback verified release=r2 target=r1" in log
    intent = site.events("rollback_intent", release="r2")[0]
    assert intent["rules"] == ["http-5xx-ratio"]
    # The rollback's messages carry the picture of the breach, drawn by matplotlib under the
    # shipped sandbox (MemoryDenyWriteExecute=, the syscall filter, PrivateTmp= for the file).
    try:
        sent = wait_for(lambda: [e for e in site.events("notify_sent") if e["message_kind"] == "rollback_verified"],
                        timeout=60, what="the rolled-back message delivered")
    except TimeoutError:
        raise AssertionError([e for e in site.journal_events() if e["kind"].startswith("notify")],
                             m.journal(UNIT)[-3000:]) from None
    pictured = {e["message_kind"]: e["picture"] for e in site.events("notify_sent")}
    assert pictured.get("rolling_back") is True and sent[0]["picture"] is True, (pictured, log[-3000:])
    bodies = [json.loads(m.run("cat", path).stdout) for path in
              m.run("sh", "-c", f"ls {NOTIFY_SINK_DIR}/*.json").stdout.split()]
    [rolled] = [b for b in bodies if "rolled back r2" in b["title"]]
    [attachment] = rolled["attachments"]
    png = base64.b64decode(attachment["base64"])
    assert attachment["mimetype"] == "image/png" and png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (960, 540)  # the IHDR chunk's width and height


def test_reload_applies_a_changed_rule_table_and_refuses_a_broken_one(site):
    m = site.m
    pid = m.show(UNIT, "MainPID")
    extra = RULES + "  - name: extra-probe\n    http: http://127.0.0.1:8000/health\n    failures: 3\n    action: notify\n"
    m.write("/etc/rollback-watcher/rules/site.yaml", extra)
    m.systemctl("reload", UNIT)
    wait_for(lambda: site.events("config_reloaded", rules=4), timeout=30, what="config_reloaded with 4 rules")
    m.write("/etc/rollback-watcher/rules/site.yaml", extra.replace("failures: 3", "failures: three"))
    m.systemctl("reload", UNIT)
    (refused,) = wait_for(lambda: site.events("reload_refused"), timeout=30, what="reload_refused")
    assert any("failures" in p for p in refused["problems"]), refused
    assert "reload refused" in m.journal(UNIT)
    # Still the same process, still running the four rules it had.
    site.wait_active()
    assert m.show(UNIT, "MainPID") == pid
    assert 'rule="extra-probe"' in http_get(m, f"http://{TELEMETRY}/metrics")[1]
    m.write("/etc/rollback-watcher/rules/site.yaml", RULES)
    m.systemctl("reload", UNIT)
    wait_for(lambda: site.events("config_reloaded", rules=3), timeout=30, what="config_reloaded with 3 rules")


def test_stop_during_a_rollback_finishes_the_switch_first(site):
    """A restart command that takes 6 s (sleep, then systemctl reload) opens the window;
    `systemctl stop` lands in it. The switch and its verification finish, the service exits 0
    well inside TimeoutStopSec, and nothing is left half-way. Leaves r3 bad, r1 current."""
    m = site.m
    reloads = len(site.events("config_reloaded"))
    site.configure(restart="slow")
    m.systemctl("reload", UNIT)
    wait_for(lambda: len(site.events("config_reloaded")) > reloads, timeout=30, what="the slow restart config")
    site.deploy("r3", {"release": "r3", "error_ratio": 0.5})
    wait_for(lambda: site.events("rollback_intent", release="r3"), timeout=90, what="the rollback r3 -> r1 to start")
    started = time.monotonic()
    m.systemctl("stop", UNIT, timeout=200)
    stop_seconds = time.monotonic() - started
    print(f"systemctl stop during the rollback returned after {stop_seconds:.1f}s")
    # The tick in hand switched and probed; "verified" (the fired rule clearing on r1) is
    # confirmed after the restart below, from the confirmation kept in the state.
    assert site.events("rollback_confirming", release="r3", target="r1"), site.journal_events()[-5:]
    assert not site.events("rollback_failed")
    (switched,) = site.events("rollback_switched", release="r3")
    assert "systemctl restart" not in switched["output"], switched["output"]  # the slow reload itself succeeded
    assert site.version() == "r1"
    assert m.show(UNIT, "Result") == "success"
    assert m.show(UNIT, "ExecMainStatus") == "0"
    assert stop_seconds < 60
    site.configure()
    m.systemctl("start", UNIT, timeout=120)
    site.wait_active()
    assert site.events("start")[-1]["release"] == "r1"
    wait_for(lambda: site.events("rollback_verified", release="r3", target="r1"), timeout=90,
             what="the rollback r3 -> r1 to be confirmed after the restart")


def test_watchdog_restarts_a_watcher_whose_tick_hangs_and_the_state_survives(site):
    """Prometheus replaced by a socket that accepts and never answers, the query timeout above
    WatchdogSec (a drop-in, as an operator tunes it): the tick hangs, systemd kills the watcher
    (SIGABRT) and Restart=on-failure starts it again; it reconciles from its state file (r1,
    known-good: no new deploy, no rollback). The site's config is put back at the end."""
    m = site.m
    m.write("/etc/systemd/system/hang.service",
            "[Service]\nExecStart=/usr/bin/python3 -c \"import socket,time; s=socket.create_server(('127.0.0.1', 9099));"
            " c=[s.accept() for _ in range(1000)]\"\n")
    m.write("/etc/systemd/system/rollback-watcher.service.d/watchdog.conf", "[Service]\nWatchdogSec=4s\n")
    m.systemctl("daemon-reload")
    m.systemctl("start", "hang.service")
    restarts = int(m.show(UNIT, "NRestarts"))
    deploys = len(site.events("deploy"))
    try:
        site.configure(prometheus="http://127.0.0.1:9099", timeout="60s")
        # A restart, not a reload: systemd hands WatchdogSec to the process when it starts it.
        m.systemctl("restart", UNIT, timeout=120)
        try:
            wait_for(lambda: int(m.show(UNIT, "NRestarts")) > restarts, timeout=60, what="a watchdog restart")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}:\n{m.journal(UNIT)[-3000:]}") from None
        assert "Watchdog timeout" in m.journal(UNIT)
        site.configure()  # Prometheus back: the restarted watcher sees again
        site.wait_active()
    finally:
        site.configure()
        m.run("rm", "-f", "/etc/systemd/system/rollback-watcher.service.d/watchdog.conf")
        m.systemctl("daemon-reload")
        m.systemctl("stop", "hang.service")
    m.systemctl("restart", UNIT, timeout=120)
    site.wait_active()
    starts = site.events("start")
    assert all(s["release"] == "r1" for s in starts[-2:]), starts[-2:]
    assert len(site.events("deploy")) == deploys  # the restart was no deploy: the state came back
    assert site.version() == "r1"
    status = json.loads(site.as_watcher(CLI, "status", "--config", CONFIG, "--json").stdout)
    assert "r1" in json.dumps(status)


def test_a_second_watcher_on_the_state_dir_exits_78_names_the_holder_and_the_unit_does_not_loop(site):
    """By hand beside the running unit, `run` exits 78 naming the unit's PID. The other way
    round, the unit started while a watcher run by hand holds the state dir: it fails with 78
    once and RestartPreventExitStatus= keeps systemd from starting it again every RestartSec;
    the journal says who holds it. The hand-run watcher goes, the unit is restarted: as found."""
    m = site.m
    main_pid = m.show(UNIT, "MainPID")
    second = site.as_watcher(CLI, "run", "--config", CONFIG, check=False)
    assert second.returncode == 78, second.stdout + second.stderr
    assert second.stderr.startswith("Error: another watcher runs on /var/lib/rollback-watcher: PID " + main_pid)
    assert site.m.show(UNIT, "ActiveState") == "active"

    m.systemctl("stop", UNIT, timeout=120)
    m.systemctl("reset-failed", UNIT, check=False)
    try:
        m.run("systemd-run", "--unit=manual-watcher", "--uid=rollback-watcher", "--property=Type=notify",
              "--property=NotifyAccess=main", CLI, "run", "--config", CONFIG, timeout=120)
        manual_pid = m.show("manual-watcher.service", "MainPID")
        restarts = int(m.show(UNIT, "NRestarts"))
        started = m.systemctl("start", UNIT, check=False, timeout=120)
        assert not started.ok
        time.sleep(12)  # more than RestartSec=5s, twice: a restart loop would have started by now
        assert (m.show(UNIT, "ActiveState"), m.show(UNIT, "ExecMainStatus")) == ("failed", "78")
        assert int(m.show(UNIT, "NRestarts")) == restarts
        log = m.journal(UNIT)
        # Its PID and since when; not its command line: the unit's ProtectProc=invisible and
        # PrivateUsers= hide the other process's /proc (docs/deployment.md says so).
        assert f"Error: another watcher runs on /var/lib/rollback-watcher: PID {manual_pid}, since " in log, log[-2000:]
        assert "status=78/CONFIG" in log
    finally:
        m.systemctl("stop", "manual-watcher.service", check=False, timeout=120)
        m.systemctl("reset-failed", UNIT, check=False)
        m.systemctl("start", UNIT, timeout=120)
    site.wait_active()


def test_operator_greps_the_journal(site):
    log = site.m.journal(UNIT)
    for line in ("watching service=shop-api", "deploy seen release=r2", "rollback verified release=r2 target=r1",
                 "reload refused", "config reloaded rules=4", "stopping: the tick in hand is done"):
        assert line in log, line
    identifiers = site.m.run("journalctl", "-u", UNIT, "-o", "json", "--no-pager").stdout.splitlines()
    fields = [json.loads(x) for x in identifiers if '"MESSAGE"' in x]
    assert {f.get("SYSLOG_IDENTIFIER") for f in fields if "rollback verified" in str(f.get("MESSAGE"))} == {"rollback-watcher"}
    assert PREFIX in site.m.show(UNIT, "ExecStart")


def test_the_docs_checks_of_a_host_run_and_leave_the_state_dir_to_the_watcher(site):
    """docs/deployment.md section 5, as root: each command answers, and none leaves a root-owned
    file in the state dir that the sandboxed watcher (no capabilities) could not read."""
    m = site.m
    m.run("systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}")
    assert "release r1" in m.run(CLI, "status", "--config", CONFIG).stdout
    assert "mark=good release=r1" in m.run(CLI, "history", "--config", CONFIG).stdout
    foreign = m.run("find", "/var/lib/rollback-watcher", "!", "-user", "rollback-watcher").stdout
    assert foreign == "", foreign
    assert m.show(UNIT, "ActiveState") == "active"


def test_the_polkit_rule_in_the_docs_is_the_shipped_one():
    """The rule the tests install (systemd/50-rollback-watcher.rules) is the one an operator reads."""
    repo = Path(__file__).resolve().parents[2]
    shipped = (repo / "systemd" / "50-rollback-watcher.rules").read_text()
    documented = (repo / "docs" / "deployment.md").read_text().split("```js\n", 1)[1].split("```", 1)[0]
    code = [line for line in documented.splitlines() if not line.startswith("//")]
    assert "\n".join(code) in shipped
