"""Fixtures: the kmock API emulator, a kube config for it, and the real operator.

The operator runs through ``kopf.testing.KopfRunner`` (kopf's CLI in a thread with its
own event loop) with the real handler modules; the emulator runs in the test's event
loop. Both kopf and the kubernetes client reach the emulator through a kube config
written to a temporary file (``KUBECONFIG`` + ``KUBE_GUARDRAILS_CONTEXT``), exactly as
they would reach a cluster. Tests are async so that the emulator keeps serving while
they wait; leaving the runner is done in a thread for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import kmock_support
import operator_support
import pytest
import real_api
from kopf.testing import KopfRunner
from operator_support import Operator, OperatorFactory, eventually  # noqa: F401  (re-exported)

from kube_guardrails import API_GROUP, API_VERSION, PLURAL, logs
from kube_guardrails.handlers import main as operator_main

POLICIES = f"{API_GROUP}/{API_VERSION}/{PLURAL}"


@pytest.fixture(autouse=True)
def structured_logs() -> None:
    """Our structlog records go through stdlib logging, so pytest shows them on failure."""
    logs.configure(fmt="console", level="debug")


@pytest.fixture()
async def emulator() -> AsyncIterator[kmock_support.GuardrailsEmulator]:
    async with kmock_support.GuardrailsEmulator() as handler, kmock.Server(handler):
        yield handler


@pytest.fixture()
def kubeconfig(
    emulator: kmock_support.GuardrailsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = kmock_support.write_kubeconfig(tmp_path / "kubeconfig", server=str(emulator.url))
    monkeypatch.setenv("KUBECONFIG", str(path))
    env = {
        "KUBE_GUARDRAILS_CONTEXT": "kmock",
        "KUBE_GUARDRAILS_STATUS_INTERVAL_SECONDS": "0.2",
        "KUBE_GUARDRAILS_RESYNC_SECONDS": "600",
        "KUBE_GUARDRAILS_WORKLOADS": "false",
        "KUBE_GUARDRAILS_LOG_LEVEL": "debug",
        # One in-process operator against an emulator that has no Leases.
        "KUBE_GUARDRAILS_LEADER_ELECTION": "false",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return path


@pytest.fixture()
def operator_factory(kubeconfig: Path) -> OperatorFactory:
    """Start the real operator (any number of times, one at a time) against the emulator."""

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[operator_support.Operator]:
        modules = operator_main.handler_modules(operator_main.settings_from_env())
        args = ["run", "--standalone", "--all-namespaces"]
        for module in [operator_main.__name__, *modules, operator_support.__name__]:
            args += ["-m", module]
        before = len(operator_support.MEMOS)
        runner = KopfRunner(args, timeout=30)
        runner.__enter__()
        try:
            await eventually(lambda: len(operator_support.MEMOS) > before, what="operator memo")
            yield operator_support.Operator(runner, operator_support.MEMOS[-1])
        finally:
            await asyncio.to_thread(runner.__exit__, None, None, None)

    return start


@pytest.fixture()
async def operator(operator_factory: OperatorFactory) -> AsyncIterator[operator_support.Operator]:
    async with operator_factory() as running:
        yield running


@pytest.fixture()
def api(emulator: kmock_support.GuardrailsEmulator) -> Callable[..., Awaitable[Any]]:
    """``await api(method, path, json=...)`` -> (status, body) against the emulator."""

    async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        if method == "PATCH":
            kwargs.setdefault("headers", {"Content-Type": "application/merge-patch+json"})
        async with emulator.request(method, path, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    return call


# --------------------------------------------------------------------- the real API server


@pytest.fixture(scope="session")
def real_api_session() -> real_api.RealApi:
    """The real API server of the current kube context, CRD installed; skips without one."""
    api, reason = real_api.connect()
    if api is None:
        pytest.skip(reason)
    real_api.install_crd(api)
    return api


@pytest.fixture()
def real_namespace(real_api_session: real_api.RealApi) -> Iterator[str]:
    """A fresh namespace on the real API server, deleted (in the background) afterwards."""
    api = real_api_session
    name = api.name("ns")
    api.request(
        "POST",
        "/api/v1/namespaces",
        body={"metadata": {"name": name, "labels": {real_api.LABEL_RUN: api.run}}},
    )
    real_api.wait_for(
        lambda: api.get_or_none(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        what=f"the default ServiceAccount of {name} (pods are refused before it exists)",
    )
    yield name
    api.delete(f"/api/v1/namespaces/{name}")
