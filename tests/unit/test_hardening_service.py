"""The hardening use case against a fake gateway: situation -> exactly these writes."""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import datetime
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import pytest

from kube_guardrails import builders
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.services import hardening, policies, status

NP, LR, RQ = builders.NETWORK_POLICY, builders.LIMIT_RANGE, builders.RESOURCE_QUOTA


CREATED_AT = "2026-11-23T12:00:00Z"


@dataclasses.dataclass
class FakeGateway:
    """An in-memory API: objects by (plural, namespace); records every write."""

    objects: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    writes: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    fail: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)  # (verb, kind)
    namespaces: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    version: int = 100
    named_events: set[str] = dataclasses.field(default_factory=set)
    lists: int = 0

    def _error(self, verb: str, kind: builders.Kind) -> None:
        status_code = self.fail.pop((verb, kind.kind), None)
        if status_code is not None:
            raise k8s_client.ApiError(
                status=status_code,
                reason="Injected",
                message="injected",
                method=verb,
                path=kind.plural,
            )

    def _stored(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        out = copy.deepcopy(dict(obj))
        out["metadata"]["resourceVersion"] = str(self.version)
        out["metadata"].setdefault("creationTimestamp", CREATED_AT)
        return out

    def create(self, kind: builders.Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
        ns = obj["metadata"]["namespace"]
        self.writes.append(("create", kind.kind, ns))
        self._error("create", kind)
        if (kind.plural, ns) in self.objects:
            raise k8s_client.ApiError(
                status=409, reason="AlreadyExists", message="exists", method="POST", path=""
            )
        stored = self.objects[kind.plural, ns] = self._stored(obj)
        return copy.deepcopy(stored)

    def patch(
        self, kind: builders.Kind, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.writes.append(("patch", kind.kind, namespace))
        self._error("patch", kind)
        current = self.objects[kind.plural, namespace]
        merged = _merge(current, patch)
        stored = self.objects[kind.plural, namespace] = self._stored(merged)
        return copy.deepcopy(stored)

    def delete(self, kind: builders.Kind, *, namespace: str, name: str) -> bool:
        self.writes.append(("delete", kind.kind, namespace))
        self._error("delete", kind)
        return self.objects.pop((kind.plural, namespace), None) is not None

    def get(self, kind: builders.Kind, *, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind.plural, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, kind: builders.Kind) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (p, _), o in self.objects.items() if p == kind.plural]

    def list_namespaces(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.namespaces.values()]

    def post_event(
        self,
        *,
        regarding: Mapping[str, Any],
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        action: str,
    ) -> None:
        self.events.append((type, reason, str(regarding["name"])))

    def post_event_once(
        self,
        *,
        name: str,
        regarding: Mapping[str, Any],
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        action: str,
    ) -> None:
        status_code = self.fail.pop(("post", "Event"), None)
        if status_code is not None:
            raise k8s_client.ApiError(
                status=status_code, reason="Injected", message="injected", method="POST", path=name
            )
        if name in self.named_events:
            return  # 409 AlreadyExists: posted before
        self.named_events.add(name)
        self.events.append((type, reason, str(regarding["name"])))

    def event_names(self, *, reason: str) -> set[str]:
        self.lists += 1
        return set(self.named_events)

    def label_namespace(self, name: str, *, key: str, value: str | None) -> dict[str, Any] | None:
        self.writes.append(("patch", "Namespace", name))
        ns = self.namespaces.get(name)
        if ns is None:
            return None
        labels = ns["metadata"].setdefault("labels", {})
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
        return copy.deepcopy(ns)


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def gp(name: str = "baseline", *, uid: str = "", gen: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid or f"uid-{name}", "generation": gen},
        "spec": spec,
    }


def ns_obj(name: str, *, phase: str = "Active", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
        "status": {"phase": phase},
    }


@dataclasses.dataclass
class World:
    gateway: FakeGateway
    inventory: hardening.Inventory
    store: policies.PolicyStore
    service: hardening.HardeningService

    def watch_sync(self) -> None:
        """Deliver the API's current objects to the inventory, as the watches would."""
        for kind in builders.MANAGED_KINDS:
            for (plural, _ns), obj in list(self.gateway.objects.items()):
                if plural == kind.plural:
                    self.inventory.put_object(kind, obj, watched=True)
            for name in self.inventory.namespace_names():
                if (kind.plural, name) not in self.gateway.objects:
                    self.inventory.remove_object(kind, name)

    def put_live(self, kind: builders.Kind, obj: dict[str, Any]) -> None:
        ns = obj["metadata"]["namespace"]
        self.gateway.objects[kind.plural, ns] = copy.deepcopy(obj)
        self.inventory.put_object(kind, obj, watched=True)

    def reset(self) -> None:
        self.gateway.writes.clear()
        self.gateway.events.clear()


def make_world(
    *pols: dict[str, Any],
    namespaces: tuple[str, ...] = ("team-a",),
    batcher: status.StatusBatcher | None = None,
) -> World:
    gateway = FakeGateway()
    inventory = hardening.Inventory()
    store = policies.PolicyStore()
    for pol in pols:
        store.upsert(pol)
    for name in namespaces:
        inventory.put_namespace(ns_obj(name))
        gateway.namespaces[name] = ns_obj(name)
    service = hardening.HardeningService(
        gateway=gateway,
        inventory=inventory,
        policies=store,
        status=batcher,
        operator_namespace="kube-guardrails-system",
    )
    return World(gateway=gateway, inventory=inventory, store=store, service=service)


def harden_first(world: World) -> None:
    world.service.reconcile("team-a")
    world.watch_sync()
    world.reset()


Step = Callable[[World], None]


def nothing(world: World) -> None:
    pass


def delete_live(kind: builders.Kind) -> Step:
    def step(world: World) -> None:
        world.gateway.objects.pop((kind.plural, "team-a"))
        world.inventory.remove_object(kind, "team-a")

    return step


def edit_live(kind: builders.Kind, edit: Callable[[dict[str, Any]], None]) -> Step:
    def step(world: World) -> None:
        obj = world.gateway.objects[kind.plural, "team-a"]
        edit(obj)
        world.inventory.put_object(kind, obj, watched=False)

    return step


def update_policy(**spec: Any) -> Step:
    def step(world: World) -> None:
        world.store.upsert(gp(gen=2, **spec))

    return step


def relabel(**labels: str) -> Step:
    def step(world: World) -> None:
        world.gateway.namespaces["team-a"] = ns_obj("team-a", **labels)
        world.inventory.put_namespace(ns_obj("team-a", **labels))

    return step


def foreign(kind: builders.Kind) -> Step:
    def step(world: World) -> None:
        world.put_live(
            kind,
            {
                "metadata": {"name": kind.name, "namespace": "team-a", "labels": {"mine": "yes"}},
                "spec": {"podSelector": {}},
            },
        )

    return step


def disown_by_label_and_open(obj: dict[str, Any]) -> None:
    """The bypass of issue 9: drop the managed-by label, then allow all traffic."""
    obj["metadata"]["labels"].pop("app.kubernetes.io/managed-by")
    obj["spec"]["ingress"] = [{}]
    obj["spec"]["egress"] = [{}]


def forge_owner(obj: dict[str, Any]) -> None:
    obj["metadata"]["uid"] = "replaced"
    obj["metadata"]["ownerReferences"] = [
        {**obj["metadata"]["ownerReferences"][0], "uid": "no-such-policy"}
    ]


def lr_cpu(cpu: str) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        obj["spec"]["limits"][0]["default"]["cpu"] = cpu

    return edit


CREATE_BOTH = [("create", "NetworkPolicy", "team-a"), ("create", "LimitRange", "team-a")]
READY = [("patch", "Namespace", "team-a")]  # the readiness label, once hardened
CONFLICT_EVENT = [("Warning", "HardeningConflict", "team-a")]
HARDENED_EVENT = [("Normal", "NamespaceHardened", "team-a")]
RESTORED_EVENT = [("Warning", "HardeningRestored", "team-a")]
SELECTED = {"namespaceSelector": {"matchLabels": {"guardrails": "on"}}}


@pytest.mark.parametrize(
    ("pols", "first", "then", "writes", "events"),
    [
        pytest.param(
            [gp()], False, nothing, [*CREATE_BOTH, *READY], HARDENED_EVENT, id="new-namespace"
        ),
        pytest.param([gp()], True, nothing, [], [], id="in-place-zero-writes"),
        pytest.param([], False, nothing, [], [], id="no-policy-no-writes"),
        pytest.param(
            [gp(hardening={"resourceQuota": {"enabled": True, "hard": {"pods": "9"}}})],
            False,
            nothing,
            [*CREATE_BOTH, ("create", "ResourceQuota", "team-a"), *READY],
            HARDENED_EVENT,
            id="with-quota",
        ),
        pytest.param(
            [gp()], True, delete_live(NP), [CREATE_BOTH[0]], RESTORED_EVENT, id="np-deleted"
        ),
        pytest.param(
            [gp()],
            True,
            edit_live(LR, lr_cpu("8")),
            [("patch", "LimitRange", "team-a")],
            RESTORED_EVENT,
            id="lr-edited",
        ),
        pytest.param(
            [gp()],
            True,
            edit_live(LR, lr_cpu("0.5")),
            [],
            [],
            id="lr-same-quantity-other-spelling",
        ),
        pytest.param(
            [gp()],
            True,
            update_policy(hardening={"limitRange": {"default": {"cpu": "1"}}}),
            [("patch", "LimitRange", "team-a")],
            [],
            id="policy-change-rolled-out-quietly",
        ),
        pytest.param(
            [gp()],
            True,
            update_policy(hardening={"networkPolicy": {"enabled": False}}),
            [("delete", "NetworkPolicy", "team-a")],
            [],
            id="policy-disables-network-policy",
        ),
        pytest.param(
            [gp(**SELECTED)],
            False,
            relabel(guardrails="on"),
            [*CREATE_BOTH, *READY],
            HARDENED_EVENT,
            id="namespace-starts-matching",
        ),
        pytest.param(
            [gp(**SELECTED)],
            False,
            nothing,
            [],
            [],
            id="namespace-not-selected",
        ),
        pytest.param(
            [gp(excludeNamespaces=["team-*"])], False, nothing, [], [], id="excluded-by-glob"
        ),
        pytest.param(
            [gp()],
            False,
            foreign(NP),
            [CREATE_BOTH[1]],
            [*CONFLICT_EVENT, *HARDENED_EVENT],
            id="foreign-object-with-our-name-untouched",
        ),
        pytest.param(
            [gp()],
            True,
            edit_live(NP, disown_by_label_and_open),
            [("patch", "NetworkPolicy", "team-a")],
            RESTORED_EVENT,
            id="managed-by-label-removed-and-opened-is-restored",
        ),
        pytest.param(
            [gp()],
            True,
            edit_live(NP, forge_owner),
            [*READY],
            CONFLICT_EVENT,
            id="owner-reference-to-unknown-uid-is-foreign",
        ),
        pytest.param(
            [gp(), gp("zz-high", priority=10, hardening={"limitRange": {"enabled": False}})],
            True,
            nothing,
            [],
            [],
            id="in-place-with-two-policies",
        ),
    ],
)
def test_reconcile(
    pols: list[dict[str, Any]],
    first: bool,
    then: Step,
    writes: list[tuple[str, str, str]],
    events: list[tuple[str, str, str]],
) -> None:
    world = make_world(*pols)
    if first:
        harden_first(world)
    then(world)
    world.service.reconcile("team-a")
    assert world.gateway.writes == writes
    assert world.gateway.events == events
    # Converged: a second pass (a resync) changes nothing.
    world.watch_sync()
    world.reset()
    world.service.reconcile("team-a")
    assert world.gateway.writes == []
    assert world.gateway.events == []


def test_namespace_that_stops_matching_is_unhardened() -> None:
    world = make_world(gp(**SELECTED))
    relabel(guardrails="on")(world)
    harden_first(world)
    relabel()(world)
    result = world.service.reconcile("team-a")
    assert world.gateway.writes == [
        ("delete", "NetworkPolicy", "team-a"),
        ("delete", "LimitRange", "team-a"),
    ]
    assert result.policy is None and world.gateway.objects == {}


def test_foreign_object_is_never_deleted() -> None:
    world = make_world(gp(**SELECTED))
    foreign(NP)(world)
    world.service.reconcile("team-a")
    assert world.gateway.writes == []
    assert (NP.plural, "team-a") in world.gateway.objects


@pytest.mark.parametrize(
    ("pols", "governing"),
    [
        pytest.param([gp("b"), gp("a")], "a", id="tie-by-name"),
        pytest.param([gp("a"), gp("b", priority=1)], "b", id="priority-wins"),
        pytest.param([gp("a", priority=-1), gp("b")], "b", id="negative-priority"),
    ],
)
def test_governing_policy_labels_the_objects(pols: list[dict[str, Any]], governing: str) -> None:
    world = make_world(*pols)
    world.service.reconcile("team-a")
    obj = world.gateway.objects[NP.plural, "team-a"]
    assert obj["metadata"]["labels"]["kube-guardrails.io/policy"] == governing
    assert obj["metadata"]["ownerReferences"][0]["uid"] == f"uid-{governing}"


def test_takeover_by_higher_priority_policy_replaces_owner() -> None:
    world = make_world(gp("a"))
    harden_first(world)
    world.store.upsert(gp("b", priority=5))
    world.service.reconcile("team-a")
    assert world.gateway.writes == [
        ("patch", "NetworkPolicy", "team-a"),
        ("patch", "LimitRange", "team-a"),
        *READY,  # the readiness label names the governing policy's uid
    ]
    assert world.gateway.namespaces["team-a"]["metadata"]["labels"] == {
        hardening.LABEL_HARDENED: "uid-b"
    }
    owners = world.gateway.objects[NP.plural, "team-a"]["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["b"]


@pytest.mark.parametrize(
    ("namespace", "phase"),
    [
        pytest.param("team-a", "Terminating", id="terminating"),
        pytest.param("gone", None, id="deleted"),
        pytest.param("kube-system", "Active", id="system-namespace"),
        pytest.param("kube-guardrails-system", "Active", id="operator-namespace"),
    ],
)
def test_namespaces_left_alone(namespace: str, phase: str | None) -> None:
    world = make_world(gp(), namespaces=())
    if phase is not None:
        world.inventory.put_namespace(ns_obj(namespace, phase=phase))
    world.service.reconcile(namespace)
    assert world.gateway.writes == []


# ------------------------------------------------------------------ API errors


def test_conflict_on_create_with_our_object_in_place_writes_nothing_more() -> None:
    world = make_world(gp())
    harden_first(world)
    world.inventory.remove_object(NP, "team-a")  # our cache missed it (a lost event)
    world.service.reconcile("team-a")
    assert world.gateway.writes == [("create", "NetworkPolicy", "team-a")]  # 409, then a GET
    assert world.inventory.object(NP, "team-a") is not None


def test_conflict_on_create_with_foreign_object_leaves_it() -> None:
    world = make_world(gp())
    world.gateway.objects[NP.plural, "team-a"] = {
        "metadata": {"name": NP.name, "namespace": "team-a", "labels": {}},
        "spec": {},
    }
    result = world.service.reconcile("team-a")
    assert result.skipped_foreign == ["NetworkPolicy"]
    assert world.gateway.objects[NP.plural, "team-a"]["spec"] == {}


def test_namespace_deleted_meanwhile_is_not_an_error() -> None:
    world = make_world(gp())
    world.gateway.fail = {("create", "NetworkPolicy"): 404, ("create", "LimitRange"): 404}
    result = world.service.reconcile("team-a")
    assert result.writes and world.gateway.events == []


@pytest.mark.parametrize("code", [500, 503, 429, 0], ids=lambda c: f"status-{c}")
def test_outage_is_raised_for_retry_and_converges_after(code: int) -> None:
    world = make_world(gp())
    world.gateway.fail = {("create", "LimitRange"): code}
    with pytest.raises(k8s_client.ApiError):
        world.service.reconcile("team-a")
    world.watch_sync()
    world.reset()
    world.service.reconcile("team-a")
    # The readiness label only once both objects exist.
    assert world.gateway.writes == [("create", "LimitRange", "team-a"), *READY]


def test_stale_watch_event_is_ignored() -> None:
    inventory = hardening.Inventory()
    new = {"metadata": {"name": NP.name, "namespace": "a", "resourceVersion": "20"}}
    old = {"metadata": {"name": NP.name, "namespace": "a", "resourceVersion": "10"}}
    assert inventory.put_object(NP, new, watched=False)
    assert not inventory.put_object(NP, old, watched=True)
    assert inventory.object(NP, "a") == new


# ------------------------------------------------------------------ status counters


def test_counts_and_status() -> None:
    written: list[tuple[str, Mapping[str, Any]]] = []

    def write(name: str, patch: Mapping[str, Any]) -> bool:
        written.append((name, patch))
        return True

    batcher = status.StatusBatcher(write=write, interval=1)
    world = make_world(
        gp("a"),
        gp("b", priority=1, **SELECTED),
        namespaces=("team-a", "team-b", "kube-system"),
        batcher=batcher,
    )
    world.inventory.put_namespace(ns_obj("team-b", guardrails="on"))
    for name in ("team-a", "team-b"):
        world.service.reconcile(name)
    assert world.service.counts() == {"a": (2, 1), "b": (1, 1)}
    world.service.publish_status()
    batcher.flush()
    assert sorted(written) == [
        ("a", {"namespaces": {"matched": 2, "hardened": 1}}),
        ("b", {"namespaces": {"matched": 1, "hardened": 1}}),
    ]


def test_affected_by_policy_covers_old_and_new_selection() -> None:
    world = make_world(namespaces=("x", "y", "z"))
    world.inventory.put_namespace(ns_obj("x", tier="1"))
    world.inventory.put_namespace(ns_obj("y", tier="2"))
    old = world.store.upsert(gp(namespaceSelector={"matchLabels": {"tier": "1"}})).policy
    new = world.store.upsert(gp(namespaceSelector={"matchLabels": {"tier": "2"}})).policy
    assert world.service.affected_by_policy(old, new) == ["x", "y"]


@pytest.mark.parametrize(
    ("live", "desired", "patch"),
    [
        pytest.param(
            {"metadata": {"labels": {"x": "1"}}, "spec": {"a": 1, "b": {"c": 1, "d": 2}}},
            {"metadata": {"labels": {"m": "k"}}, "spec": {"b": {"c": 2}}},
            {"metadata": {"labels": {"m": "k"}}, "spec": {"b": {"c": 2, "d": None}, "a": None}},
            id="removes-unwanted-keys",
        ),
        pytest.param(
            {
                "metadata": {
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                        {"apiVersion": "kube-guardrails.io/v1alpha1", "kind": "GuardrailPolicy"},
                    ]
                },
                "spec": {},
            },
            {
                "metadata": {
                    "labels": {},
                    "ownerReferences": [
                        {
                            "apiVersion": "kube-guardrails.io/v1alpha1",
                            "kind": "GuardrailPolicy",
                            "name": "p",
                        }
                    ],
                },
                "spec": {},
            },
            {
                "metadata": {
                    "labels": {},
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                        {
                            "apiVersion": "kube-guardrails.io/v1alpha1",
                            "kind": "GuardrailPolicy",
                            "name": "p",
                        },
                    ],
                },
                "spec": {},
            },
            id="keeps-other-owners",
        ),
    ],
)
def test_merge_patch(live: dict[str, Any], desired: dict[str, Any], patch: dict[str, Any]) -> None:
    assert hardening.merge_patch(live, desired) == patch


