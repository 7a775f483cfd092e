"""The admission service against a real API server: what it stores, it does not rewrite.

The API server defaults fields of ValidatingAdmissionPolicies and bindings that the
generator leaves out; "write only when changed" must see through that. These tests
apply a policy's generated objects with the operator's own gateway, read them back as
the watch would deliver them, and check that a second pass writes nothing, that an edit
by someone else is put back with one patch, and that deleting the GuardrailPolicy
removes everything (ownerReference, garbage collector).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import real_api
from real_api import RealApi

from kube_guardrails import API_GROUP, API_VERSION, KIND, PLURAL, admission
from kube_guardrails.k8s import admission as k8s_admission
from kube_guardrails.services import admission as service_module
from kube_guardrails.services import policies

POLICIES = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
KINDS = (service_module.VAP, service_module.BINDING)


def _world(api: RealApi, spec: dict[str, Any]) -> tuple[service_module.AdmissionService, str]:
    name = api.name("adm")
    stored = api.request(
        "POST",
        POLICIES,
        body={
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "labels": {real_api.LABEL_RUN: api.run}},
            "spec": spec,
        },
    )
    store = policies.PolicyStore()
    store.upsert(stored)
    service = service_module.AdmissionService(
        gateway=k8s_admission.Gateway(api.api_client),
        inventory=service_module.Inventory(),
        policies=store,
        operator_namespace="kube-guardrails-system",
        clock=lambda: datetime.datetime.now(datetime.UTC),
    )
    return service, name


def _as_watched(api: RealApi, service: service_module.AdmissionService, policy: str) -> None:
    """Fill the inventory with what the server holds now (what the watch would deliver)."""
    for kind in KINDS:
        for name in admission.all_names(policy):
            live = api.get_or_none(k8s_admission.path(kind, name))
            if live is None:
                service.inventory.remove(kind, name)
            else:
                service.inventory.put(kind, live, watched=True)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"mode": "Enforce"}, id="enforce-baseline"),
        pytest.param(
            {
                "mode": "Audit",
                "excludeNamespaces": ["team-*"],
                "namespaceSelector": {
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]
                },
                "workloads": {
                    "podSecurity": "restricted",
                    "checks": {"imageRegistry": {"allowed": ["registry.example.com/"]}},
                    "exemptions": [
                        {
                            "namespaces": ["legacy-*"],
                            "selector": {"matchLabels": {"app": "old"}},
                            "checks": ["runAsNonRoot"],
                            "reason": "vendor image",
                            "expires": "2099-01-01T00:00:00Z",
                        }
                    ],
                },
            },
            id="audit-restricted-exemption-selector",
        ),
    ],
)
def test_applied_once_then_no_writes_and_edits_restored(
    real_api_session: RealApi, spec: dict[str, Any]
) -> None:
    api = real_api_session
    service, name = _world(api, spec)
    try:
        first = service.reconcile(name)
        assert [w.verb for w in first.writes] == ["create"] * len(first.writes) and first.writes
        _as_watched(api, service, name)
        assert service.reconcile(name).writes == []  # defaults and all: nothing to write

        deny_or_warn = first.writes[0].name
        path = k8s_admission.path(service_module.VAP, deny_or_warn)
        api.request(
            "PATCH",
            path,
            body={
                "metadata": {"labels": {"app.kubernetes.io/managed-by": None}},
                "spec": {"auditAnnotations": [{"key": "x", "valueExpression": "'y'"}]},
            },
            content_type="application/merge-patch+json",
        )
        _as_watched(api, service, name)
        assert [(w.verb, w.name) for w in service.reconcile(name).writes] == [
            ("patch", deny_or_warn)
        ]
        restored = api.get_or_none(path) or {}
        assert "auditAnnotations" not in restored["spec"]
        _as_watched(api, service, name)
        assert service.reconcile(name).writes == []
    finally:
        api.delete(f"{POLICIES}/{name}")
    real_api.wait_for(
        lambda: (
            not any(
                api.get_or_none(k8s_admission.path(kind, n))
                for kind in KINDS
                for n in admission.all_names(name)
            )
        ),
        what="the admission objects garbage-collected with their policy",
    )
