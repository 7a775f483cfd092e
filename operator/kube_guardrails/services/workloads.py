"""Review Pods and pod controllers against every policy that selects their namespace.

The use case behind the workload watches (``k8s.watch``, wired up by
``handlers.runtime``): Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs
and CronJobs (:data:`KINDS`).

1. the policies that select the object's namespace (``planning.matching_policies``,
   with the namespace's labels from the namespace watch) review the object
   (``planning.review``): controllers through their pod template, Pods directly. A
   Deployment's ReplicaSets and a CronJob's Jobs are not reviewed
   (``planning.reviewed_through_owner``): their owner is;
2. the verdict is compared with what the object's own annotation records
   (``violations.annotation_fingerprint``). Only a different set is written: a merge
   patch of two annotations and at most ONE Event (Warning ``GuardrailViolation`` with
   the findings and hints, or Normal ``GuardrailCompliant`` when the last violation
   went). A compliant object without our annotation gets no write at all, and a resync
   or a restart that sees the same set writes nothing (but the Event of a recent set
   that the previous process never posted: :data:`ANNOUNCE_CHECK_WINDOW`);
3. one Event per top-level owner and change: a Pod managed by a reviewed controller
   (through ``ownerReferences`` with ``controller: true``: Pod -> ReplicaSet ->
   Deployment, Pod -> Job -> CronJob, Pod -> StatefulSet or DaemonSet) carries the
   annotation (enforcement works on Pods) but its Events are its top-level owner's,
   as long as the owner's own verdict covers the Pod's violations
   (:meth:`WorkloadService._top_owner`, :meth:`WorkloadService._covered_by`). A Pod
   that violates more than its owner's template (mutated after admission), a
   standalone Pod, and a Pod whose owner is not a watched kind or not found get their
   own Events. An owner not listed yet (the Pod's watch event came first) is waited
   for, at most :data:`OWNER_WAIT`;
4. per-policy counts are kept for ``status.violations`` (handed to the status batcher,
   which coalesces them into few writes). ``byCheck[c]`` counts the workloads (Pods
   and controllers, separately) that fail check ``c``; ``total`` is the sum over checks;
5. Pods with evictable violations go to the :class:`enforcement.Enforcer`.

The last seen workloads are cached here (compact projections), so a policy change, a namespace
relabel or an exemption's expiry re-evaluates exactly the affected objects without a
LIST. All of that runs in one background task (:meth:`WorkloadService.run`), which
also wakes at the next exemption expiry and at the enforcer's next due time.

Not thread-safe by design: everything runs on the operator's event loop; the only
entry point called from other threads, :meth:`WorkloadService.policy_changed`, hops
onto the loop first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from kube_guardrails import (
    API_GROUP,
    API_VERSION,
    KIND,
    logs,
    metrics,
    planning,
    reports,
    violations,
)
from kube_guardrails.checks import engine
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.model import policy as policy_model
from kube_guardrails.services import enforcement
from kube_guardrails.services import policies as policy_store

log = logs.get(__name__)

Key = enforcement.Key
ObjectRef = enforcement.ObjectRef

# The kinds reviewed, with the API group their owner references must name (a "Job" of
# another group is some operator's custom resource, not batch/v1 Job). The watches
# (``k8s.watch.KINDS``) list exactly these.
KIND_GROUPS: Mapping[str, str] = {
    "Pod": "",
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "ReplicaSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
}
KINDS = tuple(KIND_GROUPS)
REASON_VIOLATION = "GuardrailViolation"
REASON_COMPLIANT = "GuardrailCompliant"
REASON_EXEMPTION_EXPIRED = "ExemptionExpired"
# How long a write of ours is trusted over an object body that does not show it yet: an
# event queued before our patch can still arrive after it, and must not cause a second
# write and a duplicate Event.
WRITE_MEMORY = datetime.timedelta(seconds=60)
# After a failed annotation write, look again this much later (the event loop is not
# blocked meanwhile; a newer watch event retries sooner).
RETRY_AFTER = datetime.timedelta(seconds=10)
# Re-reviews done in one go before yielding to the event loop (policy changes can touch
# thousands of objects; watch events must keep flowing meanwhile).
YIELD_EVERY = 100
# Reviews in flight at once: a violating object's review waits on two API calls (the
# annotation patch and the Event), so a burst of violations (a restart, a new policy)
# is written in parallel; compliant objects never wait.
REVIEW_CONCURRENCY = 64
# How long a violating Pod waits for its controller to appear in the cache before it
# gets its own Event. The controller is created before its Pods, but each kind has its
# own watch stream, so a Pod's event can come first; the wait is a few milliseconds
# normally and bounded when the owner never shows up (deleted meanwhile).
OWNER_WAIT = datetime.timedelta(seconds=10)
# How often an annotation write refused as invalid (no room left, 422) is tried again.
REFUSED_RETRY = datetime.timedelta(minutes=10)
# Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob: two links at most.
MAX_OWNER_DEPTH = 2
# The first pass after this replica starts writing looks for the Event of every
# violation set recorded this recently by someone else: the previous process may have
# been stopped or killed between the annotation patch and the Event post (what it still
# owed was in its memory only). Older sets are not looked up (their Events were posted
# or lost long ago, and the API server keeps Events for an hour only).
ANNOUNCE_CHECK_WINDOW = datetime.timedelta(minutes=10)


class Gateway(enforcement.EvictionGateway, Protocol):
    """Everything the workload use cases need from the API (``k8s.workloads``)."""

    async def patch_annotations(
        self, ref: ObjectRef, annotations: Mapping[str, str | None]
    ) -> Mapping[str, Any] | None:
        """Merge-patch ``metadata.annotations`` only (None removes a key).

        Returns the object as patched, or None when it does not exist any more;
        raises on any other failure (the review is then retried later).
        """

    async def event_times(self, *, namespace: str, reason: str) -> Mapping[str, datetime.datetime]:
        """When our Events with ``reason`` in the namespace were last posted, by the uid
        of the object they regard (one LIST); raises when the LIST fails."""


class ReportSink(Protocol):
    """The part of ``services.reports.ReportService`` this use case feeds."""

    def changed(self, namespace: str) -> None:
        """The violations of a namespace changed (its Report may need a write)."""

    def namespace_gone(self, namespace: str) -> None:
        """The namespace was deleted (its Report with it)."""


class StatusSink(Protocol):
    """The part of ``services.status.StatusBatcher`` this use case feeds."""

    def set_violations(self, policy: str, *, total: int, by_check: Mapping[str, int]) -> None:
        """Desired ``status.violations`` of a policy (written in batches)."""


@dataclasses.dataclass(frozen=True)
class _Written:
    uid: str
    fingerprint: str | None  # None: we removed the annotation
    since: datetime.datetime | None
    at: datetime.datetime


@dataclasses.dataclass
class _KeyLock:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0


@dataclasses.dataclass(frozen=True)
class _OwnerWait:
    owner: Key
    since: datetime.datetime


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(body.get("kind") or ""), str(meta.get("namespace") or ""), str(meta["name"]))


class WorkloadService:
    """Reviews workloads, writes what changed, feeds status and enforcement."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        policies: policy_store.PolicyStore,
        status: StatusSink,
        operator_namespace: str,
        clock: Callable[[], datetime.datetime],
        enforcer: enforcement.Enforcer | None = None,
        wait_for: Iterable[str] = (),
        review_concurrency: int = REVIEW_CONCURRENCY,
        telemetry: metrics.Metrics | None = None,
    ) -> None:
        """``wait_for``: the sources (listed kinds, ``namespaces``) whose complete view
        the first review waits for (see :meth:`source_ready`); none: review at once.
        """
        self._gateway = gateway
        self._store = policies
        self._status = status
        self._operator_namespace = operator_namespace
        self._clock = clock
        self.enforcer = enforcer or enforcement.Enforcer(
            gateway=gateway,
            clock=clock,
            operator_namespace=operator_namespace,
        )
        self._objects: dict[Key, Mapping[str, Any]] = {}
        self._namespaces: dict[str, Mapping[str, str]] = {}
        self._waiting_for_namespace: dict[str, set[Key]] = collections.defaultdict(set)
        self._locks: dict[Key, _KeyLock] = {}
        self._written: dict[Key, _Written] = {}
        self._verdicts: dict[Key, planning.Verdict] = {}
        self._dirty: set[Key] = set()
        self._retry: dict[Key, datetime.datetime] = {}
        # Violation Events owed: the annotation (with this fingerprint) may be written
        # but its Event was not posted (the post failed, or the patch failed in a way
        # that may still have applied it, e.g. a timeout). Posted on a later review
        # that finds that annotation, so an outage never loses a violation's Event.
        self._owed_events: dict[Key, str] = {}
        # Annotation writes the API server refused as invalid (422: a workload owner can
        # fill the 256 KiB of annotations so that ours cannot fit): (uid, fingerprint) and
        # when. Tried again only every REFUSED_RETRY (the cache keeps none of the other
        # annotations, so it cannot tell when room is made); the violation's Event is
        # posted once, without the annotation.
        self._refused: dict[Key, tuple[str, str | None, datetime.datetime]] = {}
        # Objects that arrived after the first pass already carrying our violations
        # annotation: not written by the operator (it writes only after it has seen an
        # object), so by the workload owner, e.g. copied from the operator's text so that
        # the set looks announced. Their Event is posted all the same.
        self._copied: set[Key] = set()
        # First pass only: per namespace, the LIST of when our violation Events were
        # posted, by uid (a task: the reviews in that namespace share one request).
        self._announced: dict[str, asyncio.Task[Mapping[str, datetime.datetime]]] = {}
        # status.violations bookkeeping: what each object contributes, and the sums.
        self._contributions: dict[Key, dict[str, frozenset[str]]] = {}
        self._counts: dict[str, collections.Counter[str]] = {}
        self._status_dirty: set[str] = set()
        # The same per namespace, for kube_guardrails_violations{policy,check,namespace}.
        self._telemetry = telemetry
        self._ns_counts: dict[str, collections.Counter[tuple[str, str]]] = {}
        self._ns_dirty: set[str] = set()
        # Policy reports: per namespace, a digest of each violating object's verdict and
        # violations-since (what its Report results are made of), to tell the report
        # service exactly when a namespace's Report may change.
        self._reports: ReportSink | None = None  # attach_reports()
        self._report_marks: dict[str, dict[Key, int]] = {}
        # Exemptions already announced as expired: (policy, uid, index, expires).
        self._expired_reported: set[tuple[str, str, int, datetime.datetime]] = set()
        # Violating Pods whose controller is not cached yet (transient), by Pod and by owner.
        self._owner_wait: dict[Key, _OwnerWait] = {}
        self._waiting_for_owner: dict[Key, set[Key]] = {}
        # Owners' violation sets computed for their Pods' Event decision, within one
        # pass of reviews (cleared after it): the body they were computed from, and items.
        self._owner_items: dict[Key, tuple[Mapping[str, Any], tuple[violations.Item, ...]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_sources = set(wait_for)
        self._synced = not self._pending_sources
        self._first_pass = False  # the first full review after sync is still running
        self._first_pass_done = False  # objects arriving later are new to the cluster
        self._concurrency = max(1, review_concurrency)
        self._wake: asyncio.Event | None = None
        self.writes = 0  # annotation patches done (probe, benchmark, tests)
        self.reviews = 0  # objects reviewed (probe, tests: "it has looked at it")

    # ------------------------------------------------------------------ watch inputs

    async def observe(self, body: Mapping[str, Any]) -> None:
        """A workload was listed, added or modified: review it now."""
        if body.get("kind") not in KINDS:
            return
        key = key_of(body)
        self._arrived(key, self._objects.get(key), body)
        self._objects[key] = body
        self._owner_arrived(key)
        await self._review(key)
        self._flush_status()

    def listed(self, kind: str, bodies: list[Mapping[str, Any]], started: float = 0.0) -> None:
        """The complete set of objects of a kind (initial LIST, or a re-LIST after 410).
        (``started``, when the LIST began, is not needed: only watch events, delivered
        after the list, change this cache.)

        Objects of that kind not in it were deleted while we were not watching. Every
        listed object is reviewed again (a review that finds nothing changed writes
        nothing), in the background task, with bounded concurrency.
        """
        fresh = {key_of(b): b for b in bodies if b.get("kind") == kind}
        for key in [k for k in self._objects if k[0] == kind and k not in fresh]:
            self._drop(key, uid="")
        self._objects.update(fresh)
        self._dirty.update(fresh)
        for key in fresh:
            self._owner_arrived(key)
        self.source_ready(kind)
        self._poke()

    def changed(self, kind: str, event_type: str, body: Mapping[str, Any]) -> None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``) of a listed kind."""
        if body.get("kind") != kind:
            return
        key = key_of(body)
        if event_type == "DELETED":
            meta = body.get("metadata") or {}
            self._drop(key, uid=str(meta.get("uid") or ""))
            self._flush_status()
            return
        old = self._objects.get(key)
        self._arrived(key, old, body)
        self._objects[key] = body
        self._owner_arrived(key)
        if old is not None and same_content(old, body):
            # A status-only update (projections hold no status but a Pod's phase): the
            # verdict cannot have changed. Controllers' and Pods' status changes are
            # most of a busy cluster's watch events.
            return
        self._dirty.add(key)
        self._poke()

    def _arrived(self, key: Key, old: Mapping[str, Any] | None, body: Mapping[str, Any]) -> None:
        """Note a new object that carries our violations annotation already (``_copied``)."""
        if old is not None or not self._first_pass_done or key in self._written:
            return
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        if violations.ANNOTATION_VIOLATIONS in annotations:
            self._copied.add(key)

    def _owner_arrived(self, key: Key) -> None:
        """A controller is cached now: Pods that waited for it are reviewed again."""
        if not self._waiting_for_owner:
            return
        waiting = self._waiting_for_owner.pop(key, None)
        if waiting:
            self._dirty.update(waiting)
            self._poke()

    def source_ready(self, source: str) -> None:
        """One of the sources the first review waits for has its complete view.

        The sources are the listed kinds and ``namespaces`` (every namespace listed and
        kopf's policy index complete: ``handlers.runtime``). Reviewing before all of them are
        complete could mistake "not listed yet" for "compliant" (and write) or count a
        partial set into ``status.violations``.
        """
        self._pending_sources.discard(source)
        if not self._pending_sources:
            self._poke()

    @property
    def pending_reviews(self) -> int:
        """Objects waiting to be reviewed (the ``reviews`` queue depth)."""
        return len(self._dirty)

    @property
    def object_count(self) -> int:
        return len(self._objects)

    @property
    def is_synced(self) -> bool:
        """Has the initial listing been counted (see :meth:`synced`)?"""
        return self._synced

    async def synced(self) -> None:
        """Mark every source complete and take the initial view (tests, no watches)."""
        for source in list(self._pending_sources):
            self.source_ready(source)
        self._sync()

    def _sync(self) -> None:
        """Every source is complete: review everything once, then let status flow.

        Status writes wait until the first full pass (``run_due``) has counted every
        object, so a restart writes ``violations`` once, not a partial count first.
        """
        if self._synced or self._pending_sources:
            return
        self._synced = True
        self._first_pass = True
        self._dirty.update(self._objects)
        self._status_dirty.update(p.name for p in self._store.valid())
        log.info("workloads-synced", objects=len(self._objects))
        self._poke()

    async def forget(self, body: Mapping[str, Any]) -> None:
        """A Pod or Deployment was deleted: drop everything we hold about it."""
        self._drop(key_of(body), uid=str((body.get("metadata") or {}).get("uid") or ""))
        self._flush_status()

    def _drop(self, key: Key, *, uid: str) -> None:
        self._objects.pop(key, None)
        self._written.pop(key, None)
        self._verdicts.pop(key, None)
        self._dirty.discard(key)
        self._retry.pop(key, None)
        self._owed_events.pop(key, None)
        self._refused.pop(key, None)
        self._copied.discard(key)
        waiting = self._waiting_for_namespace.get(key[1])
        if waiting is not None:
            waiting.discard(key)
        self.enforcer.forget(key, gone=True)
        self._owner_items.pop(key, None)
        self._stop_waiting_for_owner(key)
        if uid:
            self.enforcer.forget_uid(uid)
        self._set_contribution(key, {})
        self._mark_report(key, None)

    def namespace_seen(self, name: str, labels: Mapping[str, str] | None) -> None:
        """A namespace was listed or changed; a relabel can change which policies apply."""
        new = dict(labels or {})
        old = self._namespaces.get(name)
        self._namespaces[name] = new
        waiting = self._waiting_for_namespace.pop(name, set())
        self._dirty.update(waiting)
        if old is not None and old != new:
            self._owner_items.clear()
            self._dirty.update(k for k in self._objects if k[1] == name)
        if self._dirty:
            self._poke()

    def namespace_known(self, name: str) -> bool:
        """Has the namespace watch reported it (so its workloads can be reviewed)?"""
        return name in self._namespaces

    def namespace_gone(self, name: str) -> None:
        self._namespaces.pop(name, None)
        self._waiting_for_namespace.pop(name, None)
        if self._reports is not None:
            self._reports.namespace_gone(name)

    def policy_changed(
        self, name: str, old: policy_model.Policy | None, new: policy_model.Policy | None
    ) -> None:
        """``PolicyStore`` listener; may be called from any thread (sync kopf handlers)."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._policy_changed, name, old, new)
        else:
            self._policy_changed(name, old, new)

    def _policy_changed(
        self, name: str, old: policy_model.Policy | None, new: policy_model.Policy | None
    ) -> None:
        affected = {
            k
            for k in self._objects
            if any(
                p is not None
                and policy_model.selects_namespace(
                    p,
                    name=k[1],
                    labels=self._namespaces.get(k[1]),
                    operator_namespace=self._operator_namespace,
                )
                for p in (old, new)
            )
        }
        log.info("policy-changed-reevaluating", policy=name, workloads=len(affected))
        self._owner_items.clear()
        self._dirty.update(affected)
        if new is None:
            self._counts.pop(name, None)
            self._status_dirty.discard(name)
        else:
            self._status_dirty.add(name)  # even zero: a new policy shows violations.total 0
        self._poke()

    # ------------------------------------------------------------------ background

    async def run(self) -> None:
        """The one background task: re-reviews, exemption expiries, enforcement."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            try:
                next_at = await self.run_due()
            except Exception as e:  # one bad round must not end enforcement for good
                log.exception("workloads-background-failed", error=repr(e))
                next_at = self._clock() + RETRY_AFTER
            timeout = None
            if next_at is not None:
                timeout = max(0.0, (next_at - self._clock()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def run_due(self) -> datetime.datetime | None:
        """Do whatever is due now; return when something is due next (None: nothing)."""
        if not self._synced:
            if self._pending_sources:
                return None  # source_ready() pokes the task when the last one is complete
            self._sync()
        now = self._clock()
        next_expiry = await self._expire_exemptions(now)
        for key, at in list(self._retry.items()):
            if at <= now:
                del self._retry[key]
                self._dirty.add(key)
        while self._dirty:
            batch = iter(sorted(self._dirty))
            self._dirty.clear()
            await asyncio.gather(*(self._review_from(batch) for _ in range(self._concurrency)))
        self._owner_items.clear()  # a per-pass memo: owners change between passes
        if self._first_pass:
            self._first_pass = False
            self._first_pass_done = True
            self._announced.clear()
            log.info("workloads-reviewed", objects=len(self._objects), writes=self.writes)
        self._flush_status()
        next_enforcement = await self.enforcer.run_due()
        candidates = [t for t in (next_expiry, next_enforcement, *self._retry.values()) if t]
        return min(candidates, default=None)

    async def _review_from(self, keys: Iterator[Key]) -> None:
        """One of the concurrent reviewers of a batch: takes the next key until none left."""
        for n, key in enumerate(keys):
            await self._review(key)
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let watch events in during a long pass

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ review

    async def _review(self, key: Key) -> None:
        # One lock per object under review (not per known object): counted users, so
        # it is dropped only when no other review of the same object waits on it.
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                await self._review_unlocked(key)
        finally:
            entry.users -= 1
            if entry.users == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    async def _review_unlocked(self, key: Key) -> None:
        body = self._objects.get(key)
        if body is None:
            return
        started = time.perf_counter()
        now = self._clock()
        if planning.reviewed_through_owner(body):
            self._clear_owned_controller(key)
            self.reviews += 1
            return
        evaluated = self._evaluate(key, body, now)
        if evaluated is None:
            return
        verdict, items, matched = evaluated
        await self._sync_annotation(key, body, verdict, items, matched, now)
        self._mark_report(key, verdict)
        self.reviews += 1  # counted when done, writes included
        if self._telemetry is not None:
            self._telemetry.review_duration.labels(kind=key[0]).observe(
                time.perf_counter() - started
            )

    def _evaluate(
        self, key: Key, body: Mapping[str, Any], now: datetime.datetime
    ) -> tuple[planning.Verdict, tuple[violations.Item, ...], list[policy_model.Policy]] | None:
        """Verdict and violation set of an object, counted for status; None if undecidable."""
        kind, namespace, _ = key
        ns_labels = self._namespaces.get(namespace)
        if ns_labels is None:
            # Not yet seen on the namespace watch: the selector cannot be decided, and
            # deciding "no policy applies" would wrongly clear annotations.
            self._waiting_for_namespace[namespace].add(key)
            return None
        compiled = planning.matching_policies(
            self._store.compiled(),
            namespace=namespace,
            labels=ns_labels,
            operator_namespace=self._operator_namespace,
        )
        matched = [c.policy for c in compiled]
        verdict = review(body, compiled, namespace=namespace, now=now)
        if verdict.findings:
            self._verdicts[key] = verdict
        else:  # compliant objects are the many: keep nothing for them
            self._verdicts.pop(key, None)
        by_name = {p.name: p for p in matched}
        items = violations.items_of(verdict.findings, policies=by_name, kind=kind)
        self._set_contribution(key, _checks_by_policy(items))
        return verdict, items, matched

    async def _sync_annotation(
        self,
        key: Key,
        body: Mapping[str, Any],
        verdict: planning.Verdict,
        items: tuple[violations.Item, ...],
        matched: list[policy_model.Policy],
        now: datetime.datetime,
    ) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        annotations = meta.get("annotations") or {}
        written = self._written.get(key)
        recorded = violations.annotation_fingerprint(annotations)
        if items and key in self._copied:
            recorded = None  # not ours (see _copied): as if absent, so written and announced
        # Output only: whether to write the since annotation, never when to evict (the
        # enforcer keeps its own clock; anyone may edit an annotation).
        since = violations.parse_since(annotations)
        desired = violations.fingerprint(items) if items else None
        trusted = (
            written is not None
            and written.uid == uid
            and written.fingerprint == desired
            and now - written.at < WRITE_MEMORY
        )
        if not items:
            self.enforcer.forget(key)
            self._owed_events.pop(key, None)
            if recorded is None and since is None:
                return  # compliant and unannotated: the common case writes nothing
            if trusted:
                return  # we removed it already; this body predates our patch
            previous = annotations.get(violations.ANNOTATION_VIOLATIONS)
            # A Pod with a known top-level owner: the owner's own review tells.
            speaks = key[0] != "Pod" or self._top_owner(key, body, now, wait=False)[0] is None
            patched = await self._patch(
                key,
                body,
                {violations.ANNOTATION_VIOLATIONS: None, violations.ANNOTATION_SINCE: None},
                fingerprint=None,
                since=None,
                now=now,
            )
            if patched and speaks:
                await self._gateway.post_event(
                    regarding=ObjectRef.of(body),
                    type="Normal",
                    reason=REASON_COMPLIANT,
                    message=violations.compliant_message(previous),
                    action="Review",
                )
                log.info("workload-compliant", kind=key[0], namespace=key[1], name=key[2])
            return

        assert desired is not None  # items is not empty
        if recorded != desired or since is None:
            if trusted and written is not None and written.since is not None:
                since = written.since
            else:
                changed = recorded != desired
                speaks = changed
                if changed and key[0] == "Pod":
                    owner, wait = self._top_owner(key, body, now, wait=True)
                    if wait:
                        return  # reviewed again when the owner is cached, or at the deadline
                    speaks = owner is None or not self._covered_by(owner, items, matched, now)
                since = now
                values: dict[str, str | None] = {
                    violations.ANNOTATION_VIOLATIONS: violations.render(items),
                    violations.ANNOTATION_SINCE: violations.format_time(now),
                }
                if not changed:
                    values = {violations.ANNOTATION_SINCE: violations.format_time(now)}
                refused = self._refused.get(key)
                known = refused is not None and refused[:2] == (uid, desired)
                if known and refused is not None and now - refused[2] < REFUSED_RETRY:
                    patched = False  # refused lately: its Event is posted already
                else:
                    if speaks:
                        # Owed until posted: a failed patch may still have been applied.
                        self._owed_events[key] = desired
                    elif changed:
                        self._owed_events.pop(key, None)
                    patched = await self._patch(
                        key, body, values, fingerprint=desired, since=since, now=now
                    )
                    if not patched and key in self._refused:
                        # No room for the annotation on this object: the developer still
                        # gets the Event (once per violation set).
                        self._owed_events.pop(key, None)
                        if speaks and changed and not known:
                            await self._post_violation(key, body, verdict, items, matched, now)
                    elif patched:
                        self._refused.pop(key, None)
                # Whether or not the annotation could be written, enforcement goes on
                # (below): it never depends on a write the workload owner can make fail.
                if patched and speaks and not known:
                    await self._post_violation(key, body, verdict, items, matched, now)
                if patched and changed:
                    log.info(
                        "workload-violations-changed",
                        kind=key[0],
                        namespace=key[1],
                        name=key[2],
                        violations=violations.render(items),
                        reported_on="itself" if speaks else "owner",
                    )
        elif self._owed_events.get(key) == desired or await self._unannounced(
            key, body, items, matched, since, now
        ):
            # The annotation is in place but its Event was never posted: post it now.
            await self._post_violation(key, body, verdict, items, matched, now)
        if key[0] == "Pod" and any(item.enforced for item in items):
            self.enforcer.track(
                key,
                enforcement.Subject(
                    pod=self._objects.get(key, body),
                    findings=verdict.findings,
                    policies=tuple(matched),
                ),
            )
            self._poke()  # the background task may be asleep until much later
        else:
            self.enforcer.forget(key)

    async def _unannounced(
        self,
        key: Key,
        body: Mapping[str, Any],
        items: tuple[violations.Item, ...],
        matched: list[policy_model.Policy],
        since: datetime.datetime | None,
        now: datetime.datetime,
    ) -> bool:
        """Is the Event of an annotation found in place missing (see ANNOUNCE_CHECK_WINDOW)?

        Asked on the first pass only, for sets this process did not write and that were
        recorded recently, and only of objects that speak for themselves (a Pod covered
        by its owner never had an Event). One LIST per namespace with such an object; a
        failed LIST posts nothing (an API outage at start-up must not post every recent
        Event a second time).
        """
        if not self._first_pass or since is None or key in self._written:
            return False
        if now - since > ANNOUNCE_CHECK_WINDOW:
            return False
        if key[0] == "Pod":
            owner, _ = self._top_owner(key, body, now, wait=False)
            if owner is not None and self._covered_by(owner, items, matched, now):
                return False
        namespace = key[1]
        listing = self._announced.get(namespace)
        if listing is None:
            listing = self._announced[namespace] = asyncio.ensure_future(
                self._gateway.event_times(namespace=namespace, reason=REASON_VIOLATION)
            )
        try:
            posted = await listing
        except Exception as e:
            log.warning("violation-events-unreadable", namespace=namespace, error=str(e))
            return False
        uid = str((body.get("metadata") or {}).get("uid") or "")
        last = posted.get(uid)
        if last is not None and last >= since:
            return False
        log.info("violation-event-missing", kind=key[0], namespace=namespace, name=key[2])
        return True

    async def _post_violation(
        self,
        key: Key,
        body: Mapping[str, Any],
        verdict: planning.Verdict,
        items: tuple[violations.Item, ...],
        matched: list[policy_model.Policy],
        now: datetime.datetime,
    ) -> None:
        """The Warning Event of a violation set; kept owed (retried) until it is posted."""
        posted = await self._gateway.post_event(
            regarding=ObjectRef.of(body),
            type="Warning",
            reason=REASON_VIOLATION,
            message=violations.violation_message(
                verdict.findings,
                eviction_note=_eviction_note(
                    key[0], verdict.findings, items=items, matched=matched
                ),
            ),
            action="Review",
        )
        if posted:
            self._owed_events.pop(key, None)
        else:
            log.warning("violation-event-owed", kind=key[0], namespace=key[1], name=key[2])
            self._retry[key] = now + RETRY_AFTER

    async def _patch(
        self,
        key: Key,
        body: Mapping[str, Any],
        annotations: Mapping[str, str | None],
        *,
        fingerprint: str | None,
        since: datetime.datetime | None,
        now: datetime.datetime,
    ) -> bool:
        """Write the annotations; True when written (and the Event should follow)."""
        ref = ObjectRef.of(body)
        try:
            patched = await self._gateway.patch_annotations(ref, annotations)
        except Exception as e:  # outage, 409 (uid changed), 5xx: look again later, no Event
            if isinstance(e, k8s_client.ApiError) and e.status == 422:
                # Invalid: the object's annotations leave no room for ours. Retrying
                # cannot help until they change (the watch event brings the object back).
                self._refused[key] = (ref.uid or "", fingerprint, now)
                self._retry[key] = now + REFUSED_RETRY
                log.warning(
                    "annotation-write-refused",
                    kind=key[0],
                    namespace=key[1],
                    name=key[2],
                    error=str(e),
                )
                return False
            log.warning(
                "annotation-write-failed", kind=key[0], namespace=key[1], name=key[2], error=str(e)
            )
            self._retry[key] = now + RETRY_AFTER
            return False
        self.writes += 1
        self._copied.discard(key)
        if patched is None:  # deleted meanwhile: the DELETED event will clean up
            self._objects.pop(key, None)
            return False
        if self._objects.get(key) is body:
            # The cached projection with what the patch changed, not the full body the
            # API server returned (managedFields and all).
            self._objects[key] = with_annotations(body, annotations, patched)
        self._written[key] = _Written(
            uid=ref.uid or "", fingerprint=fingerprint, since=since, at=now
        )
        return True

    # ------------------------------------------------------------------ owners

    def _clear_owned_controller(self, key: Key) -> None:
        """A controller reviewed through its owner holds no verdict and is never written.

        Its annotations are left alone: the Deployment controller copies a Deployment's
        annotations, ours included, to its ReplicaSets (removing the copy would start a
        tug of war with it), and a Job created from a CronJob carries no annotation of
        the CronJob's.
        """
        self._set_contribution(key, {})
        self._verdicts.pop(key, None)

    def _top_owner(
        self, key: Key, body: Mapping[str, Any], now: datetime.datetime, *, wait: bool
    ) -> tuple[Key | None, bool]:
        """(the Pod's top-level reviewed owner or None, whether to wait for the cache).

        Follows ``ownerReferences`` with ``controller: true`` through the cache: a Pod's
        ReplicaSet, then that ReplicaSet's Deployment (a ReplicaSet or Job reviewed
        through its owner is a link, not a top). A reference must name a reviewed kind
        of the right API group and the cached object's uid (a recreated namesake is not
        the owner). None: a standalone Pod, an owner of another kind (custom
        controllers), or one not in the cache; with ``wait``, a missing owner of a
        watched kind first makes the Pod wait (up to :data:`OWNER_WAIT` in total).
        Two dictionary lookups at most: nothing here grows with the number of objects.
        """
        namespace = key[1]
        current = body
        for _ in range(MAX_OWNER_DEPTH):
            ref = planning.controller_ref(current)
            if ref is None:
                return None, False
            kind = str(ref.get("kind") or "")
            group = str(ref.get("apiVersion") or "").rpartition("/")[0]
            if kind == "Pod" or KIND_GROUPS.get(kind) != group:
                return None, False
            owner_key = (kind, namespace, str(ref.get("name") or ""))
            owner = self._objects.get(owner_key)
            uid = ref.get("uid")
            if owner is None or (uid and (owner.get("metadata") or {}).get("uid") != uid):
                if wait and self._wait_for_owner(key, owner_key, now):
                    return None, True
                self._stop_waiting_for_owner(key)
                return None, False
            if not planning.reviewed_through_owner(owner):
                self._stop_waiting_for_owner(key)
                return owner_key, False
            current = owner
        return None, False

    def _wait_for_owner(self, key: Key, owner: Key, now: datetime.datetime) -> bool:
        """Wait (True) unless this Pod has waited :data:`OWNER_WAIT` already."""
        waited = self._owner_wait.get(key)
        since = waited.since if waited is not None else now
        if now - since >= OWNER_WAIT:
            log.info("owner-not-found", kind=key[0], namespace=key[1], name=key[2], owner=owner)
            return False
        if waited is not None and waited.owner != owner:
            self._stop_waiting_for_owner(key)
        self._owner_wait[key] = _OwnerWait(owner=owner, since=since)
        self._waiting_for_owner.setdefault(owner, set()).add(key)
        deadline = since + OWNER_WAIT
        self._retry[key] = min(self._retry.get(key, deadline), deadline)
        self._poke()
        return True

    def _stop_waiting_for_owner(self, key: Key) -> None:
        waited = self._owner_wait.pop(key, None)
        if waited is None:
            return
        keys = self._waiting_for_owner.get(waited.owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._waiting_for_owner[waited.owner]

    def _covered_by(
        self,
        owner: Key,
        items: tuple[violations.Item, ...],
        matched: list[policy_model.Policy],
        now: datetime.datetime,
    ) -> bool:
        """Does the owner's own verdict include every violation of the Pod?

        Compared per (policy, check), the Pod's failing containers a subset of the
        owner's: a Pod may fail less than its template (a LimitRange filled in its
        resources), never more unless it was changed after admission (then it speaks
        for itself).
        """
        body = self._objects.get(owner)
        if body is None:
            return False
        memo = self._owner_items.get(owner)
        if memo is not None and memo[0] is body:
            owner_items = memo[1]
        else:
            # The store's compiled forms of the same policies (compiled once per change).
            names = {p.name for p in matched}
            compiled = [c for c in self._store.compiled() if c.policy.name in names]
            verdict = review(body, compiled, namespace=owner[1], now=now)
            owner_items = violations.items_of(
                verdict.findings, policies={p.name: p for p in matched}, kind=owner[0]
            )
            self._owner_items[owner] = (body, owner_items)
        failing = {(i.policy, i.check): frozenset(i.containers) for i in owner_items}
        return all(
            (i.policy, i.check) in failing and set(i.containers) <= failing[(i.policy, i.check)]
            for i in items
        )

    # ------------------------------------------------------------------ exemptions

    async def _expire_exemptions(self, now: datetime.datetime) -> datetime.datetime | None:
        """Announce exemptions that expired and re-review what they covered.

        Returns the next future expiry, so the background task wakes exactly then.
        Announced once per exemption per process (a restart may announce it once more).
        """
        upcoming: list[datetime.datetime] = []
        for pol in self._store.valid():
            for ex in pol.workloads.exemptions:
                if not ex.expired(now):
                    upcoming.append(ex.expires)
                    continue
                marker = (pol.name, pol.uid, ex.index, ex.expires)
                if marker in self._expired_reported:
                    continue
                self._expired_reported.add(marker)
                self._owner_items.clear()
                checks = ", ".join(sorted(ex.checks)) or "all checks"
                await self._gateway.post_event(
                    regarding=ObjectRef(
                        api_version=f"{API_GROUP}/{API_VERSION}",
                        kind=KIND,
                        name=pol.name,
                        uid=pol.uid or None,
                    ),
                    type="Warning",
                    reason=REASON_EXEMPTION_EXPIRED,
                    message=(
                        f"Exemption spec.workloads.exemptions[{ex.index}] ({ex.reason}) expired "
                        f"at {violations.format_time(ex.expires)}: {checks} apply again"
                    )[: violations.MAX_EVENT_MESSAGE],
                    action="Review",
                )
                log.warning(
                    "exemption-expired", policy=pol.name, index=ex.index, expires=str(ex.expires)
                )
                self._dirty.update(
                    k
                    for k in self._objects
                    if policy_model.selects_namespace(
                        pol,
                        name=k[1],
                        labels=self._namespaces.get(k[1]),
                        operator_namespace=self._operator_namespace,
                    )
                )
        return min(upcoming, default=None)

    # ------------------------------------------------------------------ status

    def _set_contribution(self, key: Key, checks: Mapping[str, frozenset[str]]) -> None:
        old = self._contributions.get(key, {})
        if old == checks:
            return
        for pol in set(old) | set(checks):
            before, after = old.get(pol, frozenset()), checks.get(pol, frozenset())
            if before == after:
                continue
            counter = self._counts.setdefault(pol, collections.Counter())
            counter.subtract(before - after)
            counter.update(after - before)
            self._status_dirty.add(pol)
        if checks:
            self._contributions[key] = dict(checks)
        else:
            self._contributions.pop(key, None)
        if self._telemetry is not None:
            namespace = key[1]
            ns_counter = self._ns_counts.setdefault(namespace, collections.Counter())
            ns_counter.subtract((p, c) for p, cs in old.items() for c in cs)
            ns_counter.update((p, c) for p, cs in checks.items() for c in cs)
            self._ns_dirty.add(namespace)

    def verdict(self, key: Key) -> planning.Verdict | None:
        """The last verdict on a violating object (its annotation and Event came from it).

        None for an object that was compliant when last reviewed, or is unknown.
        """
        return self._verdicts.get(key)

    def counts(self, policy: str) -> tuple[int, dict[str, int]]:
        """(total, byCheck) of ``status.violations`` for a policy, as last computed."""
        counter = self._counts.get(policy) or collections.Counter()
        by_check = {c: n for c, n in sorted(counter.items()) if n > 0}
        return sum(by_check.values()), by_check

    def _flush_status(self) -> None:
        if not self._synced or self._first_pass:
            return
        if self._telemetry is not None:
            for namespace in self._ns_dirty:
                counter = self._ns_counts.get(namespace) or collections.Counter()
                current = {pc: n for pc, n in counter.items() if n > 0}
                self._telemetry.set_namespace_violations(namespace, current)
                if not current:
                    self._ns_counts.pop(namespace, None)
            self._ns_dirty.clear()
        known = {p.name for p in self._store.valid()}
        for pol in sorted(self._status_dirty):
            if pol in known:
                total, by_check = self.counts(pol)
                self._status.set_violations(pol, total=total, by_check=by_check)
        self._status_dirty.clear()

    # ------------------------------------------------------------------ reports

    def attach_reports(self, sink: ReportSink) -> None:
        """Feed the report service (built after this one: it reads from it, see
        ``services.reports.FromReviews``); changes from now on are reported."""
        self._reports = sink
        for namespace in self._report_marks:
            sink.changed(namespace)

    def _mark_report(self, key: Key, verdict: planning.Verdict | None) -> None:
        """Tell the report service when what a Report shows of this object changed."""
        if self._reports is None:
            return
        namespace = key[1]
        marks = self._report_marks.get(namespace)
        if verdict is not None and verdict.findings:
            meta = (self._objects.get(key) or {}).get("metadata") or {}
            since = (meta.get("annotations") or {}).get(violations.ANNOTATION_SINCE)
            mark = hash((verdict.findings, since, meta.get("uid")))
            if marks is None:
                marks = self._report_marks[namespace] = {}
            if marks.get(key) != mark:
                marks[key] = mark
                self._reports.changed(namespace)
        elif marks is not None and marks.pop(key, None) is not None:
            if not marks:
                del self._report_marks[namespace]
            self._reports.changed(namespace)

    def reports_ready(self) -> bool:
        """Has every object been reviewed once (so "no violations" is known)?"""
        return self._synced and not self._first_pass

    def violating_namespaces(self) -> list[str]:
        return list(self._report_marks)

    def report_entries(self, namespace: str) -> list[reports.Entry]:
        """The violating objects of a namespace as OpenReports entries."""
        out: list[reports.Entry] = []
        for key in self._report_marks.get(namespace, {}):
            verdict = self._verdicts.get(key)
            body = self._objects.get(key)
            if verdict is None or body is None:
                continue
            meta = body.get("metadata") or {}
            subject = reports.Subject(
                kind=key[0],
                name=key[2],
                api_version=str(body.get("apiVersion") or ("v1" if key[0] == "Pod" else "")),
                uid=str(meta.get("uid") or ""),
            )
            since = violations.parse_since(meta.get("annotations"))
            out.append(reports.Entry(subject=subject, findings=verdict.findings, since=since))
        return out


def review(
    body: Mapping[str, Any],
    policies: Sequence[planning.CompiledPolicy | policy_model.Policy],
    *,
    namespace: str,
    now: datetime.datetime,
) -> planning.Verdict:
    """The operator's verdict on one object (the same call the offline audit makes)."""
    pod = engine.pod_input(body)
    if pod is None:
        return planning.Verdict(findings=())
    labels = (body.get("metadata") or {}).get("labels") or {}
    return planning.review(pod, policies, namespace=namespace, labels=labels, now=now)


