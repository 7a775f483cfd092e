"""Per-GuardrailPolicy admission: keep the generated admission policies in place.

For each GuardrailPolicy, :func:`kube_guardrails.admission.build` says which
ValidatingAdmissionPolicies and bindings should exist (CEL generated from the check
registry, see README "Admission"). :meth:`AdmissionService.reconcile` makes the live
objects say exactly that, for one policy at a time:

- what the live objects (an in-memory mirror fed by the watch, :class:`Inventory`)
  already say is never written again: :func:`matches` compares what we set and ignores
  what the API server adds (defaults, managedFields, status), so a restart or a resync
  makes no request at all;
- missing: create; different (a changed policy, or someone's edit): merge-patch the
  whole spec back, with every key we do not set removed; no longer wanted (a pair the
  policy does not need any more, or the policy became invalid): delete;
- ownership is the ownerReference to this policy's uid. An object with one of our names
  and no GuardrailPolicy owner is someone else's: never written, reported (a Warning
  Event on the policy, once per object, and the policy's Ready condition). One whose
  GuardrailPolicy owner no longer exists (the policy was deleted and created again) is
  left to the garbage collector, and looked at again shortly;
- exemptions expire without any event: ``Desired.next_change`` is remembered and
  :func:`requeue_forever` queues the policy again at that moment.

The policy's ``Ready`` condition is decided here too (:meth:`AdmissionService.ready`):
``Reconciled`` unless a managed name (hardening or admission) is taken by an object
that is not the policy's, which is ``HardeningConflict`` / ``AdmissionConflict``.

A deleted GuardrailPolicy needs nothing from here: its admission objects go with it
(ownerReference, garbage collector). An invalid one (``PolicyInvalid``) is ignored
everywhere, as it is by hardening and reviews: its admission objects are deleted, and
the Ready condition and a Warning Event say so; other policies are not touched.

Errors are raised to the work queue, which retries the policy with backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from kube_guardrails import API_GROUP, API_VERSION, KIND, admission, builders, logs
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.services import hardening, workqueue
from kube_guardrails.services import policies as policy_store
from kube_guardrails.services import status as status_service

log = logs.get(__name__)

VAP = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"
KINDS = (VAP, BINDING)
REASON_CONFLICT = "AdmissionConflict"
REASON_HARDENING_CONFLICT = "HardeningConflict"
REASON_READY = "Reconciled"
READY_MESSAGE = "Policy is valid and enforced"
# How many conflicting objects the Ready message names.
CONFLICTS_NAMED = 5
# How soon to look again at an object whose owning policy is gone (garbage collection).
ORPHAN_RETRY = datetime.timedelta(seconds=5)


class Gateway(hardening.OnceEventPoster, Protocol):
    """The API operations this needs (``k8s/admission.py``; a fake in tests)."""

    def create(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch(self, kind: str, *, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...

    def delete(self, kind: str, *, name: str) -> bool: ...

    def get(self, kind: str, *, name: str) -> dict[str, Any] | None: ...


def _rv(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Inventory:
    """The live admission objects with our name prefix, by (kind, name); thread-safe.

    Fed by the watch and by our own writes (write-through), ignoring watch events older
    than what it holds, so the echo of our write never causes another one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, kind: str, obj: Mapping[str, Any], *, watched: bool) -> bool:
        """Remember an object; True if that changed what we hold."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        with self._lock:
            held = self._objects.get((kind, name))
            if watched and held is not None:
                new, old = _rv(obj), _rv(held)
                if new is not None and old is not None and new <= old:
                    return False
            self._objects[kind, name] = dict(obj)
        return True

    def remove(self, kind: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, name), None)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((kind, name))


def owner_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the GuardrailPolicy that owns the object, or None."""
    uids = builders.policy_owner_uids(obj)
    return min(uids) if uids else None


