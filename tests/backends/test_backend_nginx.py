"""The nginx blue/green backend against a real Debian nginx and two tiny upstream servers.

The fixtures (conftest.py) start nginx on a free loopback port, proxying to whichever slot the
include file names; `blue` serves release r41 and `green` r42.
"""

from __future__ import annotations

import pytest

from watcher.backends.base import Release
from watcher.backends.nginx import NginxBlueGreenBackend
from watcher.base.errors import RollbackError, UnsafeReleaseId


def backend(nginx, upstreams, **options) -> NginxBlueGreenBackend:
    defaults = dict(
        upstream_file=nginx.upstream_file,
        slots={name: u.address for name, u in upstreams.items()},
        nginx=nginx.argv,
        version_url="http://{address}/version",
        timeout=5.0,
    )
    defaults.update(options)
    return NginxBlueGreenBackend(**defaults)


def test_current_and_releases_read_the_active_slot_and_the_versions(nginx, upstreams):
    b = backend(nginx, upstreams)
    assert b.current().id == "r41"
    releases = b.releases()
    assert [r.id for r in releases] == ["r41", "r42"]
    assert releases[1].details == {"slot": "green", "address": upstreams["green"].address, "active": False}


def test_switch_makes_nginx_answer_from_the_other_slot(nginx, upstreams):
    b = backend(nginx, upstreams)
    assert nginx.get().text == "hello from blue"
    b.switch(Release("r42"), reason="test")
    assert nginx.wait_for_body("hello from green") == "hello from green"
    assert b.current().id == "r42"
    assert "# slot green" in nginx.upstream_file.read_text()
    b.switch(Release("r41"))
    assert nginx.wait_for_body("hello from blue") == "hello from blue"


def test_switch_to_the_release_already_active_changes_nothing(nginx, upstreams):
    before = nginx.upstream_file.read_text()
    assert backend(nginx, upstreams).switch(Release("r41")) == ""
    assert nginx.upstream_file.read_text() == before


def test_a_config_that_fails_nginx_t_is_restored_and_nginx_keeps_the_old_slot(nginx, upstreams):
    # Someone left a broken directive in the main config: `nginx -t` now fails.
    nginx.conf.write_text(nginx.conf.read_text().replace("access_log off;", "access_log off; bogus_directive on;"))
    before = nginx.upstream_file.read_text()
    with pytest.raises(RollbackError, match=r"-t` exited 1 .* restored the previous file") as caught:
        backend(nginx, upstreams).switch(Release("r42"))
    assert "bogus_directive" in caught.value.output
    assert nginx.upstream_file.read_text() == before
    assert [nginx.get().text for _ in range(5)] == ["hello from blue"] * 5


def test_a_failed_reload_is_restored_and_nginx_keeps_the_old_slot(nginx, upstreams):
    # `nginx -t` passes, but `-s reload` cannot find the master without its pid file.
    nginx.pid_file.rename(nginx.pid_file.with_suffix(".moved"))
    before = nginx.upstream_file.read_text()
    with pytest.raises(RollbackError, match="reload` exited 1"):
        backend(nginx, upstreams).switch(Release("r42"))
    assert nginx.upstream_file.read_text() == before
    assert [nginx.get().text for _ in range(5)] == ["hello from blue"] * 5
    nginx.pid_file.with_suffix(".moved").rename(nginx.pid_file)  # let the fixture stop it cleanly


def test_an_id_no_slot_serves_is_refused_without_touching_the_file(nginx, upstreams):
    before = nginx.upstream_file.read_text()
    with pytest.raises(RollbackError, match="no slot serves release r40"):
        backend(nginx, upstreams).switch(Release("r40"))
    with pytest.raises(UnsafeReleaseId):
        backend(nginx, upstreams).switch(Release("../../etc"))
    assert nginx.upstream_file.read_text() == before


def test_a_slot_that_does_not_answer_fails_preflight(nginx, upstreams, dead_address):
    # Without a version URL the slot's name is its release id: only a connect tells it is up.
    slots = {"blue": upstreams["blue"].address, "green": dead_address}
    b = backend(nginx, upstreams, version_url=None, slots=slots)
    assert [r.id for r in b.releases()] == ["blue", "green"]
    with pytest.raises(RollbackError, match="slot green .* does not answer"):
        b.switch(Release("green"))
    assert nginx.get().text == "hello from blue"


def test_a_slot_whose_version_url_fails_is_left_out_of_releases(nginx, upstreams, dead_address, caplog):
    b = backend(nginx, upstreams, slots={"blue": upstreams["blue"].address, "green": dead_address})
    assert [r.id for r in b.releases()] == ["r41"]
    assert "slot green left out" in caplog.text


def test_versions_can_come_from_files_and_unsafe_ones_are_refused(nginx, upstreams, tmp_path):
    (tmp_path / "blue.version").write_text("r41\n")
    (tmp_path / "green.version").write_text("../../etc\n")
    b = backend(nginx, upstreams, version_url=None, version_file=str(tmp_path / "{slot}.version"))
    assert b.current().id == "r41"
    assert [r.id for r in b.releases()] == ["r41"]
    (tmp_path / "green.version").write_text("r42\n")
    b.switch(Release("r42"))
    assert nginx.wait_for_body("hello from green") == "hello from green"


def test_an_upstream_file_written_by_a_deploy_script_is_understood(nginx, upstreams):
    nginx.upstream_file.write_text(
        f"server {upstreams['green'].address};\nserver {upstreams['blue'].address} backup;\n"
    )
    assert backend(nginx, upstreams).current().id == "r42"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "names 0 active servers"), ("server 10.0.0.1:80;\n", "none of the slots")],
)
def test_an_upstream_file_naming_no_slot_is_a_clear_error(nginx, upstreams, text, message):
    nginx.upstream_file.write_text(text)
    with pytest.raises(RollbackError, match=message):
        backend(nginx, upstreams).current()


@pytest.mark.parametrize(
    "slots",
    [
        {"blue": "127.0.0.1:1"},
        {"blue": "127.0.0.1:1", "green": "127.0.0.1:2; include /etc/passwd"},
        {"blue": "127.0.0.1:1", "gr een": "127.0.0.1:2"},
        {"blue": "127.0.0.1:1", "green": "127.0.0.1:1"},
    ],
)
def test_slots_that_could_break_the_config_are_refused_at_construction(tmp_path, slots):
    with pytest.raises(ValueError):
        NginxBlueGreenBackend(upstream_file=tmp_path / "u.conf", slots=slots)