def test_parallel_writes_with_an_executor() -> None:
    import concurrent.futures

    world = make_world(gp(hardening={"resourceQuota": {"enabled": True, "hard": {"pods": "3"}}}))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        service = hardening.HardeningService(
            gateway=world.gateway,
            inventory=world.inventory,
            policies=world.store,
            status=None,
            operator_namespace="kube-guardrails-system",
            executor=pool,
        )
        result = service.reconcile("team-a")
    assert sorted(world.gateway.writes) == [
        ("create", "LimitRange", "team-a"),
        ("create", "NetworkPolicy", "team-a"),
        ("create", "ResourceQuota", "team-a"),
        *READY,
    ]
    assert result.events == ["NamespaceHardened"]
    assert world.gateway.events == HARDENED_EVENT  # posted by the pool, finished on exit


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_relist_catches_deletions_missed_while_the_watch_was_down() -> None:
    world = make_world(gp(), namespaces=("team-a", "team-b"))
    harden_first(world)
    world.service.reconcile("team-b")
    world.watch_sync()
    world.reset()
    # While the watch is down: our NetworkPolicy and namespace team-b are deleted.
    del world.gateway.objects[NP.plural, "team-a"]
    del world.gateway.namespaces["team-b"]
    world.service.reconcile("team-a")
    assert world.gateway.writes == []  # the stale inventory says all is in place
    gone = world.service.relist()
    assert gone == ["team-b"]
    world.service.reconcile("team-a")
    world.service.reconcile("team-b")
    assert world.gateway.writes == [("create", "NetworkPolicy", "team-a")]
    assert world.gateway.events == RESTORED_EVENT
    assert world.service.counts() == {"baseline": (1, 1)}