def _checks_by_policy(items: tuple[violations.Item, ...]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for item in items:
        out.setdefault(item.policy, set()).add(item.check)
    return {p: frozenset(c) for p, c in out.items()}


def _eviction_note(
    kind: str,
    findings: tuple[planning.AttributedFinding, ...],
    *,
    items: tuple[violations.Item, ...],
    matched: list[policy_model.Policy],
) -> str | None:
    """What Enforce will do, told in the violation Event.

    A Pod is evicted itself; a controller's Event (the one its Pods' violations are
    reported under) says that its Pods are, except a DaemonSet's (never evicted).
    """
    if kind == "DaemonSet":
        return None
    subject = ""
    if kind != "Pod":
        subject = "its Pods "
        by_name = {p.name: p for p in matched}
        items = violations.items_of(findings, policies=by_name, kind="Pod")
    enforcing = {i.policy for i in items if i.enforced}
    pols = [p for p in matched if p.name in enforcing]
    if not pols:
        return None
    real = [p for p in pols if not p.workloads.enforcement.dry_run]
    if not real:
        return f"Enforce mode, dry run: {subject or ''}would be evicted after the grace period"
    grace = min(p.workloads.enforcement.grace_period_seconds for p in real)
    return f"Enforce mode: {subject}evicted after {grace}s unless fixed"


def same_content(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Are two projections of an object equal but for ``resourceVersion``?"""
    if old is new:
        return True
    if old.keys() != new.keys():
        return False
    for field, value in old.items():
        if field == "metadata":
            a, b = value or {}, new.get(field) or {}
            if a.keys() != b.keys() or any(a[k] != b[k] for k in a if k != "resourceVersion"):
                return False
        elif value != new[field]:
            return False
    return True


def with_annotations(
    body: Mapping[str, Any],
    annotations: Mapping[str, str | None],
    patched: Mapping[str, Any],
) -> dict[str, Any]:
    """The cached projection after our merge patch of annotations (None removes a key)."""
    meta = dict(body.get("metadata") or {})
    current = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in annotations}
    current.update({k: v for k, v in annotations.items() if v is not None})
    if current:
        meta["annotations"] = current
    else:
        meta.pop("annotations", None)
    version = (patched.get("metadata") or {}).get("resourceVersion")
    if version:
        meta["resourceVersion"] = version
    return {**body, "metadata": meta}
