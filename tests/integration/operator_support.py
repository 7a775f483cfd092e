"""Helpers for tests that run the real operator: its memo, and waiting without sleeps.

This module is also a kopf handler module: the ``operator_factory`` fixture loads it
next to the real handler modules (``kopf run -m``), and its startup handler hands the
running operator's memo to the tests, so they can wait for "caught up" (caches synced,
queue idle, status recounted) instead of sleeping. The operator never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner

WAIT_TIMEOUT = 20.0

MEMOS: list[Any] = []


@kopf.on.startup(id="test-capture-memo")
async def capture_memo(memo: kopf.Memo, **_: Any) -> None:
    MEMOS.append(memo)


async def eventually(
    check: Callable[[], Any], *, timeout: float = WAIT_TIMEOUT, what: str = ""
) -> Any:
    """Poll until ``check()`` is truthy (returns it); fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


class Operator:
    """A running operator: its KopfRunner and its memo (settings, services)."""

    def __init__(self, runner: KopfRunner, memo: Any) -> None:
        self.runner = runner
        self.memo = memo

    async def caught_up(self) -> None:
        """Caches synced, nothing queued, and two status recounts with nothing to write."""
        memo = self.memo
        await eventually(lambda: memo.get("runtime") is not None, what="operator startup")
        await eventually(lambda: memo.runtime.queue.started, what="caches synced")
        start = memo.runtime.hardening.published
        await eventually(
            lambda: (
                memo.runtime.queue.busy == 0
                and memo.runtime.admission_queue.busy == 0
                and memo.runtime.hardening.published >= start + 2
                and not memo.runtime.status.pending()
            ),
            what="queue idle and status written",
        )


OperatorFactory = Callable[[], contextlib.AbstractAsyncContextManager[Operator]]