def test_relist_keeps_what_the_watch_stored_after_the_list_began() -> None:
    clock = Clock()
    inventory = hardening.Inventory(clock=clock)
    clock.t = 10.0
    inventory.put_namespace(ns_obj("old"))
    clock.t = 20.0
    inventory.put_namespace(ns_obj("new"))  # an ADDED event racing the LIST
    gone = inventory.relisted(started=15.0, namespaces=[], objects={})
    assert gone == ["old"] and inventory.namespace_names() == ["new"]


# --------------------------------------------------------------------------- NamespaceHardened
# Posted until it is posted, exactly once: after a failed create whose retry finds the
# other object in place, after a failed post, and after a restart between create and post.

HARDENED = [("Normal", "NamespaceHardened", "team-a")]


def _restarted(world: World, *, minutes_after_create: float) -> World:
    """A new process: same API and (re-listed) objects, nothing in memory."""
    created = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
    service = hardening.HardeningService(
        gateway=world.gateway,
        inventory=world.inventory,
        policies=world.store,
        status=None,
        operator_namespace="kube-guardrails-system",
        wall_clock=lambda: created + datetime.timedelta(minutes=minutes_after_create),
    )
    return dataclasses.replace(world, service=service)


def _fail_create_of_limit_range(world: World) -> World:
    world.gateway.fail = {("create", "LimitRange"): 500}
    with pytest.raises(k8s_client.ApiError):
        world.service.reconcile("team-a")
    assert world.gateway.events == []
    world.watch_sync()
    return world


