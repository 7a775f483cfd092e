"""The operator's health endpoint: ``GET /healthz``, answered fresh on every request.

kopf's own liveness endpoint caches its probe results for 10 seconds (hard-coded in
``kopf._core.engines.probing``), so it reported "synced" about 10 s after the caches
were. This endpoint serves the same report (one key per component, as kopf's did) from
the live services on every request; building it reads a few counters, so there is
nothing worth caching. It answers 200 as long as the event loop runs (that is what
liveness means: a standby replica that waits for the lease is alive too); ``synced``
in the body says whether the caches are complete.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp.web

from kube_guardrails import logs

log = logs.get(__name__)

Report = Callable[[], dict[str, Any]]


class HealthServer:
    """A tiny aiohttp server: one GET path, a JSON body built by ``report``."""

    def __init__(self, *, endpoint: str, report: Report) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "http":
            raise ValueError(f"liveness endpoint {endpoint!r}: only http:// is supported")
        self.host = parts.hostname or "0.0.0.0"
        self.port = parts.port or 80
        self.path = parts.path or "/healthz"
        self._report = report
        self._runner: aiohttp.web.AppRunner | None = None

    async def _get(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(self._report())

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get(self.path, self._get)])
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health-serving", url=f"http://{self.host}:{self.port}{self.path}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
