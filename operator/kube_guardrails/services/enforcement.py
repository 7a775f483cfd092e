"""Enforce mode: evict violating Pods, late enough, slowly enough, and never by force.

The review service (``services.workloads``) hands every Pod that has an evictable
violation to the :class:`Enforcer` with what it knows (the Pod, its findings, the
policies that select it and when the violation set was first observed). The enforcer
keeps a small schedule and, from the one background task, asks the pure decision
(``violations.eviction_decision``) what to do at each due time:

* wait for the grace period or for room in the policy's per-minute eviction budget;
* in ``dryRun``: post one "would evict" Warning Event per Pod and policy, nothing else;
* otherwise post a ``GuardrailEviction`` Warning Event on the Pod, then ask the API for
  a ``policy/v1`` Eviction. A 429 (a PodDisruptionBudget says not now) is retried with
  exponential backoff, capped; a Pod is never deleted directly, so a PDB is never
  bypassed.

Enforcement state lives where only the operator writes: in this process's memory.
The grace period of a (Pod, policy) counts from the moment this process first saw the
Pod violate an Enforce-action check of that policy, continuously (the failing checks
may change meanwhile; it starts over only once the Pod has no such violation). The
``violations``/``violations-since`` annotations are output for developers and are never
read here: a workload owner can write them (issue 9: a copied annotation with a
``since`` in year 2999 must not postpone an eviction forever). After a restart (or a
leader change) the clock starts at the first review: conservative, a violating Pod gets
at most one extra grace period, never less than one. At worst a dry-run Event is
repeated once.

Protected owners are verified, not believed: a Pod whose controller reference names an
``apps/v1`` DaemonSet is spared only if that DaemonSet exists with that uid, and a
mirror Pod (annotation ``kubernetes.io/config.mirror`` plus a controller reference to a
Node) only if that Node exists with that uid: a namespace user may create a Pod with
the annotation, and with any owner reference. One GET when the Pod is about to be
evicted, remembered for :data:`OWNER_MEMORY`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from kube_guardrails import logs, metrics, planning, violations
from kube_guardrails.model import policy as policy_model

log = logs.get(__name__)

Key = tuple[str, str, str]  # (kind, namespace, name)
EventType = Literal["Normal", "Warning"]

REASON_EVICTION = "GuardrailEviction"
# How long a DaemonSet lookup (exists with that uid, or not) is trusted.
OWNER_MEMORY = datetime.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to address it and to name it in an Event."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body.get("metadata") or {}
        return cls(
            api_version=str(body.get("apiVersion") or ""),
            kind=str(body.get("kind") or ""),
            name=str(meta.get("name") or ""),
            namespace=meta.get("namespace") or None,
            uid=meta.get("uid") or None,
        )

    def as_reference(self) -> dict[str, str]:
        """The ``involvedObject``/``regarding`` shape of an Event."""
        ref = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            ref["namespace"] = self.namespace
        if self.uid:
            ref["uid"] = self.uid
        return ref


class Eviction(enum.StrEnum):
    """What the Eviction API said."""

    EVICTED = "evicted"  # 200/201: the Pod is going
    BLOCKED = "blocked"  # 429: a PodDisruptionBudget (or API throttling) says not now
    GONE = "gone"  # 404: the Pod (with that uid) is not there any more
    FAILED = "failed"  # anything else: outage, 409, 5xx; retried like a block


class EvictionGateway(Protocol):
    """What enforcement needs from the API (``k8s.workloads`` implements it)."""

    async def post_event(
        self, *, regarding: ObjectRef, type: EventType, reason: str, message: str, action: str
    ) -> bool:
        """Post an Event; never raises (Events are auxiliary).

        False when it could not be posted yet but a later attempt could (outage,
        throttling): the caller may keep it owed.
        """

    async def evict(self, ref: ObjectRef) -> str:
        """Ask for a policy/v1 Eviction of the Pod (uid as precondition); never deletes.

        Returns one of the :class:`Eviction` values.
        """

    async def daemonset_uid(self, *, namespace: str, name: str) -> str | None:
        """The uid of that DaemonSet, or None when it does not exist; raises on failure."""

    async def node_uid(self, *, name: str) -> str | None:
        """The uid of that Node, or None when it does not exist; raises on failure."""


@dataclasses.dataclass(frozen=True)
class Subject:
    """A Pod as last reviewed: what the decision needs (the enforcer keeps the times)."""

    pod: Mapping[str, Any]
    findings: tuple[planning.AttributedFinding, ...]
    policies: tuple[policy_model.Policy, ...]

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.pod)


@dataclasses.dataclass
class _Candidate:
    subject: Subject
    due: datetime.datetime
    attempts: int = 0  # refused evictions so far (drives the backoff)
    announced: bool = False  # the GuardrailEviction Warning Event is posted
    blocked_reported: bool = False  # the "refused, retrying" Event is posted


class Enforcer:
    """The eviction schedule of one operator process; driven by :meth:`run_due`."""

    def __init__(
        self,
        *,
        gateway: EvictionGateway,
        clock: Callable[[], datetime.datetime],
        operator_namespace: str,
        backoff_base: float = 5.0,
        backoff_cap: float = 300.0,
        telemetry: metrics.Metrics | None = None,
    ) -> None:
        self._gateway = gateway
        self._telemetry = telemetry
        self._clock = clock
        self._operator_namespace = operator_namespace
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._candidates: dict[Key, _Candidate] = {}
        # Per policy: when its recent evictions (and dry-run "would evict"s) happened.
        self._recent: dict[str, list[datetime.datetime]] = {}
        # (pod uid, policy) already told "would evict": dry run speaks once per Pod.
        self._dry_run_reported: set[tuple[str, str]] = set()
        # Pod -> (its uid, policy -> when this process first saw it violate an
        # Enforce-action check of that policy).
        self._since: dict[Key, tuple[str, dict[str, datetime.datetime]]] = {}
        # (kind, namespace, name) -> (uid or None, when looked up): verified DaemonSets
        # and Nodes (namespace "").
        self._owners: dict[tuple[str, str, str], tuple[str | None, datetime.datetime]] = {}
        self.evictions = 0
        self.refusals = 0

    # ------------------------------------------------------------------ inputs

    def track(self, key: Key, subject: Subject) -> None:
        """Consider this Pod now (or, during a refusal backoff, at its retry time)."""
        now = self._clock()
        uid = str(subject.pod.get("metadata", {}).get("uid") or "")
        pols = {p.name: p for p in subject.policies}
        violating = {
            f.policy
            for f in subject.findings
            if violations.is_enforced(f, policies=pols, kind="Pod")
        }
        held_uid, held = self._since.get(key, (uid, {}))
        if held_uid != uid:  # a new Pod under the same name starts from scratch
            held = {}
        self._since[key] = (uid, {name: held.get(name, now) for name in violating})
        cand = self._candidates.get(key)
        if cand is None or cand.subject.pod.get("metadata", {}).get("uid") != subject.pod.get(
            "metadata", {}
        ).get("uid"):
            self._candidates[key] = _Candidate(subject=subject, due=now)
            return
        cand.subject = subject
        if cand.attempts == 0:
            cand.due = min(cand.due, now)

    def forget(self, key: Key, *, gone: bool = False) -> None:
        """Stop considering the Pod; ``gone`` when it is deleted (drops its dry-run memory)."""
        cand = self._candidates.pop(key, None)
        # No Enforce-action violation any more (or gone): the grace clock starts over.
        self._since.pop(key, None)
        if gone and cand is not None:
            uid = str(cand.subject.pod.get("metadata", {}).get("uid") or "")
            self._dry_run_reported = {e for e in self._dry_run_reported if e[0] != uid}

    def forget_uid(self, uid: str) -> None:
        self._dry_run_reported = {e for e in self._dry_run_reported if e[0] != uid}

    def since(self, key: Key, policy: str) -> datetime.datetime | None:
        """When this process first saw the Pod violate an Enforce check of ``policy``."""
        return self._since.get(key, ("", {}))[1].get(policy)

    def pending(self) -> dict[Key, datetime.datetime]:
        """Due times of the tracked Pods (for tests and diagnostics)."""
        return {k: c.due for k, c in self._candidates.items()}

    def next_due(self) -> datetime.datetime | None:
        return min((c.due for c in self._candidates.values()), default=None)

    # ------------------------------------------------------------------ the work

    async def run_due(self) -> datetime.datetime | None:
        """Act on every Pod whose time has come; return when to run next (None: idle)."""
        for key in sorted(self._candidates, key=lambda k: (self._candidates[k].due, k)):
            cand = self._candidates.get(key)
            if cand is None or cand.due > self._clock():
                continue
            await self._act(key, cand)
        return self.next_due()

    async def _act(self, key: Key, cand: _Candidate) -> None:
        now = self._clock()
        subject = cand.subject
        uid = str(subject.pod.get("metadata", {}).get("uid") or "")
        node_verified = await self._verified_node(subject.pod, now)
        decisions = [
            violations.eviction_decision(
                subject.pod,
                findings=subject.findings,
                policy=pol,
                since=self._since.get(key, ("", {}))[1].get(pol.name, now),
                now=now,
                recent_evictions=self._window(pol.name, now),
                operator_namespace=self._operator_namespace,
                node_verified=node_verified,
            )
            for pol in subject.policies
            if (uid, pol.name) not in self._dry_run_reported
        ]
        decision = violations.combine(decisions)
        if isinstance(decision, violations.Evict):
            spared = await self._verified_daemonset(subject.pod, now)
            if spared is not None:
                decision = violations.Never(reason=spared)
        if isinstance(decision, violations.Never):
            log.debug("eviction-never", pod=key[2], namespace=key[1], reason=decision.reason)
            self._candidates.pop(key, None)
            return
        if isinstance(decision, violations.Wait):
            if decision.why == "rate limit":
                self._count(decision.policy, metrics.RATE_LIMITED)
            # During a refusal backoff, the retry time wins over an earlier grace end.
            cand.due = max(decision.until, cand.due) if cand.attempts else decision.until
            log.debug(
                "eviction-wait", pod=key[2], namespace=key[1], until=str(cand.due), why=decision.why
            )
            return
        ref = subject.ref
        if decision.dry_run:
            self._recent.setdefault(decision.policy, []).append(now)
            self._dry_run_reported.add((uid, decision.policy))
            self._count(decision.policy, metrics.DRY_RUN)
            await self._gateway.post_event(
                regarding=ref,
                type="Warning",
                reason=REASON_EVICTION,
                message=decision.message,
                action="DryRunEvict",
            )
            log.info(
                "eviction-dry-run", pod=ref.name, namespace=ref.namespace, policy=decision.policy
            )
            cand.due = now  # other policies may still enforce for real
            return
        if not cand.announced:
            await self._gateway.post_event(
                regarding=ref,
                type="Warning",
                reason=REASON_EVICTION,
                message=decision.message,
                action="Evict",
            )
            cand.announced = True
        result = Eviction(await self._gateway.evict(ref))
        if result in (Eviction.EVICTED, Eviction.GONE):
            if result is Eviction.EVICTED:
                self._recent.setdefault(decision.policy, []).append(now)
                self.evictions += 1
                self._count(decision.policy, metrics.EVICTED)
            log.info(
                "pod-evicted" if result is Eviction.EVICTED else "pod-gone-before-eviction",
                pod=ref.name,
                namespace=ref.namespace,
                policy=decision.policy,
            )
            self._candidates.pop(key, None)
            return
        # Refused: never fall back to a DELETE, which would bypass the PodDisruptionBudget.
        self.refusals += 1
        self._count(
            decision.policy,
            metrics.REFUSED_BY_PDB if result is Eviction.BLOCKED else metrics.EVICTION_FAILED,
        )
        cand.attempts += 1
        delay = violations.backoff(cand.attempts, base=self._backoff_base, cap=self._backoff_cap)
        cand.due = now + delay
        log.warning(
            "eviction-refused",
            pod=ref.name,
            namespace=ref.namespace,
            policy=decision.policy,
            result=str(result),
            attempt=cand.attempts,
            retry_in=delay.total_seconds(),
        )
        if result is Eviction.BLOCKED and not cand.blocked_reported:
            cand.blocked_reported = True
            await self._gateway.post_event(
                regarding=ref,
                type="Warning",
                reason=REASON_EVICTION,
                message=(
                    "Eviction refused (429): a PodDisruptionBudget does not allow it now; "
                    f"retrying with backoff (next in {int(delay.total_seconds())}s). "
                    "The Pod is never deleted directly."
                ),
                action="Evict",
            )

    def _count(self, policy: str, outcome: str) -> None:
        if self._telemetry is not None:
            self._telemetry.eviction(policy=policy, outcome=outcome)

    async def _verified_daemonset(
        self, pod: Mapping[str, Any], now: datetime.datetime
    ) -> str | None:
        """ "DaemonSet Pod" if the Pod's DaemonSet controller really exists, else None.

        A failed lookup raises: the background task retries later, so an outage neither
        evicts a real DaemonSet Pod nor spares a forged one.
        """
        claimed = violations.claimed_daemonset(pod)
        if claimed is None:
            return None
        name, uid = claimed
        namespace = str(pod.get("metadata", {}).get("namespace") or "")
        if await self._owner_uid("DaemonSet", namespace, name, now) == uid:
            return "DaemonSet Pod (its DaemonSet exists)"
        log.info(
            "daemonset-owner-not-verified",
            namespace=namespace,
            pod=pod.get("metadata", {}).get("name"),
            daemonset=name,
        )
        return None

    async def _verified_node(self, pod: Mapping[str, Any], now: datetime.datetime) -> bool | None:
        """Does the Node a mirror-Pod claim names exist with that uid? None: no claim.

        A failed lookup raises, as for DaemonSets: neither evicts a real mirror Pod nor
        spares a forged one.
        """
        claimed = violations.claimed_mirror(pod)
        if claimed is None:
            return None
        name, uid = claimed
        if await self._owner_uid("Node", "", name, now) == uid:
            return True
        log.info(
            "mirror-pod-not-verified",
            namespace=pod.get("metadata", {}).get("namespace"),
            pod=pod.get("metadata", {}).get("name"),
            node=name,
        )
        return False

    async def _owner_uid(
        self, kind: str, namespace: str, name: str, now: datetime.datetime
    ) -> str | None:
        """The uid of a DaemonSet or Node as last looked up (at most OWNER_MEMORY ago)."""
        held = self._owners.get((kind, namespace, name))
        if held is None or now - held[1] >= OWNER_MEMORY:
            if kind == "Node":
                found = await self._gateway.node_uid(name=name)
            else:
                found = await self._gateway.daemonset_uid(namespace=namespace, name=name)
            held = self._owners[kind, namespace, name] = (found, now)
            for key in [k for k, v in self._owners.items() if now - v[1] >= OWNER_MEMORY]:
                del self._owners[key]
        return held[0]

    def _window(self, policy: str, now: datetime.datetime) -> Sequence[datetime.datetime]:
        recent = [t for t in self._recent.get(policy, ()) if now - t < violations.RATE_WINDOW]
        self._recent[policy] = recent
        return recent
