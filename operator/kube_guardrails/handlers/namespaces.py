"""Namespace and managed-object watches: translate every change into a reconcile.

Index handlers fill the hardening inventory; kopf runs the event handlers only once
every indexed resource has been listed, so reconciles never start on a partial view.
Event handlers store nothing on the objects (no annotations, no finalizers: these are
``@kopf.on.event`` handlers) and only queue the namespace; the work queue reconciles
it, retrying on errors (event handlers themselves are never retried by kopf).

Managed objects are watched by name (one fixed name per kind), not only by label: an
object with our name but without our label must be known too, so that we leave it
alone without even trying to create ours.
"""

from __future__ import annotations

from typing import Any

import kopf

from kube_guardrails import builders
from kube_guardrails.handlers import main
from kube_guardrails.services import hardening, workqueue


@kopf.index("", "v1", "namespaces", id="namespaces-index")
async def namespace_indexed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    inventory: hardening.Inventory = memo.inventory
    inventory.put_namespace(body)


@kopf.on.event("", "v1", "namespaces", id="namespaces-event")
async def namespace_event(
    type: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    main.ensure_started(memo)
    inventory: hardening.Inventory = memo.inventory
    if type == "DELETED":
        inventory.remove_namespace(name)
    else:
        inventory.put_namespace(body)
    queue: workqueue.WorkQueue[str] = memo.queue
    queue.add(name)


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
    async def object_indexed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        inventory: hardening.Inventory = memo.inventory
        inventory.put_object(kind, body, watched=True)

    @kopf.on.event(
        group,
        version,
        kind.plural,
        field="metadata.name",
        value=kind.name,
        id=f"{kind.plural}-event",
    )
    async def object_event(
        type: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        main.ensure_started(memo)
        inventory: hardening.Inventory = memo.inventory
        if not namespace:
            return
        if type == "DELETED":
            inventory.remove_object(kind, namespace)
        else:
            inventory.put_object(kind, body, watched=True)
        queue: workqueue.WorkQueue[str] = memo.queue
        queue.add(namespace)


for _kind in builders.MANAGED_KINDS:
    _register(_kind)
