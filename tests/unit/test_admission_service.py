"""The admission use case against a fake gateway: situation -> exactly these writes."""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from kube_guardrails import admission
from kube_guardrails.services import admission as service_module
from kube_guardrails.services import policies, status

VAP, BINDING = service_module.VAP, service_module.BINDING
NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
DENY, WARN = admission.all_names("p")


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


@dataclasses.dataclass
class FakeGateway:
    objects: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    writes: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    events: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    version: int = 1

    def _stored(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        out = copy.deepcopy(dict(obj))
        out["metadata"]["resourceVersion"] = str(self.version)
        out["metadata"].setdefault("uid", f"obj-{self.version}")
        # What the API server adds on storing: a default that we do not set.
        out["spec"].setdefault("matchConstraints" if out["kind"] == VAP else "matchResources", {})
        return out

    def create(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.writes.append(("create", kind, name))
        stored = self.objects[kind, name] = self._stored(obj)
        return copy.deepcopy(stored)

    def patch(self, kind: str, *, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch", kind, name))
        stored = self.objects[kind, name] = self._stored(_merge(self.objects[kind, name], patch))
        return copy.deepcopy(stored)

    def delete(self, kind: str, *, name: str) -> bool:
        self.writes.append(("delete", kind, name))
        return self.objects.pop((kind, name), None) is not None

    def get(self, kind: str, *, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    def post_event_once(self, *, name: str, reason: str, **_: Any) -> None:
        if (name, reason) not in self.events:
            self.events.append((name, reason))


def gp(uid: str = "uid-p", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "uid": uid, "generation": 1}, "spec": spec}


ENFORCE = {"mode": "Enforce"}
HARDENING = ("networkPolicy", "limitRange")


@dataclasses.dataclass
class World:
    gateway: FakeGateway
    store: policies.PolicyStore
    service: service_module.AdmissionService
    hardening_conflicts: list[str]

    def sync(self) -> None:
        """Deliver the API's objects to the inventory, as the watch would."""
        for (kind, _name), obj in self.gateway.objects.items():
            self.service.inventory.put(kind, obj, watched=True)
        for kind in (VAP, BINDING):
            for name in (DENY, WARN):
                if (kind, name) not in self.gateway.objects:
                    self.service.inventory.remove(kind, name)

    def reconcile(self) -> list[tuple[str, str, str]]:
        self.gateway.writes.clear()
        self.service.reconcile("p")
        writes = list(self.gateway.writes)
        self.sync()
        return writes


def world(*pols: dict[str, Any]) -> World:
    gateway = FakeGateway()
    store = policies.PolicyStore()
    for pol in pols:
        store.upsert(pol)
    conflicts: list[str] = []
    service = service_module.AdmissionService(
        gateway=gateway,
        inventory=service_module.Inventory(),
        policies=store,
        operator_namespace="kube-guardrails-system",
        clock=lambda: NOW,
        hardening_conflicts=lambda policy: list(conflicts),
    )
    return World(gateway, store, service, conflicts)


def edit(kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[World], None]:
    def step(w: World) -> None:
        obj = w.gateway.objects[kind, name]
        change(obj)
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1000)
        w.sync()

    return step


def remove(kind: str, name: str) -> Callable[[World], None]:
    def step(w: World) -> None:
        del w.gateway.objects[kind, name]
        w.sync()

    return step


def upsert(**spec: Any) -> Callable[[World], None]:
    def step(w: World) -> None:
        w.store.upsert(gp(**spec))

    return step


def _drop_validation(obj: dict[str, Any]) -> None:
    obj["spec"]["validations"].pop()


def _add_audit_annotation(obj: dict[str, Any]) -> None:
    obj["spec"]["auditAnnotations"] = [{"key": "x", "valueExpression": "'y'"}]


def _drop_labels(obj: dict[str, Any]) -> None:
    obj["metadata"]["labels"] = {}


def _warn_only(obj: dict[str, Any]) -> None:
    obj["spec"]["validationActions"] = ["Warn"]


ALL_FOUR = [
    ("create", VAP, DENY),
    ("create", BINDING, DENY),
    ("create", VAP, WARN),
    ("create", BINDING, WARN),
]


@pytest.mark.parametrize(
    ("then", "writes"),
    [
        pytest.param(lambda w: None, [], id="unchanged-zero-writes"),
        pytest.param(remove(VAP, DENY), [("create", VAP, DENY)], id="deleted-restored"),
        pytest.param(
            edit(VAP, DENY, _drop_validation), [("patch", VAP, DENY)], id="validation-dropped"
        ),
        pytest.param(
            edit(VAP, WARN, _add_audit_annotation), [("patch", VAP, WARN)], id="field-added"
        ),
        pytest.param(edit(VAP, WARN, _drop_labels), [("patch", VAP, WARN)], id="labels-dropped"),
        pytest.param(
            edit(BINDING, DENY, _warn_only), [("patch", BINDING, DENY)], id="deny-made-warn"
        ),
        pytest.param(
            # The deny policy keeps the readiness gate (always Deny) and loses the checks.
            upsert(mode="Audit"),
            [("patch", VAP, DENY), ("patch", VAP, WARN)],
            id="enforce-to-audit",
        ),
        pytest.param(
            upsert(mode="Audit", hardening={h: {"enabled": False} for h in HARDENING}),
            [("delete", BINDING, DENY), ("delete", VAP, DENY), ("patch", VAP, WARN)],
            id="audit-and-nothing-to-harden-needs-no-deny-pair",
        ),
        pytest.param(
            upsert(mode="Enforce", hardening={"limitRange": {"default": {"cpu": "1e999999999"}}}),
            [
                ("delete", BINDING, DENY),
                ("delete", VAP, DENY),
                ("delete", BINDING, WARN),
                ("delete", VAP, WARN),
            ],
            id="invalid-edit-removes-them",
        ),
    ],
)
def test_reconcile(then: Callable[[World], None], writes: list[tuple[str, str, str]]) -> None:
    w = world(gp(**ENFORCE))
    assert w.reconcile() == ALL_FOUR
    then(w)
    assert w.reconcile() == writes
    assert w.reconcile() == []  # converged: a resync writes nothing


def test_deleted_policy_is_left_to_the_garbage_collector() -> None:
    w = world(gp(**ENFORCE))
    w.reconcile()
    w.store.remove("p")
    assert w.reconcile() == []


def _foreign(kind: str, name: str, owner: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": "foreign", "resourceVersion": "1"}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "kube-guardrails.io/v1alpha1",
                "kind": "GuardrailPolicy",
                "name": "p",
                "uid": owner,
            }
        ]
    return {"kind": kind, "metadata": meta, "spec": {}}


def test_object_with_our_name_but_not_ours_is_reported_never_written() -> None:
    w = world(gp(**ENFORCE))
    w.gateway.objects[VAP, DENY] = _foreign(VAP, DENY, None)
    w.sync()
    assert w.reconcile() == ALL_FOUR[1:]
    assert w.gateway.objects[VAP, DENY]["spec"] == {}
    assert w.service.conflicts("p") == [f"{VAP}/{DENY}"]
    assert w.gateway.events == [(w.gateway.events[0][0], "AdmissionConflict")]
    ready, reason, message = w.service.ready("p")
    assert (ready, reason) == (False, "AdmissionConflict")
    assert DENY in message
    w.reconcile()
    assert len(w.gateway.events) == 1  # reported once


def test_object_of_a_deleted_policy_waits_for_garbage_collection() -> None:
    w = world(gp(**ENFORCE))
    w.gateway.objects[VAP, DENY] = _foreign(VAP, DENY, "uid-of-a-deleted-p")
    w.sync()
    assert w.reconcile() == ALL_FOUR[1:]
    assert w.service.conflicts("p") == []
    assert w.service.take_due(NOW + service_module.ORPHAN_RETRY) == ["p"]


def test_exemption_expiry_schedules_a_rebuild() -> None:
    expires = NOW + datetime.timedelta(hours=1)
    exemption = {"reason": "r", "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    w = world(gp(mode="Enforce", workloads={"exemptions": [exemption]}))
    w.reconcile()
    assert w.service.take_due(NOW) == []
    assert w.service.take_due(expires) == ["p"]


def test_ready_names_hardening_conflicts() -> None:
    w = world(gp(**ENFORCE))
    assert w.service.ready("p") == (True, "Reconciled", service_module.READY_MESSAGE)
    w.hardening_conflicts.extend(f"ns{n}/NetworkPolicy" for n in range(7))
    ready, reason, message = w.service.ready("p")
    assert (ready, reason) == (False, "HardeningConflict")
    assert "7 managed objects" in message and "and 2 more" in message
    written: list[tuple[str, Mapping[str, Any]]] = []
    batcher = status.StatusBatcher(
        write=lambda name, patch: written.append((name, patch)) is None, interval=0
    )
    w.service.publish_ready(batcher)
    batcher.flush(force=True)
    [(_, patch)] = written
    assert patch["conditions"][0]["reason"] == "HardeningConflict"


def test_policy_of_maps_object_names_back() -> None:
    w = world(gp(**ENFORCE))
    assert w.service.policy_of(DENY) == "p"
    assert w.service.policy_of("kube-guardrails.other.deny") is None
