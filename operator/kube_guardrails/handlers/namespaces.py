"""Namespace and managed-object watches: translate every change into a reconcile.

One index handler per namespace event feeds both caches that need namespaces: the
hardening inventory and the workload service's namespace labels (one kopf handler call
per event instead of two: kopf's per-event cost is what bounds a burst of namespaces).

Index handlers fill the hardening inventory and queue the namespace when something
hardening depends on changed (a new namespace, new labels, an edited managed object;
not the echo of our own write). kopf runs the event handlers only once every indexed
resource has been listed, so the first event handler call starts the work queue on a
complete view: reconciling never mistakes "not listed yet" for "missing". Deletions do
not reach index handlers, so the event handlers take those.

Nothing is stored on the objects: index and ``@kopf.on.event`` handlers write no
annotations and add no finalizers. The work queue retries failed reconciles (kopf
never retries event handlers).

Managed objects are watched by name (one fixed name per kind), not only by label: an
object with our name but without our label must be known too, so that we leave it
alone without even trying to create ours.
"""

from __future__ import annotations

from typing import Any

import kopf

from kube_guardrails import builders
from kube_guardrails.handlers import main, runtime


def deletion_or_first(type: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Event-handler filter: deletions, and any event until the work queue has started.

    Everything else is the index handlers' job; skipping the call in kopf's filter
    saves a handler invocation per watch event (the CPU cost of a burst).
    """
    if type == "DELETED":
        return True
    built: runtime.Runtime | None = memo.get("runtime")
    return built is None or not built.queue.started


@kopf.index("", "v1", "namespaces", id="namespaces-index")
async def namespace_indexed(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    built: runtime.Runtime = memo.runtime
    if built.inventory.update_namespace(body):
        built.queue.add(name)
    if built.workloads is not None:  # one handler for both caches: one kopf call per event
        built.workloads.namespace_seen(name, dict(body.get("metadata", {}).get("labels") or {}))


@kopf.on.event("", "v1", "namespaces", id="namespaces-event", when=deletion_or_first)
async def namespace_event(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    main.ensure_started(memo)
    if type == "DELETED":
        built: runtime.Runtime = memo.runtime
        built.inventory.remove_namespace(name)
        built.queue.add(name)
        if built.workloads is not None:
            built.workloads.namespace_gone(name)


def _register(kind: builders.Kind) -> None:
    group, _, version = kind.api_version.rpartition("/")

    @kopf.index(
        group,
        version,
        kind.plural,
        field="metadata.name",
        value=kind.name,
        id=f"{kind.plural}-index",
    )
    async def object_indexed(
        namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        built: runtime.Runtime = memo.runtime
        if namespace and built.inventory.put_object(kind, body, watched=True):
            built.queue.add(namespace)

    @kopf.on.event(
        group,
        version,
        kind.plural,
        field="metadata.name",
        value=kind.name,
        id=f"{kind.plural}-event",
        when=deletion_or_first,
    )
    async def object_event(type: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
        main.ensure_started(memo)
        if type == "DELETED" and namespace:
            built: runtime.Runtime = memo.runtime
            built.inventory.remove_object(kind, namespace)
            built.queue.add(namespace)


for _kind in builders.MANAGED_KINDS:
    _register(_kind)
