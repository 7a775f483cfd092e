"""A keyed work queue with de-duplication and retry, for watch-driven reconciling.

kopf's ``@kopf.on.event`` handlers are not retried, and a burst of watch events for one
namespace (its creation, then our own three creates echoing back) should become one
reconcile, not four. So handlers only ``add(key)``; workers take keys one at a time,
never the same key twice in parallel (the Kubernetes client-go workqueue semantics:
a key added while it is being processed is processed again afterwards), run the sync
reconcile function in a thread (the kubernetes client blocks), and on failure retry
the key with exponential backoff. A later successful run resets the backoff.

All methods except :meth:`add_threadsafe` must be called in the event loop's thread.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kube_guardrails import logs

log = logs.get(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        name: str,
        process: Callable[[K], object],
        workers: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 60.0,
    ) -> None:
        self.name = name
        self._process = process
        self._workers = workers
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._order: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # built outside a loop (tests): bound when run() starts
            self._loop = None
        self._started = asyncio.Event()
        self.processed = 0
        self.failed = 0
        self.drained = False  # has the queue been empty once since start()?

    # ------------------------------------------------------------------ adding

    def add(self, key: K) -> None:
        """Queue a key (no-op if already queued and not yet taken)."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._order.append(key)
            self._has_work.set()
            self._idle.clear()

    def add_many(self, keys: list[K]) -> None:
        for key in keys:
            self.add(key)

    def add_threadsafe(self, key: K) -> None:
        """``add`` from another thread (e.g. a reconcile running in a worker thread)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"work queue {self.name} is not bound to an event loop yet")
        loop.call_soon_threadsafe(self.add, key)

    def add_after(self, key: K, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def busy(self) -> int:
        """Keys queued or being processed right now."""
        return len(self._order) + len(self._processing)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Let the workers take keys (keys added before are kept and processed then)."""
        self._started.set()
        if not self._order:
            self.drained = True

    @property
    def started(self) -> bool:
        return self._started.is_set()

    async def wait_idle(self) -> None:
        """Until nothing is queued or being processed (for benchmarks and tests)."""
        while True:
            await self._idle.wait()
            # A key may be re-added right after the idle flag was set.
            if not self._order and not self._processing:
                return
            self._idle.clear()

    async def run(self) -> None:
        """Run the workers until cancelled."""
        self._loop = asyncio.get_running_loop()
        await self._started.wait()
        async with asyncio.TaskGroup() as group:
            for i in range(self._workers):
                group.create_task(self._worker(), name=f"{self.name}-worker-{i}")

    async def _worker(self) -> None:
        while True:
            while not self._order:
                self._has_work.clear()
                await self._has_work.wait()
            key = self._order.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            try:
                await asyncio.to_thread(self._process, key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failed += 1
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self._backoff_base * 2 ** (failures - 1), self._backoff_max)
                log.warning(
                    "reconcile-failed",
                    queue=self.name,
                    key=str(key),
                    attempt=failures,
                    retry_in=round(delay, 2),
                    error=repr(e)[:300],
                )
                self.add_after(key, delay)
            else:
                self.processed += 1
                self._failures.pop(key, None)
            finally:
                self._processing.discard(key)
                if key in self._dirty:  # added again while we were processing it
                    self._order.append(key)
                    self._has_work.set()
                if not self._order and not self._processing:
                    self._idle.set()
                    self.drained = True
