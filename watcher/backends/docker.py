"""One container per service, rolled back by running an older image of the same repository.

Release ids are image tags (`a4f91c2`, `v1.2.3`) or digests (`sha256:<64 hex>`, run as
`image@sha256:...`). Newest first they come from `history_file` (seed 003's `.deploy_history`:
one id per line, newest first) or else from `docker image ls`, which orders by build time.

The switch starts the target as `<container>-next`, waits for it to be healthy, then removes
the old container and renames the new one. Two containers cannot publish the same host port,
so with `ports` set the old container is *stopped* (not removed) first, as seed 004's
rollback-image.sh does; unlike that script, a new container that never gets healthy is removed
and the old one started again, so the host is never left with nothing running. Without
`ports` (a container reached through a network or a proxy) both run side by side and the
old one serves until the new one is healthy.

Healthy means `docker inspect` reports health "healthy"; for an image without HEALTHCHECK,
"running" throughout 3 x `health_interval`. "unhealthy" or an exit fails at once. A switch
interrupted after the old container was removed left `<container>-next` as all that runs:
the next switch renames it back first instead of removing it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from watcher.backends.base import Option, OptionKind, Release, argv_identity, check_release_id
from watcher.base.errors import RollbackError, UnsafeReleaseId
from watcher.base.files import write_file_atomically
from watcher.base.process import CommandResult, run_or_127, transcript

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0  # seconds for one docker CLI call; `docker stop` alone may take 10
HISTORY_KEEP = 5  # lines a history file keeps at least, as seed 003's does
# An image without HEALTHCHECK counts as healthy once seen running for this many intervals.
RUNNING_INTERVALS = 3

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STATE_FORMAT = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"


class DockerBackend:
    # The keys of `backend:` for `type: docker`.
    OPTIONS = {
        "container": Option(OptionKind.TEXT, required=True),
        "image": Option(OptionKind.TEXT, required=True),
        "history_file": Option(OptionKind.PATH),
        "ports": Option(OptionKind.TEXTS),
        "env_file": Option(OptionKind.PATH),
        "run_args": Option(OptionKind.ARGV),
        "docker": Option(OptionKind.ARGV),
        "health_timeout": Option(OptionKind.DURATION),
        "health_interval": Option(OptionKind.DURATION),
    }

    @staticmethod
    def identity(options: Mapping[str, Any]) -> str:
        """What this backend acts on: the container, on the daemon its docker argv names
        (`docker -H ...` is another host)."""
        return f"docker:{argv_identity(options.get('docker') or ['docker'])}:{options['container']}"

    def __init__(
        self,
        container: str,
        image: str,
        history_file: Path | None = None,
        ports: tuple[str, ...] = (),
        env_file: Path | None = None,
        run_args: tuple[str, ...] = (),
        docker: tuple[str, ...] = ("docker",),
        health_timeout: float = 60.0,
        health_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not _NAME.match(container):
            raise ValueError(f"container name {container!r} is not a valid docker name")
        if re.search(r"[:@]", image.rsplit("/", 1)[-1]):
            raise ValueError(f"image {image!r} must be a repository without a tag or digest")
        self.container = container
        self.next_container = f"{container}-next"
        self.image = image
        self.history_file = Path(history_file) if history_file else None
        self.ports = tuple(ports)
        self.env_file = env_file
        self.run_args = tuple(run_args)
        self.docker = tuple(docker)
        self.health_timeout = health_timeout
        self.health_interval = health_interval
        self.sleep = sleep
        self.clock = clock

    def reference(self, release_id: str) -> str:
        """The image reference for a release id; refuses anything not a tag or a digest."""
        check_release_id(release_id)
        if _DIGEST.match(release_id):
            return f"{self.image}@{release_id}"
        if _TAG.match(release_id):
            return f"{self.image}:{release_id}"
        raise UnsafeReleaseId(f"release id {release_id!r} is not a docker tag or sha256 digest")

    def releases(self) -> list[Release]:
        """Newest first; the running release is put first when the history does not name it."""
        found = self._history() if self.history_file else self._local_images()
        try:
            current = self.current()
        except RollbackError as e:
            log.warning("listing releases without the current one: %s", e.reason)
            return found
        if current.id not in {r.id for r in found}:
            found.insert(0, current)
        return found

    def _history(self) -> list[Release]:
        found, seen = [], set()
        for line in self._history_lines():
            try:
                ref = self.reference(line)
            except UnsafeReleaseId as e:
                log.warning("skipping a line of %s: %s", self.history_file, e.reason)
                continue
            if line not in seen:
                seen.add(line)
                found.append(Release(line, location=ref))
        return found

    def _history_lines(self) -> list[str]:
        if self.history_file is None:
            return []
        try:
            text = self.history_file.read_text()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RollbackError(f"cannot read {self.history_file}: {e.strerror}") from e
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("#")]

    def _local_images(self) -> list[Release]:
        result = self._docker("image", "ls", "--format", "{{.Tag}}\t{{.CreatedAt}}", self.image)
        found = []
        for line in result.output.splitlines():
            tag, _, created = line.partition("\t")
            if tag in ("", "<none>"):
                continue
            try:
                found.append(Release(tag, location=self.reference(tag), created=_parse_created(created)))
            except UnsafeReleaseId as e:
                log.warning("skipping an image of %s: %s", self.image, e.reason)
        return found

    def current(self) -> Release:
        ref = self._docker("inspect", "--format", "{{.Config.Image}}", self.container).output.strip()
        if "@" in ref:
            repository, release_id = ref.split("@", 1)
        elif ref.rfind(":") > ref.rfind("/"):
            repository, release_id = ref.rsplit(":", 1)
        else:
            repository, release_id = ref, "latest"
        if repository != self.image:
            raise RollbackError(f"container {self.container} runs {ref}, not an image of {self.image}")
        self.reference(release_id)
        return Release(release_id, location=ref)

    def preflight(self, target: Release) -> None:
        """The target image must be on this host already: a rollback must not wait on a
        registry, and an image that cannot be pulled must be found out before anything stops."""
        ref = self.reference(target.id)
        result = self._run("image", "inspect", "--format", "{{.Id}}", ref)
        if not result.ok:
            raise RollbackError(f"image {ref} is not on this host (pull it first)", transcript([result]))

    def switch(self, target: Release, reason: str = "") -> str:
        self.preflight(target)
        ref = self.reference(target.id)
        done: list[CommandResult] = []
        old_status = self._status(self.container)[0]
        if old_status is None and self._status(self.next_container)[0] is not None:
            # A switch stopped between removing the old container and the rename: the `-next`
            # one may be all that runs. Finish that switch rather than remove it.
            done.append(self._docker("rename", self.next_container, self.container))
            old_status = self._status(self.container)[0]
        # Any other `-next` is a leftover of ours, and its name would block the run.
        done.append(self._run("rm", "-f", self.next_container))
        stop_first = bool(self.ports) and old_status in ("running", "restarting", "paused")
        if stop_first:
            done.append(self._docker("stop", self.container))
        run = ["run", "-d", "--name", self.next_container]
        for port in self.ports:
            run += ["-p", port]
        if self.env_file:
            run += ["--env-file", str(self.env_file)]
        done.append(self._run(*run, *self.run_args, ref))
        if done[-1].ok:
            problem = self._wait_healthy()
        else:
            problem = f"`docker run` failed: {(done[-1].stderr or done[-1].output).strip()}"
        if problem:
            done.append(self._run("logs", "--tail", "50", self.next_container))
            done.append(self._run("rm", "-f", self.next_container))
            message = f"{ref} did not start: {problem}; removed {self.next_container}"
            if stop_first:
                restarted = self._run("start", self.container)
                done.append(restarted)
                message += (
                    f", started {self.container} again"
                    if restarted.ok
                    else f", and {self.container} could NOT be started again: nothing is running"
                )
            raise RollbackError(message, transcript(done))
        if old_status is not None:
            for step in (("stop", self.container), ("rm", self.container)):
                done.append(self._run(*step))
                if not done[-1].ok:
                    raise RollbackError(
                        f"{ref} is healthy as {self.next_container}, but the old {self.container} "
                        f"could not be removed: {done[-1].describe()}",
                        transcript(done),
                    )
        done.append(self._run("rename", self.next_container, self.container))
        if not done[-1].ok:
            raise RollbackError(
                f"{ref} is serving as {self.next_container}; renaming it to {self.container} failed",
                transcript(done),
            )
        log.info("switched %s to %s (%s)", self.container, ref, reason or "no reason given")
        if self.history_file:
            self._record(target.id)
        return transcript(done)

    def _wait_healthy(self) -> str:
        """"" once the new container is healthy, else why not. Fails at once on `unhealthy`
        or an exit: waiting longer would only keep the service down."""
        deadline = self.clock() + self.health_timeout
        running_since = None
        while True:
            status, health = self._status(self.next_container)
            # The status first: the engine reports an exited container's health as
            # "unhealthy", and "it exited" is what the operator needs to read.
            if status in (None, "exited", "dead", "removing"):
                return f"the container is {status or 'gone'}"
            if health == "healthy":
                return ""
            if health == "unhealthy":
                return "its health check reports unhealthy"
            if health == "none" and status == "running":
                running_since = self.clock() if running_since is None else running_since
                if self.clock() - running_since >= RUNNING_INTERVALS * self.health_interval:
                    return ""
            else:
                running_since = None
            if self.clock() >= deadline:
                return f"not healthy within {self.health_timeout:g}s (last seen {status}, health {health})"
            self.sleep(self.health_interval)

    def _status(self, name: str) -> tuple[str | None, str]:
        """(status, health) of a container; status None when it does not exist."""
        result = self._run("inspect", "--format", _STATE_FORMAT, name)
        if not result.ok:
            return None, "none"
        status, _, health = result.output.strip().partition(" ")
        return status, health or "none"

    def _record(self, release_id: str) -> None:
        """Prepend the new current to the history, as the deploy script does (seed 003)."""
        if self.history_file is None:
            return
        try:
            old = self._history_lines()
            lines = [release_id] + [line for line in old if line != release_id]
            write_file_atomically(self.history_file, "\n".join(lines[: max(len(old), HISTORY_KEEP)]) + "\n")
        except (OSError, RollbackError) as e:
            # The switch is done and healthy; a stale history must not turn it into a failure.
            log.error("switched to %s but could not update %s: %s", release_id, self.history_file, e)

    def _run(self, *args: str) -> CommandResult:
        # stderr apart: docker's warnings must not be read as an image name.
        return run_or_127(self.docker + args, COMMAND_TIMEOUT, split_stderr=True)

    def _docker(self, *args: str) -> CommandResult:
        result = self._run(*args)
        if not result.ok:
            said = (result.stderr or result.output).strip()
            raise RollbackError(f"{result.describe()}: {said}", transcript([result]))
        return result


def _parse_created(text: str) -> float | None:
    # `docker image ls` prints e.g. "2024-01-02 15:04:05 +0100 CET".
    try:
        return datetime.strptime(" ".join(text.split()[:3]), "%Y-%m-%d %H:%M:%S %z").timestamp()
    except ValueError:
        return None
