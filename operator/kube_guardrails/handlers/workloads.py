"""Pod and Deployment watches: translate every change into a workload review.

Loaded by ``handlers.main`` when ``Settings.workloads`` is on. Pods and Deployments
belong to other people, so only ``@kopf.on.event`` handlers watch them: kopf stores no
state on them (no annotations of its own, no finalizers), and the only writes they ever
get are the violation annotations of ``services.workloads``. No kopf daemons or timers
on Pods either (those keep state on the object); the grace periods, eviction retries
and exemption expiries run in one background task of our own, started here at
start-up and stopped at clean-up.

Namespaces, Pods and Deployments are indexed too (storing nothing in kopf's index):
kopf runs no event handler before every index (namespaces, policies, workloads) is
fully listed, so the first review already sees every namespace and policy (a restart
never mistakes "not loaded yet" for "compliant"), and every workload is counted before
the first ``status.violations`` write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import kopf

from kube_guardrails import logs
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.k8s import workloads as k8s_workloads
from kube_guardrails.services import enforcement, policies, status, workloads

log = logs.get(__name__)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@kopf.on.startup(id="workloads-startup")
async def start_workloads(memo: kopf.Memo, **_: Any) -> None:
    """Build the workload service and start its background task (after the core's)."""
    store: policies.PolicyStore | None = memo.get("policies")
    batcher: status.StatusBatcher | None = memo.get("status")
    config: guardrails_settings.Settings | None = memo.get("settings")
    if store is None or batcher is None or config is None or memo.get("api_client") is None:
        # handlers.main's start-up builds these; kopf runs start-up handlers in order,
        # so this only happens if the modules were loaded the other way round.
        raise kopf.TemporaryError("waiting for the operator's core services", delay=1)
    gateway = k8s_workloads.Gateway(memo.api_client)
    service = workloads.WorkloadService(
        gateway=gateway,
        policies=store,
        status=batcher,
        operator_namespace=config.namespace,
        clock=utcnow,
        wait_for_sync=True,
        enforcer=enforcement.Enforcer(
            gateway=gateway,
            clock=utcnow,
            operator_namespace=config.namespace,
            backoff_base=config.eviction_backoff_seconds,
        ),
    )
    memo.workloads = service
    store.subscribe(service.policy_changed)
    memo.workloads_task = asyncio.create_task(service.run(), name="workloads")
    log.info("workloads-started", namespace=config.namespace)


@kopf.on.cleanup(id="workloads-cleanup")
async def stop_workloads(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("workloads_task")
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


@kopf.index("", "v1", "namespaces", id="workloads-namespaces-index")
async def namespace_indexed(name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """Namespace labels, complete before the first workload is reviewed."""
    service: workloads.WorkloadService = memo.workloads
    service.namespace_seen(name, dict(labels))


def _deletion_or_unsynced(type: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Event-handler filter: deletions, and any event until the first sync is counted.

    Labels of listed or changed namespaces already reach the service through the index
    handler above; skipping the call in kopf's filter saves a handler invocation per
    namespace event (the CPU cost of a burst of new namespaces).
    """
    if type == "DELETED":
        return True
    service: workloads.WorkloadService | None = memo.get("workloads")
    return service is None or not service.is_synced


@kopf.on.event("", "v1", "namespaces", id="workloads-namespaces-event", when=_deletion_or_unsynced)
async def namespace_event(
    type: str, name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    service: workloads.WorkloadService = memo.workloads
    await service.synced()
    if type == "DELETED":
        service.namespace_gone(name)
    else:
        service.namespace_seen(name, dict(labels))


@kopf.index("", "v1", "pods", id="workloads-pods-index")
async def pod_indexed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Pods and Deployments are indexed (storing nothing in kopf's index) only so that
    kopf lists them all before any event handler runs: the service can then count every
    workload before the first status write."""
    service: workloads.WorkloadService = memo.workloads
    service.prime(dict(body))


@kopf.index("apps", "v1", "deployments", id="workloads-deployments-index")
async def deployment_indexed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    service: workloads.WorkloadService = memo.workloads
    service.prime(dict(body))


async def _workload_event(type: str, body: kopf.Body, memo: kopf.Memo) -> None:
    service: workloads.WorkloadService = memo.workloads
    await service.synced()
    raw = dict(body)  # a plain snapshot: the service keeps it as the last seen state
    if type == "DELETED":
        await service.forget(raw)
    else:
        await service.observe(raw)


@kopf.on.event("", "v1", "pods", id="workloads-pods")
async def pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _workload_event(type, body, memo)


@kopf.on.event("apps", "v1", "deployments", id="workloads-deployments")
async def deployment_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _workload_event(type, body, memo)


@kopf.on.probe(id="workloads")
def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Shown by the liveness endpoint: how much the workload side has done."""
    service: workloads.WorkloadService | None = memo.get("workloads")
    if service is None:
        return {"started": False}
    return {
        "started": True,
        "reviews": service.reviews,
        "annotationWrites": service.writes,
        "evictions": service.enforcer.evictions,
        "evictionRefusals": service.enforcer.refusals,
        "evictionCandidates": len(service.enforcer.pending()),
    }
