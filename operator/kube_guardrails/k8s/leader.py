"""Leader election on a ``coordination.k8s.io/v1`` Lease, native to asyncio.

Two or more replicas run; only the holder of the Lease writes. The algorithm is
client-go's (``k8s.io/client-go/tools/leaderelection``), which every Kubernetes
controller uses:

* a candidate reads the Lease every ``retry_period``; it may take it when it does not
  exist, when its holder released it (empty ``holderIdentity``), or when the record has
  not changed for ``leaseDurationSeconds`` *as timed by the candidate's own clock*
  from the moment it first saw that record (no clock comparison between machines);
* writes are optimistic: a replace carries the ``resourceVersion`` that was read, so of
  two candidates at most one wins (the other gets 409 Conflict);
* the leader renews every ``retry_period`` and gives up when it has not renewed for
  ``renew_deadline`` (counted from the *start* of its last successful renewal), which
  is shorter than the lease: it stops writing before any standby may take over;
* on a graceful stop the leader releases the Lease (empty holder, 1 s duration), so a
  standby takes over at its next retry instead of after a whole lease duration.

Why not ``kubernetes.leaderelection`` (the client's own): it runs in threads with
blocking sleeps and no way to stop (so it cannot release the lease on shutdown), calls
``sys.exit`` on a bad configuration, builds its ``CoordinationV1Api`` from the global
default configuration (not our client's), and does not count leader transitions. The
decisions here are pure functions (:func:`observe`, :func:`decide`,
:func:`still_leading`), table-tested; the API calls run in one dedicated thread, so a
renewal never waits behind a burst of other API calls in the shared thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import enum
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client

from kube_guardrails import logs
from kube_guardrails.k8s import client

log = logs.get(__name__)

LEASE_NAME = "kube-guardrails-leader"
# client-go's jitter on the candidates' retry period (spreads their reads).
JITTER = 1.2
HINT = (
    "this replica cannot hold the Lease, so it writes nothing: the namespace must exist "
    "(kubectl apply -f manifests/namespace.yaml) and the identity needs the Role in "
    "manifests/role.yaml; or run a single replica with --leader-election false"
)
# Seconds after a lease's expiry (on our clock) at which a candidate tries to take it.
EXPIRY_MARGIN = 0.05
# Seconds a released lease claims: any candidate may take it at once (holder is empty).
RELEASED_DURATION = 1


def default_identity(env: Mapping[str, str] | None = None) -> str:
    """``<pod name>_<random>``: the Pod name (downward API ``POD_NAME``, else the host
    name, which is the Pod name in a cluster) says which replica leads; the suffix keeps
    a restarted container (same Pod name) from mistaking the old process's lease for its
    own."""
    env = os.environ if env is None else env
    base = env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds; :func:`validate_timing` says which combinations are safe."""

    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0


def validate_timing(timing: Timing) -> str | None:
    """Why the timing is unsafe, or None. The same rules as client-go's."""
    if timing.retry_period <= 0:
        return "the retry period must be positive"
    if timing.renew_deadline <= JITTER * timing.retry_period:
        return f"the renew deadline must be longer than {JITTER} x the retry period"
    if timing.lease_duration <= timing.renew_deadline:
        return "the lease duration must be longer than the renew deadline"
    if timing.lease_duration != int(timing.lease_duration) or timing.lease_duration < 1:
        return "the lease duration must be a whole number of seconds (a Lease field)"
    return None


@dataclasses.dataclass(frozen=True)
class Record:
    """The election fields of a Lease (``spec``), plus its ``resourceVersion``."""

    holder: str  # "" when released (or never held)
    duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None = None

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
        )

    @property
    def key(self) -> tuple[object, ...]:
        """What a candidate compares to see whether the leader is still renewing."""
        return (
            self.holder,
            self.duration_seconds,
            self.acquire_time,
            self.renew_time,
            self.transitions,
        )


@dataclasses.dataclass(frozen=True)
class Observation:
    """A record and when (on this process's monotonic clock) it was first seen as is."""

    record: Record
    at: float


def observe(previous: Observation | None, record: Record, *, now: float) -> Observation:
    """Keep the first-seen time while the record is unchanged; restart it on any change."""
    if previous is not None and previous.record.key == record.key:
        return Observation(record=record, at=previous.at)
    return Observation(record=record, at=now)


