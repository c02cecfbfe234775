"""The docker backend against a fake `docker` executable, for what a real engine cannot produce.

test_backend_docker_engine.py runs the backend against a real dockerd. What stays here needs
the fake (tests/backends/fake_docker.py, first on PATH as `docker`, recording every argv and
answering from a small JSON state file):
- digests: an image only gets a digest from a registry, and none runs here;
- exact health sequences and timings ("starting", "starting", "healthy" against a fake clock
  that only the backend's `sleep` advances): a real engine's checks run on its own timer;
- image listing order between images created within the same second, and argv-level checks
  (nothing called for an unsafe id; the exact `docker run` line with --env-file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from watcher.backends.base import Release
from watcher.backends.docker import DockerBackend
from watcher.base.errors import RollbackError, UnsafeReleaseId

REPO = "ghcr.io/acme/api"
DIGEST = "sha256:" + "ab" * 32


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Engine:
    """The fake engine's state file and the calls it received."""

    def __init__(self, root: Path):
        self.state_file = root / "state.json"
        self.calls_file = root / "calls.jsonl"

    def set(self, **state) -> None:
        self.state_file.write_text(json.dumps(state))

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    @property
    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def commands(self) -> list[str]:
        """Calls as short strings, without the read-only ones."""
        reads = ("inspect", "image", "logs")
        return [" ".join(c[:1] + c[-1:]) for c in self.calls if c[0] not in reads]


@pytest.fixture
def engine(tmp_path: Path, monkeypatch) -> Engine:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    source = Path(__file__).with_name("fake_docker.py").read_text()
    docker.write_text(f"#!{sys.executable}\n{source}")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(tmp_path / "state.json"))
    e = Engine(tmp_path)
    e.set(
        images={f"{REPO}:r42": "2024-03-02 10:00:00 +0000 UTC", f"{REPO}:r41": "2024-03-01 10:00:00 +0000 UTC"},
        containers={"app": {"image": f"{REPO}:r42", "status": "running", "health": ["healthy"],
                            "ports": ["127.0.0.1:8000:8000"]}},
    )
    return e


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def backend(tmp_path: Path, clock: FakeTime, **options) -> DockerBackend:
    defaults = dict(
        container="app",
        image=REPO,
        ports=("127.0.0.1:8000:8000",),
        env_file=tmp_path / "production.env",
        run_args=("--restart", "always"),
        health_timeout=5.0,
        health_interval=1.0,
        sleep=clock.sleep,
        clock=clock.clock,
    )
    defaults.update(options)
    return DockerBackend(**defaults)


# --- switch --------------------------------------------------------------------------------


def test_healthy_new_container_replaces_the_old_and_is_recorded_in_history(tmp_path, engine, clock):
    history = tmp_path / ".deploy_history"
    history.write_text("r42\nr41\nr40\n")
    engine.set(**{**engine.state, "health": {f"{REPO}:r41": ["starting", "starting", "healthy"]}})
    b = backend(tmp_path, clock, history_file=history)
    output = b.switch(Release("r41"), reason="5xx")
    assert engine.commands() == ["rm app-next", "stop app", f"run {REPO}:r41", "stop app", "rm app", "rename app"]
    run = next(c for c in engine.calls if c[0] == "run")
    assert run == ["run", "-d", "--name", "app-next", "-p", "127.0.0.1:8000:8000",
                   "--env-file", str(tmp_path / "production.env"), "--restart", "always", f"{REPO}:r41"]
    assert engine.state["containers"] == {
        "app": {**engine.state["containers"]["app"], "image": f"{REPO}:r41", "status": "running"}
    }
    assert history.read_text() == "r41\nr42\nr40\n"
    assert b.current().id == "r41"
    assert clock.now == 2.0  # two polls said "starting"
    assert "run -d --name app-next" in output


def test_unhealthy_report_fails_at_once_without_waiting_out_the_timeout(tmp_path, engine, clock):
    engine.set(**{**engine.state, "health": {f"{REPO}:r41": ["starting", "unhealthy"]}})
    with pytest.raises(RollbackError, match="reports unhealthy"):
        backend(tmp_path, clock).switch(Release("r41"))
    assert clock.now == 1.0
    assert engine.state["containers"]["app"]["status"] == "running"


