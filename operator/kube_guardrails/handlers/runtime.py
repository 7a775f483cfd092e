"""The composition root: every service of the operator, built once, in one typed object.

:func:`build` makes the API client, the policy store, the status batcher, the hardening
inventory, service and work queue, and (if enabled) the workload service with its
watches; kopf's ``memo.runtime`` holds the result and every handler reads its
dependencies from there. One cache per kind, shared by every service: namespaces and
managed objects in the hardening :class:`~kube_guardrails.services.hardening.Inventory`
(kopf indexes), Pods and pod controllers in the workload service (``k8s.watch``), policies
in the :class:`~kube_guardrails.services.policies.PolicyStore`.

Start-up has two phases, kept apart on purpose:

* :meth:`Runtime.start_caches`: everything that only reads (watches, the health
  endpoint). Safe on any replica;
* :meth:`Runtime.start_writers`: everything that writes (the hardening work queue and
  resync, the workload reviews, the status flush). Reviews and reconciles wait anyway
  until the caches are complete (``services.workloads`` waits for every source, the
  work queues for every hardening kind listed and kopf's first event handler), so no
  write is ever based on a partial view.

The writer phase is where the leader-election gate (``k8s.leader``) plugs in:
:meth:`Runtime.start_leading` campaigns for the Lease and calls :meth:`start_writers`
when it is acquired; until then the replica is a standby with warm caches and a green
liveness probe. Without leader election the writers start at once.

Losing the Lease (no renewal within the renew deadline, or another holder seen) ends
the process at once (:func:`exit_on_lost_lease`), as client-go's controllers do:
writes in flight in worker threads cannot be recalled, and a process that stopped
half its loops would be a worse standby than a fresh one. The Deployment restarts the
container, which comes back as a standby. A graceful stop (SIGTERM) instead drains the
writers and then releases the Lease, so the standby takes over at its next attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from kube_guardrails import __version__, builders, logs, metrics, violations
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.handlers import health
from kube_guardrails.k8s import admission as k8s_admission
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.k8s import hardening as k8s_hardening
from kube_guardrails.k8s import leader, watch
from kube_guardrails.k8s import policies as k8s_policies
from kube_guardrails.k8s import reports as k8s_reports
from kube_guardrails.k8s import workloads as k8s_workloads
from kube_guardrails.services import (
    admission,
    enforcement,
    hardening,
    policies,
    status,
    workloads,
    workqueue,
)
from kube_guardrails.services import reports as report_service

log = logs.get(__name__)

# Namespaces reconciled at once. A reconcile is mostly waiting on the API server (its
# managed objects' writes in one round trip, then the readiness label in a second), so
# a burst of new namespaces is hardened about as fast as requests can be in flight: at
# 8, a burst of 200 waited in this queue (p99 2.5-2.8x the bare controller of
# hack/bench/bench_e2e_hardening.py); at 32, within 1.5x.
RECONCILE_WORKERS = 32
# Admission objects are per policy (few): two workers are plenty.
ADMISSION_WORKERS = 2
# Parallel writes within a reconcile (one per managed kind): two per reconcile worker in
# flight. Event posts have threads of their own (one per worker), so that in a burst
# they never queue ahead of the next namespaces' creates.
WRITE_THREADS = 2 * RECONCILE_WORKERS
EVENT_THREADS = RECONCILE_WORKERS
# Threads behind asyncio.to_thread (every API call of the workload side): the default,
# min(32, cores + 4), would cap a burst of reviews at 6 requests in flight on 2 cores.
API_THREADS = 64
# A NamespaceHardened Event that could not be posted (API outage) is tried again this
# much later, by reconciling its namespace again (everything else is in place by then).
EVENT_RETRY_SECONDS = 5.0
# The source the workload service waits for besides its own kinds: namespaces listed
# and kopf's policy index complete.
NAMESPACES = "namespaces"
# With no policy in the cluster, how often to ask again until kopf reports (see
# Runtime._until_policies_known).
POLICY_PROBE_SECONDS = 2.0


# The exit status after losing the Lease (the container is restarted as a standby).
LOST_LEASE_EXIT = 70


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def exit_on_lost_lease() -> None:
    """Stop writing now: end the process without running anything else (see module docs)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # nothing may stop the exit
            stream.flush()
    os._exit(LOST_LEASE_EXIT)


