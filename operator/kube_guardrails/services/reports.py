"""Keep one OpenReports ``Report`` per namespace in step with its violations.

The use case behind DESIGN section 10's policy reports. The workload review tells this
service which namespace's violations changed (:meth:`ReportService.changed`); a
background task (:meth:`ReportService.run`) then, per namespace:

* waits :attr:`debounce` seconds after the first change, so a rollout that changes 50
  Pods of a namespace produces one write, not 50 (later changes do not postpone it
  further, so a report is never more than ``debounce`` behind);
* builds the desired Report from the current violations (``reports.build_report``) and
  compares its content with what it last wrote or found: equal means no request at all;
* applies it (server-side apply) when different, deletes it when the namespace has no
  violations left.

Whether the Report CRD is served is found by discovery at start and every
:attr:`discovery_interval` seconds: without it the service does nothing (no request
beyond the discovery GET), and when it appears later every namespace is reported. A
full resync every :attr:`resync_interval` seconds lists the Reports once and rewrites
any that someone edited or deleted. Nothing here ever raises into the operator: a
failed request is logged and retried :attr:`retry_after` seconds later.

Runs on the operator's event loop; :meth:`changed` may also be called from other
threads (it hops onto the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kube_guardrails import logs, metrics, reports

log = logs.get(__name__)

DEBOUNCE_SECONDS = 2.0
DISCOVERY_INTERVAL_SECONDS = 60.0
RESYNC_INTERVAL_SECONDS = 600.0
RETRY_AFTER_SECONDS = 10.0
NOT_READY_POLL_SECONDS = 1.0


class Gateway(Protocol):
    """The API calls this use case needs (``k8s.reports.Gateway``)."""

    async def served(self) -> bool:
        """Is ``reports.openreports.io/v1alpha1`` served? Raises when it cannot tell."""

    async def list_ours(self) -> list[dict[str, Any]]:
        """Every Report this operator wrote, in every namespace."""

    async def apply(self, report: Mapping[str, Any]) -> Mapping[str, Any]:
        """Create or replace a Report; returns it as stored."""

    async def delete(self, *, namespace: str, name: str) -> bool:
        """Delete a Report; False when it was already gone."""


class Source(Protocol):
    """Where the current violations come from (the workload review)."""

    def ready(self) -> bool:
        """Has every workload been reviewed once? Before that, "no violations" is unknown."""

    def violating_namespaces(self) -> Iterable[str]:
        """Namespaces with at least one violating workload now."""

    def entries(self, namespace: str) -> list[reports.Entry]:
        """The violating workloads of a namespace, with their findings."""


class Reviews(Protocol):
    """What ``services.workloads.WorkloadService`` offers the reports (see FromReviews)."""

    def reports_ready(self) -> bool: ...
    def violating_namespaces(self) -> list[str]: ...
    def report_entries(self, namespace: str) -> list[reports.Entry]: ...


class FromReviews:
    """The workload review as the :class:`Source` of the reports."""

    def __init__(self, reviews: Reviews) -> None:
        self._reviews = reviews

    def ready(self) -> bool:
        return self._reviews.reports_ready()

    def violating_namespaces(self) -> Iterable[str]:
        return self._reviews.violating_namespaces()

    def entries(self, namespace: str) -> list[reports.Entry]:
        return self._reviews.report_entries(namespace)


Content = dict[str, Any]


class ReportService:
    """One Report per namespace with violations, written only when its content changes."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        source: Source,
        telemetry: metrics.Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        debounce: float = DEBOUNCE_SECONDS,
        discovery_interval: float = DISCOVERY_INTERVAL_SECONDS,
        resync_interval: float = RESYNC_INTERVAL_SECONDS,
        retry_after: float = RETRY_AFTER_SECONDS,
    ) -> None:
        self._gateway = gateway
        self._source = source
        self._metrics = telemetry
        self._clock = clock
        self.debounce = debounce
        self.discovery_interval = discovery_interval
        self.resync_interval = resync_interval
        self.retry_after = retry_after
        # None: not asked yet (or could not tell); then what discovery said.
        self.served: bool | None = None
        # Namespace -> content of the Report it has (as we wrote or listed it).
        self._known: dict[str, Content] = {}
        # Namespace -> when its Report is due to be compared and written.
        self._due: dict[str, float] = {}
        self._next_discovery = 0.0
        self._next_resync: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.writes = 0  # applies and deletes done (tests, benchmark)

    # ------------------------------------------------------------------ inputs

    def changed(self, namespace: str) -> None:
        """The violations of a namespace changed: compare its Report after the debounce."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._changed, namespace)
        else:
            self._changed(namespace)

    def _changed(self, namespace: str) -> None:
        if namespace not in self._due:
            self._due[namespace] = self._clock() + self.debounce
            if self._wake is not None:
                self._wake.set()

    def namespace_gone(self, namespace: str) -> None:
        """The namespace was deleted, and its Report with it (nothing to delete)."""
        self._known.pop(namespace, None)
        self._due.pop(namespace, None)

    @property
    def known_count(self) -> int:
        """Namespaces with a Report of ours (health endpoint)."""
        return len(self._known)

    def known(self) -> dict[str, Content]:
        """What each namespace's Report holds, as far as this service knows (tests, probe)."""
        return dict(self._known)

    # ------------------------------------------------------------------ background

    async def run(self) -> None:
        """The background task: discovery, resync and debounced writes, forever."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            try:
                next_at = await self.step()
            except Exception as e:  # a bug here must not end reporting, nor the operator
                log.exception("reports-step-failed", error=repr(e))
                next_at = self._clock() + self.retry_after
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_at - self._clock()))

    async def step(self) -> float:
        """Do what is due now; returns when something is due next (clock time)."""
        now = self._clock()
        if now >= self._next_discovery:
            await self._discover(now)
        if self.served and self._source.ready():
            if self._next_resync is not None and now >= self._next_resync:
                await self._resync(now)
            await self._flush(now)
        candidates = [self._next_discovery]
        if self.served:
            if not self._source.ready():
                # Nothing wakes us when the first review pass ends: look again soon.
                candidates.append(now + NOT_READY_POLL_SECONDS)
            else:
                if self._next_resync is not None:
                    candidates.append(self._next_resync)
                if self._due:
                    candidates.append(min(self._due.values()))
        return min(candidates)

    async def _discover(self, now: float) -> None:
        self._next_discovery = now + self.discovery_interval
        try:
            served = await self._gateway.served()
        except Exception as e:  # an outage: keep believing what we believed
            log.warning("reports-discovery-failed", error=str(e)[:300])
            return
        if served == self.served:
            return
        self.served = served
        if self._metrics is not None:
            self._metrics.reports_enabled.set(1 if served else 0)
        if served:
            log.info("reports-enabled", api_version=reports.API_VERSION, kind=reports.KIND)
            self._next_resync = now  # list what exists, then report every namespace
        else:
            log.info(
                "reports-disabled",
                reason=f"{reports.PLURAL}.{reports.GROUP}/{reports.VERSION} is not served",
            )
            self._known.clear()
            self._due.clear()
            self._next_resync = None

    async def _resync(self, now: float) -> None:
        try:
            live = await self._gateway.list_ours()
        except Exception as e:
            log.warning("reports-list-failed", error=str(e)[:300])
            self._next_resync = now + self.retry_after
            self._next_discovery = min(self._next_discovery, now + self.retry_after)
            return
        self._next_resync = now + self.resync_interval
        self._known = {}
        for report in live:
            if reports.is_ours(report):
                namespace = str((report.get("metadata") or {}).get("namespace") or "")
                content = reports.content(report)
                if namespace and content is not None:
                    self._known[namespace] = content
        for namespace in {*self._known, *self._source.violating_namespaces()}:
            self._due.setdefault(namespace, now)

    async def _flush(self, now: float) -> None:
        for namespace in sorted(ns for ns, at in self._due.items() if at <= now):
            del self._due[namespace]
            try:
                await self._sync(namespace)
            except Exception as e:  # outage, conflict, CRD removed: look again later
                log.warning("report-write-failed", namespace=namespace, error=str(e)[:300])
                self._due[namespace] = now + self.retry_after
                # A CRD removed meanwhile looks like this too: ask discovery soon.
                self._next_discovery = min(self._next_discovery, now + self.retry_after)

    async def _sync(self, namespace: str) -> None:
        desired = reports.build_report(namespace, self._source.entries(namespace))
        want = reports.content(desired)
        have = self._known.get(namespace)
        if want == have:
            return
        if desired is None:
            await self._gateway.delete(namespace=namespace, name=reports.REPORT_NAME)
            self._known.pop(namespace, None)
            self._count("delete")
            log.info("report-deleted", namespace=namespace)
            return
        await self._gateway.apply(desired)
        # Remember what we sent, not what came back: equal after server-side apply, and
        # our own output can never loop on a field the server formats differently.
        self._known[namespace] = want or {}
        self._count("update" if have is not None else "create")
        log.info(
            "report-written",
            namespace=namespace,
            results=len(desired["results"]),
            **{k: v for k, v in desired["summary"].items() if v},
        )

    def _count(self, operation: str) -> None:
        self.writes += 1
        if self._metrics is not None:
            self._metrics.report_writes.labels(operation=operation).inc()
