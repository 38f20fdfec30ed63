"""A one-slot box holding only the newest item: the hand-over between a capture thread and a consumer.

A slow consumer never builds a backlog: each ``put`` replaces what was not yet taken (counted as dropped),
so the consumer always works on the newest frame and latency stays at one frame, not a growing queue.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameBox(Generic[T]):
    """Thread-safe single slot: ``put`` overwrites, ``take`` waits for an item or a wake-up."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._woken = False
        self.dropped = 0  # items replaced before anyone took them
        self.put_count = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (removing it), or None after ``timeout`` seconds or a :meth:`wake`."""
        with self._cond:
            if self._item is None and not self._woken:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._woken = False
            return item

    def wake(self) -> None:
        """Make a waiting ``take`` return now (used on stop)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._item = None
            self.dropped = 0
            self.put_count = 0