@dataclasses.dataclass
class Runtime:
    """Every long-lived dependency of the handlers (see the module docstring)."""

    settings: guardrails_settings.Settings
    api_client: Any  # kubernetes.client.ApiClient (handlers do not import kubernetes)
    policies: policies.PolicyStore
    status: status.StatusBatcher
    inventory: hardening.Inventory
    hardening: hardening.HardeningService
    queue: workqueue.WorkQueue[str]
    executor: concurrent.futures.ThreadPoolExecutor
    event_executor: concurrent.futures.ThreadPoolExecutor
    admission: admission.AdmissionService
    admission_queue: workqueue.WorkQueue[str]
    telemetry: metrics.Metrics = dataclasses.field(default_factory=metrics.Metrics)
    workloads: workloads.WorkloadService | None = None
    reports: report_service.ReportService | None = None
    watchers: list[watch.Watcher] = dataclasses.field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = dataclasses.field(default_factory=list)
    health: health.HealthServer | None = None
    metrics_server: metrics.Server | None = None
    writing: bool = False
    # Leader election (None: disabled, this replica writes from the start).
    elector: leader.Elector | None = None
    election: asyncio.Task[None] | None = None
    on_lost_lease: Callable[[], None] = exit_on_lost_lease
    # The default executor (API calls of the workload side and reconciles).
    api_threads: concurrent.futures.ThreadPoolExecutor | None = None
    # (policy, uid, generation) already told PolicyInvalid by this process.
    policies_warned: set[tuple[str, str, int]] = dataclasses.field(default_factory=set)
    # The two halves of "every cache is complete" (see _maybe_synced).
    kopf_ready: bool = False
    hardening_listed: bool = False

    # ------------------------------------------------------------------ phases

    async def start_caches(self, *, serve_health: bool, serve_metrics: bool = False) -> None:
        """Watches, the health and the metrics endpoints: reads only.

        Raises OSError or ``metrics.MetricsError`` when an endpoint cannot be served.
        """
        if serve_metrics and self.settings.metrics_address:
            address = metrics.parse_address(self.settings.metrics_address)
            if address is not None:
                server = metrics.Server(self.telemetry, address)
                server.start()
                self.metrics_server = server
                log.info("metrics-serving", url=f"http://{address.host}:{server.port}/metrics")
        telemetry = self.telemetry
        loop = asyncio.get_running_loop()
        self.api_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=API_THREADS, thread_name_prefix="api"
        )
        loop.set_default_executor(self.api_threads)

        def restarted(plural: str, reason: str) -> None:
            telemetry.watch_restarts.labels(resource=plural, reason=reason).inc()

        def watcher(kind: watch.Kind, listed: Any, changed: Any) -> watch.Watcher:
            return watch.Watcher(
                api_client=self.api_client,
                kind=kind,
                loop=loop,
                listed=listed,
                changed=changed,
                restarted=restarted,
            )

        # Namespaces and the objects with our names: hardening's inventory (and the
        # workload side's namespace labels), from one watch per kind.
        service = self.workloads
        feed = hardening.WatchFeed(
            inventory=self.inventory,
            kinds=builders.MANAGED_KINDS,
            queue=self.queue.add,
            complete=self.hardening_sources_listed,
            namespace_seen=service.namespace_seen if service is not None else None,
            namespace_gone=service.namespace_gone if service is not None else None,
        )
        hardening_kinds = [
            watch.NAMESPACE,
            *(watch.managed_kind(k) for k in builders.MANAGED_KINDS),
        ]
        self.watchers = [watcher(kind, feed.listed, feed.changed) for kind in hardening_kinds]
        if service is not None:
            self.watchers += [
                watcher(kind, service.listed, service.changed) for kind in watch.KINDS
            ]
        for each in self.watchers:
            each.start()
        # kopf tells us its policy index is complete with its first event handler call;
        # with no policy at all there is none, so that case is found by asking.
        self.tasks.append(asyncio.create_task(self._until_policies_known(), name="policies"))
        if serve_health and self.settings.liveness:
            self.health = health.HealthServer(endpoint=self.settings.liveness, report=self.report)
            await self.health.start()

    def start_leading(self) -> None:
        """Start the writers now, or once this replica holds the Lease (see module docs)."""
        if self.elector is None:
            self.start_writers()
            return
        self.telemetry.leader.set(0)  # a standby until the Lease is ours
        self.election = asyncio.create_task(
            self.elector.run(on_started=self.start_writers, on_lost=self.on_lost_lease),
            name="leader-election",
        )

    @property
    def is_leader(self) -> bool:
        """Does this replica write (the leader, or the only replica)?"""
        return self.writing

    def start_writers(self) -> None:
        """The loops that write; on the leader only (see :meth:`start_leading`)."""
        if self.writing:
            return
        self.writing = True
        self.telemetry.leader.set(1)
        loop = asyncio.get_running_loop()

        def retry_later(namespace: str) -> None:  # called from the hardening threads
            loop.call_soon_threadsafe(self.queue.add_after, namespace, EVENT_RETRY_SECONDS)

        self.hardening.retry_later = retry_later
        interval = self.settings.status_interval_seconds
        self.tasks += [
            asyncio.create_task(self.status.run(), name="status-flush"),
            asyncio.create_task(self.queue.run(), name="reconcile-queue"),
            asyncio.create_task(self.admission_queue.run(), name="admission-queue"),
            asyncio.create_task(
                admission.requeue_forever(
                    service=self.admission, queue=self.admission_queue, status=self.status
                ),
                name="admission-timers",
            ),
            asyncio.create_task(
                hardening.resync_forever(
                    queue=self.queue, service=self.hardening, interval=self.settings.resync_seconds
                ),
                name="resync",
            ),
            asyncio.create_task(
                hardening.publish_status_forever(
                    service=self.hardening, queue=self.queue, interval=max(interval / 2, 0.1)
                ),
                name="status-counts",
            ),
        ]
        if self.workloads is not None:
            self.tasks.append(asyncio.create_task(self.workloads.run(), name="workloads"))
        if self.reports is not None:
            self.tasks.append(asyncio.create_task(self.reports.run(), name="reports"))

    def kopf_indexes_complete(self) -> None:
        """kopf ran its first event handler: policies and admission objects are listed."""
        self.kopf_ready = True
        self._maybe_synced()

    def hardening_sources_listed(self) -> None:
        """Namespaces and every kind of managed object are listed (``WatchFeed``)."""
        self.hardening_listed = True
        self._maybe_synced()

    async def _until_policies_known(self) -> None:
        """With no GuardrailPolicy at all, kopf runs no event handler: ask the server
        (one LIST of at most one item) until kopf reports or the list is empty. A policy
        created after that empty answer arrives through kopf like any change."""
        while not self.kopf_ready:
            try:
                found = await asyncio.to_thread(k8s_policies.any_policy, self.api_client)
            except Exception as e:  # an outage: kopf or the next try will tell
                log.warning("policies-probe-failed", error=repr(e)[:300])
            else:
                if not found:
                    self.kopf_indexes_complete()
                    return
            await asyncio.sleep(POLICY_PROBE_SECONDS)

    def _maybe_synced(self) -> None:
        """Every cache is complete: start the work queues and the first reviews."""
        if not (self.kopf_ready and self.hardening_listed):
            return
        if not self.queue.started:
            self.queue.start()
            log.info("caches-synced", namespaces=len(self.inventory.namespace_names()))
        if not self.admission_queue.started:
            self.admission_queue.add_many(self.policies.names())
            self.admission_queue.start()
        if self.workloads is not None:
            self.workloads.source_ready(NAMESPACES)

    async def stop(self) -> None:
        """Stop the loops and watches, write the last status changes, release the Lease,
        close the client.

        The Lease is released last, once no write of ours can still be in flight: the
        standby that takes it at once must not race our last reconciles.
        """
        if self.election is not None:
            self.election.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.election
        for watcher in self.watchers:
            watcher.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.health is not None:
            await self.health.stop()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.stop)
            self.metrics_server = None
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as closing:
            # Reconciles and reviews cancelled above may still run in API threads.
            if self.api_threads is not None:
                await loop.run_in_executor(closing, self.api_threads.shutdown)
            if self.writing:
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(closing, lambda: self.status.flush(force=True))
            # Let queued Event posts finish, then stop the threads.
            await loop.run_in_executor(closing, self.executor.shutdown)
            await loop.run_in_executor(closing, self.event_executor.shutdown)
        if self.elector is not None:
            with contextlib.suppress(Exception):
                await self.elector.release()
            self.elector.close()
        self.api_client.close()

    # ------------------------------------------------------------------ health

    def report(self) -> dict[str, Any]:
        """The health endpoint's body: one entry per component."""
        out: dict[str, Any] = {
            "hardening": {
                "synced": self.queue.started,
                "busy": self.queue.busy,
                "reconciled": self.queue.processed,
                "failed": self.queue.failed,
                "statusPending": len(self.status.pending()),
                "statusRecounts": self.hardening.published,
                "statusWrites": self.status.writes,
            },
            "admission": {
                "synced": self.admission_queue.started,
                "busy": self.admission_queue.busy,
                "reconciled": self.admission_queue.processed,
                "failed": self.admission_queue.failed,
                "writes": self.admission.writes,
            },
            "writing": self.writing,
        }
        elector = self.elector
        out["leader"] = {
            "election": elector is not None,
            "role": "leader" if self.writing else "standby",
            "identity": elector.identity if elector is not None else None,
            "holder": elector.holder if elector is not None else None,
            "lease": f"{elector.namespace}/{elector.name}" if elector is not None else None,
        }
        service = self.workloads
        if service is not None:
            out["workloads"] = {
                "synced": service.is_synced,
                "objects": service.object_count,
                "reviews": service.reviews,
                "annotationWrites": service.writes,
                "watchRestarts": sum(w.restarts for w in self.watchers),
                "evictions": service.enforcer.evictions,
                "evictionRefusals": service.enforcer.refusals,
                "evictionCandidates": len(service.enforcer.pending()),
            }
        if self.reports is not None:
            out["reports"] = {
                "served": self.reports.served,
                "namespaces": self.reports.known_count,
                "writes": self.reports.writes,
            }
        return out


