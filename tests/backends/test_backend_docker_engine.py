"""The docker backend against a real dockerd (Debian's docker.io, its own socket and data root),
with images built here by `docker import` of a busybox-static rootfs (tests/backends/dockerd_rig.py).

Each image serves its tag at / on 8080 (published on a free loopback port); `health=False`
images lack /health, so the HEALTHCHECK the run arguments carry (`docker import` cannot set
one) turns them unhealthy. One dockerd serves the module; every test removes its containers.
What a real engine cannot produce stays in test_backend_docker.py with the fake CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dockerd_rig import HEALTH_ARGS, RUN_ARGS, Dockerd, missing_prerequisites

from support import free_port, wait_for
from watcher.backends.base import Release
from watcher.backends.docker import DockerBackend
from watcher.base.errors import RollbackError

REPO = "localhost/shop-api"
# The seed's rollback-image.sh waits 20 x 3 s; the backend's gate is configurable, and the
# engine's own health check (1 s interval) answers within a few seconds here.
HEALTH_TIMEOUT, HEALTH_INTERVAL = 20.0, 0.5


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("cannot run a real dockerd here; missing: " + "; ".join(missing), pytrace=False)
    daemon = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        daemon.start()
        for tag in ("v1", "v2", "v3"):
            daemon.image(REPO, tag)
        daemon.image(REPO, "broken", health=False)
        daemon.image(REPO, "crash", command=("/bin/busybox", "false"))
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def engine(dockerd: Dockerd) -> Iterator[Dockerd]:
    yield dockerd
    ids = dockerd.cli("ps", "-aq").stdout.split()
    if ids:
        dockerd.cli("rm", "-f", *ids)


@pytest.fixture
def port() -> int:
    return free_port()


def backend(engine: Dockerd, port: int, tmp_path: Path, **options) -> DockerBackend:
    defaults = dict(container="app", image=REPO, ports=(f"127.0.0.1:{port}:8080",), run_args=RUN_ARGS,
                    docker=engine.docker, health_timeout=HEALTH_TIMEOUT, health_interval=HEALTH_INTERVAL,
                    history_file=tmp_path / ".deploy_history")
    defaults.update(options)
    return DockerBackend(**defaults)


def serving(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text.strip()
    except httpx.HTTPError as exc:
        return f"nothing: {exc}"


def deploy(engine: Dockerd, tag: str, port: int, name: str = "app") -> None:
    """What a deploy script does (seed 003's deploy.sh): run the new image, no gate."""
    engine.cli("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", *RUN_ARGS, f"{REPO}:{tag}")
    wait_for(lambda: serving(port) == tag, timeout=20, what=f"{tag} serving")


def test_a_bad_image_is_rolled_back_to_the_previous_good_one_and_recorded(engine, port, tmp_path):
    history = tmp_path / ".deploy_history"
    history.write_text("v3\nv2\nv1\n")
    deploy(engine, "v3", port)
    b = backend(engine, port, tmp_path)
    assert b.current() == Release("v3", location=f"{REPO}:v3")
    assert [r.id for r in b.releases()] == ["v3", "v2", "v1"]
    output = b.switch(Release("v2"), reason="5xx")
    assert serving(port) == "v2"
    assert b.current().id == "v2"
    assert engine.containers() == [f"app {REPO}:v2 running"]  # the old one and any -next are gone
    assert engine.cli("inspect", "--format", "{{.State.Health.Status}}", "app").stdout.strip() == "healthy"
    assert history.read_text() == "v2\nv3\nv1\n"
    assert f"run -d --name app-next -p 127.0.0.1:{port}:8080" in output


def test_a_target_that_turns_unhealthy_is_removed_and_the_old_container_serves_again(engine, port, tmp_path):
    history = tmp_path / ".deploy_history"
    history.write_text("v3\nbroken\n")
    deploy(engine, "v3", port)
    with pytest.raises(RollbackError, match="reports unhealthy.*removed app-next, started app again") as caught:
        backend(engine, port, tmp_path).switch(Release("broken"))
    assert engine.containers() == [f"app {REPO}:v3 running"]
    wait_for(lambda: serving(port) == "v3", timeout=20, what="v3 serving again")
    assert history.read_text() == "v3\nbroken\n"
    assert "docker" in caught.value.output and "logs --tail 50 app-next" in caught.value.output


def test_a_target_still_starting_at_the_deadline_is_removed_and_the_old_one_restarted(engine, port, tmp_path):
    # A long start period keeps a failing check "starting": the gate's timeout decides.
    slow = tuple(a if a != "0s" else "300s" for a in HEALTH_ARGS)
    deploy(engine, "v3", port)
    b = backend(engine, port, tmp_path, run_args=("--init", *slow), health_timeout=3.0)
    with pytest.raises(RollbackError, match=r"not healthy within 3s \(last seen running, health starting\)"):
        b.switch(Release("broken"))
    assert engine.containers() == [f"app {REPO}:v3 running"]
    wait_for(lambda: serving(port) == "v3", timeout=20, what="v3 serving again")


def test_an_image_without_healthcheck_counts_once_seen_running(engine, port, tmp_path):
    deploy(engine, "v3", port)
    backend(engine, port, tmp_path, run_args=("--init",)).switch(Release("v1"))
    assert serving(port) == "v1"
    assert engine.containers() == [f"app {REPO}:v1 running"]


def test_a_target_that_exits_fails_the_switch_and_the_old_one_serves(engine, port, tmp_path):
    deploy(engine, "v3", port)
    with pytest.raises(RollbackError, match="the container is exited"):
        backend(engine, port, tmp_path).switch(Release("crash"))
    assert engine.containers() == [f"app {REPO}:v3 running"]
    wait_for(lambda: serving(port) == "v3", timeout=20, what="v3 serving again")


def test_ports_hidden_in_run_args_clash_and_the_old_container_keeps_serving(engine, port, tmp_path):
    deploy(engine, "v3", port)
    b = backend(engine, port, tmp_path, ports=(), run_args=(*RUN_ARGS, "-p", f"127.0.0.1:{port}:8080"))
    with pytest.raises(RollbackError, match="port is already allocated"):
        b.switch(Release("v1"))
    assert engine.containers() == [f"app {REPO}:v3 running"]
    assert serving(port) == "v3"


def test_without_ports_the_old_container_serves_until_the_new_one_is_healthy(engine, tmp_path):
    engine.cli("run", "-d", "--name", "app", *RUN_ARGS, f"{REPO}:v3")
    b = backend(engine, 0, tmp_path, ports=())
    with pytest.raises(RollbackError, match="unhealthy"):
        b.switch(Release("broken"))
    assert engine.containers() == [f"app {REPO}:v3 running"]
    b.switch(Release("v2"))
    assert engine.containers() == [f"app {REPO}:v2 running"]


def test_a_next_container_left_by_an_interrupted_switch_is_renamed_not_removed(engine, port, tmp_path):
    # The switch stopped after removing the old container: only app-next runs, serving v2.
    deploy(engine, "v2", port, name="app-next")
    with pytest.raises(RollbackError, match="started app again"):
        backend(engine, port, tmp_path).switch(Release("broken"))
    assert engine.containers() == [f"app {REPO}:v2 running"]
    wait_for(lambda: serving(port) == "v2", timeout=20, what="v2 serving again")


def test_a_leftover_stopped_next_container_is_removed_before_the_switch(engine, port, tmp_path):
    deploy(engine, "v3", port)
    engine.cli("create", "--name", "app-next", f"{REPO}:v1")
    backend(engine, port, tmp_path).switch(Release("v2"))
    assert engine.containers() == [f"app {REPO}:v2 running"]


def test_switch_with_no_old_container_starts_the_target(engine, port, tmp_path):
    backend(engine, port, tmp_path).switch(Release("v1"))
    assert serving(port) == "v1"


def test_an_image_missing_on_the_host_fails_preflight_before_anything_stops(engine, port, tmp_path):
    deploy(engine, "v3", port)
    with pytest.raises(RollbackError, match=f"{REPO}:v9 is not on this host"):
        backend(engine, port, tmp_path).switch(Release("v9"))
    assert engine.containers() == [f"app {REPO}:v3 running"]


def test_without_history_releases_are_the_local_images_with_their_build_times(engine, port, tmp_path):
    deploy(engine, "v3", port)
    releases = backend(engine, port, tmp_path, history_file=None).releases()
    assert {r.id for r in releases} == {"v1", "v2", "v3", "broken", "crash"}
    assert all(r.created is not None for r in releases), releases  # the engine's CreatedAt parses
    created = [r.created for r in releases]
    assert created == sorted(created, reverse=True)  # newest first, as the engine lists them


def test_current_of_a_container_of_another_repository_is_refused(engine, port, tmp_path):
    engine.cli("tag", f"{REPO}:v1", "localhost/other:v1")
    try:
        engine.cli("run", "-d", "--init", "--name", "app", "localhost/other:v1")
        with pytest.raises(RollbackError, match=f"not an image of {REPO}"):
            backend(engine, port, tmp_path).current()
    finally:
        engine.cli("rm", "-f", "app")
        engine.cli("rmi", "localhost/other:v1")


def test_current_of_a_missing_container_is_a_clear_error(engine, port, tmp_path):
    with pytest.raises(RollbackError, match="No such object: app"):
        backend(engine, port, tmp_path).current()
