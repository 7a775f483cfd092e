"""Watches of the generated admission policies: an edit or deletion queues the policy.

ValidatingAdmissionPolicies and bindings are few (at most two of each per
GuardrailPolicy), so kopf watches them all and the handlers keep only those with our
name prefix (``when=``: client-side, so an object whose labels were removed is still
seen). Index handlers fill the admission inventory before the work queue starts (kopf
runs event handlers only once every index is complete); deletions reach the event
handlers only. Nothing is stored on the objects (no kopf annotations, no finalizers).
"""

from __future__ import annotations

from typing import Any

import kopf

from kube_guardrails.admission import policies as generated
from kube_guardrails.handlers import main, runtime
from kube_guardrails.services import admission as admission_service

GROUP, VERSION = "admissionregistration.k8s.io", "v1"
PLURALS = {
    admission_service.VAP: "validatingadmissionpolicies",
    admission_service.BINDING: "validatingadmissionpolicybindings",
}


def deletion_or_first(type: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Event-handler filter: deletions, and any event until the work queue has started.

    Everything else is the index handlers' job; skipping the call in kopf's filter
    saves a handler invocation per watch event.
    """
    if type == "DELETED":
        return True
    built: runtime.Runtime | None = memo.get("runtime")
    return built is None or not built.queue.started


def _ours(name: str | None, **_: Any) -> bool:
    return bool(name) and str(name).startswith(generated.NAME_PREFIX)


def _ours_deleted_or_first(name: str | None, type: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Deletions, and any event until the queues start (the rest is the index's job)."""
    return _ours(name) and deletion_or_first(type=type, memo=memo)


def _register(kind: str, plural: str) -> None:
    @kopf.index(GROUP, VERSION, plural, id=f"{plural}-index", when=_ours)
    async def indexed(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        built: runtime.Runtime = memo.runtime
        if built.admission.inventory.put(kind, body, watched=True):
            policy = built.admission.policy_of(name)
            if policy is not None:
                built.admission_queue.add(policy)

    @kopf.on.event(
        GROUP,
        VERSION,
        plural,
        id=f"{plural}-event",
        when=_ours_deleted_or_first,
    )
    async def event(type: str, name: str, memo: kopf.Memo, **_: Any) -> None:
        main.ensure_started(memo)
        if type == "DELETED":
            built: runtime.Runtime = memo.runtime
            built.admission.inventory.remove(kind, name)
            policy = built.admission.policy_of(name)
            if policy is not None:
                built.admission_queue.add(policy)


for _kind, _plural in PLURALS.items():
    _register(_kind, _plural)
