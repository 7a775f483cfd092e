"""The plan's hardening changes are exactly the writes the operator's reconcile makes.

``plan`` decides with ``builders.planned_change``; the operator's
``services.hardening.HardeningService`` applies the same rules inline. This table runs
both over the same cluster state (the operator against the in-memory gateway of
``test_hardening_service``) and requires the same create / update / delete / conflict
per namespace and kind, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from test_hardening_service import FakeGateway

from kube_guardrails import builders
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.plan import core
from kube_guardrails.services import hardening, policies

OP_NS = "kube-guardrails-system"
VERB = {"create": "create", "update": "patch", "delete": "delete"}


def doc(name: str, uid: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid, "generation": 1}, "spec": spec}


OLD_TEAM = doc("team", "u-team", namespaceSelector={"matchLabels": {"run": "x"}})
STRONG = doc(
    "strong", "u-strong", priority=100, namespaceSelector={"matchLabels": {"strong": "yes"}}
)
NEW_TEAM = doc("team", "", namespaceSelector={"matchLabels": {"tier": "web"}})
NEW_TEAM_QUOTA = doc(
    "team",
    "",
    namespaceSelector={"matchLabels": {"tier": "web"}},
    hardening={
        "resourceQuota": {"enabled": True, "hard": {"pods": "10"}},
        "networkPolicy": {"allowSameNamespace": True},
    },
)
NEW_OTHER = doc("a-first", "", namespaceSelector={})  # same priority, earlier name
NAMESPACES = {
    "a": ({"run": "x", "tier": "web"}, "Active"),
    "b": ({"run": "x", "tier": "web", "strong": "yes"}, "Active"),
    "c": ({"run": "x", "tier": "web"}, "Active"),
    "d": ({"run": "x"}, "Active"),
    "e": ({"run": "x", "tier": "web"}, "Terminating"),
    OP_NS: ({"run": "x", "tier": "web"}, "Active"),
}


def parse(obj: dict[str, Any]) -> policy_model.Policy:
    return policy_model.parse(obj, known_checks=registry.ids())


def live_state() -> dict[tuple[builders.Kind, str], dict[str, Any]]:
    old, strong = parse(OLD_TEAM), parse(STRONG)
    out: dict[tuple[builders.Kind, str], dict[str, Any]] = {}
    edited = builders.build_network_policy("a", old)
    edited["spec"]["policyTypes"] = ["Ingress"]
    edited["spec"].pop("egress", None)
    out[builders.NETWORK_POLICY, "a"] = edited
    for namespace, pol in (("b", strong), ("d", old), ("e", old)):
        for kind, obj in builders.desired_objects(namespace, pol).items():
            if obj is not None:
                out[kind, namespace] = obj
    out[builders.LIMIT_RANGE, "c"] = {
        "metadata": {"name": builders.LIMIT_RANGE_NAME, "namespace": "c", "labels": {}},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}}]},
    }
    return out


def planned(file_docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    live = live_state()
    plan = core.compute(
        policies=[parse(d) for d in file_docs],
        cluster_policies=[parse(OLD_TEAM), parse(STRONG)],
        namespaces=[
            core.Namespace(name=n, labels=labels, terminating=phase == "Terminating")
            for n, (labels, phase) in NAMESPACES.items()
        ],
        managed={(kind.kind, ns): obj for (kind, ns), obj in live.items()},
        workloads=[],
        operator_namespace=OP_NS,
        now=datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC),
    )
    return {
        (VERB.get(c.action, c.action), c.kind, ns.name)
        for ns in plan.namespaces
        for c in ns.changes
        if c.action != "unchanged"
    }


def operator_writes(file_docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """What the operator does once the file is applied (a new policy gets a uid then;
    a replaced one keeps its own, as ``kubectl apply`` keeps the object)."""
    gateway = FakeGateway()
    store = policies.PolicyStore()
    applied = {d["metadata"]["name"] for d in file_docs}
    for d in [OLD_TEAM, STRONG]:
        if d["metadata"]["name"] not in applied:
            store.upsert(d)
    for d in file_docs:
        name = d["metadata"]["name"]
        uid = {"team": "u-team"}.get(name, f"u-new-{name}")
        store.upsert({**d, "metadata": {**d["metadata"], "uid": uid}})
    inventory = hardening.Inventory()
    for name, (labels, phase) in NAMESPACES.items():
        inventory.put_namespace(
            {"metadata": {"name": name, "uid": name, "labels": labels}, "status": {"phase": phase}}
        )
    for (kind, namespace), obj in live_state().items():
        gateway.objects[kind.plural, namespace] = obj
        inventory.put_object(kind, obj, watched=True)
    service = hardening.HardeningService(
        gateway=gateway,
        inventory=inventory,
        policies=store,
        status=None,
        operator_namespace=OP_NS,
    )
    out: set[tuple[str, str, str]] = set()
    for name in NAMESPACES:
        result = service.reconcile(name)
        # The readiness label (a namespace patch) is not a managed object: plan lists
        # the NetworkPolicy / LimitRange / ResourceQuota writes only.
        out.update((w.verb, w.kind, w.namespace) for w in result.writes if w.kind != "Namespace")
        out.update(("conflict", kind, name) for kind in result.skipped_foreign)
    return out


@pytest.mark.parametrize(
    "file_docs",
    [[NEW_TEAM], [NEW_TEAM_QUOTA], [NEW_OTHER], [NEW_TEAM, NEW_OTHER], [OLD_TEAM]],
    ids=["replace-narrower", "replace-with-quota", "new-policy", "two-policies", "unchanged"],
)
def test_plan_equals_the_operators_writes(file_docs: list[dict[str, Any]]) -> None:
    expected = operator_writes(file_docs)
    assert planned(file_docs) == expected
    assert expected  # every case changes something (the stale and edited objects at least)
