"""Read-only, paginated listing of what ``kube-guardrails plan`` needs from a cluster.

Everything here is a GET: collections are listed in pages (``limit`` / ``continue``)
so a cluster with tens of thousands of Pods is read in bounded memory, and each item is
cut down to the fields the plan needs (:func:`project`) before the next page is
fetched: no ``managedFields``, no ``status`` beyond a Pod's phase, no
``last-applied-configuration``. Nothing in this module writes, so the command works
with read-only credentials (a ``view``-like role); the tests prove it against a real
API server with a ServiceAccount that may only get and list.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import kubernetes.config

from kube_guardrails import (
    API_GROUP,
    API_VERSION,
    LABEL_MANAGED_BY,
    MANAGED_BY_VALUE,
    PLURAL,
    builders,
)
from kube_guardrails.k8s import client

PAGE_SIZE = 500
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclasses.dataclass(frozen=True)
class WorkloadKind:
    api_version: str
    kind: str
    plural: str


# Every kind the operator reviews: Pods, and the pod templates of the controllers.
WORKLOAD_KINDS = (
    WorkloadKind("v1", "Pod", "pods"),
    WorkloadKind("apps/v1", "Deployment", "deployments"),
    WorkloadKind("apps/v1", "StatefulSet", "statefulsets"),
    WorkloadKind("apps/v1", "DaemonSet", "daemonsets"),
    WorkloadKind("apps/v1", "ReplicaSet", "replicasets"),
    WorkloadKind("batch/v1", "Job", "jobs"),
    WorkloadKind("batch/v1", "CronJob", "cronjobs"),
)


def list_pages(
    api: Any, path: str, *, query: Mapping[str, str] | None = None, page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """Every item of a collection, fetched ``page_size`` at a time (GET only).

    The API server keeps a continue token valid for a few minutes (etcd compaction);
    if it expires mid-list (410 Gone) the error is raised: a plan built from half a
    list would be wrong, and re-running is cheap.
    """
    token = ""
    while True:
        params = {**(query or {}), "limit": str(page_size)}
        if token:
            params["continue"] = token
        page = client.request(api, "GET", path, query=params)
        yield from page.get("items") or []
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def project(obj: Mapping[str, Any], *, api_version: str, kind: str) -> dict[str, Any]:
    """The fields the plan reads, with ``kind`` and ``apiVersion`` set (lists omit them).

    Kept: name, namespace, uid, labels, annotations (the checks read AppArmor ones and
    the mirror-Pod marker) minus kubectl's last-applied copy, owner references, the
    deletion timestamp, the spec (for a controller only its pod template), and a Pod's
    phase.
    """
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    small_meta: dict[str, Any] = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "labels": dict(meta.get("labels") or {}),
        "annotations": annotations,
        # apiVersion and uid too: a DaemonSet Pod is spared only for an apps/v1
        # controller reference with a uid (violations.claimed_daemonset).
        "ownerReferences": [
            {
                "apiVersion": r.get("apiVersion"),
                "kind": r.get("kind"),
                "name": r.get("name"),
                "uid": r.get("uid"),
                "controller": r.get("controller"),
            }
            for r in meta.get("ownerReferences") or []
        ],
    }
    if meta.get("deletionTimestamp"):
        small_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    spec = obj.get("spec") or {}
    if kind == "Pod":
        small_spec: Mapping[str, Any] = spec
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
        small_spec = {"jobTemplate": {"spec": {"template": template or {}}}}
    else:
        small_spec = {"template": spec.get("template") or {}}
    out: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": small_meta,
        "spec": small_spec,
    }
    if kind == "Pod":
        out["status"] = {"phase": (obj.get("status") or {}).get("phase")}
    return out


def list_namespaces(api: Any) -> Iterator[dict[str, Any]]:
    """Namespaces, cut to name, uid, labels, phase and deletion timestamp."""
    for ns in list_pages(api, "/api/v1/namespaces"):
        meta = ns.get("metadata") or {}
        yield {
            "metadata": {
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "labels": dict(meta.get("labels") or {}),
                **(
                    {"deletionTimestamp": meta["deletionTimestamp"]}
                    if meta.get("deletionTimestamp")
                    else {}
                ),
            },
            "status": {"phase": (ns.get("status") or {}).get("phase")},
        }


def list_policies(api: Any) -> list[dict[str, Any]] | None:
    """Every GuardrailPolicy as stored; None when the CRD is not installed (404)."""
    path = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
    try:
        return [
            {k: v for k, v in p.items() if k != "status"}
            | {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "GuardrailPolicy"}
            for p in list_pages(api, path)
        ]
    except client.ApiError as e:
        if e.not_found:
            return None
        raise


def list_managed(api: Any, kind: builders.Kind) -> Iterator[dict[str, Any]]:
    """Objects of a managed kind bearing our name, in every namespace, ours or not.

    Selected by name (``metadata.name`` field selector), not by our label: an object
    with our name but without the label is someone else's, and the plan must report
    it as a conflict.
    """
    path = client.object_path(api_version=kind.api_version, plural=kind.plural, namespace=None)
    for obj in list_pages(api, path, query={"fieldSelector": f"metadata.name={kind.name}"}):
        meta = obj.get("metadata") or {}
        yield {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": list(meta.get("ownerReferences") or []),
            },
            "spec": obj.get("spec") or {},
        }


# The generated admission kinds (``kube_guardrails.admission.build``), by kind.
ADMISSION_API_VERSION = "admissionregistration.k8s.io/v1"
ADMISSION_KINDS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def list_admission(api: Any, names: Collection[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The live admission policies and bindings named ``names``, by (kind, name).

    Ours are listed (paginated) by the ``managed-by`` label and kept when their name is
    one of ``names`` (``admission.all_names`` of the policies concerned). A name wanted
    but not listed is then fetched by name: an object that has it without our label is
    someone else's, and the plan must report the conflict rather than a create that
    would fail. Each object is cut to name, labels, ownerReferences and spec.
    """
    wanted = set(names)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, plural in ADMISSION_KINDS.items():
        path = client.object_path(api_version=ADMISSION_API_VERSION, plural=plural, namespace=None)
        selector = {"labelSelector": f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"}
        for obj in list_pages(api, path, query=selector):
            name = str((obj.get("metadata") or {}).get("name") or "")
            if name in wanted:
                out[kind, name] = _admission_projection(obj, kind)
        for name in sorted(wanted):
            if (kind, name) in out:
                continue
            found = client.get_or_none(
                api,
                client.object_path(
                    api_version=ADMISSION_API_VERSION, plural=plural, namespace=None, name=name
                ),
            )
            if found is not None:
                out[kind, name] = _admission_projection(found, kind)
    return out


def _admission_projection(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": kind,
        "metadata": {
            "name": meta.get("name"),
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "spec": obj.get("spec") or {},
    }


def list_workloads(api: Any, kind: WorkloadKind) -> Iterator[dict[str, Any]]:
    """Every object of a workload kind in the cluster, projected (:func:`project`)."""
    path = client.object_path(api_version=kind.api_version, plural=kind.plural, namespace=None)
    for obj in list_pages(api, path):
        yield project(obj, api_version=kind.api_version, kind=kind.kind)


def context_name(context: str | None) -> str:
    """The kube config context the client uses (``in-cluster`` for a ServiceAccount)."""
    if context is None and client.in_cluster():
        return "in-cluster"
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None
        )
    except (kubernetes.config.ConfigException, OSError) as e:
        raise client.ApiError(
            status=0,
            reason="NoConfig",
            message=f"no kube config: {e}",
            method="CONFIG",
            path=os.environ.get("KUBECONFIG", "~/.kube/config"),
        ) from None
    if context is not None:
        if not any(c.get("name") == context for c in contexts or []):
            raise client.ApiError(
                status=0,
                reason="NoConfig",
                message=f"context {context!r} is not in the kube config",
                method="CONFIG",
                path=os.environ.get("KUBECONFIG", "~/.kube/config"),
            )
        return context
    return str((active or {}).get("name") or "")