def _fail_post(world: World) -> World:
    world.gateway.fail = {("post", "Event"): 503}
    with pytest.raises(k8s_client.ApiError):
        world.service.reconcile("team-a")
    world.watch_sync()
    return world


def _die_before_post(world: World) -> World:
    _fail_post(world)  # the objects are in place, the Event is not
    return _restarted(world, minutes_after_create=1)


def _restart_after_post(world: World) -> World:
    world.service.reconcile("team-a")
    world.watch_sync()
    world.reset()
    return _restarted(world, minutes_after_create=1)


def _die_between_creates(world: World) -> World:
    _fail_create_of_limit_range(world)  # the NetworkPolicy is in place, the LimitRange not
    return _restarted(world, minutes_after_create=1)


def _restore_after_restart_long_ago(world: World) -> World:
    # A new process cannot tell a restore from a first create (nothing in memory), and
    # posts nothing for it; above all, no NamespaceHardened for an old hardening.
    world.service.reconcile("team-a")
    world.watch_sync()
    world.reset()
    world.gateway.named_events.clear()  # Events expire after an hour
    del world.gateway.objects["networkpolicies", "team-a"]  # deleted while we were down
    world.watch_sync()
    return _restarted(world, minutes_after_create=60)


def _die_before_post_long_ago(world: World) -> World:
    _fail_post(world)
    world.reset()
    return _restarted(world, minutes_after_create=60)


