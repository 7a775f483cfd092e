"""Pod and Deployment reviews: the workload service, its watches and its probe.

Loaded by ``handlers.main`` when ``Settings.workloads`` is on. Pods and Deployments are
the high-cardinality kinds: they are not watched by kopf (an ``@kopf.index`` on Pods
makes kopf's start-up quadratic and keeps a worker and a full body per object) but by
the lean list+watch of ``k8s.watch``, one thread per kind, which hands compact
projections to the service on the event loop. They belong to other people: the only
writes they ever get are the violation annotations of ``services.workloads``.

The first review waits until every source is complete: each watched kind has been
listed, and kopf's indexes (namespaces and policies) are filled, which kopf signals by
running its first event handler (it runs none before every index is complete). So a
restart never mistakes "not loaded yet" for "compliant", and every workload is counted
before the first ``status.violations`` write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import kopf

from kube_guardrails import logs
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.k8s import watch
from kube_guardrails.k8s import workloads as k8s_workloads
from kube_guardrails.services import enforcement, policies, status, workloads

log = logs.get(__name__)

NAMESPACES = "namespaces"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@kopf.on.startup(id="workloads-startup")
async def start_workloads(memo: kopf.Memo, **_: Any) -> None:
    """Build the workload service, start its background task and its watches."""
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
        wait_for=(*(k.kind for k in watch.KINDS), NAMESPACES),
        enforcer=enforcement.Enforcer(
            gateway=gateway,
            clock=utcnow,
            operator_namespace=config.namespace,
            backoff_base=config.eviction_backoff_seconds,
        ),
    )
    memo.workloads = service
    memo.workloads_probe = probe
    store.subscribe(service.policy_changed)
    memo.workloads_task = asyncio.create_task(service.run(), name="workloads")
    loop = asyncio.get_running_loop()
    watchers = [
        watch.Watcher(
            api_client=memo.api_client,
            kind=kind,
            loop=loop,
            listed=service.listed,
            changed=service.changed,
        )
        for kind in watch.KINDS
    ]
    for watcher in watchers:
        watcher.start()
    memo.watchers = watchers
    log.info("workloads-started", namespace=config.namespace, kinds=[k.kind for k in watch.KINDS])


@kopf.on.cleanup(id="workloads-cleanup")
async def stop_workloads(memo: kopf.Memo, **_: Any) -> None:
    watchers: list[watch.Watcher] = memo.get("watchers") or []
    for watcher in watchers:
        watcher.stop()
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
    # kopf calls event handlers only once every index is filled: namespaces and
    # policies are complete now.
    service.source_ready(NAMESPACES)
    if type == "DELETED":
        service.namespace_gone(name)
    else:
        service.namespace_seen(name, dict(labels))


def probe(memo: kopf.Memo) -> dict[str, Any]:
    """Shown by the health endpoint: how much the workload side has done."""
    service: workloads.WorkloadService | None = memo.get("workloads")
    if service is None:
        return {"started": False}
    watchers: list[watch.Watcher] = memo.get("watchers") or []
    return {
        "started": True,
        "synced": service.is_synced,
        "reviews": service.reviews,
        "annotationWrites": service.writes,
        "objects": service.object_count,
        "watchRestarts": sum(w.restarts for w in watchers),
        "evictions": service.enforcer.evictions,
        "evictionRefusals": service.enforcer.refusals,
        "evictionCandidates": len(service.enforcer.pending()),
    }