def build(config: guardrails_settings.Settings, *, workloads_enabled: bool) -> Runtime:
    """Build every service once; raises ``k8s.client.ApiError`` without a usable config."""
    api_client = k8s_client.make_api_client(context=config.context)
    identity = leader.default_identity()
    # Which replica made a request shows in the API server's audit log (userAgent).
    api_client.user_agent = f"kube-guardrails/{__version__} ({identity})"
    telemetry = metrics.Metrics()
    k8s_client.observe_errors(
        api_client, lambda verb, code: telemetry.api_error(verb=verb, code=code)
    )
    store = policies.PolicyStore()

    def write_status(name: str, patch: Mapping[str, Any]) -> bool:
        # Every status write also says when (the `kubectl get gp -o wide` "Last
        # Reconcile" column). Only writes carry it: a resync that changes nothing
        # writes nothing, so the time is that of the last change the operator made.
        stamped = {**patch, "lastReconcileTime": violations.format_time(utcnow())}
        return k8s_policies.patch_status(api_client, name=name, status=stamped)

    batcher = status.StatusBatcher(write=write_status, interval=config.status_interval_seconds)
    inventory = hardening.Inventory()
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=WRITE_THREADS, thread_name_prefix="hardening-write"
    )
    event_executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=EVENT_THREADS, thread_name_prefix="hardening-event"
    )
    service = hardening.HardeningService(
        gateway=k8s_hardening.Gateway(api_client),
        inventory=inventory,
        policies=store,
        status=batcher,
        operator_namespace=config.namespace,
        executor=executor,
        event_executor=event_executor,
        telemetry=telemetry,
    )

    def reconcile(namespace: str) -> hardening.Result:
        started = time.perf_counter()
        try:
            return service.reconcile(namespace)
        finally:
            telemetry.reconcile_duration.observe(time.perf_counter() - started)

    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        name="namespaces", process=reconcile, workers=RECONCILE_WORKERS
    )
    telemetry.track_queue("namespaces", lambda: len(queue))

    admission_service = admission.AdmissionService(
        gateway=k8s_admission.Gateway(api_client),
        inventory=admission.Inventory(),
        policies=store,
        operator_namespace=config.namespace,
        clock=utcnow,
        hardening_conflicts=service.conflicts,
    )
    admission_queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        name="admission", process=admission_service.reconcile, workers=ADMISSION_WORKERS
    )

    def on_policy_change(name: str, old: Any, new: Any) -> None:
        # Roll a policy change out to every namespace it selected or selects now, and
        # rebuild its admission policies (also when it became invalid: they go).
        for namespace in service.affected_by_policy(old, new):
            queue.add_threadsafe(namespace)
        admission_queue.add_threadsafe(name)

    store.subscribe(on_policy_change)
    runtime = Runtime(
        settings=config,
        api_client=api_client,
        policies=store,
        status=batcher,
        inventory=inventory,
        hardening=service,
        queue=queue,
        executor=executor,
        event_executor=event_executor,
        admission=admission_service,
        admission_queue=admission_queue,
        telemetry=telemetry,
    )
    if config.leader_election:
        runtime.elector = leader.Elector(
            api_client=api_client,
            namespace=config.namespace,
            identity=identity,
            timing=leader.Timing(
                lease_duration=config.lease_duration_seconds,
                renew_deadline=config.lease_renew_deadline_seconds,
                retry_period=config.lease_retry_period_seconds,
            ),
        )
    if workloads_enabled:
        gateway = k8s_workloads.Gateway(api_client)
        runtime.workloads = workloads.WorkloadService(
            gateway=gateway,
            policies=store,
            status=batcher,
            operator_namespace=config.namespace,
            clock=utcnow,
            wait_for=(*(k.kind for k in watch.KINDS), NAMESPACES),
            enforcer=enforcement.Enforcer(
                gateway=gateway,
                clock=utcnow,
                operator_namespace=config.namespace,
                backoff_base=config.eviction_backoff_seconds,
                telemetry=telemetry,
            ),
            telemetry=telemetry,
        )
        store.subscribe(runtime.workloads.policy_changed)
        reviews = runtime.workloads
        telemetry.track_queue("reviews", lambda: reviews.pending_reviews)
        # Policy reports come from the workload review: one Report per namespace with
        # violations, written only when the OpenReports CRD is served.
        runtime.reports = report_service.ReportService(
            gateway=k8s_reports.Gateway(api_client),
            source=report_service.FromReviews(reviews),
            telemetry=telemetry,
        )
        reviews.attach_reports(runtime.reports)
    return runtime
