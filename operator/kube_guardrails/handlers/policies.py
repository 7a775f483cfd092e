"""GuardrailPolicy watch: keep the policy store current and report validity in status.

No finalizer and no kopf annotations on policies: cleaning up after a deleted policy
is the garbage collector's job (every managed object has an ownerReference to it), and
the namespaces it governed are re-reconciled through the policy store's listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from kube_guardrails import API_GROUP, API_VERSION, KIND, PLURAL, logs
from kube_guardrails.handlers import main, runtime
from kube_guardrails.k8s import events
from kube_guardrails.services import admission, status

log = logs.get(__name__)

READY_MESSAGE = admission.READY_MESSAGE
REASON_INVALID = "PolicyInvalid"


@kopf.index(API_GROUP, API_VERSION, PLURAL, id="policies-index")
async def policy_indexed(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Fill the store before any other handler runs (kopf waits for indexes)."""
    built: runtime.Runtime = memo.runtime
    # A standby follows every status the leader writes (see StatusBatcher.observe).
    built.status.observe(name, body.get("status"), follow=not built.is_leader)
    built.policies.upsert(body)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL, id="policies-event")
async def policy_event(type: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    main.ensure_started(memo)
    built: runtime.Runtime = memo.runtime
    store, batcher = built.policies, built.status
    if type == "DELETED":
        store.remove(name)
        batcher.forget(name)
        log.info("policy-deleted", policy=name)
        return
    entry = store.upsert(body)  # a no-op for listeners when the index already saw it
    if entry.error is None:
        # Not ready while a managed name is taken by an object the policy does not own.
        ready, reason, message = built.admission.ready(name)
        batcher.set_ready(
            name, ready=ready, reason=reason, message=message, observed_generation=entry.generation
        )
        return
    message = str(entry.error)
    batcher.set_ready(
        name,
        ready=False,
        reason=REASON_INVALID,
        message=message,
        observed_generation=entry.generation,
    )
    if _already_reported(body.get("status"), message=message, generation=entry.generation):
        return
    if not built.is_leader:  # a standby writes nothing; the leader posts it
        return
    warned = built.policies_warned
    key = (name, entry.uid, entry.generation)
    if key in warned:
        return
    warned.add(key)
    log.warning("policy-invalid", policy=name, field=entry.error.field, error=entry.error.message)
    await asyncio.to_thread(
        events.post_event,
        built.api_client,
        regarding={
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": name,
            "uid": entry.uid,
        },
        type="Warning",
        reason=REASON_INVALID,
        message=f"{message}. The policy is ignored until fixed (its hardening, reviews and "
        "admission policies are removed); other policies are unaffected.",
        action="Validate",
    )


def _already_reported(status_obj: Any, *, message: str, generation: int) -> bool:
    """Did a previous run already report this very error for this generation?"""
    if not isinstance(status_obj, Mapping):
        return False
    if status_obj.get("observedGeneration") != generation:
        return False
    for cond in status_obj.get("conditions") or []:
        if (
            isinstance(cond, Mapping)
            and cond.get("type") == status.READY
            and cond.get("status") == "False"
            and cond.get("message") == message
        ):
            return True
    return False
