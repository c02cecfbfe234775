"""Log lines reach journald with their own priority (`journalctl -p warning` must show a warning).

journald itself is exercised under a real systemd in tests/host; here the CLI's side of the
contract: with `$JOURNAL_STREAM` naming stdout, every line carries a `<N>` prefix; without it,
or when it names another file, no line does."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from support import wait_for
from watcher.base.logs import SyslogPrefixFormatter, journald_stream, syslog_priority


@pytest.mark.parametrize("level, priority", [
    (logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6), (logging.DEBUG, 7),
    (logging.WARNING + 5, 4), (1, 7),
])
def test_python_levels_map_to_syslog_priorities(level, priority):
    assert syslog_priority(level) == priority


def test_every_line_of_a_multiline_record_gets_the_prefix():
    formatter = SyslogPrefixFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("w", logging.WARNING, __file__, 1, "first\nsecond", None, None)
    assert formatter.format(record) == "<4>WARNING first\n<4>second"


def test_journal_stream_is_recognised_only_for_the_named_file(tmp_path):
    out = (tmp_path / "out").open("w")
    other = (tmp_path / "other").open("w")
    st = os.fstat(out.fileno())
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    assert journald_stream(out, env)
    assert not journald_stream(other, env)
    assert not journald_stream(out, {})
    assert not journald_stream(out, {"JOURNAL_STREAM": "garbage"})
    assert not journald_stream(io.StringIO(), env)


def _run_with_stdout(tmp_path, journal_stream: bool) -> str:
    """`rollback-watcher run` on a symlink host against a closed Prometheus port: it logs INFO
    lines at start and a WARNING when the rule goes blind; stopped once that is written."""
    cfg = tmp_path / "watcher.yaml"
    (tmp_path / "rules.yaml").write_text("rules:\n  - {name: up, query: 'vector(1)', above: 2, action: notify}\n")
    cfg.write_text(f"service: s\ninterval: 1s\nprometheus: {{url: 'http://127.0.0.1:9', timeout: 1s}}\n"
                   f"rules: [rules.yaml]\nstate_dir: {tmp_path / 'state'}\ntelemetry: false\n"
                   f"backend: {{type: symlink, releases: '{tmp_path / 'releases'}', current: '{tmp_path / 'current'}'}}\n")
    (tmp_path / "releases" / "r1").mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/r1")
    path = tmp_path / ("journal" if journal_stream else "plain")
    with path.open("w") as fh:
        st = os.fstat(fh.fileno())
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journal_stream:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(cfg)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: "level=WARNING" in path.read_text(), timeout=60, what="a WARNING line")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return path.read_text()


def test_run_under_journald_prefixes_lines_with_their_priority(tmp_path):
    out = _run_with_stdout(tmp_path, journal_stream=True)
    log_lines = [line for line in out.splitlines() if "level=" in line]
    assert log_lines, out
    assert all(line.startswith("<") for line in log_lines), out
    assert any(line.startswith("<4>") and "level=WARNING" in line for line in log_lines), out
    assert any(line.startswith("<6>") and "level=INFO" in line for line in log_lines), out


def test_run_on_a_terminal_or_file_writes_no_prefix(tmp_path):
    out = _run_with_stdout(tmp_path, journal_stream=False)
    assert "level=WARNING" in out, out
    assert not any(line.startswith("<") for line in out.splitlines()), out
