"""Namespace hardening: make each namespace's managed objects what its policy says.

The use case is one function, :meth:`HardeningService.reconcile`, over one namespace:
it reads the namespace and the live managed objects from the :class:`Inventory` (an
in-memory mirror fed by the watches, so a full resync costs no GETs), asks
``planning.governing_policy`` which policy governs, builds the desired objects
(``builders``) and writes only what differs through a :class:`Gateway`:

- nothing differs: no request at all (start-up and resync included);
- missing: create; differing: merge-patch; no longer wanted: delete;
- ownership is the ownerReference to a GuardrailPolicy uid this process has known
  (:meth:`HardeningService.policy_uids`), never the ``managed-by`` label: removing the
  label does not take an object out of our hands (it is restored), and an object with
  one of our names but without such a reference belongs to someone else: it is never
  touched, the namespace does not count as hardened, and it is reported (a
  ``HardeningConflict`` Warning Event on the namespace, once per object, and the
  governing policy's ``Ready`` condition);
- once the managed objects exist, the namespace gets the readiness label
  ``kube-guardrails.io/hardened: <governing policy uid>`` (the admission readiness gate
  refuses Pods until then); it is removed when no policy selects the namespace (or a
  foreign object stands in the way). That label patch is the only write to a namespace;
- a namespace being deleted (phase ``Terminating``) is left alone.

Events: ``NamespaceHardened`` (Normal) when a namespace gets its first managed objects,
``HardeningRestored`` (Warning) when an object we had put in place was deleted or
edited and we put it back. A policy change rolled out is not a restore.

Errors: 404 (namespace or object gone) and 409 (someone created it first) are normal
and handled here; anything else (outage, throttling) is raised to the work queue,
which retries the namespace with backoff. The periodic resync is the safety net.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

from kube_guardrails import admission, builders, logs, metrics, planning
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.model import policy as policy_model
from kube_guardrails.services import policies as policy_store
from kube_guardrails.services import status as status_service
from kube_guardrails.services import workqueue

log = logs.get(__name__)

KINDS_BY_PLURAL = {k.plural: k for k in builders.MANAGED_KINDS}
MANAGED_NAMES = frozenset(k.name for k in builders.MANAGED_KINDS)

REASON_HARDENED = "NamespaceHardened"
REASON_RESTORED = "HardeningRestored"
REASON_CONFLICT = "HardeningConflict"
# The namespace readiness label (see ``admission``): set once the managed objects exist.
LABEL_HARDENED = admission.LABEL_HARDENED
# After a restart, a hardened namespace whose newest managed object is younger than this
# is checked for its NamespaceHardened Event (one GET), in case the previous process died
# between the create and the post. Older ones were announced long ago (and their Event
# may have expired: the API server keeps Events for an hour).
ANNOUNCE_CHECK_WINDOW = datetime.timedelta(minutes=10)


class OnceEventPoster(Protocol):
    """Posts Events that must not be lost or doubled (``k8s.events.OnceEvents``)."""

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
        """Post under a fixed name; an existing one (409) is success; raises otherwise."""


class Gateway(OnceEventPoster, Protocol):
    """The API operations hardening needs (``k8s/hardening.py``; a fake in tests).

    Each raises ``k8s.client.ApiError`` on failure; ``delete`` returns False if the
    object was already gone.
    """

    def create(self, kind: builders.Kind, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch(
        self, kind: builders.Kind, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def delete(self, kind: builders.Kind, *, namespace: str, name: str) -> bool: ...

    def get(self, kind: builders.Kind, *, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_objects(self, kind: builders.Kind) -> list[dict[str, Any]]: ...

    def list_namespaces(self) -> list[dict[str, Any]]: ...

    def post_event(
        self,
        *,
        regarding: Mapping[str, Any],
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        action: str,
    ) -> None: ...

    def event_names(self, *, reason: str) -> set[str]:
        """Names of our Events with this reason about namespaces (one LIST)."""

    def label_namespace(self, name: str, *, key: str, value: str | None) -> dict[str, Any] | None:
        """Set (or with None remove) one label of a namespace; None if it is gone."""


def conflict_event_name(ns: NamespaceInfo, kind: builders.Kind, live: Mapping[str, Any]) -> str:
    """One ``HardeningConflict`` Event per foreign object (by its uid), never repeated."""
    uid = str((live.get("metadata") or {}).get("uid") or "")
    digest = hashlib.sha256(f"{ns.uid}/{kind.plural}/{uid}".encode()).hexdigest()[:12]
    return f"{ns.name}.conflict.{digest}"


def hardened_event_name(ns: NamespaceInfo) -> str:
    """The fixed name of a namespace's ``NamespaceHardened`` Event: one per namespace
    (by uid), so that posting it again after a failure or a restart cannot duplicate it,
    and a namespace taken over by another policy (patched, not created) is not announced
    again after a restart. (A namespace hardened a second time within the Events' TTL,
    after its policy went away and came back, is therefore not announced twice.)"""
    digest = hashlib.sha256(ns.uid.encode()).hexdigest()[:12]
    return f"{ns.name}.hardened.{digest}"


# --------------------------------------------------------------------------- inventory


@dataclasses.dataclass(frozen=True)
class NamespaceInfo:
    name: str
    uid: str
    labels: Mapping[str, str]
    terminating: bool

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> NamespaceInfo:
        meta = obj.get("metadata") or {}
        phase = (obj.get("status") or {}).get("phase")
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            terminating=phase == "Terminating" or bool(meta.get("deletionTimestamp")),
        )

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "name": self.name, "uid": self.uid}


def _resource_version(obj: Mapping[str, Any]) -> int | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(rv) if rv is not None else None
    except (TypeError, ValueError):
        return None


class Inventory:
    """In-memory mirror of namespaces and of objects bearing our names, fed by watches.

    Our own writes are stored too (write-through), so a reconcile right after a write
    sees it even before the watch echoes it back. A watch event older than what we
    hold (by resourceVersion, when the server's versions are numbers as on etcd) is
    ignored, so a lagging echo cannot make us rewrite what we just wrote.
    Thread-safe: watches update it in the event loop, reconciles read it in threads.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._namespace_versions: dict[str, int] = {}
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}  # (plural, ns) -> object
        # When each entry was last stored: a re-list only drops what it predates.
        self._seen: dict[tuple[str, str], float] = {}

    def put_namespace(self, obj: Mapping[str, Any]) -> NamespaceInfo:
        info = NamespaceInfo.from_object(obj)
        with self._lock:
            self._namespaces[info.name] = info
            self._seen["namespaces", info.name] = self._clock()
        return info

    def update_namespace(self, obj: Mapping[str, Any]) -> bool:
        """Remember a namespace; True if it is new or what hardening depends on changed.

        A version older than the one held (a watch event queued before our readiness
        label patch, whose response was stored here) is ignored: it would make the next
        reconcile write the label again.
        """
        info = NamespaceInfo.from_object(obj)
        version = _resource_version(obj)
        with self._lock:
            held_version = self._namespace_versions.get(info.name)
            if version is not None and held_version is not None and version < held_version:
                return False
            held = self._namespaces.get(info.name)
            self._namespaces[info.name] = info
            if version is not None:
                self._namespace_versions[info.name] = version
            self._seen["namespaces", info.name] = self._clock()
        return held != info

    def remove_namespace(self, name: str) -> None:
        with self._lock:
            self._namespaces.pop(name, None)
            self._namespace_versions.pop(name, None)
            for key in [k for k in self._objects if k[1] == name]:
                del self._objects[key]

    def namespace(self, name: str) -> NamespaceInfo | None:
        with self._lock:
            return self._namespaces.get(name)

    def namespaces(self) -> list[NamespaceInfo]:
        with self._lock:
            return sorted(self._namespaces.values(), key=lambda n: n.name)

    def namespace_names(self) -> list[str]:
        with self._lock:
            return sorted(self._namespaces)

    def put_object(self, kind: builders.Kind, obj: Mapping[str, Any], *, watched: bool) -> bool:
        """Remember an object with one of our names; True if that changed what we hold.

        False for a foreign name, a stale watch event, or the watch echo of our own
        write (same resourceVersion as the response we stored): none of them needs a
        reconcile.
        """
        meta = obj.get("metadata") or {}
        if meta.get("name") != kind.name:
            return False
        key = (kind.plural, str(meta.get("namespace") or ""))
        with self._lock:
            held = self._objects.get(key)
            if watched and held is not None:
                new_rv, old_rv = _resource_version(obj), _resource_version(held)
                if new_rv is not None and old_rv is not None:
                    if new_rv < old_rv:
                        return False
                    if new_rv == old_rv:
                        return False
                elif held == obj:
                    return False
            self._objects[key] = dict(obj)
            self._seen[key] = self._clock()
        return True

    def listed_namespaces(
        self, bodies: Iterable[Mapping[str, Any]], *, started: float
    ) -> tuple[list[str], list[str]]:
        """A complete LIST of namespaces that began at ``started`` (clock time):
        ``(changed, removed)``, the namespaces that are new or changed and those held but
        no longer listed (deleted while unwatched), which are forgotten with their
        objects. An entry stored after the list began (a newer watch event) is kept.
        """
        listed: set[str] = set()
        changed: list[str] = []
        for obj in bodies:
            name = NamespaceInfo.from_object(obj).name
            listed.add(name)
            if self.update_namespace(obj):
                changed.append(name)
        with self._lock:
            removed = [
                name
                for name in self._namespaces
                if name not in listed and self._seen.get(("namespaces", name), 0) < started
            ]
        for name in removed:
            self.remove_namespace(name)
        return changed, removed

    def listed_objects(
        self, kind: builders.Kind, bodies: Iterable[Mapping[str, Any]], *, started: float
    ) -> list[str]:
        """A complete LIST of a kind's objects with our name that began at ``started``:
        the namespaces whose object changed, appeared or went (sorted)."""
        listed: set[str] = set()
        touched: set[str] = set()
        for obj in bodies:
            meta = obj.get("metadata") or {}
            if meta.get("name") != kind.name:
                continue
            namespace = str(meta.get("namespace") or "")
            listed.add(namespace)
            if self.put_object(kind, obj, watched=True):
                touched.add(namespace)
        with self._lock:
            for key in list(self._objects):
                plural, namespace = key
                stale = namespace not in listed and self._seen.get(key, 0) < started
                if plural == kind.plural and stale:
                    del self._objects[key]
                    touched.add(namespace)
        return sorted(touched)

    def relisted(
        self,
        *,
        started: float,
        namespaces: Iterable[Mapping[str, Any]],
        objects: Mapping[builders.Kind, Iterable[Mapping[str, Any]]],
    ) -> list[str]:
        """Reconcile the mirror with fresh LISTs that began at ``started`` (clock time).

        Watches deliver every change, except deletions that happen while a watch is
        down (an outage, a 410 Gone and re-list): those leave stale entries behind.
        A periodic re-list drops entries the lists no longer contain, unless they
        were stored after the lists began (a watch event newer than the list).
        Returns the namespaces dropped (deleted while unwatched).
        """
        _, removed = self.listed_namespaces(namespaces, started=started)
        for kind, objs in objects.items():
            self.listed_objects(kind, objs, started=started)
        return removed

    def clock(self) -> float:
        return self._clock()

    def remove_object(self, kind: builders.Kind, namespace: str) -> None:
        with self._lock:
            self._objects.pop((kind.plural, namespace), None)

    def object(self, kind: builders.Kind, namespace: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((kind.plural, namespace))


NAMESPACE_KIND = "Namespace"


class WatchFeed:
    """The watches of namespaces and of the objects with our names, into the inventory.

    ``k8s.watch`` lists and watches them (kopf's per-object machinery made start-up
    quadratic in their number: at 1,000 namespaces a restart took 22 s and 241 MiB to
    sync); this turns what it delivers, on the event loop, into inventory updates and
    reconciles: a namespace is queued when something hardening depends on changed (a
    new namespace, new labels, an edited or deleted managed object; not the echo of our
    own write). ``namespace_seen``/``namespace_gone`` feed the workload side's namespace
    labels from the same watch. ``complete`` is called once, when every kind has been
    listed: from then on, reconciling cannot mistake "not listed yet" for "missing".
    """

    def __init__(
        self,
        *,
        inventory: Inventory,
        kinds: Iterable[builders.Kind],
        queue: Callable[[str], None],
        complete: Callable[[], None],
        namespace_seen: Callable[[str, Mapping[str, str]], None] | None = None,
        namespace_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._inventory = inventory
        self._kinds = {k.kind: k for k in kinds}
        self._queue = queue
        self._complete = complete
        self._seen = namespace_seen
        self._gone = namespace_gone
        self._pending = {NAMESPACE_KIND, *self._kinds}

    @property
    def is_complete(self) -> bool:
        return not self._pending

    def listed(self, kind: str, bodies: list[Mapping[str, Any]], started: float) -> None:
        """Every object of a kind (first LIST, or a re-LIST after 410 or an outage)."""
        if kind == NAMESPACE_KIND:
            changed, removed = self._inventory.listed_namespaces(bodies, started=started)
            for name in removed:
                self._namespace_gone(name)
            for name in changed:
                self._queue(name)
            if self._seen is not None:
                for body in bodies:
                    meta = body.get("metadata") or {}
                    self._seen(str(meta.get("name") or ""), dict(meta.get("labels") or {}))
        elif kind in self._kinds:
            for namespace in self._inventory.listed_objects(
                self._kinds[kind], bodies, started=started
            ):
                self._queue(namespace)
        if self._pending:
            self._pending.discard(kind)
            if not self._pending:
                self._complete()

    def changed(self, kind: str, event_type: str, body: Mapping[str, Any]) -> None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``)."""
        meta = body.get("metadata") or {}
        if kind == NAMESPACE_KIND:
            name = str(meta.get("name") or "")
            if event_type == "DELETED":
                self._inventory.remove_namespace(name)
                self._namespace_gone(name)
                return
            if self._inventory.update_namespace(body):
                self._queue(name)
            if self._seen is not None:
                self._seen(name, dict(meta.get("labels") or {}))
            return
        managed = self._kinds.get(kind)
        namespace = str(meta.get("namespace") or "")
        if managed is None or not namespace:
            return
        if event_type == "DELETED":
            self._inventory.remove_object(managed, namespace)
            self._queue(namespace)
        elif self._inventory.put_object(managed, body, watched=True):
            self._queue(namespace)

    def _namespace_gone(self, name: str) -> None:
        self._queue(name)  # its leftovers in our bookkeeping are dropped by the reconcile
        if self._gone is not None:
            self._gone(name)


# --------------------------------------------------------------------------- reconcile


@dataclasses.dataclass(frozen=True)
class Write:
    """One write made (or attempted) by a reconcile, for logs, tests and the benchmark."""

    verb: Literal["create", "patch", "delete"]
    kind: str
    namespace: str


@dataclasses.dataclass
class Result:
    namespace: str
    policy: str | None = None
    writes: list[Write] = dataclasses.field(default_factory=list)
    skipped_foreign: list[str] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    hardened: bool = False


def fingerprint(obj: Mapping[str, Any] | None) -> str:
    """A short stable digest of a desired object (to tell a restore from a roll-out)."""
    if obj is None:
        return "absent"
    data = json.dumps(
        {"labels": obj["metadata"].get("labels"), "spec": obj.get("spec")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha1(data.encode(), usedforsecurity=False).hexdigest()[:16]


def merge_patch(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns our fields of ``live`` into ``desired``.

    Labels: ours are set, others' are kept. ownerReferences: a list, so it is replaced
    whole: others' references are kept, any GuardrailPolicy one is replaced by ours.
    spec: keys we do not want become null (removed); lists are replaced whole.
    """
    live_meta = live.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    meta_patch: dict[str, Any] = {"labels": dict(want_meta.get("labels") or {})}
    want_refs = want_meta.get("ownerReferences")
    if want_refs:
        ours = {(r["apiVersion"].split("/")[0], r["kind"]) for r in want_refs}
        kept = [
            r
            for r in live_meta.get("ownerReferences") or []
            if (str(r.get("apiVersion", "")).split("/")[0], r.get("kind")) not in ours
        ]
        meta_patch["ownerReferences"] = kept + list(want_refs)
    return {"metadata": meta_patch, "spec": _spec_patch(live.get("spec"), desired.get("spec"))}


def _spec_patch(live: Any, want: Any) -> Any:
    if not isinstance(want, Mapping) or not isinstance(live, Mapping):
        return want
    out: dict[str, Any] = {}
    for key, value in want.items():
        out[key] = _spec_patch(live.get(key), value) if isinstance(value, Mapping) else value
    for key in live:
        if key not in want:
            out[key] = None
    return out


class HardeningService:
    """Reconciles namespaces; keeps what it last put in place to recognise restores."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        inventory: Inventory,
        policies: policy_store.PolicyStore,
        status: status_service.StatusBatcher | None,
        operator_namespace: str,
        executor: concurrent.futures.Executor | None = None,
        event_executor: concurrent.futures.Executor | None = None,
        wall_clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        telemetry: metrics.Metrics | None = None,
    ) -> None:
        self._gateway = gateway
        self._telemetry = telemetry
        # Policies whose namespace gauges were exported (to drop those of deleted ones).
        self._exported: set[str] = set()
        self._wall_clock = wall_clock
        # namespace -> policy: a NamespaceHardened Event owed (posted until it is posted).
        self._owed: dict[str, str] = {}
        # Namespaces this process has looked at once (the after-restart check is done).
        self._looked_at: set[str] = set()
        # Called (from any thread) when an owed Event could not be posted: reconcile the
        # namespace again later. Set by the composition root (the work queue).
        self.retry_later: Callable[[str], None] | None = None
        # Names of NamespaceHardened Events found at the after-restart check (listed once).
        self._posted_before: set[str] | None = None
        self._posted_lock = threading.Lock()
        self._executor = executor
        # Event posts run in the background on their own threads when given: in a burst
        # they must not queue ahead of the next namespaces' creates.
        self._event_executor = event_executor or executor
        self._inventory = inventory
        self._policies = policies
        self._status = status
        self._operator_namespace = operator_namespace
        self._lock = threading.Lock()
        # (namespace, plural) -> fingerprint of the desired object we last saw in place.
        self._applied: dict[tuple[str, str], str] = {}
        # namespace -> (names of the policies selecting it, best first; hardened by the first?)
        self._results: dict[str, tuple[tuple[str, ...], bool]] = {}
        # namespace -> kinds whose managed name is taken by an object not ours (conflicts).
        self._foreign: dict[str, tuple[str, ...]] = {}
        # Every policy uid this process has known (see policy_uids).
        self._uids_seen: set[str] = set()
        # HardeningConflict Events posted (by name) by this process: a resync posts none.
        self._conflicts_reported: set[str] = set()
        self.published = 0  # status recounts pushed (the liveness probe shows it)

    @property
    def inventory(self) -> Inventory:
        return self._inventory

    def policy_uids(self) -> frozenset[str]:
        """The uids of every GuardrailPolicy this process has known (valid or not).

        Ownership: an object owned by one of them is ours. A policy deleted meanwhile
        still counts, so that its objects are removed or taken over by the next policy
        at once instead of waiting for the garbage collector (and are not reported as
        foreign). A uid this process never saw (a forged reference) does not count.
        """
        with self._lock:
            for name in self._policies.names():
                entry = self._policies.get(name)
                if entry is not None and entry.uid:
                    self._uids_seen.add(entry.uid)
            return frozenset(self._uids_seen)

    def _ours(self, obj: Mapping[str, Any] | None, uids: frozenset[str]) -> bool:
        return obj is not None and builders.is_managed(obj, policy_uids=uids)

    def governing(self, ns: NamespaceInfo) -> policy_model.Policy | None:
        return planning.governing_policy(
            self._policies.valid(),
            namespace=ns.name,
            labels=ns.labels,
            operator_namespace=self._operator_namespace,
        )

    def reconcile(self, namespace: str) -> Result:
        """Bring one namespace's managed objects to the desired state; see module docs."""
        result = Result(namespace=namespace)
        ns = self._inventory.namespace(namespace)
        if ns is None:  # deleted: its objects go with it
            self._forget(namespace)
            return result
        if ns.terminating:
            with self._lock:
                self._results.pop(namespace, None)
            return result
        matched = planning.matching_policies(
            self._policies.valid(),
            namespace=ns.name,
            labels=ns.labels,
            operator_namespace=self._operator_namespace,
        )
        policy = matched[0] if matched else None
        result.policy = policy.name if policy else None
        desired = builders.desired_objects(namespace, policy)
        names = tuple(p.name for p in matched)

        live_before = {kind: self._inventory.object(kind, namespace) for kind in desired}
        uids = self.policy_uids()
        had_ours = any(self._ours(obj, uids) for obj in live_before.values())
        restored: list[str] = []
        created = False
        first_look = namespace not in self._looked_at
        if (
            policy is not None
            and not had_ours
            and any(
                want is not None and live_before[kind] is None for kind, want in desired.items()
            )
        ):
            # Owed from the moment we set out to create the first object: if a create
            # fails, the retry finds the other one in place and must still announce.
            with self._lock:
                self._owed[namespace] = policy.name
        try:
            outcomes = self._each_kind(ns, desired, live_before, result, uids)
        except Exception:
            # Counted as not hardened until a pass succeeds. (Nothing is recorded before
            # a pass: a resync re-checking a hardened namespace must not dip the count.)
            with self._lock:
                self._results[namespace] = (names, False)
            raise
        for kind, outcome in zip(desired, outcomes, strict=True):
            if outcome == "restored":
                restored.append(kind.kind)
            created = created or outcome in ("created", "restored")
            if self._telemetry is not None:
                if outcome == "created":
                    self._telemetry.hardening_created.labels(kind=kind.kind).inc()
                elif outcome == "restored":
                    self._telemetry.hardening_restored.labels(kind=kind.kind).inc()

        result.hardened = policy is not None and not result.skipped_foreign
        with self._lock:
            self._results[namespace] = (names, result.hardened)
            if result.skipped_foreign:
                self._foreign[namespace] = tuple(result.skipped_foreign)
            else:
                self._foreign.pop(namespace, None)
        # First look by this process (after a restart, or a take-over by a standby): the
        # previous one may have died between its creates and the post. Also when some of
        # our objects were in place and we completed the rest (it died between creates).
        if (
            first_look
            and result.hardened
            and policy is not None
            and (had_ours or not result.writes)
        ):
            self._check_announced(ns, policy.name, desired, live_before)  # failed GET: retried
        self._mark_ready(ns, policy if result.hardened else None, result)
        with self._lock:
            self._looked_at.add(namespace)
        if restored:
            self._event(
                result,
                ns,
                type="Warning",
                reason=REASON_RESTORED,
                action="Restore",
                message=f"Restored {', '.join(restored)} of GuardrailPolicy "
                f"{result.policy}: managed objects were deleted or edited",
            )
        with self._lock:
            owed = self._owed.get(namespace)
        if owed is not None and (policy is None or owed != policy.name):
            with self._lock:  # not hardened by that policy any more: nothing to announce
                self._owed.pop(namespace, None)
        elif (
            owed is not None
            and policy is not None
            and any(self._ours(self._inventory.object(kind, namespace), uids) for kind in desired)
        ):
            result.events.append(REASON_HARDENED)
            self._announce(ns, policy.name, desired)
        if result.writes:
            log.info(
                "namespace-reconciled",
                namespace=namespace,
                policy=result.policy,
                writes=[f"{w.verb}:{w.kind}" for w in result.writes],
            )
        return result

    def _announce(
        self,
        ns: NamespaceInfo,
        policy: str,
        desired: Mapping[builders.Kind, dict[str, Any] | None],
    ) -> None:
        """Post the owed NamespaceHardened Event; it stays owed until the post succeeds.

        With an executor the post runs there (the objects are in place; the Event need
        not hold up the next namespace of a burst) and a failure asks for the namespace
        to be reconciled again later (``retry_later``); without one (tests) a failure
        is raised, and the work queue retries. The fixed name makes a repeat harmless.
        """
        post = functools.partial(
            self._gateway.post_event_once,
            name=hardened_event_name(ns),
            regarding=ns.reference(),
            type="Normal",
            reason=REASON_HARDENED,
            action="Harden",
            message=f"Hardened by GuardrailPolicy {policy}: "
            + ", ".join(k.kind for k, v in desired.items() if v is not None),
        )

        def posted() -> None:
            with self._lock:
                if self._owed.get(ns.name) == policy:
                    del self._owed[ns.name]

        if self._event_executor is None:
            post()
            posted()
            return

        def in_background() -> None:
            try:
                post()
            except Exception as e:
                log.warning("namespace-hardened-event-failed", namespace=ns.name, error=str(e))
                if self.retry_later is not None:
                    self.retry_later(ns.name)
                return
            posted()

        self._event_executor.submit(in_background)

    def _check_announced(
        self,
        ns: NamespaceInfo,
        policy: str,
        desired: Mapping[builders.Kind, dict[str, Any] | None],
        live_before: Mapping[builders.Kind, dict[str, Any] | None],
    ) -> None:
        """After a restart: was the NamespaceHardened Event of a recent hardening posted?

        Judged by the objects the previous process left (``live_before``), not by those
        this reconcile just restored, so a restore long after the hardening is not
        announced as a hardening.
        """
        newest: datetime.datetime | None = None
        for kind, want in desired.items():
            live = live_before.get(kind) if want is not None else None
            stamp = ((live or {}).get("metadata") or {}).get("creationTimestamp")
            if not stamp:
                continue
            try:
                when = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            except ValueError:
                continue
            newest = when if newest is None or when > newest else newest
        if newest is None or self._wall_clock() - newest > ANNOUNCE_CHECK_WINDOW:
            return
        # One LIST for every namespace of the first pass, not a GET each; the reconcile
        # workers that need it meanwhile wait for that one (32 concurrent LISTs of every
        # NamespaceHardened Event made a restart after a mass hardening peak at +70 MiB).
        with self._posted_lock:
            posted = self._posted_before
            if posted is None:
                posted = self._gateway.event_names(reason=REASON_HARDENED)
                self._posted_before = posted
        if hardened_event_name(ns) not in posted:
            log.info("namespace-hardened-event-owed", namespace=ns.name, policy=policy)
            with self._lock:
                self._owed[ns.name] = policy

    def _each_kind(
        self,
        ns: NamespaceInfo,
        desired: Mapping[builders.Kind, dict[str, Any] | None],
        live: Mapping[builders.Kind, dict[str, Any] | None],
        result: Result,
        uids: frozenset[str],
    ) -> list[str]:
        """Reconcile every managed kind; in parallel when an executor is configured.

        The kinds are independent objects, so their writes need not wait for each
        other: a new namespace gets its NetworkPolicy and LimitRange in one round trip
        of latency instead of two. Every kind is attempted even if one fails; then the
        first error is raised (the work queue retries the namespace).
        """

        def one(kind: builders.Kind) -> str:
            return self._reconcile_object(
                kind=kind, ns=ns, want=desired[kind], live=live[kind], result=result, uids=uids
            )

        if self._executor is None:
            return [one(kind) for kind in desired]
        futures = [self._executor.submit(one, kind) for kind in desired]
        concurrent.futures.wait(futures)
        return [f.result() for f in futures]

    def _reconcile_object(
        self,
        *,
        kind: builders.Kind,
        ns: NamespaceInfo,
        want: dict[str, Any] | None,
        live: dict[str, Any] | None,
        result: Result,
        uids: frozenset[str],
    ) -> str:
        """Returns what happened: unchanged, created, restored, updated, deleted, skipped."""
        key = (ns.name, kind.plural)
        if live is not None and not builders.is_managed(live, policy_uids=uids):
            if want is not None:
                self._foreign_found(ns, kind, live, result)
            return "skipped"

        if want is None:
            with self._lock:
                self._applied.pop(key, None)
            if live is None:
                return "unchanged"
            self._delete(kind, ns.name, result)
            return "deleted"

        digest = fingerprint(want)
        with self._lock:
            previously = self._applied.get(key)
        if live is not None and builders.matches(live, want):
            with self._lock:
                self._applied[key] = digest
            return "unchanged"

        # Restored: we had this very object in place, and someone deleted or edited it.
        restore = previously == digest
        if live is None:
            outcome = self._create(kind, ns.name, want, result)
            if outcome == "skipped":
                return "skipped"
            if outcome == "gone":
                return "unchanged"
        else:
            self._patch(kind, ns.name, live, want, result)
        with self._lock:
            self._applied[key] = digest
        if restore:
            return "restored"
        return "created" if live is None else "updated"

    # ------------------------------------------------------------------ writes

    def _foreign_found(
        self, ns: NamespaceInfo, kind: builders.Kind, live: Mapping[str, Any], result: Result
    ) -> None:
        """An object with our name that no existing policy owns: report it, never touch it."""
        result.skipped_foreign.append(kind.kind)
        hint = (
            f"{kind.kind} {kind.name} exists without an ownerReference to a GuardrailPolicy: "
            "kube-guardrails does not modify it and the namespace is not hardened (Pods are "
            "refused by the readiness gate) until it is renamed or deleted"
        )
        log.warning("foreign-object-skipped", namespace=ns.name, kind=kind.kind, name=kind.name)
        name = conflict_event_name(ns, kind, live)
        with self._lock:
            if name in self._conflicts_reported:
                return
            self._conflicts_reported.add(name)
        result.events.append(REASON_CONFLICT)
        post = functools.partial(
            self._gateway.post_event_once,
            name=name,
            regarding=ns.reference(),
            type="Warning",
            reason=REASON_CONFLICT,
            message=hint,
            action="Harden",
        )
        if self._event_executor is None:
            post()
        else:
            self._event_executor.submit(_logged, post)

    def _mark_ready(
        self, ns: NamespaceInfo, hardened_by: policy_model.Policy | None, result: Result
    ) -> None:
        """The readiness label: the governing policy's uid once hardened, else absent.

        Compared with the label the namespace watch last showed, so it is written once
        per change (the write-through below keeps a quick second reconcile from
        writing it again before the watch echoes it).
        """
        want = (hardened_by.uid or hardened_by.name) if hardened_by is not None else None
        if ns.labels.get(LABEL_HARDENED) == want:
            return
        result.writes.append(Write("patch", "Namespace", ns.name))
        patched = self._gateway.label_namespace(ns.name, key=LABEL_HARDENED, value=want)
        if patched is not None:
            self._inventory.update_namespace(patched)

    def _create(
        self, kind: builders.Kind, namespace: str, want: dict[str, Any], result: Result
    ) -> str:
        result.writes.append(Write("create", kind.kind, namespace))
        try:
            created = self._gateway.create(kind, want)
        except k8s_client.ApiError as e:
            if e.not_found or (e.status == 403 and "terminat" in e.message.lower()):
                return "gone"  # the namespace went away (or is going) meanwhile
            if not e.conflict:
                raise
            # Someone (a previous run of ours, or a user) has it: look before touching.
            live = self._gateway.get(kind, namespace=namespace, name=kind.name)
            if live is None:
                raise  # deleted again in between: retry later with fresh state
            self._inventory.put_object(kind, live, watched=False)
            if not builders.is_managed(live, policy_uids=self.policy_uids()):
                ns = self._inventory.namespace(namespace)
                if ns is not None:
                    self._foreign_found(ns, kind, live, result)
                else:
                    result.skipped_foreign.append(kind.kind)
                return "skipped"
            if not builders.matches(live, want):
                self._patch(kind, namespace, live, want, result)
            return "created"
        self._inventory.put_object(kind, created, watched=False)
        return "created"

    def _patch(
        self,
        kind: builders.Kind,
        namespace: str,
        live: Mapping[str, Any],
        want: dict[str, Any],
        result: Result,
    ) -> None:
        result.writes.append(Write("patch", kind.kind, namespace))
        try:
            patched = self._gateway.patch(
                kind, namespace=namespace, name=kind.name, patch=merge_patch(live, want)
            )
        except k8s_client.ApiError as e:
            if not e.not_found:
                raise
            # Deleted under our feet: create it on the next round with fresh state.
            self._inventory.remove_object(kind, namespace)
            raise
        self._inventory.put_object(kind, patched, watched=False)

    def _delete(self, kind: builders.Kind, namespace: str, result: Result) -> None:
        result.writes.append(Write("delete", kind.kind, namespace))
        self._gateway.delete(kind, namespace=namespace, name=kind.name)
        self._inventory.remove_object(kind, namespace)

    def _event(
        self,
        result: Result,
        ns: NamespaceInfo,
        *,
        type: Literal["Normal", "Warning"],
        reason: str,
        action: str,
        message: str,
    ) -> None:
        result.events.append(reason)
        post = functools.partial(
            self._gateway.post_event,
            regarding=ns.reference(),
            type=type,
            reason=reason,
            message=message,
            action=action,
        )
        if self._event_executor is None:
            post()
        else:  # the objects are in place; the Event need not hold up the next namespace
            self._event_executor.submit(post)

    def _forget(self, namespace: str) -> None:
        with self._lock:
            self._results.pop(namespace, None)
            self._foreign.pop(namespace, None)
            self._owed.pop(namespace, None)
            self._looked_at.discard(namespace)
            for key in [k for k in self._applied if k[0] == namespace]:
                del self._applied[key]

    # ------------------------------------------------------------------ status

    def counts(self) -> dict[str, tuple[int, int]]:
        """policy -> (namespaces matched, namespaces hardened by it), as last reconciled.

        Built from each namespace's last reconcile (every change that can alter a
        count queues that namespace), so a recount costs no object comparisons.
        """
        out = {p.name: (0, 0) for p in self._policies.valid()}
        with self._lock:
            results = list(self._results.values())
        for names, hardened in results:
            for i, name in enumerate(names):
                if name in out:
                    matched, done = out[name]
                    out[name] = (matched + 1, done + int(i == 0 and hardened))
        return out

    def conflicts(self, policy: str) -> list[str]:
        """``namespace/Kind`` of every managed name a foreign object takes, where
        ``policy`` governs (reported in its Ready condition)."""
        with self._lock:
            return sorted(
                f"{ns}/{kind}"
                for ns, kinds in self._foreign.items()
                if (res := self._results.get(ns)) is not None and res[0][:1] == (policy,)
                for kind in kinds
            )

    def publish_status(self) -> None:
        """Push the namespace counters of every valid policy to the status batcher."""
        counts = self.counts()
        if self._telemetry is not None:
            for name, (matched, hardened) in counts.items():
                self._telemetry.set_policy_namespaces(name, matched=matched, hardened=hardened)
            for gone in self._exported - set(counts):  # deleted (or now invalid) policies
                self._telemetry.forget_policy(gone)
            self._exported = set(counts)
        if self._status is None:
            return
        for name, (matched, hardened) in counts.items():
            self._status.set_namespaces(name, matched=matched, hardened=hardened)
        self.published += 1

    def relist(self) -> list[str]:
        """Refresh the inventory from LISTs (reads only); returns namespaces found gone."""
        started = self._inventory.clock()
        namespaces = self._gateway.list_namespaces()
        objects = {kind: self._gateway.list_objects(kind) for kind in builders.MANAGED_KINDS}
        return self._inventory.relisted(started=started, namespaces=namespaces, objects=objects)

    # ------------------------------------------------------------------ fan-out

    def affected_by_policy(
        self, old: policy_model.Policy | None, new: policy_model.Policy | None
    ) -> list[str]:
        """Namespaces a policy change can affect: those it selected before or selects now."""
        out: list[str] = []
        for ns in self._inventory.namespaces():
            for pol in (old, new):
                if pol is not None and policy_model.selects_namespace(
                    pol, name=ns.name, labels=ns.labels, operator_namespace=self._operator_namespace
                ):
                    out.append(ns.name)
                    break
        return out


async def resync_forever(
    *, queue: workqueue.WorkQueue[str], service: HardeningService, interval: float
) -> None:
    """The safety net: every ``interval`` seconds, re-list and re-check every namespace.

    Watches do the real work; this catches what a lost watch event (a deletion while
    a watch was down) or a bug let slip. It costs four LIST requests and no writes
    when nothing changed: the comparisons run on the in-memory inventory.
    """
    while True:
        await asyncio.sleep(interval)
        if not queue.started:
            continue
        try:
            queue.add_many(await asyncio.to_thread(service.relist))  # gone: forget them
        except Exception as e:  # an outage: re-check from what the watches told us
            log.warning("resync-list-failed", error=repr(e)[:300])
        queue.add_many(service.inventory.namespace_names())


async def publish_status_forever(
    *, service: HardeningService, queue: workqueue.WorkQueue[str], interval: float
) -> None:
    """Recount matched/hardened namespaces now and then (the batcher decides on writes)."""
    while True:
        await asyncio.sleep(interval)
        # Not before the first full pass: partial counts would be written at start-up.
        if queue.started and queue.drained:
            await asyncio.to_thread(service.publish_status)


def _logged(post: Callable[[], None]) -> None:
    try:
        post()
    except Exception as e:  # an Event is auxiliary; the next reconcile does not repeat it
        log.warning("event-post-failed", error=repr(e)[:300])


def reconcile_all(service: HardeningService, names: Iterable[str]) -> list[Result]:
    """Reconcile namespaces one after another (the benchmark and tests use this)."""
    return [service.reconcile(name) for name in names]
