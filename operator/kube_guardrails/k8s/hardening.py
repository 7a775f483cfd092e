"""The hardening gateway: create, merge-patch, delete and read managed objects.

Implements ``services.hardening.Gateway`` with plain JSON requests (``k8s.client``).
Creates and patches name the field manager ``kube-guardrails``, so
``kubectl get -o yaml --show-managed-fields`` shows which fields the operator owns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import kubernetes.client

from kube_guardrails import FIELD_MANAGER, builders
from kube_guardrails.k8s import client, events


def _path(kind: builders.Kind, namespace: str, name: str | None = None) -> str:
    return client.object_path(
        api_version=kind.api_version, plural=kind.plural, namespace=namespace, name=name
    )


class Gateway(events.OnceEvents):
    """Talks to the API server for ``services.hardening`` (one shared ApiClient)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client

    def create(self, kind: builders.Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
        namespace = str(obj["metadata"]["namespace"])
        return client.request(
            self._api,
            "POST",
            _path(kind, namespace),
            query={"fieldManager": FIELD_MANAGER},
            body=dict(obj),
        )

    def patch(
        self, kind: builders.Kind, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return client.request(
            self._api,
            "PATCH",
            _path(kind, namespace, name),
            query={"fieldManager": FIELD_MANAGER},
            body=dict(patch),
            content_type=client.MERGE_PATCH,
        )

    def delete(self, kind: builders.Kind, *, namespace: str, name: str) -> bool:
        return client.delete_ignoring_missing(self._api, _path(kind, namespace, name))

    def get(self, kind: builders.Kind, *, namespace: str, name: str) -> dict[str, Any] | None:
        return client.get_or_none(self._api, _path(kind, namespace, name))

    def list_objects(self, kind: builders.Kind) -> list[dict[str, Any]]:
        """Our objects of a kind in every namespace (by our fixed name)."""
        path = client.object_path(api_version=kind.api_version, plural=kind.plural, namespace=None)
        found = client.request(
            self._api, "GET", path, query={"fieldSelector": f"metadata.name={kind.name}"}
        )
        return list(found.get("items") or [])

    def list_namespaces(self) -> list[dict[str, Any]]:
        found = client.request(self._api, "GET", "/api/v1/namespaces")
        return list(found.get("items") or [])

    def post_event(
        self,
        *,
        regarding: Mapping[str, Any],
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        action: str,
    ) -> None:
        events.post_event(
            self._api, regarding=regarding, type=type, reason=reason, message=message, action=action
        )

    def event_names(self, *, reason: str) -> set[str]:
        return events.event_names(self._api, reason=reason)

    def label_namespace(self, name: str, *, key: str, value: str | None) -> dict[str, Any] | None:
        """Merge-patch one label of a namespace (the readiness label); None if it is gone.

        The only write the operator makes to a namespace (no kopf annotations).
        """
        try:
            return client.request(
                self._api,
                "PATCH",
                f"/api/v1/namespaces/{name}",
                query={"fieldManager": FIELD_MANAGER},
                body={"metadata": {"labels": {key: value}}},
                content_type=client.MERGE_PATCH,
            )
        except client.ApiError as e:
            if e.not_found:
                return None
            raise