class Decision(enum.Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # we hold it
    ACQUIRE = "acquire"  # released, or its holder stopped renewing
    WAIT = "wait"  # someone else holds a valid lease


def decide(observed: Observation | None, *, identity: str, now: float) -> Decision:
    """What a candidate does with the Lease it just read (``None``: there is none)."""
    if observed is None:
        return Decision.CREATE
    record = observed.record
    if record.holder == identity:
        return Decision.RENEW
    if not record.holder:
        return Decision.ACQUIRE
    if now - observed.at >= record.duration_seconds:
        return Decision.ACQUIRE
    return Decision.WAIT


def next_attempt_in(
    observed: Observation | None, *, identity: str, now: float, retry: float
) -> float:
    """Seconds a candidate waits before its next attempt: the (jittered) retry period,
    or less when the holder's lease runs out sooner (then it tries right at expiry
    instead of up to a retry period later: that shortens a take-over)."""
    if observed is None or observed.record.holder in ("", identity):
        return retry
    expires_in = observed.at + observed.record.duration_seconds - now
    return max(min(retry, expires_in + EXPIRY_MARGIN), EXPIRY_MARGIN)


def still_leading(*, last_renewed: float, now: float, timing: Timing) -> bool:
    """Has the leader renewed recently enough to keep writing?

    ``last_renewed`` is the start of the last successful renewal: the server recorded it
    no earlier than that, so a standby (which times the lease from when it saw the
    record) cannot take over before ``last_renewed + lease_duration``; stopping at
    ``renew_deadline`` leaves the difference as a safety margin.
    """
    return now - last_renewed < timing.renew_deadline


def micro_time(when: datetime.datetime) -> str:
    """A Lease's ``MicroTime``: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    *,
    name: str,
    namespace: str,
    holder: str,
    duration_seconds: int,
    acquire_time: str | None,
    renew_time: str,
    transitions: int,
    resource_version: str | None,
) -> dict[str, Any]:
    """The whole Lease for a create or a replace (``resourceVersion``: optimistic lock)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    spec: dict[str, Any] = {
        "leaseDurationSeconds": duration_seconds,
        "renewTime": renew_time,
        "leaseTransitions": transitions,
    }
    if holder:
        spec["holderIdentity"] = holder
    if acquire_time is not None:
        spec["acquireTime"] = acquire_time
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Elector:
    """One candidate: :meth:`run` until it leads (``on_started``), then renew until it
    loses (``on_lost``); :meth:`release` on a graceful stop.

    ``is_leader`` is true from a successful acquire until the renew deadline passes
    without a renewal, until another holder is seen, or until :meth:`release`.
    """

    def __init__(
        self,
        *,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        identity: str,
        timing: Timing,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        problem = validate_timing(timing)
        if problem:
            raise ValueError(f"leader election timing {timing}: {problem}")
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._clock = clock
        self._wall_clock = wall_clock
        self._observed: Observation | None = None
        self._last_renewed: float | None = None
        self._released = False
        self.is_leader = False
        self.transitions_seen = 0
        # One thread of our own: renewals never queue behind other API calls.
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="leader-election"
        )
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        # A hung request must not outlive the renew deadline.
        self._timeout = (min(2.0, timing.retry_period), max(1.0, timing.renew_deadline / 2))

    @property
    def holder(self) -> str | None:
        """The holder last seen on the Lease ("" when released; None: not read yet)."""
        return self._observed.record.holder if self._observed is not None else None

    # ------------------------------------------------------------------ API

    async def _call(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def _get(self) -> Record | None:
        try:
            lease = await self._call(
                lambda: client.request(
                    self.api_client, "GET", f"{self._path}/{self.name}", timeout=self._timeout
                )
            )
        except client.ApiError as e:
            if e.not_found:
                return None
            raise
        return Record.from_lease(lease)

    async def _write(self, body: dict[str, Any], *, create: bool) -> Record:
        if create:
            lease = await self._call(
                lambda: client.request(
                    self.api_client, "POST", self._path, body=body, timeout=self._timeout
                )
            )
        else:
            lease = await self._call(
                lambda: client.request(
                    self.api_client,
                    "PUT",
                    f"{self._path}/{self.name}",
                    body=body,
                    timeout=self._timeout,
                )
            )
        return Record.from_lease(lease)

    # ------------------------------------------------------------------ one round

    async def try_acquire_or_renew(self) -> bool:
        """One round of the algorithm; True when we hold the Lease afterwards.

        API errors count as "not now" (logged); conflicts are the normal outcome of two
        candidates racing for the same Lease.
        """
        started = self._clock()
        try:
            held = await self._round(started)
        except client.ApiError as e:
            if e.status in (403, 404):  # will not heal by itself: say what to do
                log.error(
                    "leader-election-impossible",
                    lease=f"{self.namespace}/{self.name}",
                    error=str(e)[:300],
                    hint=HINT,
                )
            elif not e.conflict:
                log.warning("leader-election-error", lease=self.name, error=str(e)[:300])
            return False
        if held:
            self._last_renewed = started
        return held

    async def _round(self, started: float) -> bool:
        # The leader renews straight from the record it wrote; a conflict means the
        # Lease changed under it, so it reads and decides again.
        if self.is_leader and self._observed is not None:
            try:
                return await self._put(Decision.RENEW, self._observed.record, started)
            except client.ApiError as e:
                if not e.conflict:
                    raise
        record = await self._get()
        now = self._clock()
        self._observed = observe(self._observed, record, now=now) if record is not None else None
        decision = decide(self._observed, identity=self.identity, now=now)
        if decision is Decision.WAIT:
            return False
        if decision is Decision.CREATE:
            return await self._put(decision, None, started)
        assert record is not None
        return await self._put(decision, record, started)

    async def _put(self, decision: Decision, record: Record | None, started: float) -> bool:
        now = micro_time(self._wall_clock())
        duration = int(self.timing.lease_duration)
        if record is None:
            body = lease_body(
                name=self.name,
                namespace=self.namespace,
                holder=self.identity,
                duration_seconds=duration,
                acquire_time=now,
                renew_time=now,
                transitions=0,
                resource_version=None,
            )
        else:
            renewing = decision is Decision.RENEW and record.holder == self.identity
            body = lease_body(
                name=self.name,
                namespace=self.namespace,
                holder=self.identity,
                duration_seconds=duration,
                acquire_time=record.acquire_time if renewing else now,
                renew_time=now,
                transitions=record.transitions if renewing else record.transitions + 1,
                resource_version=record.resource_version,
            )
        written = await self._write(body, create=record is None)
        self._observed = Observation(record=written, at=started)
        if not self.is_leader:
            self.transitions_seen = written.transitions
        return True

    # ------------------------------------------------------------------ loops

    async def run(self, *, on_started: Callable[[], None], on_lost: Callable[[], None]) -> None:
        """Wait for the Lease, lead, and return once leadership is lost (after ``on_lost``).

        Cancel the task to stop campaigning (then :meth:`release`).
        """
        log.info("leader-election-candidate", lease=self.name, identity=self.identity)
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(
                next_attempt_in(
                    self._observed,
                    identity=self.identity,
                    now=self._clock(),
                    retry=self.timing.retry_period * random.uniform(1.0, JITTER),
                )
            )
        self.is_leader = True
        log.info(
            "leader-elected",
            lease=self.name,
            identity=self.identity,
            transitions=self.transitions_seen,
        )
        on_started()
        await self._renew_until_lost()
        self.is_leader = False
        log.error("leader-lost", lease=self.name, identity=self.identity, holder=self.holder)
        on_lost()

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.timing.retry_period)
            assert self._last_renewed is not None
            remaining = self._last_renewed + self.timing.renew_deadline - self._clock()
            if remaining <= 0:
                return
            try:
                renewed = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=remaining)
            except TimeoutError:
                return
            if not renewed and self.holder not in (None, "", self.identity):
                return  # someone else holds it: we lost it for certain, stop at once
            if not still_leading(
                last_renewed=self._last_renewed, now=self._clock(), timing=self.timing
            ):
                return

    async def release(self) -> bool:
        """Give the Lease up (graceful stop): True when released by us.

        Only when we still lead: a leader past its renew deadline may already have been
        replaced, and a standby has nothing to release.
        """
        observed = self._observed
        leading = (
            self.is_leader
            and observed is not None
            and self._last_renewed is not None
            and still_leading(
                last_renewed=self._last_renewed, now=self._clock(), timing=self.timing
            )
        )
        self.is_leader = False
        if not leading or observed is None or self._released:
            return False
        record: Record | None = observed.record
        # Two tries: a renewal cut off by the stop may have landed on the server after
        # all, leaving us a stale resourceVersion (409); then read the Lease again.
        for _ in range(2):
            if record is None or record.holder != self.identity:
                return False  # not ours any more (or gone): nothing to release
            try:
                await self._write(self._released_body(record), create=False)
            except client.ApiError as e:
                if not e.conflict:
                    log.warning("leader-release-failed", lease=self.name, error=str(e)[:300])
                    return False
                try:
                    record = await self._get()
                except client.ApiError:
                    return False
                continue
            self._released = True
            log.info("leader-released", lease=self.name, identity=self.identity)
            return True
        log.warning("leader-release-failed", lease=self.name, error="conflict")
        return False

    def _released_body(self, record: Record) -> dict[str, Any]:
        now = micro_time(self._wall_clock())
        return lease_body(
            name=self.name,
            namespace=self.namespace,
            holder="",
            duration_seconds=RELEASED_DURATION,
            acquire_time=now,
            renew_time=now,
            transitions=record.transitions,
            resource_version=record.resource_version,
        )

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
