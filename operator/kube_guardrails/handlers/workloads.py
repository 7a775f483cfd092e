"""Namespace labels for the workload reviews, and the signal that kopf's indexes are full.

Loaded by ``handlers.main`` when ``Settings.workloads`` is on; the workload service
itself and its Pod and Deployment watches are built by the composition root
(``handlers.runtime``). Pods and Deployments are the high-cardinality kinds: they are not
watched by kopf (an ``@kopf.index`` on Pods makes kopf's start-up quadratic and keeps a
worker and a full body per object) but by the lean list+watch of ``k8s.watch``. They
belong to other people: the only writes they ever get are the violation annotations of
``services.workloads``.

The first review waits until every source is complete: each watched kind has been
listed, and kopf's indexes (namespaces and policies) are filled, which kopf signals by
running its first event handler (it runs none before every index is complete). So a
restart never mistakes "not loaded yet" for "compliant", and every workload is counted
before the first ``status.violations`` write.
"""

from __future__ import annotations

from typing import Any

import kopf

from kube_guardrails.handlers import main
from kube_guardrails.services import workloads


def _service(memo: kopf.Memo) -> workloads.WorkloadService | None:
    built = memo.get("runtime")
    return None if built is None else built.workloads


@kopf.index("", "v1", "namespaces", id="workloads-namespaces-index")
async def namespace_indexed(name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """Namespace labels, complete before the first workload is reviewed."""
    service = _service(memo)
    if service is not None:
        service.namespace_seen(name, dict(labels))


def _deletion_or_unsynced(type: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Event-handler filter: deletions, and any event until the first sync is counted.

    Labels of listed or changed namespaces already reach the service through the index
    handler above; skipping the call in kopf's filter saves a handler invocation per
    namespace event (the CPU cost of a burst of new namespaces).
    """
    if type == "DELETED":
        return True
    service = _service(memo)
    return service is None or not service.is_synced


@kopf.on.event("", "v1", "namespaces", id="workloads-namespaces-event", when=_deletion_or_unsynced)
async def namespace_event(
    type: str, name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    # kopf calls event handlers only once every index is filled: namespaces and
    # policies are complete now.
    main.ensure_started(memo)
    service = _service(memo)
    if service is None:
        return
    if type == "DELETED":
        service.namespace_gone(name)
    else:
        service.namespace_seen(name, dict(labels))
