"""A real Kubernetes API server for the integration tests whose truth lives there.

Schema and CEL validation, server-side defaulting, ownerReference garbage collection,
the Eviction API with PodDisruptionBudgets and uid preconditions: an emulator can only
repeat what its author believed about these. Such tests take the ``real_api`` fixture,
which connects to the cluster of the current kube context (``KUBECONFIG``;
``.ci/run`` points it at ``../shared/kube``'s control plane) and skips with the reason
when there is none. The same safety rule as the e2e suite applies: only contexts that
look like test clusters (kind-, k3d-, ... or a name containing "test"/"e2e") are used,
unless ``KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1``.

Requests go through the operator's own client (``kube_guardrails.k8s.client``), so the
tests exercise the code paths the operator uses.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import secrets
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import kubernetes
import yaml

from kube_guardrails import API_GROUP, PLURAL
from kube_guardrails.k8s import client as k8s_client

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_FILES = sorted((ROOT / "crds").glob("*.yaml"))
LABEL_RUN = "integration.kube-guardrails.io/run"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "kube-guardrails-tests"


def _e2e_harness() -> ModuleType:
    """tests/e2e/e2e_harness.py (the context safety rule), loaded from its file.

    tests/e2e is not a package and is on ``sys.path`` only when pytest collects it.
    """
    if "e2e_harness" in sys.modules:
        return sys.modules["e2e_harness"]
    spec = importlib.util.spec_from_file_location(
        "e2e_harness", ROOT / "tests" / "e2e" / "e2e_harness.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_harness"] = module
    spec.loader.exec_module(module)
    return module


class RealApi:
    """A connected client, the context it came from, and this session's run id."""

    def __init__(self, api_client: Any, context: str) -> None:
        self.api_client = api_client
        self.context = context
        self.run = secrets.token_hex(3)

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return k8s_client.request(self.api_client, method, path, **kwargs)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        return k8s_client.get_or_none(self.api_client, path)

    def delete(self, path: str) -> None:
        k8s_client.delete_ignoring_missing(self.api_client, path)

    def apply(self, obj: dict[str, Any], path: str) -> dict[str, Any]:
        """Server-side apply (what ``kubectl apply --server-side`` sends)."""
        return self.request(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type=APPLY_PATCH,
        )

    def name(self, what: str) -> str:
        return f"it-{self.run}-{what}-{secrets.token_hex(2)}"[:63]


def connect() -> tuple[RealApi | None, str]:
    """The real API server of the current kube context, or (None, why the tests skip)."""
    no_cluster = (
        "no Kubernetes API server configured: set KUBECONFIG to a test cluster "
        "(.ci/run starts ../shared/kube; locally: kind create cluster or ../shared/kube/cluster up)"
    )
    try:
        _, active = kubernetes.config.list_kube_config_contexts()
    except Exception as e:  # no kube config at all, or an unreadable one
        return None, f"{no_cluster} ({type(e).__name__})"
    context = str((active or {}).get("name") or "")
    refusal = _e2e_harness().context_refusal(context, os.environ)
    if refusal:
        return None, refusal
    try:
        api_client = k8s_client.make_api_client(context=context)
        k8s_client.request(api_client, "GET", "/version", timeout=(3.0, 5.0))
    except Exception as e:
        return None, f"{no_cluster}; context {context!r} does not answer ({type(e).__name__})"
    return RealApi(api_client, context), ""


def install_crd(api: RealApi) -> None:
    """Apply crds/ (server-side) and wait until the API server serves the kind."""
    for path in CRD_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                name = doc["metadata"]["name"]
                api.apply(doc, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{API_GROUP}"

    def established() -> bool:
        crd = api.get_or_none(crd_path) or {}
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )

    wait_for(established, what="the GuardrailPolicy CRD Established")


def wait_for(check: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until truthy (the server's controllers work asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
