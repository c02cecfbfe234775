"""How a breach's picture travels with a message: drawn on a thread of its own, off the
lanes' and the tick's (PictureMaker), and handed to Apprise as a file (attachment). A picture
never delays a message by more than PictureMaker.wait and never stops one: late, failed or
refused, the message goes without it (notify/notifier.py, notify/lanes.py).

    PictureMaker   draws on its own thread, one picture at a time; whoever needs the PNG waits
                   for it at most `wait` seconds, then goes on without it; `warm` imports
                   matplotlib ahead, while a rollback rule is pending
    attachment     the PNG as a file for Apprise's `attach=` (notify/targets.py), removed after
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from watcher.notify.pictures import BreachPicture, PictureError, render_png

log = logging.getLogger(__name__)


# How long a message waits for its picture. Drawing one takes ~60 ms once matplotlib is
# imported; the import itself (0.3-0.4 s here, over 5 s with both cores saturated, as a
# runaway release can leave its host) is done ahead, while a rollback rule is pending
# (PictureMaker.warm). A picture not ready in time is not worth a late message.
PICTURE_WAIT_S = 5.0
_KEEP = 16  # pictures kept for redeliveries and the other targets of one message


def _import_matplotlib() -> None:
    """The import the first picture would pay for (PictureMaker.warm)."""
    try:
        from matplotlib import figure as _figure  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
    except ImportError as e:
        log.warning("matplotlib is not installed (%s): messages go without pictures", e.name or e)


@dataclass(eq=False)
class _Drawing:
    picture: BreachPicture
    done: threading.Event = field(default_factory=threading.Event)
    png: bytes | None = None
    error: str = ""


_WARM = _Drawing(BreachPicture(rule=""))  # the queue's "import matplotlib now"


class PictureMaker:
    """Draws BreachPictures on its own daemon thread ("notify-pictures"), started by the first
    picture asked for, one picture at a time: a message's targets each ask for the same `key`
    (its id) and share one drawing. `png()` waits at most `wait` seconds and returns None when
    the picture failed or was not ready; the drawing goes on, and a later ask (another target,
    a redelivery) gets it. Never raises."""

    def __init__(self, render: Callable[[BreachPicture], bytes] = render_png, wait: float = PICTURE_WAIT_S,
                 keep: int = _KEEP):
        self.wait = max(0.0, float(wait))
        self._render = render
        self._keep = max(1, keep)
        self._lock = threading.Lock()
        self._drawings: OrderedDict[str, _Drawing] = OrderedDict()
        self._queue: queue.Queue[_Drawing | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._warmed = False

    def warm(self) -> None:
        """Import matplotlib on the drawing thread now, once, so that the first picture does not
        pay for it: the tick asks while a rollback rule is pending or firing, before any message
        with a picture is sent. Never raises, never waits."""
        with self._lock:
            if self._warmed:
                return
            self._warmed = True
            self._queue.put(_WARM)
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notify-pictures", daemon=True)
            self._thread.start()

    def png(self, key: str, picture: BreachPicture) -> bytes | None:
        with self._lock:
            drawing = self._drawings.get(key)
            if drawing is None:
                drawing = self._drawings[key] = _Drawing(picture)
                while len(self._drawings) > self._keep:
                    self._drawings.popitem(last=False)
                self._queue.put(drawing)
                self._start()
        if not drawing.done.wait(self.wait):
            log.warning("picture of %s not ready within %gs, sent without it", picture.rule, self.wait)
            return None
        return drawing.png

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            drawing = self._queue.get()
            if drawing is None:
                return
            if drawing is _WARM:
                _import_matplotlib()
                continue
            try:
                drawing.png = self._render(drawing.picture)
            except PictureError as e:
                drawing.error = str(e)
                log.warning("picture not drawn, messages go without it: %s", e)
            except Exception as e:  # noqa: BLE001 - a picture never takes the notifier down
                drawing.error = f"{type(e).__name__}: {e}"
                log.error("picture not drawn (a bug), messages go without it: %s", drawing.error)
            finally:
                drawing.done.set()


@contextlib.contextmanager
def attachment(png: bytes | None, rule: str) -> Iterator[list[str] | None]:
    """`[path]` of the PNG written as RULE.png in a private temporary directory (the service's
    PrivateTmp=), for Apprise's `attach=`; removed afterwards. None when there is no PNG or
    it cannot be written (a full or read-only /tmp): the message goes without it."""
    if not png:
        yield None
        return
    name = (re.sub(r"[^A-Za-z0-9._-]+", "-", rule).strip("-.") or "breach")[:60] + ".png"
    try:
        folder = tempfile.TemporaryDirectory(prefix="rollback-watcher-picture-")
    except OSError as e:
        log.warning("picture not attached, cannot write it: %s", e)
        yield None
        return
    with folder as path:
        file = os.path.join(path, name)
        try:
            with open(file, "wb") as out:
                out.write(png)
        except OSError as e:
            log.warning("picture not attached, cannot write it: %s", e)
            yield None
            return
        yield [file]