@pytest.mark.parametrize(
    ("before", "events"),
    [
        pytest.param(
            _fail_create_of_limit_range, HARDENED, id="one-create-failed-retry-finds-other"
        ),
        pytest.param(_fail_post, HARDENED, id="post-failed-in-an-outage"),
        pytest.param(_die_before_post, HARDENED, id="restart-between-create-and-post"),
        pytest.param(_restart_after_post, [], id="restart-after-post-no-duplicate"),
        pytest.param(_die_before_post_long_ago, [], id="restart-long-after-not-checked"),
        pytest.param(_die_between_creates, HARDENED, id="restart-between-the-two-creates"),
        pytest.param(
            _restore_after_restart_long_ago, [], id="recreated-long-after-is-no-hardening"
        ),
    ],
)
def test_namespace_hardened_event_is_posted_until_posted(
    before: Callable[[World], World], events: list[tuple[str, str, str]]
) -> None:
    world = before(make_world(gp()))
    world.service.reconcile("team-a")
    world.watch_sync()
    world.service.reconcile("team-a")  # and again: nothing more
    assert world.gateway.events == events


def test_readiness_label_set_once_hardened_and_removed_when_unselected() -> None:
    world = make_world(gp(**SELECTED))
    world.gateway.namespaces["team-a"] = ns_obj("team-a", guardrails="on")
    world.inventory.put_namespace(ns_obj("team-a", guardrails="on"))
    world.service.reconcile("team-a")
    labels = world.gateway.namespaces["team-a"]["metadata"]["labels"]
    assert labels == {"guardrails": "on", hardening.LABEL_HARDENED: "uid-baseline"}
    world.watch_sync()
    world.reset()
    # Stops being selected: objects deleted and the label removed.
    world.gateway.namespaces["team-a"]["metadata"]["labels"].pop("guardrails")
    world.inventory.put_namespace(world.gateway.namespaces["team-a"])
    world.service.reconcile("team-a")
    assert world.gateway.writes == [
        ("delete", "NetworkPolicy", "team-a"),
        ("delete", "LimitRange", "team-a"),
        *READY,
    ]
    assert world.gateway.namespaces["team-a"]["metadata"]["labels"] == {}


