"""Fixtures for the admission tests against a real API server.

They run when a kube config points at a test cluster (``../shared/kube/cluster up`` and
``eval "$(../shared/kube/cluster env)"``, or kind/k3d), and are skipped with the reason
otherwise. Everything they create carries the label ``kube-guardrails.io/test-run`` and is
deleted at the end of the session.
"""

from __future__ import annotations

import pathlib
import sys
import uuid
from collections.abc import Iterator

import pytest

HERE = pathlib.Path(__file__).resolve().parent
# The check fixtures and the upstream case table live with the engine's tests.
for extra in (HERE, HERE.parent / "checks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import admission_kube  # noqa: E402

RUN_LABEL = "kube-guardrails.io/test-run"


@pytest.fixture(scope="session")
def kube() -> admission_kube.Client:
    client, reason = admission_kube.Client.connect()
    if client is None:
        pytest.skip(reason)
    return client


@pytest.fixture(scope="session")
def run_id(kube: admission_kube.Client) -> Iterator[str]:
    run = uuid.uuid4().hex[:8]
    yield run
    selector = {"labelSelector": f"{RUN_LABEL}={run}"}
    for path in (admission_kube.VAPB, admission_kube.VAP):
        kube.call("DELETE", path, query=selector)
    for ns in kube.must("GET", admission_kube.NAMESPACES, query=selector).get("items") or []:
        kube.delete(f"{admission_kube.NAMESPACES}/{ns['metadata']['name']}")
