"""Fuzzing what users and other programs write (issue 10, part 2). Bounded by the hypothesis
profile in conftest.py: 200 examples a test under `make test`, 5000 under `make fuzz`.

    config and rule files   only ConfigError, each problem naming its file
    Prometheus replies      only SourceError (the parser, and the source over a real socket)
    release ids, --to       path tricks are refused before any path is built
"""

from __future__ import annotations

import json

import yaml
from faultlib import FakePrometheus
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from watcher.backends.base import check_release_id
from watcher.backends.symlink import SymlinkBackend
from watcher.base.errors import ConfigError, RollbackError, SourceError, UnsafeReleaseId
from watcher.config.load import load_config
from watcher.core.rules import Sample
from watcher.signals.prometheus import PrometheusSource, parse_vector

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.sampled_from(["1e999999", "9" * 400, "-.inf", ".nan", "0x1F", "${NOPE}", "${HOME}", "~"]))
keys = st.one_of(st.sampled_from(["service", "interval", "rules", "backend", "prometheus", "notify", "telemetry",
                                  "state_dir", "verify", "safety", "name", "query", "http", "above", "for", "action",
                                  "url", "timeout", "listen", "type", "releases", "current"]), st.text(max_size=8))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(keys, kids, max_size=5)), max_leaves=25)

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


def _documents():
    dumped = trees.map(lambda t: yaml.safe_dump(t, allow_unicode=True).encode())
    nested = st.integers(1, 5000).map(lambda n: ("[" * n + "]" * n).encode())
    nested_maps = st.integers(1, 3000).map(lambda n: ("{a: " * n + "1" + "}" * n).encode())
    return st.one_of(dumped, st.binary(max_size=300), nested, nested_maps,
                     st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.just(BOMB.encode()), st.just(b"\xff\xfe\x00bad"))


def _assert_config_error_only(path):
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file, p
            assert "Traceback" not in str(p)
    # a document may also be a valid config: then nothing is raised


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_documents())
@example(doc=BOMB.encode())
@example(doc=b"service: x\nrules: [" + b"9" * 5000 + b"]\n")
def test_fuzz_config_loader_raises_only_config_error(tmp_path, doc):
    path = tmp_path / "watcher.yaml"
    path.write_bytes(doc)
    _assert_config_error_only(path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_documents(), rule=st.lists(st.dictionaries(keys, trees, max_size=6), max_size=3))
def test_fuzz_rule_files_raise_only_config_error(tmp_path, doc, rule):
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(doc if len(doc) % 2 else yaml.safe_dump({"rules": rule}).encode())
    config = tmp_path / "watcher.yaml"
    config.write_text(json.dumps({"service": "s", "rules": [str(rules)], "prometheus": {"url": "http://127.0.0.1:1"},
                                  "state_dir": str(tmp_path / "state"), "telemetry": False}))
    _assert_config_error_only(config)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
              st.sampled_from(["NaN", "+Inf", "-Inf", "1e400", "0x10", "", " 1 "])),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(["metric", "value", "values",
                                                                                       "job", "x"]), kids, max_size=3)),
    max_leaves=20)


@given(result=json_values)
def test_fuzz_parse_vector_raises_only_source_error(result):
    try:
        samples = parse_vector(result)
    except SourceError:
        return
    assert all(isinstance(s, Sample) and isinstance(s.value, float) for s in samples)


def _reply_bodies():
    envelope = json_values.map(lambda r: json.dumps({"status": "success", "data": {"resultType": "vector", "result": r}}))
    return st.one_of(envelope, json_values.map(json.dumps), st.text(max_size=100))


@settings(max_examples=min(settings().max_examples, 100))
@given(body=_reply_bodies(), status=st.sampled_from([200, 200, 200, 400, 422, 500, 503]))
def test_fuzz_prometheus_source_over_a_socket_raises_only_source_error(body, status):
    server = _fuzz_server()
    data = body.encode("utf-8", "surrogatepass")
    server.mode = "raw"
    server.raw = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                  "Connection: close\r\n\r\n").encode() + data
    try:
        samples = PrometheusSource(server.url, timeout=2.0).query("up")
    except SourceError:
        return
    assert all(isinstance(s.value, float) for s in samples)


_SERVER: list[FakePrometheus] = []


def _fuzz_server() -> FakePrometheus:
    if not _SERVER:
        _SERVER.append(FakePrometheus())
    return _SERVER[0]


TRICKS = ["..", ".", "../r1", "r1/..", "/etc", "r1/../../etc", "a\x00b", "r1\n", "..\\r1", "", "x" * 300, "r1/"]


@given(rid=st.one_of(st.sampled_from(TRICKS), st.text(max_size=40),
                     st.lists(st.sampled_from(["..", ".", "/", "r1", "\\", "\x00", "etc", "%2e%2e"]), max_size=6).map("".join)))
def test_fuzz_release_ids_with_path_tricks_are_refused(tmp_path_factory, rid):
    try:
        checked = check_release_id(rid)
    except UnsafeReleaseId:
        return
    assert "/" not in checked and "\\" not in checked and "\x00" not in checked and checked not in (".", "..")


def test_fuzz_rollback_to_path_tricks_refused_by_the_symlink_preflight(tmp_path):
    """The same tricks as `rollback --to` arguments, through the symlink backend's preflight,
    with a directory outside `releases/` that a trick could reach."""
    from watcher.backends.base import Release

    releases = tmp_path / "releases"
    (releases / "r1").mkdir(parents=True)
    (releases / "r1" / "f").write_text("x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("x")
    (releases / "link").symlink_to(tmp_path / "outside")
    (releases / "empty").mkdir()
    current = tmp_path / "current"
    current.symlink_to(releases / "r1")
    backend = SymlinkBackend(releases=releases, current=current)
    for rid in [*TRICKS, "../outside", "link", "empty", "missing"]:
        try:
            backend.preflight(Release(rid))
        except RollbackError:
            continue
        raise AssertionError(f"preflight accepted {rid!r}")
    backend.preflight(Release("r1"))
