"""Read ahead in a background thread, so parsing overlaps with the engine.

The CSV scanner and PROJ release the GIL, so on two cores reading chunk
k + 1 runs while chunk k is projected and advanced.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield from ``items``, producing up to ``depth`` items ahead in a thread.

    An exception raised by ``items`` is raised here, in the consumer, at the
    point it occurred; abandoning the iterator stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        """Queue an item unless the consumer has gone; False when it has."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, not lost
            put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # release the file the reader holds

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
