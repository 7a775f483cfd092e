"""Kubernetes Events (core/v1), where platform teams and developers look for them.

``kubectl describe <kind> <name>`` lists the Events whose ``involvedObject`` matches the
object's kind, name, namespace and uid. For a namespaced object the Event lives in the
object's namespace. For a cluster-scoped object (a Namespace, a GuardrailPolicy) kubectl
searches every namespace for ``involvedObject.namespace == ""``, and the API server only
accepts such an Event in the ``default`` namespace (legacy core/v1 validation), so that
is where it goes, with the involved object's namespace left empty.

Events are auxiliary: a failure to post one is logged and swallowed, never raised into
the handler that wanted to post it.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import kubernetes.client

from kube_guardrails import MANAGED_BY_VALUE, logs
from kube_guardrails.k8s import client

MAX_MESSAGE = 1024
LIST_PAGE = 500
CLUSTER_EVENTS_NAMESPACE = "default"

log = logs.get(__name__)

EventType = Literal["Normal", "Warning"]


def _instance() -> str:
    # The Pod name in a cluster (HOSTNAME is set by the kubelet), the host name locally.
    return os.environ.get("HOSTNAME") or socket.gethostname()


def truncate(message: str, limit: int = MAX_MESSAGE) -> str:
    """Keep messages within the API server's 1 KiB limit, marking the cut."""
    if len(message) <= limit:
        return message
    return message[: limit - 3] + "..."


def build_event(
    *,
    regarding: Mapping[str, Any],
    type: EventType,
    reason: str,
    message: str,
    action: str,
    now: datetime.datetime,
    instance: str,
) -> dict[str, Any]:
    """The Event object (pure, for tests): see the module docstring for the namespace rule."""
    namespace = regarding.get("namespace") or None
    involved: dict[str, Any] = {
        "apiVersion": regarding.get("apiVersion", ""),
        "kind": regarding.get("kind", ""),
        "name": regarding.get("name", ""),
    }
    if namespace:
        involved["namespace"] = namespace
    if regarding.get("uid"):
        involved["uid"] = regarding["uid"]
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{involved['name'] or 'object'}.",
            "namespace": namespace or CLUSTER_EVENTS_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY_VALUE},
        },
        "involvedObject": involved,
        "type": type,
        "reason": reason,
        "message": truncate(message),
        "action": action,
        "source": {"component": MANAGED_BY_VALUE},  # the "From" column of kubectl describe
        "reportingComponent": MANAGED_BY_VALUE,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _event_now(
    *, regarding: Mapping[str, Any], type: EventType, reason: str, message: str, action: str
) -> dict[str, Any]:
    """The Event as this process posts it now (its clock, its instance name)."""
    return build_event(
        regarding=regarding,
        type=type,
        reason=reason,
        message=message,
        action=action,
        now=datetime.datetime.now(datetime.UTC),
        instance=_instance(),
    )


def post_event(
    api_client: kubernetes.client.ApiClient,
    *,
    regarding: Mapping[str, Any],
    type: EventType,
    reason: str,
    message: str,
    action: str,
) -> bool:
    """Post one Event regarding an object; errors are logged, never raised.

    Returns False when it was not posted but a later attempt could succeed (outage,
    throttling, timeout, 5xx), for callers that must not lose the Event; True when it
    was posted or no retry can help (403 in a terminating namespace, 404, 422).
    """
    body = _event_now(regarding=regarding, type=type, reason=reason, message=message, action=action)
    namespace = body["metadata"]["namespace"]
    path = client.object_path(api_version="v1", plural="events", namespace=namespace)
    try:
        client.request(api_client, "POST", path, body=body)
    except client.ApiError as e:
        log.warning(
            "event-post-failed",
            reason=reason,
            kind=regarding.get("kind"),
            name=regarding.get("name"),
            namespace=regarding.get("namespace"),
            status=e.status,
            error=e.message[:200],
        )
        return not e.retryable
    except Exception as e:  # an Event must never break the caller
        log.warning("event-post-failed", reason=reason, error=repr(e)[:200])
        return False
    return True


def event_path(*, namespace: str | None, name: str | None = None) -> str:
    return client.object_path(
        api_version="v1",
        plural="events",
        namespace=namespace or CLUSTER_EVENTS_NAMESPACE,
        name=name,
    )


def post_event_once(
    api_client: kubernetes.client.ApiClient,
    *,
    name: str,
    regarding: Mapping[str, Any],
    type: EventType,
    reason: str,
    message: str,
    action: str,
) -> None:
    """Post an Event under a fixed name: posted at most once, retried until it is.

    For Events that must not be lost (``NamespaceHardened``): a second attempt after an
    outage, a failed create or a restart finds 409 AlreadyExists when the first one got
    through, which is success. Other errors are raised, for the caller to retry.
    """
    body = _event_now(regarding=regarding, type=type, reason=reason, message=message, action=action)
    del body["metadata"]["generateName"]
    body["metadata"]["name"] = name
    try:
        client.request(
            api_client, "POST", event_path(namespace=body["metadata"]["namespace"]), body=body
        )
    except client.ApiError as e:
        if not e.conflict:
            raise


class OnceEvents:
    """Gateway mixin: :func:`post_event_once` with the gateway's own API client.

    The hardening and admission gateways post their fixed-name Events the same way.
    """

    _api: kubernetes.client.ApiClient

    def post_event_once(
        self,
        *,
        name: str,
        regarding: Mapping[str, Any],
        type: EventType,
        reason: str,
        message: str,
        action: str,
    ) -> None:
        post_event_once(
            self._api,
            name=name,
            regarding=regarding,
            type=type,
            reason=reason,
            message=message,
            action=action,
        )


def event_names(api_client: kubernetes.client.ApiClient, *, reason: str) -> set[str]:
    """Names of our Events with this reason about cluster-scoped objects (one LIST)."""
    return {
        str((item.get("metadata") or {}).get("name"))
        for item in _list_ours(api_client, namespace=None, reason=reason)
    }


def _list_ours(
    api_client: kubernetes.client.ApiClient, *, namespace: str | None, reason: str
) -> Iterator[dict[str, Any]]:
    """Our Events (managed-by label) with this reason in a namespace: one LIST, in pages
    (a namespace with a flood of Events must not be held in memory at once)."""
    token = ""
    while True:
        query = {
            "fieldSelector": f"reason={reason}",
            "labelSelector": f"app.kubernetes.io/managed-by={MANAGED_BY_VALUE}",
            "limit": str(LIST_PAGE),
        }
        if token:
            query["continue"] = token
        found = client.request(api_client, "GET", event_path(namespace=namespace), query=query)
        yield from (item for item in found.get("items") or () if isinstance(item, dict))
        token = str((found.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def event_times(
    api_client: kubernetes.client.ApiClient, *, namespace: str, reason: str
) -> dict[str, datetime.datetime]:
    """When our Events with this reason in a namespace were last posted, by the uid of
    the object they regard (one LIST).

    Their ``lastTimestamp`` is the poster's clock (``build_event``), the clock the
    operator also stamps its annotations with; an Event without one counts from its
    creation.
    """
    times: dict[str, datetime.datetime] = {}
    for item in _list_ours(api_client, namespace=namespace, reason=reason):
        uid = str((item.get("involvedObject") or {}).get("uid") or "")
        stamp = item.get("lastTimestamp") or (item.get("metadata") or {}).get("creationTimestamp")
        if not uid or not stamp:
            continue
        try:
            when = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            continue
        if uid not in times or when > times[uid]:
            times[uid] = when
    return times
