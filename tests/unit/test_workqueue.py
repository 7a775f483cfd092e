"""WorkQueue: de-duplication, no parallel runs of one key, retry with backoff."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kube_guardrails.services import workqueue


async def run_until_idle(queue: workqueue.WorkQueue[str]) -> None:
    task = asyncio.create_task(queue.run())
    queue.start()
    try:
        await asyncio.wait_for(queue.wait_idle(), timeout=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_keys_added_before_start_are_processed_once_each() -> None:
    seen: list[str] = []
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(name="t", process=seen.append)
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    await run_until_idle(queue)
    assert sorted(seen) == ["a", "b", "c"]
    assert queue.processed == 3 and queue.drained


async def test_a_key_added_while_processing_runs_again_after_not_in_parallel() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []
    gate = threading.Event()
    queues: list[workqueue.WorkQueue[str]] = []

    def process(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs.append(key)
        if len(runs) == 1:
            queues[0].add_threadsafe("a")  # changed again while we are on it
            gate.wait(5)
        running.discard(key)

    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(name="t", process=process)
    queues.append(queue)
    queue.add("a")
    task = asyncio.create_task(queue.run())
    queue.start()
    while len(runs) < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # give a wrong implementation the chance to start "a" again
    gate.set()
    await asyncio.wait_for(queue.wait_idle(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == ["a", "a"] and overlaps == []


async def test_failures_are_retried_with_backoff_until_success() -> None:
    attempts: list[str] = []

    def process(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise ConnectionError("API down")

    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        name="t", process=process, backoff_base=0.01
    )
    queue.add("ns")
    task = asyncio.create_task(queue.run())
    queue.start()
    while queue.processed < 1:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == ["ns", "ns", "ns"] and queue.failed == 2
