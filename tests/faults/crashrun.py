"""`rollback-watcher run` that SIGKILLs itself at one step of a rollback (CRASH_AT):

    intent    the intent is journaled and saved; the switch is about to be made
    switched  the symlink moved (and the restart command ran); nothing journaled yet
    verify    the switch is journaled; the first verify probe is about to be sent

SIGKILL at an exact instruction boundary is what a timer-based kill can only hit by luck. Only
the moment is injected: the process runs the real CLI, backend, state store and probe.
"""

import os
import signal
import sys

from watcher.backends.symlink import SymlinkBackend
from watcher.cli import app as cli
from watcher.signals.probe import HttpProbe

CRASH_AT = os.environ["CRASH_AT"]
_switch, _probe = SymlinkBackend.switch, HttpProbe.probe
_switched = []


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def switch(self, target, reason="", progress=None):
    if CRASH_AT == "intent":
        _die()
    out = _switch(self, target, reason, progress)
    _switched.append(target.id)
    if CRASH_AT == "switched":
        _die()
    return out


def probe(self, check):
    if CRASH_AT == "verify" and _switched:
        _die()
    return _probe(self, check)


SymlinkBackend.switch = switch
HttpProbe.probe = probe
sys.argv = ["rollback-watcher", *sys.argv[1:]]
cli.main()
