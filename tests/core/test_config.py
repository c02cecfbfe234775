"""Config and rule-file validation: every problem as FILE:LINE: KEY: message, all at once."""

import subprocess
import sys
from pathlib import Path

import pytest

from watcher.base.durations import parse_duration
from watcher.base.errors import ConfigError
from watcher.config.load import load_config
from watcher.config.rulefile import load_rule_file
from watcher.core.rules import HostCheck, HttpCheck, PromQuery

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, watcher_yaml: str, rules_yaml: str | None = None) -> Path:
    if rules_yaml is not None:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "r.yaml").write_text(rules_yaml)
    path = tmp_path / "watcher.yaml"
    path.write_text(watcher_yaml)
    return path


MINIMAL = "service: shop\nprometheus: {url: http://127.0.0.1:9090}\nrules: [rules/*.yaml]\nstate_dir: st\n"
RULE = "rules:\n  - name: r\n    query: up\n    below: 1\n    action: rollback\n"


def problems(path, env=None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ=env or {})
    return [str(p) for p in exc.value.problems]


def test_example_config_is_valid_and_has_the_six_default_rules():
    cfg = load_config(REPO / "examples" / "watcher.yaml", environ={})
    assert [r.name for r in cfg.rules] == [
        "http-5xx-ratio", "p95-latency-regression", "oom-kills", "target-down", "cpu-saturation",
        "health-endpoint"]
    assert cfg.interval == 15 and cfg.watch_window == 1800 and cfg.mode == "act"
    assert cfg.backend.type == "symlink" and cfg.backend.options["restart"] == ("systemctl", "reload", "shop-api")
    assert cfg.safety.cooldown == 1800 and cfg.safety.max_auto_rollbacks == 1
    p95 = cfg.rule("p95-latency-regression")
    assert p95.above_baseline == 5 and p95.floor == 0.2 and p95.for_ == 120
    health = cfg.rule("health-endpoint")
    assert isinstance(health.signal, HttpCheck) and health.failures == 3 and health.signal.timeout == 2
    assert cfg.rule("cpu-saturation").action == "notify"
    # min_window defaults to 3 x scrape_interval, max_window to 1m
    assert cfg.min_window == 45 and cfg.max_window == 60


