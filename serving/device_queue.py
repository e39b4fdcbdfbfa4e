"""One synthesis on the device at a time, in a bounded, fair line, instead of BentoML's ``max_concurrency``.

BentoML's ``traffic.max_concurrency`` counts every route (voice listings and ``/normalize`` would get 429 while
one synthesis runs) and a running task holds a slot for its whole run, so the device is serialised here:

- ``enter()`` takes a place in line or raises ``QueueFull`` at once when ``max_waiting`` requests already wait;
- the holder of the device is chosen by priority (interactive requests before background jobs), then arrival;
- ``Ticket.wait()`` blocks (a worker thread) until the device is this ticket's, or raises ``QueueTimeout``;
- ``Ticket.release()`` hands the device to the next ticket; releasing a ticket still waiting just leaves the line.

Background jobs take one ticket per chunk, so interactive requests slip in between a long job's chunks.
The queue is thread-based (the engine runs in worker threads); async code waits through ``wait_async``.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable

import anyio

INTERACTIVE = 0
BACKGROUND = 1


class QueueFull(RuntimeError):
    """Too many requests already wait for the device."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(f"{waiting} requests already wait for the device (limit {limit}, PTBR_QUEUE_MAX_WAITING)")


class QueueTimeout(RuntimeError):
    """A request waited longer than its limit for the device."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"waited {waited:.1f} s for the device without getting it (PTBR_QUEUE_TIMEOUT_S)")


class Ticket:
    def __init__(self, queue: DeviceQueue, priority: int, order: int) -> None:
        self._queue = queue
        self.priority = priority
        self.order = order
        self.entered = time.monotonic()
        self.granted_at: float | None = None
        self._granted = threading.Event()
        self._done = False

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.priority, self.order)

    @property
    def granted(self) -> bool:
        return self._granted.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until this ticket holds the device; on timeout leave the line and raise QueueTimeout."""
        limit = self._queue.wait_timeout if timeout is None else timeout
        if not self._granted.wait(limit):
            # Also right when the grant came in the instant after the timeout: release() passes the device on.
            self.release()
            raise QueueTimeout(time.monotonic() - self.entered)

    async def wait_async(self, timeout: float | None = None) -> None:
        """``wait`` from async code without blocking the event loop; cancellation leaves the line cleanly."""
        try:
            await anyio.to_thread.run_sync(self.wait, timeout, abandon_on_cancel=True)
        except BaseException:
            self.release()
            raise

    def _grant(self) -> None:
        self.granted_at = time.monotonic()
        self._granted.set()

    def release(self) -> None:
        self._queue._release(self)

    def __enter__(self) -> Ticket:
        self.wait()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class DeviceQueue:
    def __init__(
        self,
        max_waiting: int,
        wait_timeout: float,
        on_change: Callable[[int, int], None] | None = None,
        on_granted: Callable[[float], None] | None = None,
    ) -> None:
        """``on_change(waiting, in_flight)`` after every change; ``on_granted(seconds_waited)`` for each grant."""
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self._on_change = on_change
        self._on_granted = on_granted
        self._lock = threading.Lock()
        self._waiting: list[Ticket] = []
        self._holder: Ticket | None = None
        self._counter = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return self._holder is not None

    def enter(self, priority: int = INTERACTIVE) -> Ticket:
        """A place in line (granted at once when the device is free); QueueFull when the line is full.

        Background tickets never count against ``max_waiting`` and are never refused: a job waits for its turn."""
        with self._lock:
            waiting_interactive = sum(1 for ticket in self._waiting if ticket.priority == INTERACTIVE)
            if priority == INTERACTIVE and self._holder is not None and waiting_interactive >= self.max_waiting:
                raise QueueFull(waiting_interactive, self.max_waiting)
            ticket = Ticket(self, priority, next(self._counter))
            self._waiting.append(ticket)
            self._waiting.sort(key=lambda queued: queued.sort_key)
            granted = self._grant_next_locked()
            waiting, in_flight = len(self._waiting), int(self._holder is not None)
        self._notify(waiting, in_flight, granted)
        return ticket

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._done:
                return
            ticket._done = True
            if self._holder is ticket:
                self._holder = None
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            granted = self._grant_next_locked()
            waiting, in_flight = len(self._waiting), int(self._holder is not None)
        self._notify(waiting, in_flight, granted)

    def _grant_next_locked(self) -> Ticket | None:
        if self._holder is not None or not self._waiting:
            return None
        self._holder = self._waiting.pop(0)
        self._holder._grant()
        return self._holder

    def _notify(self, waiting: int, in_flight: int, granted: Ticket | None) -> None:
        if self._on_change is not None:
            self._on_change(waiting, in_flight)
        if granted is not None and self._on_granted is not None and granted.granted_at is not None:
            self._on_granted(granted.granted_at - granted.entered)
