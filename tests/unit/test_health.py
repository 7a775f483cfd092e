"""The health endpoint answers from the live services on every request (no cache).

kopf's own endpoint cached probe results for 10 s, so "synced" showed up late; this one
must show a change on the very next request.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from kube_guardrails.handlers import health


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_every_request_sees_the_current_state() -> None:
    state: dict[str, Any] = {"workloads": {"synced": False}}
    port = _free_port()
    server = health.HealthServer(endpoint=f"http://127.0.0.1:{port}/healthz", report=lambda: state)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/healthz"
            async with session.get(url) as resp:
                assert resp.status == 200
                assert await resp.json() == {"workloads": {"synced": False}}
            state["workloads"] = {"synced": True}
            async with session.get(url) as resp:
                assert await resp.json() == {"workloads": {"synced": True}}
    finally:
        await server.stop()


@pytest.mark.parametrize("endpoint", ["https://0.0.0.0:8080/healthz", "tcp://0.0.0.0:8080"])
def test_only_http_is_served(endpoint: str) -> None:
    with pytest.raises(ValueError, match="only http"):
        health.HealthServer(endpoint=endpoint, report=dict)
