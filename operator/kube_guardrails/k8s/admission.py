"""The admission gateway: create, merge-patch, delete and read the generated
ValidatingAdmissionPolicies and bindings (``admissionregistration.k8s.io/v1``).

Implements ``services.admission.Gateway`` with plain JSON requests (``k8s.client``);
writes name the field manager ``kube-guardrails``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes.client

from kube_guardrails import FIELD_MANAGER
from kube_guardrails.k8s import client, events

API_VERSION = "admissionregistration.k8s.io/v1"
PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def path(kind: str, name: str | None = None) -> str:
    return client.object_path(
        api_version=API_VERSION, plural=PLURALS[kind], namespace=None, name=name
    )


class Gateway(events.OnceEvents):
    """Talks to the API server for ``services.admission`` (one shared ApiClient)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client

    def create(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return client.request(
            self._api, "POST", path(kind), query={"fieldManager": FIELD_MANAGER}, body=dict(obj)
        )

    def patch(self, kind: str, *, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return client.request(
            self._api,
            "PATCH",
            path(kind, name),
            query={"fieldManager": FIELD_MANAGER},
            body=dict(patch),
            content_type=client.MERGE_PATCH,
        )

    def delete(self, kind: str, *, name: str) -> bool:
        return client.delete_ignoring_missing(self._api, path(kind, name))

    def get(self, kind: str, *, name: str) -> dict[str, Any] | None:
        return client.get_or_none(self._api, path(kind, name))