def test_policy_hardening_nothing_still_marks_ready() -> None:
    off = {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}}
    world = make_world(gp(hardening=off))
    world.service.reconcile("team-a")
    assert world.gateway.writes == READY


def test_foreign_object_reported_in_conflicts_not_hardened_not_ready() -> None:
    world = make_world(gp())
    foreign(NP)(world)
    world.service.reconcile("team-a")
    assert world.service.conflicts("baseline") == ["team-a/NetworkPolicy"]
    assert world.service.counts() == {"baseline": (1, 0)}
    assert hardening.LABEL_HARDENED not in world.gateway.namespaces["team-a"]["metadata"]["labels"]
    # Gone (renamed by its owner): ours is created, the conflict clears, the label is set.
    world.gateway.objects.pop((NP.plural, "team-a"))
    world.inventory.remove_object(NP, "team-a")
    world.service.reconcile("team-a")
    assert world.service.conflicts("baseline") == []
    assert world.service.counts() == {"baseline": (1, 1)}
    assert world.gateway.namespaces["team-a"]["metadata"]["labels"] == {
        hardening.LABEL_HARDENED: "uid-baseline"
    }


def test_a_failed_background_post_asks_for_a_retry_and_posts_then() -> None:
    world = make_world(gp())
    retried: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        service = hardening.HardeningService(
            gateway=world.gateway,
            inventory=world.inventory,
            policies=world.store,
            status=None,
            operator_namespace="kube-guardrails-system",
            executor=pool,
        )
        service.retry_later = retried.append
        world.gateway.fail = {("post", "Event"): 503}
        service.reconcile("team-a")
        pool.shutdown(wait=True)
    assert retried == ["team-a"] and world.gateway.events == []
    world.watch_sync()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # the same service, a fresh pool (the first one is shut)
        service._executor = service._event_executor = pool
        service.reconcile("team-a")
        pool.shutdown(wait=True)
    assert world.gateway.events == HARDENED


