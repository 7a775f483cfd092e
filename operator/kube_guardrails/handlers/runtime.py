"""The composition root: every service of the operator, built once, in one typed object.

:func:`build` makes the API client, the policy store, the status batcher, the hardening
inventory, service and work queue, and (if enabled) the workload service with its
watches; kopf's ``memo.runtime`` holds the result and every handler reads its
dependencies from there. One cache per kind, shared by every service: namespaces and
managed objects in the hardening :class:`~kube_guardrails.services.hardening.Inventory`
(kopf indexes), Pods and Deployments in the workload service (``k8s.watch``), policies
in the :class:`~kube_guardrails.services.policies.PolicyStore`.

Start-up has two phases, kept apart on purpose:

* :meth:`Runtime.start_caches`: everything that only reads (watches, the health
  endpoint). Safe on any replica;
* :meth:`Runtime.start_writers`: everything that writes (the hardening work queue and
  resync, the workload reviews, the status flush). Reviews and reconciles wait anyway
  until the caches are complete (``services.workloads`` waits for every source, the
  work queue for kopf's first event handler), so no write is ever based on a partial
  view.

The writer phase is the one place a leader-election gate plugs in: a standby replica
runs :meth:`start_caches` only (warm caches, green liveness) and calls
:meth:`start_writers` when it acquires the Lease. Today (one replica) it is called
right away.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
from typing import Any

from kube_guardrails import logs
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.handlers import health
from kube_guardrails.k8s import admission as k8s_admission
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.k8s import hardening as k8s_hardening
from kube_guardrails.k8s import policies as k8s_policies
from kube_guardrails.k8s import watch
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

log = logs.get(__name__)

RECONCILE_WORKERS = 8
# Admission objects are per policy (few): two workers are plenty.
ADMISSION_WORKERS = 2
# Parallel writes within a reconcile (one per managed kind) and Event posts.
WRITE_THREADS = 16
# Threads behind asyncio.to_thread (every API call of the workload side): the default,
# min(32, cores + 4), would cap a burst of reviews at 6 requests in flight on 2 cores.
API_THREADS = 64
# A NamespaceHardened Event that could not be posted (API outage) is tried again this
# much later, by reconciling its namespace again (everything else is in place by then).
EVENT_RETRY_SECONDS = 5.0
# The source name of kopf's indexes (namespaces, policies) in the workload service.
NAMESPACES = "namespaces"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
    admission: admission.AdmissionService
    admission_queue: workqueue.WorkQueue[str]
    workloads: workloads.WorkloadService | None = None
    watchers: list[watch.Watcher] = dataclasses.field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = dataclasses.field(default_factory=list)
    health: health.HealthServer | None = None
    writing: bool = False
    # (policy, uid, generation) already told PolicyInvalid by this process.
    policies_warned: set[tuple[str, str, int]] = dataclasses.field(default_factory=set)

    # ------------------------------------------------------------------ phases

    async def start_caches(self, *, serve_health: bool) -> None:
        """Watches and the health endpoint: reads only."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="api")
        )
        if self.workloads is not None:
            service = self.workloads
            self.watchers = [
                watch.Watcher(
                    api_client=self.api_client,
                    kind=kind,
                    loop=loop,
                    listed=service.listed,
                    changed=service.changed,
                )
                for kind in watch.KINDS
            ]
            for watcher in self.watchers:
                watcher.start()
        if serve_health and self.settings.liveness:
            self.health = health.HealthServer(endpoint=self.settings.liveness, report=self.report)
            await self.health.start()

    def start_writers(self) -> None:
        """The loops that write. The leader-election gate goes here (see module docs)."""
        if self.writing:
            return
        self.writing = True
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

    def indexes_complete(self) -> None:
        """kopf ran its first event handler: namespaces, policies, managed objects listed."""
        if not self.queue.started:
            self.queue.start()
            log.info("caches-synced", namespaces=len(self.inventory.namespace_names()))
        if not self.admission_queue.started:
            self.admission_queue.add_many(self.policies.names())
            self.admission_queue.start()
        if self.workloads is not None:
            self.workloads.source_ready(NAMESPACES)

    async def stop(self) -> None:
        """Stop the loops and watches, write the last status changes, close the client."""
        for watcher in self.watchers:
            watcher.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.health is not None:
            await self.health.stop()
        if self.writing:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.status.flush, force=True)
        # Let queued Event posts finish, then stop the threads.
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=False)
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
        return out


def build(config: guardrails_settings.Settings, *, workloads_enabled: bool) -> Runtime:
    """Build every service once; raises ``k8s.client.ApiError`` without a usable config."""
    api_client = k8s_client.make_api_client(context=config.context)
    store = policies.PolicyStore()
    batcher = status.StatusBatcher(
        write=lambda name, patch: k8s_policies.patch_status(api_client, name=name, status=patch),
        interval=config.status_interval_seconds,
    )
    inventory = hardening.Inventory()
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=WRITE_THREADS, thread_name_prefix="hardening-write"
    )
    service = hardening.HardeningService(
        gateway=k8s_hardening.Gateway(api_client),
        inventory=inventory,
        policies=store,
        status=batcher,
        operator_namespace=config.namespace,
        executor=executor,
    )
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        name="namespaces", process=service.reconcile, workers=RECONCILE_WORKERS
    )

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
        admission=admission_service,
        admission_queue=admission_queue,
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
            ),
        )
        store.subscribe(runtime.workloads.policy_changed)
    return runtime
