"""A stand-in for the `docker` CLI, for what a real engine cannot produce (digests without a
registry, scripted health sequences against a fake clock): see test_backend_docker.py. The
backend's behaviour against a real dockerd is tested in test_backend_docker_engine.py.

It appends its argv to `calls.jsonl` and answers from `state.json` (both beside
FAKE_DOCKER_STATE), acting like the engine for the commands the docker backend uses:

    {"images": {"repo:tag": "2024-01-02 15:04:05 +0000 UTC", ...},   # image ls order
     "containers": {"app": {"image": "repo:tag", "status": "running", "health": ["healthy"],
                            "ports": ["127.0.0.1:8000:8000"]}},
     "health": {"repo:tag": ["starting", "healthy"]}}   # what a new container of it reports

A container's `health` list is consumed one entry per `inspect`, the last entry repeating;
"none" stands for an image without HEALTHCHECK, "exited" for a container that stopped by itself. Like the engine, `run` refuses a host port
another running container publishes (and leaves the container behind, "created").
"""

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])


def main(args: list[str]) -> int:
    with open(STATE.with_name("calls.jsonl"), "a") as calls:
        calls.write(json.dumps(args) + "\n")
    state = json.loads(STATE.read_text())
    code = dispatch(state, args)
    STATE.write_text(json.dumps(state, indent=1))
    return code


def fail(message: str, code: int = 1) -> int:
    print(f"Error response from daemon: {message}", file=sys.stderr)
    return code


def dispatch(state: dict, args: list[str]) -> int:
    containers, images = state.setdefault("containers", {}), state.setdefault("images", {})
    command, rest = args[0], args[1:]
    if command == "image" and rest[0] == "ls":
        repository = rest[-1]
        for ref, created in images.items():
            repo, _, tag = ref.rpartition(":")
            if repo == repository:
                print(f"{tag}\t{created}")
        return 0
    if command == "image" and rest[0] == "inspect":
        if rest[-1] not in images:
            return fail(f"No such image: {rest[-1]}")
        print("sha256:fake")
        return 0
    if command == "inspect":
        name, template = rest[-1], rest[1]
        if name not in containers:
            return fail(f"No such object: {name}")
        c = containers[name]
        if "Config.Image" in template:
            print(c["image"])
        else:
            health = c["health"][0] if len(c["health"]) == 1 else c["health"].pop(0)
            if health == "exited":  # the container's process ended by itself
                c["status"], health = "exited", "none"
            print(f"{c['status']} {health}")
        return 0
    if command == "run":
        return run(state, rest)
    name = rest[0] if command == "rename" else rest[-1]
    if name not in containers:
        return fail(f"No such container: {name}")
    if command == "stop":
        containers[name]["status"] = "exited"
    elif command == "start":
        containers[name]["status"] = "running"
    elif command == "rm":
        if containers[name]["status"] == "running" and "-f" not in rest:
            return fail(f"cannot remove container {name}: container is running")
        del containers[name]
    elif command == "rename":
        old, new = rest
        if new in containers:
            return fail(f"Conflict. The container name {new} is already in use")
        containers[new] = containers.pop(old)
    elif command == "logs":
        print(f"{name}: listening")
        print(f"{name}: boom", file=sys.stderr)
    else:
        return fail(f"fake docker does not know `{command}`")
    return 0


def run(state: dict, rest: list[str]) -> int:
    ref, options = rest[-1], rest[:-1]
    name = options[options.index("--name") + 1]
    ports = [options[i + 1] for i, o in enumerate(options) if o == "-p"]
    if ref not in state["images"]:
        return fail(f"Unable to find image '{ref}' locally", 125)
    if name in state["containers"]:
        return fail(f'Conflict. The container name "/{name}" is already in use', 125)
    container = {"image": ref, "status": "created", "health": list(state.get("health", {}).get(ref, ["healthy"])),
                 "ports": ports, "options": options}
    state["containers"][name] = container
    host_ports = {p.rsplit(":", 1)[0] for p in ports}
    for other in state["containers"].values():
        if other is not container and other["status"] == "running":
            if host_ports & {p.rsplit(":", 1)[0] for p in other.get("ports", [])}:
                return fail("driver failed programming external connectivity: port is already allocated", 125)
    container["status"] = "running"
    print("f00dcafe" * 8)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
