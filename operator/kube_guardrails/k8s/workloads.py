"""The API calls of the workload use cases: annotate, evict, post Events, read one object.

Implements the gateway protocols of ``services.workloads`` and ``services.enforcement``
(structurally: this layer sits below ``services`` and cannot import it). Every blocking
kubernetes-client call runs in a worker thread (``asyncio.to_thread``), so the operator's
event loop keeps serving watches while a request waits on the API server.

* annotations are written with a JSON merge patch of ``metadata.annotations`` only,
  carrying ``metadata.uid`` so a Pod recreated under the same name is never annotated
  with its predecessor's verdict (the API server refuses a patch whose uid differs);
* eviction is a ``policy/v1`` Eviction (``POST pods/NAME/eviction``) with the uid as a
  delete precondition. There is deliberately no delete call in this module: a 429 from
  a PodDisruptionBudget is reported back for a later retry, never bypassed.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import kubernetes.client

from kube_guardrails import FIELD_MANAGER, logs
from kube_guardrails.k8s import client, events

log = logs.get(__name__)

PLURALS = {"Pod": "pods", "Deployment": "deployments"}

# Values of ``services.enforcement.Eviction``.
EVICTED = "evicted"
BLOCKED = "blocked"
GONE = "gone"
FAILED = "failed"
# Pauses between attempts to post an Event that failed with a retryable error (API
# Priority and Fairness throttling under load, a restarting API server).
EVENT_RETRY_DELAYS = (0.5, 1.0, 2.0)


class Ref(Protocol):
    """An object reference (``services.enforcement.ObjectRef`` has this shape)."""

    @property
    def api_version(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def uid(self) -> str | None: ...

    def as_reference(self) -> dict[str, str]: ...


def object_path(ref: Ref) -> str:
    return client.object_path(
        api_version=ref.api_version,
        plural=PLURALS.get(ref.kind) or ref.kind.lower() + "s",
        namespace=ref.namespace,
        name=ref.name,
    )


def annotations_patch(ref: Ref, annotations: Mapping[str, str | None]) -> dict[str, Any]:
    """The merge patch body: our annotations (None deletes) and the uid as a guard."""
    meta: dict[str, Any] = {"annotations": dict(annotations)}
    if ref.uid:
        meta["uid"] = ref.uid
    return {"metadata": meta}


def eviction_body(ref: Ref) -> dict[str, Any]:
    """A policy/v1 Eviction for the Pod, valid only for this uid."""
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
    }
    if ref.uid:
        body["deleteOptions"] = {"preconditions": {"uid": ref.uid}}
    return body


def classify_eviction_error(status: int) -> str:
    """What an error status of the eviction subresource means for us.

    429: a PodDisruptionBudget does not allow the disruption now (or the API throttles):
    retry later. 404: the Pod is gone. Anything else (409 precondition or conflict,
    500 e.g. several PDBs selecting the Pod, no response): retry later, too.
    """
    if status == 429:
        return BLOCKED
    if status == 404:
        return GONE
    return FAILED


def patch_annotations(
    api_client: kubernetes.client.ApiClient,
    ref: Ref,
    annotations: Mapping[str, str | None],
) -> dict[str, Any] | None:
    """Merge-patch the annotations; the patched object, or None if it is gone."""
    try:
        return client.request(
            api_client,
            "PATCH",
            object_path(ref),
            query={"fieldManager": FIELD_MANAGER},
            body=annotations_patch(ref, annotations),
            content_type=client.MERGE_PATCH,
        )
    except client.ApiError as e:
        if e.not_found:
            return None
        raise


def evict(api_client: kubernetes.client.ApiClient, ref: Ref) -> str:
    """Ask for an Eviction; one of EVICTED, BLOCKED, GONE, FAILED. Never deletes."""
    try:
        client.request(api_client, "POST", object_path(ref) + "/eviction", body=eviction_body(ref))
    except client.ApiError as e:
        result = classify_eviction_error(e.status)
        log.info(
            "eviction-not-granted",
            namespace=ref.namespace,
            pod=ref.name,
            status=e.status,
            result=result,
            error=e.message[:200],
        )
        return result
    return EVICTED


def get(api_client: kubernetes.client.ApiClient, ref: Ref) -> dict[str, Any] | None:
    """The object as the API server has it now, or None."""
    return client.get_or_none(api_client, object_path(ref))


def daemonset_uid(
    api_client: kubernetes.client.ApiClient, *, namespace: str, name: str
) -> str | None:
    """The uid of the DaemonSet ``namespace/name`` (one GET), or None if there is none.

    The enforcer asks only when a Pod it is about to evict names a DaemonSet as its
    controller: that reference is written by whoever created the Pod.
    """
    found = client.get_or_none(
        api_client,
        client.object_path(
            api_version="apps/v1", plural="daemonsets", namespace=namespace, name=name
        ),
    )
    uid = ((found or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None


def node_uid(api_client: kubernetes.client.ApiClient, *, name: str) -> str | None:
    """The uid of the Node ``name`` (one GET), or None if there is none.

    The enforcer asks only when a Pod it is about to evict claims to be a mirror Pod:
    its annotation and Node owner reference are written by whoever created the Pod.
    """
    found = client.get_or_none(
        api_client,
        client.object_path(api_version="v1", plural="nodes", namespace=None, name=name),
    )
    uid = ((found or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None


class Gateway:
    """The async gateway the workload service and the enforcer are given."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client

    async def patch_annotations(
        self, ref: Ref, annotations: Mapping[str, str | None]
    ) -> dict[str, Any] | None:
        return await asyncio.to_thread(patch_annotations, self._api, ref, annotations)

    async def evict(self, ref: Ref) -> str:
        return await asyncio.to_thread(evict, self._api, ref)

    async def get(self, ref: Ref) -> dict[str, Any] | None:
        return await asyncio.to_thread(get, self._api, ref)

    async def daemonset_uid(self, *, namespace: str, name: str) -> str | None:
        return await asyncio.to_thread(daemonset_uid, self._api, namespace=namespace, name=name)

    async def node_uid(self, *, name: str) -> str | None:
        return await asyncio.to_thread(node_uid, self._api, name=name)

    async def event_times(self, *, namespace: str, reason: str) -> dict[str, datetime.datetime]:
        return await asyncio.to_thread(
            events.event_times, self._api, namespace=namespace, reason=reason
        )

    async def post_event(
        self,
        *,
        regarding: Ref,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        action: str,
    ) -> bool:
        """Post an Event, retrying a throttled or failed post a few times (a few seconds).

        Returns False when every attempt failed with an error a later retry could fix:
        the caller keeps the Event owed (``services.workloads``) rather than losing it.
        """
        post = functools.partial(
            events.post_event,
            self._api,
            regarding=regarding.as_reference(),
            type=type,
            reason=reason,
            message=message,
            action=action,
        )
        posted = await asyncio.to_thread(post)
        for delay in EVENT_RETRY_DELAYS:
            if posted:
                break
            await asyncio.sleep(delay)
            posted = await asyncio.to_thread(post)
        return posted
