"""GuardrailPolicy writes: the status subresource, nothing else (and one read: is there
any policy at all, for start-up).

The operator never writes a policy's spec or metadata (it is the platform team's
object); it only reports what it did in ``status`` through a JSON merge patch, which
touches exactly the fields given and needs no resourceVersion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes.client

from kube_guardrails import API_GROUP, API_VERSION, PLURAL
from kube_guardrails.k8s import client


def any_policy(api_client: kubernetes.client.ApiClient) -> bool:
    """Is there at least one GuardrailPolicy? (One LIST of at most one item.)"""
    path = client.object_path(
        api_version=f"{API_GROUP}/{API_VERSION}", plural=PLURAL, namespace=None
    )
    page = client.request(api_client, "GET", path, query={"limit": "1"})
    return bool(page.get("items"))


def status_path(name: str) -> str:
    path = client.object_path(
        api_version=f"{API_GROUP}/{API_VERSION}", plural=PLURAL, namespace=None, name=name
    )
    return f"{path}/status"


def patch_status(
    api_client: kubernetes.client.ApiClient, *, name: str, status: Mapping[str, Any]
) -> bool:
    """Merge-patch ``status`` of a policy; False if the policy is gone (404)."""
    try:
        client.request(
            api_client,
            "PATCH",
            status_path(name),
            body={"status": dict(status)},
            content_type=client.MERGE_PATCH,
        )
    except client.ApiError as e:
        if e.not_found:
            return False
        raise
    return True
