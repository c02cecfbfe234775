"""Stopping a daemon a rig started in its own session (`start_new_session=True`)."""

from __future__ import annotations

import os
import signal
import subprocess


def terminate_then_kill(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the daemon itself, so that it shuts down in order (dockerd stops its
    containers, systemd-nspawn its machine); if it has not exited after `timeout` seconds,
    SIGKILL to its whole process group, and wait for it. A process that has exited already is
    left alone."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