def matches(live: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Does the live object say what we want (ignoring what the API server adds)?

    The one shared rule, :func:`kube_guardrails.admission.changed`, which
    ``kube-guardrails plan`` reports by too, so the plan and the operator never disagree.
    """
    return not admission.changed(live, want)


def merge_patch(live: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that makes ``live`` say ``want``: our labels and ownerReference,
    the whole spec (lists replaced; keys we do not set removed with null)."""
    meta = want.get("metadata") or {}
    live_refs = (live.get("metadata") or {}).get("ownerReferences") or []
    others = [
        r
        for r in live_refs
        if not (str(r.get("apiVersion", "")).split("/")[0] == API_GROUP and r.get("kind") == KIND)
    ]
    return {
        "metadata": {
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": others + list(meta.get("ownerReferences") or []),
        },
        "spec": _spec_patch(live.get("spec"), want.get("spec")),
    }


def _spec_patch(live: Any, want: Any) -> Any:
    if not isinstance(want, Mapping) or not isinstance(live, Mapping):
        return want
    out: dict[str, Any] = {k: _spec_patch(live.get(k), v) for k, v in want.items()}
    for k in live:
        if k not in want:
            out[k] = None
    return out


@dataclasses.dataclass(frozen=True)
class Write:
    verb: Literal["create", "patch", "delete"]
    kind: str
    name: str


@dataclasses.dataclass
class Result:
    policy: str
    writes: list[Write] = dataclasses.field(default_factory=list)
    conflicts: list[str] = dataclasses.field(default_factory=list)
    next_change: datetime.datetime | None = None


class AdmissionService:
    """Reconciles the admission objects of one policy at a time (see module docs)."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        inventory: Inventory,
        policies: policy_store.PolicyStore,
        operator_namespace: str,
        clock: Callable[[], datetime.datetime],
        hardening_conflicts: Callable[[str], list[str]] = lambda policy: [],
    ) -> None:
        """``hardening_conflicts(policy)``: the namespaces' managed names taken by
        foreign objects (``HardeningService.conflicts``), for the Ready condition."""
        self._gateway = gateway
        self._inventory = inventory
        self._policies = policies
        self._operator_namespace = operator_namespace
        self._clock = clock
        self._hardening_conflicts = hardening_conflicts
        # policy -> when to build it again (exemption expiry, orphan awaiting GC).
        self._due: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()
        self._conflicts: dict[str, tuple[str, ...]] = {}
        self._reported: set[str] = set()
        self.writes = 0

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    def now(self) -> datetime.datetime:
        return self._clock()

    def policy_of(self, object_name: str) -> str | None:
        """Which policy an admission object's name belongs to (None: not one of ours)."""
        for name in self._policies.names():
            if object_name in admission.all_names(name):
                return name
        return None

    def conflicts(self, policy: str) -> list[str]:
        """``Kind/name`` of our names taken by objects this policy does not own."""
        with self._lock:
            return list(self._conflicts.get(policy, ()))

    def _schedule(self, name: str, when: datetime.datetime) -> None:
        with self._lock:
            held = self._due.get(name)
            self._due[name] = when if held is None else min(held, when)

    def take_due(self, now: datetime.datetime) -> list[str]:
        """Policies whose scheduled rebuild time has come (removed from the schedule)."""
        with self._lock:
            due = [name for name, when in self._due.items() if when <= now]
            for name in due:
                del self._due[name]
        return due

    def ready(self, name: str) -> tuple[bool, str, str]:
        """(ready, reason, message) of a valid policy's Ready condition."""
        hardening = self._hardening_conflicts(name)
        admission_taken = self.conflicts(name)
        if not hardening and not admission_taken:
            return True, REASON_READY, READY_MESSAGE
        parts = []
        for what, taken in (
            ("managed objects", hardening),
            ("admission policies", admission_taken),
        ):
            if taken:
                named = ", ".join(taken[:CONFLICTS_NAMED])
                more = (
                    f" and {len(taken) - CONFLICTS_NAMED} more"
                    if len(taken) > CONFLICTS_NAMED
                    else ""
                )
                parts.append(
                    f"{len(taken)} {what} exist without an ownerReference to this "
                    f"policy: {named}{more}"
                )
        reason = REASON_HARDENING_CONFLICT if hardening else REASON_CONFLICT
        return (
            False,
            reason,
            "; ".join(parts) + ". They are never modified; those namespaces are not hardened "
            "until the objects are deleted or renamed",
        )

    def publish_ready(self, status: status_service.StatusBatcher) -> None:
        """Hand every valid policy's Ready condition to the status batcher (which writes
        only what differs from what the policy shows)."""
        for name in self._policies.names():
            entry = self._policies.get(name)
            if entry is None or entry.policy is None:
                continue  # invalid: the policy handler reports PolicyInvalid
            ready, reason, message = self.ready(name)
            status.set_ready(
                name,
                ready=ready,
                reason=reason,
                message=message,
                observed_generation=entry.generation,
            )

    def reconcile(self, name: str) -> Result:
        result = Result(policy=name)
        entry = self._policies.get(name)
        if entry is None:  # deleted: the garbage collector removes what it owned
            with self._lock:
                self._conflicts.pop(name, None)
            return result
        wanted: dict[tuple[str, str], dict[str, Any]] = {}
        if entry.policy is not None:
            now = self._clock()
            desired = admission.build(
                entry.policy, now=now, operator_namespace=self._operator_namespace
            )
            wanted.update({(VAP, n): obj for n, obj in desired.policies.items()})
            wanted.update({(BINDING, n): obj for n, obj in desired.bindings.items()})
            result.next_change = desired.next_change
        orphaned = False
        for object_name in admission.all_names(name):
            # Create and update the policy before its binding; delete the binding first.
            order = KINDS if (VAP, object_name) in wanted else tuple(reversed(KINDS))
            for kind in order:
                want = wanted.get((kind, object_name))
                live = self._inventory.get(kind, object_name)
                owner = owner_uid(live) if live is not None else None
                if live is not None and owner != entry.uid:
                    if owner is not None and owner not in self._known_uids():
                        orphaned = True  # its policy is gone: the garbage collector's
                    elif want is not None:
                        self._conflict(entry.uid, name, kind, live, result)
                    continue
                self._converge(kind, object_name, live, want, result)
        with self._lock:
            if result.conflicts:
                self._conflicts[name] = tuple(result.conflicts)
            else:
                self._conflicts.pop(name, None)
        if orphaned:
            self._schedule(name, self._clock() + ORPHAN_RETRY)
        if result.next_change is not None:
            self._schedule(name, result.next_change)
        if result.writes:
            log.info(
                "admission-reconciled",
                policy=name,
                writes=[f"{w.verb}:{w.kind}/{w.name}" for w in result.writes],
            )
        return result

    def _known_uids(self) -> set[str]:
        out = set()
        for name in self._policies.names():
            entry = self._policies.get(name)
            if entry is not None and entry.uid:
                out.add(entry.uid)
        return out

    def _converge(
        self,
        kind: str,
        name: str,
        live: dict[str, Any] | None,
        want: dict[str, Any] | None,
        result: Result,
    ) -> None:
        if want is None:
            if live is not None:
                result.writes.append(Write("delete", kind, name))
                self._gateway.delete(kind, name=name)
                self._inventory.remove(kind, name)
                self.writes += 1
            return
        if live is not None and matches(live, want):
            return
        if live is None:
            result.writes.append(Write("create", kind, name))
            try:
                stored = self._gateway.create(kind, want)
            except k8s_client.ApiError as e:
                if not e.conflict:
                    raise
                found = self._gateway.get(kind, name=name)  # created meanwhile: look first
                if found is None:
                    raise
                self._inventory.put(kind, found, watched=False)
                raise  # the retry decides on what is there now (ours or not)
        else:
            result.writes.append(Write("patch", kind, name))
            stored = self._gateway.patch(kind, name=name, patch=merge_patch(live, want))
        self.writes += 1
        self._inventory.put(kind, stored, watched=False)

    def _conflict(
        self,
        uid: str,
        policy: str,
        kind: str,
        live: Mapping[str, Any],
        result: Result,
    ) -> None:
        name = str((live.get("metadata") or {}).get("name") or "")
        result.conflicts.append(f"{kind}/{name}")
        live_uid = str((live.get("metadata") or {}).get("uid") or "")
        event = "{}.admission-conflict.{}".format(
            policy[:200], hashlib.sha256(f"{kind}/{live_uid}".encode()).hexdigest()[:12]
        )
        log.warning("admission-object-not-ours", policy=policy, kind=kind, name=name)
        with self._lock:
            if event in self._reported:
                return
            self._reported.add(event)
        self._gateway.post_event_once(
            name=event,
            regarding={
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "name": policy,
                "uid": uid,
            },
            type="Warning",
            reason=REASON_CONFLICT,
            message=(
                f"{kind} {name} exists without an ownerReference to this GuardrailPolicy: "
                "kube-guardrails does not modify it, so admission for this policy is not "
                "what the policy says until it is deleted"
            ),
            action="Apply",
        )


async def requeue_forever(
    *,
    service: AdmissionService,
    queue: workqueue.WorkQueue[str],
    status: status_service.StatusBatcher | None,
    tick: float = 1.0,
) -> None:
    """Queue the policies whose rebuild time has come (exemption expiries: CEL has no
    clock) and refresh their Ready conditions; once a ``tick``, after the first pass."""
    while True:
        await asyncio.sleep(tick)
        if not queue.started:
            continue
        queue.add_many(service.take_due(service.now()))
        if status is not None and queue.drained:
            service.publish_ready(status)