def test_a_stale_namespace_event_does_not_write_the_label_again() -> None:
    """A watch event queued before our label patch arrives after it: ignored (by
    resourceVersion), so the label is written once."""
    world = make_world(gp())
    stale = ns_obj("team-a")
    stale["metadata"]["resourceVersion"] = "5"
    world.inventory.update_namespace(stale)
    world.gateway.namespaces["team-a"]["metadata"]["resourceVersion"] = "9"
    world.service.reconcile("team-a")
    assert world.gateway.writes == [*CREATE_BOTH, *READY]
    world.watch_sync()
    world.reset()
    assert not world.inventory.update_namespace(stale)  # older than the patch response
    world.service.reconcile("team-a")
    assert world.gateway.writes == []


def test_after_a_restart_concurrent_reconciles_list_the_events_once() -> None:
    """The reconcile workers of a restart share one LIST of NamespaceHardened Events
    (each worker listing them all at once was a memory peak at thousands)."""
    names = tuple(f"team-{i}" for i in range(16))
    world = make_world(gp(), namespaces=names)
    for name in names:
        world.service.reconcile(name)
    world.watch_sync()
    world.reset()
    world = _restarted(world, minutes_after_create=1)
    listed = world.gateway.event_names
    lists_before = world.gateway.lists

    def slow_event_names(*, reason: str) -> set[str]:
        time.sleep(0.05)  # a LIST takes a while: every worker arrives meanwhile
        return listed(reason=reason)

    world.gateway.event_names = slow_event_names  # type: ignore[method-assign]
    start = threading.Barrier(len(names))

    def reconcile(name: str) -> None:
        start.wait()
        world.service.reconcile(name)

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(reconcile, names))
    assert world.gateway.lists - lists_before == 1
    assert world.gateway.events == []  # every one was posted before the restart