def test_check_command_lists_the_five_rules_and_exits_0():
    out = subprocess.run([sys.executable, "-m", "watcher", "check", "--config", "examples/watcher.yaml"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("http-5xx-ratio", "p95-latency-regression", "oom-kills", "cpu-saturation", "health-endpoint"):
        assert name in out.stdout


def test_broken_config_gets_one_line_per_error_and_exit_1(tmp_path):
    path = write(tmp_path, "service: x\nintervl: 15s\nrules: [rules/*.yaml]\nmode: acting\n",
                 "rules:\n  - name: a\n    query: up\n    action: rollback\n")
    out = subprocess.run([sys.executable, "-m", "watcher", "check", "--config", str(path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert f"{path}:2: intervl: unknown key (did you mean 'interval'?)" in lines
    assert f"{path}:4: mode: 'acting' is not one of act, shadow (did you mean 'act'?)" in lines
    assert any(line.startswith(f"{tmp_path}/rules/r.yaml:2: rule a: above: missing") for line in lines)
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "watcher_yaml, expected",
    [
        (MINIMAL + "interval: 2 m\n", "watcher.yaml:5: interval: '2 m' is not a duration"),
        (MINIMAL + "watch_window: -5s\n", "watcher.yaml:5: watch_window: '-5s' is not a duration"),
        (MINIMAL + "interval: 15\n", "watcher.yaml:5: interval: expected a duration"),
        (MINIMAL + "error_limit: many\n", "watcher.yaml:5: error_limit: expected a whole number"),
        (MINIMAL + "safety: {cooldwn: 5m}\n", "watcher.yaml:5: safety.cooldwn: unknown key (did you mean 'cooldown'?)"),
        (MINIMAL + "backend: {type: symlnk}\n", "watcher.yaml:5: backend.type: 'symlnk' is not one of"),
        (MINIMAL + "backend: {type: symlink, releases: r}\n", "watcher.yaml:5: backend.current: is required"),
        (MINIMAL + "backend:\n  type: symlink\n  releases: r\n  current: c\n  restart: systemctl reload x\n",
         "watcher.yaml:9: backend.restart: must be a list of arguments (argv), never a shell string"),
        (MINIMAL + "verify: {url: localhost:8000}\n", "watcher.yaml:5: verify.url: expected an http:// or https:// URL"),
        (MINIMAL + "telemetry: {listen: 0.0.0.0:9464}\n", "telemetry.listen: 0.0.0.0 is not a loopback address"),
        (MINIMAL + "notify:\n  - url: slack://${SLACK_TOKEN}\n", "watcher.yaml:6: notify[0].url: environment variable SLACK_TOKEN is not set"),
        (MINIMAL.replace("rules/*.yaml", "nope/*.yaml"), "watcher.yaml:3: rules[0]: 'nope/*.yaml' matches no rule file"),
        ("prometheus: {url: http://x:9090}\nrules: [rules/*.yaml]\n", "watcher.yaml:1: service: is required"),
        ("service: [a\n", "watcher.yaml:2: "),  # YAML syntax error with a line
        ("- a\n- b\n", "watcher.yaml:1: expected a mapping of settings at the top"),
        ("", "watcher.yaml:1: the file is empty"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path, watcher_yaml, expected):
    path = write(tmp_path, watcher_yaml, RULE)
    found = problems(path)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(tmp_path)) for p in found)


@pytest.mark.parametrize(
    "rules_yaml, expected",
    [
        ("rules:\n  - name: a\n    query: up\n    action: rollback\n", "r.yaml:2: rule a: above: missing: a query rule needs"),
        ("rules:\n  - name: a\n    above: 1\n    action: rollback\n", "r.yaml:2: rule a: query: missing: a rule reads"),
        ("rules:\n  - name: a\n    query: up\n    above: 1\n    action: restart\n", "r.yaml:5: rule a: action: 'restart' is not one of rollback, notify"),
        ("rules:\n  - name: a\n    query: up\n    above: 1\n", "r.yaml:2: rule a: action: is required"),
        ("rules:\n  - name: a\n    query: up\n    abov: 1\n    action: rollback\n", "r.yaml:4: rule a: abov: unknown key (did you mean 'above'?)"),
        ("rules:\n  - name: a\n    query: up\n    above: 1\n    for: 2 m\n    action: rollback\n", "r.yaml:5: rule a: for: '2 m' is not a duration"),
        ("rules:\n  - name: a\n    query: 'sum(rate(x[5m])'\n    above: 1\n    action: rollback\n", "r.yaml:3: rule a: query: invalid PromQL: unclosed left parenthesis"),
        ("rules:\n  - name: a\n    query: '   '\n    above: 1\n    action: rollback\n", "r.yaml:3: rule a: query: must not be empty"),
        ("rules:\n  - name: a\n    query: 'rate(x[$windw])'\n    above: 1\n    action: rollback\n", "r.yaml:3: rule a: query: unknown placeholder"),
        ("rules:\n  - {name: a, query: up, above: 1, action: rollback}\n  - {name: a, query: up, above: 2, action: rollback}\n",
         "r.yaml:3: rule a: name: duplicate rule name (first defined at"),
        ("rules:\n  - name: a\n    http: http://127.0.0.1/h\n    above: 1\n    action: rollback\n", "r.yaml:4: rule a: above: does not apply to `http:` rules"),
        ("rules:\n  - name: a\n    host: unit_restarts\n    action: rollback\n", "r.yaml:3: rule a: unit: is required for host: unit_restarts"),
        ("rules:\n  - name: a\n    query: up\n    above: 1\n    floor: 0.2\n    action: rollback\n", "r.yaml:5: rule a: floor: only applies together with `above_baseline`"),
        ("rules:\n  - name: a\n    query: up\n    http: http://x/\n    above: 1\n    action: rollback\n", "r.yaml:4: rule a: http: a rule reads one signal"),
        ("rules:\n  - name: a\n    query: up\n    above: 1\n    no_data: fail\n    action: rollback\n", "r.yaml:5: rule a: no_data: 'fail' is not one of ok, keep, breach"),
        ("nope: 1\n", "r.yaml:1: rules: a rule file holds a mapping with a `rules:` list"),
    ],
)
def test_rule_errors_name_file_line_and_key(tmp_path, rules_yaml, expected):
    path = write(tmp_path, MINIMAL, rules_yaml)
    found = problems(path)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, MINIMAL + "interval: 2 m\nmode: x\n",
                 "rules:\n  - {name: a, query: up, action: rollback}\n  - {name: b, query: up, above: 1, action: x}\n")
    found = problems(path)
    assert len(found) == 4, found


def test_env_vars_are_expanded(tmp_path):
    path = write(tmp_path, MINIMAL + "notify:\n  - url: ntfy://127.0.0.1:1/${TOPIC}\n", RULE)
    cfg = load_config(path, environ={"TOPIC": "shop"})
    assert cfg.notify[0].url == "ntfy://127.0.0.1:1/shop"


def test_paths_are_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, MINIMAL + "backend: {type: symlink, releases: rel, current: cur}\n", RULE)
    cfg = load_config(path, environ={})
    assert cfg.backend.options["releases"] == tmp_path / "rel"
    assert cfg.state_dir == tmp_path / "st"


def test_host_rule_defaults_to_any_growth(tmp_path):
    path = write(tmp_path, "service: s\nrules: [rules/*.yaml]\n",
                 "rules:\n  - name: oom\n    host: oom_kills\n    path: /tmp/vmstat\n    window: 1m\n    action: rollback\n")
    rule = load_config(path, environ={}).rules[0]
    assert isinstance(rule.signal, HostCheck) and rule.above == 0 and rule.signal.window == 60
    assert rule.signal.path == "/tmp/vmstat"


def test_window_placeholder_is_checked_with_max_window_put_in(tmp_path):
    rules = load_rule_file(REPO / "rules" / "default.yaml")
    assert isinstance(rules[0].signal, PromQuery) and "[$window]" in rules[0].signal.query


def test_a_dollar_inside_a_promql_string_is_the_query_s_own_not_a_placeholder(tmp_path):
    query = 'max(label_replace(up, "port", "$1", "instance", ".*:(.*)")) < 1'
    path = write(tmp_path, "service: s\nprometheus: {url: http://127.0.0.1:9090}\nrules: [rules/*.yaml]\n",
                 f"rules:\n  - name: r\n    query: '{query}'\n    above: 0\n    action: notify\n")
    assert load_config(path, environ={}).rules[0].signal.query == query


def test_a_dollar_outside_a_string_is_still_an_unknown_placeholder(tmp_path):
    path = write(tmp_path, "service: s\nprometheus: {url: http://127.0.0.1:9090}\nrules: [rules/*.yaml]\n",
                 "rules:\n  - name: r\n    query: rate(x[$range])\n    above: 0\n    action: notify\n")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_config(path, environ={})


def test_not_utf8_is_a_config_error_with_a_line(tmp_path):
    (tmp_path / "watcher.yaml").write_bytes(b"service: x\nrules: [\xff]\n")
    found = problems(tmp_path / "watcher.yaml")
    assert found == [f"{tmp_path}/watcher.yaml:2: not UTF-8 text"]


def test_alias_bomb_is_refused(tmp_path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
    (tmp_path / "watcher.yaml").write_text(bomb)
    found = problems(tmp_path / "watcher.yaml")
    assert "too large" in found[0]


@pytest.mark.parametrize("text, seconds", [("15s", 15), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1d", 86400), (0, 0),
                                           # decimals, as systemd and Go accept them
                                           ("0.5s", 0.5), ("1.5m", 90), ("1.5h30m", 7200), (".5s", 0.5), ("2.5ms", 0.0025)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2 m", "-5s", "5", "1.5", "1.s", "m", "", "1.5 m", "+1s", None, True, 15, 0.5])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_backend_option_the_backend_refuses_is_a_config_error_with_a_line(tmp_path):
    path = write(tmp_path, MINIMAL + "backend:\n  type: docker\n  container: api\n  image: ghcr.io/x/api:v1\n", RULE)
    found = problems(path)
    assert any("watcher.yaml:6: backend: image 'ghcr.io/x/api:v1' must be a repository" in p for p in found), found
