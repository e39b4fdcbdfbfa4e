"""The device queue: one holder at a time, interactive before background, a bounded line, timeouts, no leaks."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from serving.device_queue import BACKGROUND, INTERACTIVE, DeviceQueue, QueueFull, QueueTimeout


def test_first_ticket_is_granted_at_once_and_the_next_waits():
    queue = DeviceQueue(max_waiting=4, wait_timeout=5)
    first = queue.enter()
    assert first.granted and queue.busy
    second = queue.enter()
    assert not second.granted and queue.waiting == 1
    first.release()
    assert second.granted and queue.waiting == 0
    second.release()
    assert not queue.busy


def test_interactive_requests_overtake_waiting_background_chunks():
    queue = DeviceQueue(max_waiting=4, wait_timeout=5)
    holder = queue.enter(BACKGROUND)
    job_chunk = queue.enter(BACKGROUND)
    request = queue.enter(INTERACTIVE)
    holder.release()
    assert request.granted and not job_chunk.granted
    request.release()
    assert job_chunk.granted


def test_a_full_line_refuses_interactive_requests_but_never_background_ones():
    queue = DeviceQueue(max_waiting=2, wait_timeout=5)
    queue.enter()
    queue.enter()
    queue.enter()
    with pytest.raises(QueueFull, match="limit 2"):
        queue.enter()
    assert not queue.enter(BACKGROUND).granted  # a job waits its turn instead


def test_a_wait_past_the_timeout_leaves_the_line():
    queue = DeviceQueue(max_waiting=2, wait_timeout=0.2)
    holder = queue.enter()
    waiting = queue.enter()
    started = time.monotonic()
    with pytest.raises(QueueTimeout):
        waiting.wait()
    assert 0.15 < time.monotonic() - started < 2
    assert queue.waiting == 0
    holder.release()
    assert not queue.busy  # the timed-out ticket was not granted afterwards


def test_threads_take_turns_one_at_a_time():
    queue = DeviceQueue(max_waiting=16, wait_timeout=10)
    inside = []
    overlaps = []

    def work() -> None:
        with queue.enter():
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.01)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [1] * 8 and not queue.busy


def test_cancelled_async_wait_releases_its_place():
    queue = DeviceQueue(max_waiting=4, wait_timeout=10)
    holder = queue.enter()
    waiting = queue.enter()

    async def main() -> None:
        with anyio.move_on_after(0.1):
            await waiting.wait_async()

    anyio.run(main)
    assert queue.waiting == 0
    holder.release()
    assert not queue.busy


def test_changes_and_waits_are_reported():
    changes: list[tuple[int, int]] = []
    waits: list[float] = []
    queue = DeviceQueue(max_waiting=4, wait_timeout=5, on_change=lambda *c: changes.append(c), on_granted=waits.append)
    first = queue.enter()
    second = queue.enter()
    first.release()
    second.release()
    assert changes == [(0, 1), (1, 1), (0, 1), (0, 0)]
    assert len(waits) == 2 and all(wait >= 0 for wait in waits)