def _feed() -> tuple[hardening.WatchFeed, hardening.Inventory, list[str], list[str]]:
    inventory = hardening.Inventory(clock=lambda: 10.0)
    queued: list[str] = []
    calls: list[str] = []
    feed = hardening.WatchFeed(
        inventory=inventory,
        kinds=builders.MANAGED_KINDS,
        queue=queued.append,
        complete=lambda: calls.append("complete"),
        namespace_seen=lambda name, labels: calls.append(f"seen {name} {dict(labels)}"),
        namespace_gone=lambda name: calls.append(f"gone {name}"),
    )
    return feed, inventory, queued, calls


def _managed(kind: builders.Kind, namespace: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": kind.name, "namespace": namespace, "resourceVersion": rv}}


def test_watch_feed_is_complete_once_every_kind_is_listed() -> None:
    feed, inventory, queued, calls = _feed()
    feed.listed("Namespace", [ns_obj("a", team="x"), ns_obj("b")], 5.0)
    assert sorted(queued) == ["a", "b"]
    assert "complete" not in calls
    for kind in builders.MANAGED_KINDS:
        assert not feed.is_complete
        feed.listed(kind.kind, [_managed(kind, "a", "7")], 5.0)
    assert calls.count("complete") == 1
    assert "seen a {'team': 'x'}" in calls
    assert inventory.object(builders.MANAGED_KINDS[0], "a") is not None
    feed.listed("Namespace", [ns_obj("a", team="x"), ns_obj("b")], 6.0)  # a re-list
    assert calls.count("complete") == 1


def test_watch_feed_relist_forgets_what_was_deleted_unwatched() -> None:
    feed, inventory, queued, calls = _feed()
    kind = builders.MANAGED_KINDS[0]
    feed.listed("Namespace", [ns_obj("a"), ns_obj("b")], 5.0)
    feed.listed(kind.kind, [_managed(kind, "a", "7"), _managed(kind, "b", "8")], 5.0)
    queued.clear()
    # Both lists began after the entries were stored (clock 10): b and a's object went.
    feed.listed("Namespace", [ns_obj("a")], 11.0)
    feed.listed(kind.kind, [], 11.0)
    assert inventory.namespace_names() == ["a"]
    assert inventory.object(kind, "a") is None
    assert sorted(queued) == ["a", "b"]
    assert "gone b" in calls


def test_watch_feed_keeps_what_was_stored_after_the_list_began() -> None:
    feed, inventory, _, _ = _feed()
    feed.listed("Namespace", [ns_obj("a")], 5.0)
    feed.listed("Namespace", [], 9.0)  # stored at clock 10, after this list began
    assert inventory.namespace_names() == ["a"]


def test_watch_feed_events() -> None:
    feed, inventory, queued, calls = _feed()
    kind = builders.MANAGED_KINDS[0]
    feed.changed("Namespace", "ADDED", ns_obj("a"))
    feed.changed(kind.kind, "ADDED", _managed(kind, "a", "3"))
    assert queued == ["a", "a"]
    feed.changed(kind.kind, "MODIFIED", _managed(kind, "a", "3"))  # our write's echo
    feed.changed(kind.kind, "MODIFIED", {"metadata": {"name": "other", "namespace": "a"}})
    assert queued == ["a", "a"]
    feed.changed(kind.kind, "DELETED", _managed(kind, "a", "4"))
    assert inventory.object(kind, "a") is None
    feed.changed("Namespace", "DELETED", ns_obj("a"))
    assert inventory.namespace_names() == []
    assert queued == ["a", "a", "a", "a"]
    assert calls[-1] == "gone a"
