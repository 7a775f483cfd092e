"""The API calls of the report service: is the Report CRD served, list, apply, delete.

Implements ``services.reports.Gateway`` (structurally). Reports are written with
server-side apply (field manager ``kube-guardrails``, forced: the Report is ours alone),
so one request creates or replaces it and the whole ``results`` list (an atomic list in
the OpenReports schema) is replaced, never merged. ``fieldValidation=Strict`` makes a
field the installed CRD does not know an error instead of silently pruned data.

RBAC (manifests/clusterrole.yaml): ``reports.openreports.io`` list (find our Reports at
start-up), patch (apply creates and updates) and delete. Discovery needs no rule: every
authenticated user may read ``/apis`` (the ``system:discovery`` ClusterRole).

Every blocking call runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kubernetes.client

from kube_guardrails import FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY_VALUE, reports
from kube_guardrails.k8s import client

APPLY_PATCH = "application/apply-patch+yaml"
LIST_PAGE = 500


def _path(namespace: str | None, name: str | None = None) -> str:
    return client.object_path(
        api_version=reports.API_VERSION, plural=reports.PLURAL, namespace=namespace, name=name
    )


class Gateway:
    """Reads and writes ``openreports.io/v1alpha1`` Reports (one shared ApiClient)."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client

    async def served(self) -> bool:
        """Does the API server serve ``reports`` in ``openreports.io/v1alpha1``?

        False when the group/version is unknown (404); other errors (an outage) raise,
        so the caller keeps what it believed before instead of flapping.
        """
        return await asyncio.to_thread(self._served)

    def _served(self) -> bool:
        found = client.get_or_none(self._api, f"/apis/{reports.API_VERSION}")
        if found is None:
            return False
        return any(
            r.get("name") == reports.PLURAL and r.get("kind") == reports.KIND
            for r in found.get("resources") or []
        )

    async def list_ours(self) -> list[dict[str, Any]]:
        """Every Report this operator wrote, in every namespace (by label and name)."""
        return await asyncio.to_thread(self._list_ours)

    def _list_ours(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = {
            "labelSelector": f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}",
            "fieldSelector": f"metadata.name={reports.REPORT_NAME}",
            "limit": str(LIST_PAGE),
        }
        while True:
            page = client.request(self._api, "GET", _path(None), query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {**query, "continue": str(token)}

    async def apply(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace the Report with server-side apply; returns the stored object."""
        return await asyncio.to_thread(self._apply, report)

    def _apply(self, report: Mapping[str, Any]) -> dict[str, Any]:
        meta = report["metadata"]
        return client.request(
            self._api,
            "PATCH",
            _path(str(meta["namespace"]), str(meta["name"])),
            query={"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"},
            body=dict(report),
            content_type=APPLY_PATCH,
        )

    async def delete(self, *, namespace: str, name: str) -> bool:
        """Delete a Report; False when it was already gone."""
        return await asyncio.to_thread(
            client.delete_ignoring_missing, self._api, _path(namespace, name)
        )