def test_image_without_healthcheck_counts_as_healthy_after_running_three_intervals(tmp_path, engine, clock):
    engine.set(**{**engine.state, "health": {f"{REPO}:r41": ["starting", "none"]}})
    backend(tmp_path, clock, health_interval=2.0, health_timeout=10.0).switch(Release("r41"))
    assert engine.state["containers"]["app"]["image"] == f"{REPO}:r41"
    assert clock.now == 2.0 + 3 * 2.0


def test_a_digest_release_runs_by_digest(tmp_path, engine, clock):
    ref = f"{REPO}@{DIGEST}"
    engine.set(**{**engine.state, "images": {**engine.state["images"], ref: "2024-01-01 00:00:00 +0000 UTC"}})
    b = backend(tmp_path, clock)
    b.switch(Release(DIGEST))
    assert b.current().id == DIGEST
    assert b.current().location == ref


# --- preflight and unsafe ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "message"),
    [("../../etc", "path separator"), ("r1\n", "control character"), ("a b", "not a docker tag"),
     ("-rm", "not a docker tag"), ("sha256:xyz", "not a docker tag")],
)
def test_unsafe_tags_are_refused_without_calling_docker(tmp_path, engine, clock, tag, message):
    with pytest.raises(UnsafeReleaseId, match=message):
        backend(tmp_path, clock).switch(Release(tag))
    assert engine.calls == []


# --- releases and current ------------------------------------------------------------------


def test_history_file_is_read_newest_first_skipping_blanks_duplicates_and_unsafe_lines(tmp_path, engine, clock, caplog):
    history = tmp_path / ".deploy_history"
    history.write_text(f"r42\n\n# comment\nr41\nbad tag\n../../etc\nr42\n{DIGEST}\nr40\n")
    releases = backend(tmp_path, clock, history_file=history).releases()
    assert [r.id for r in releases] == ["r42", "r41", DIGEST, "r40"]
    assert releases[2].location == f"{REPO}@{DIGEST}"
    assert "not a docker tag" in caplog.text and "path separator" in caplog.text


def test_the_running_release_is_listed_first_when_the_history_misses_it(tmp_path, engine, clock):
    history = tmp_path / ".deploy_history"
    history.write_text("r41\nr40\n")
    assert [r.id for r in backend(tmp_path, clock, history_file=history).releases()] == ["r42", "r41", "r40"]


def test_history_keeps_its_length_and_at_least_five_lines(tmp_path, engine, clock):
    history = tmp_path / ".deploy_history"
    history.write_text("r42\nr37\nr36\nr35\nr34\n")
    backend(tmp_path, clock, history_file=history).switch(Release("r41"))
    assert history.read_text() == "r41\nr42\nr37\nr36\nr35\n"


def test_without_history_releases_come_from_local_images_in_docker_order(tmp_path, engine, clock):
    images = {f"{REPO}:r42": "2024-03-02 10:00:00 +0000 UTC", f"{REPO}:<none>": "2024-03-01 12:00:00 +0000 UTC",
              f"{REPO}:r41": "2024-03-01 10:00:00 +0000 UTC", "other/app:r99": "2024-03-03 10:00:00 +0000 UTC"}
    engine.set(**{**engine.state, "images": images})
    releases = backend(tmp_path, clock).releases()
    assert [r.id for r in releases] == ["r42", "r41"]
    assert releases[1].created == 1709287200.0
    assert ["image", "ls", "--format", "{{.Tag}}\t{{.CreatedAt}}", REPO] in engine.calls


def test_an_image_with_a_tag_is_refused_as_the_repository(tmp_path, clock):
    with pytest.raises(ValueError, match="without a tag"):
        backend(tmp_path, clock, image="ghcr.io/acme/api:latest")
    backend(tmp_path, clock, image="localhost:5000/api")  # a registry port is not a tag
