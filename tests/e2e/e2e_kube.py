"""A small JSON client for the Kubernetes API, used by the e2e suite and the benchmark.

It rides on the official ``kubernetes`` package for everything that is hard to get
right (kube config contexts, exec/OIDC credential plugins, TLS, token refresh) and
sends plain JSON for the rest. Tests compare objects exactly as ``kubectl get -o json``
shows them (camelCase, every field the server returned), which typed models would
blur; and one generic ``request`` covers custom resources, the Table API, dry-run,
impersonation and watches alike.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import e2e_harness as harness
import kubernetes

from kube_guardrails import API_GROUP, API_VERSION, PLURAL

Obj = dict[str, Any]
# The client's own annotations are partial; everything it returns is handled as JSON.
_K8S: Any = kubernetes

POLICY_API = f"/apis/{API_GROUP}/{API_VERSION}"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


class ApiError(Exception):
    """A non-2xx answer, with the server's Status object when it sent one."""

    def __init__(self, *, method: str, path: str, status: int, body: Obj) -> None:
        self.status = status
        self.body = body
        self.message = str(body.get("message") or body.get("raw") or "")
        super().__init__(f"{method} {path}: HTTP {status}: {self.message}")

    @property
    def causes(self) -> list[Obj]:
        return list((self.body.get("details") or {}).get("causes") or [])

    def text(self) -> str:
        """Message and every cause's field and message, for "the field is named" checks."""
        parts = [self.message]
        for cause in self.causes:
            parts.append(f"{cause.get('field', '')}: {cause.get('message', '')}")
        return "\n".join(parts)


class Kube:
    """JSON over the authenticated connection of a ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any, *, context: str | None) -> None:
        self.api = api_client
        self.context = context

    @classmethod
    def from_kubeconfig(cls, context: str | None = None, *, config_file: str | None = None) -> Kube:
        """Connect with ``config_file``, else ``KUBECONFIG`` or ``~/.kube/config``."""
        name = context if config_file else context_name(context)
        api_client = _K8S.config.new_client_from_config(config_file=config_file, context=name)
        return cls(api_client, context=name)

    def whoami(self) -> str:
        """The user name the API server authenticates these credentials as."""
        review = self.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        return str(review["status"]["userInfo"]["username"])

    def impersonating(self, user: str) -> Kube:
        """A client that acts as ``user`` (the API server adds a service account's groups)."""
        other = _K8S.client.ApiClient(self.api.configuration)
        other.set_default_header("Impersonate-User", user)
        return Kube(other, context=self.context)

    # ----------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> Obj:
        response = self._send(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            accept=accept,
            timeout=(5.0, timeout),
        )
        data = response.read()
        decoded = _decode(data)
        if not 200 <= response.status <= 299:
            raise ApiError(method=method, path=path, status=response.status, body=decoded)
        return decoded

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None,
        body: Any,
        content_type: str | None,
        accept: str,
        timeout: tuple[float, float],
    ) -> Any:
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, _query_value(v)) for k, v in (query or {}).items()]
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(*serialized, _request_timeout=timeout)

    def get(self, path: str, **query: str | int | bool) -> Obj:
        return self.request("GET", path, query=query)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def list(self, path: str, *, labels: str | None = None, fields: str | None = None) -> list[Obj]:
        query: dict[str, str | int | bool] = {}
        if labels:
            query["labelSelector"] = labels
        if fields:
            query["fieldSelector"] = fields
        return harness.list_items(self.request("GET", path, query=query))

    def create(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> Obj:
        query: dict[str, str | int | bool] = {}
        if dry_run:
            query["dryRun"] = "All"
        if field_validation:
            query["fieldValidation"] = field_validation
        return self.request("POST", path, query=query, body=dict(body))

    def patch(
        self, path: str, body: Any, *, content_type: str = MERGE, subresource: str = ""
    ) -> Obj:
        target = f"{path}/{subresource}" if subresource else path
        return self.request("PATCH", target, body=body, content_type=content_type)

    def delete(self, path: str, *, missing_ok: bool = True) -> None:
        try:
            self.request(
                "DELETE",
                path,
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
        except ApiError as e:
            if not (missing_ok and e.status == 404):
                raise

    def delete_collection(self, path: str, *, labels: str) -> None:
        self.request(
            "DELETE",
            path,
            query={"labelSelector": labels},
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )

    def watch(
        self,
        path: str,
        *,
        resource_version: str,
        labels: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        """Yield watch events (``{"type": ..., "object": ...}``) from ``resource_version``.

        The stream ends when the server closes it (``timeoutSeconds``); the caller lists
        again and resumes, as every controller does.
        """
        query: dict[str, str | int | bool] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        if labels:
            query["labelSelector"] = labels
        response = self._send(
            "GET",
            path,
            query=query,
            body=None,
            content_type=None,
            accept="application/json",
            timeout=(5.0, timeout_seconds + 30.0),
        )
        if not 200 <= response.status <= 299:
            body = _decode(response.read())
            raise ApiError(method="WATCH", path=path, status=response.status, body=body)
        try:
            for line in response.response:
                if line.strip():
                    yield json.loads(line)
        finally:
            response.response.release_conn()

    def server_version(self, *, timeout: float = 5.0) -> Obj:
        return self.request("GET", "/version", timeout=timeout)


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(data: bytes | None) -> Obj:
    if not data:
        return {}
    try:
        decoded = json.loads(data)
    except ValueError:
        return {"raw": data.decode(errors="replace")[:2000]}
    return decoded if isinstance(decoded, dict) else {"raw": decoded}


# --------------------------------------------------------------------- paths


def namespaces(name: str | None = None) -> str:
    return "/api/v1/namespaces" + (f"/{name}" if name else "")


def core(namespace: str | None, plural: str, name: str | None = None) -> str:
    """Path of a core/v1 resource; ``namespace=None`` lists across all namespaces."""
    base = f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"
    return base + (f"/{name}" if name else "")


def grouped(group_version: str, namespace: str | None, plural: str, name: str | None = None) -> str:
    """Path of a namespaced resource in an API group (``networking.k8s.io/v1``)."""
    base = (
        f"/apis/{group_version}/namespaces/{namespace}/{plural}"
        if namespace
        else f"/apis/{group_version}/{plural}"
    )
    return base + (f"/{name}" if name else "")


def policies(name: str | None = None) -> str:
    return f"{POLICY_API}/{PLURAL}" + (f"/{name}" if name else "")


def network_policies(namespace: str | None, name: str | None = None) -> str:
    return grouped("networking.k8s.io/v1", namespace, "networkpolicies", name)


def limit_ranges(namespace: str | None, name: str | None = None) -> str:
    return core(namespace, "limitranges", name)


def resource_quotas(namespace: str | None, name: str | None = None) -> str:
    return core(namespace, "resourcequotas", name)


def pods(namespace: str | None, name: str | None = None) -> str:
    return core(namespace, "pods", name)


def deployments(namespace: str | None, name: str | None = None) -> str:
    return grouped("apps/v1", namespace, "deployments", name)


def daemonsets(namespace: str | None, name: str | None = None) -> str:
    return grouped("apps/v1", namespace, "daemonsets", name)


def statefulsets(namespace: str | None, name: str | None = None) -> str:
    return grouped("apps/v1", namespace, "statefulsets", name)


def replicasets(namespace: str | None, name: str | None = None) -> str:
    return grouped("apps/v1", namespace, "replicasets", name)


def jobs(namespace: str | None, name: str | None = None) -> str:
    return grouped("batch/v1", namespace, "jobs", name)


def cronjobs(namespace: str | None, name: str | None = None) -> str:
    return grouped("batch/v1", namespace, "cronjobs", name)


def pod_disruption_budgets(namespace: str | None, name: str | None = None) -> str:
    return grouped("policy/v1", namespace, "poddisruptionbudgets", name)


def crd(name: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"


# -------------------------------------------------------------------- probes


def context_name(context: str | None = None) -> str | None:
    """The context the suite would use (``context`` or the current one); reads no network.

    Raises the client's ConfigException when there is no kube config at all.
    """
    _, active = _K8S.config.list_kube_config_contexts()
    return context or (active or {}).get("name")


def probe_cluster(context: str | None, *, timeout: float = 5.0) -> tuple[Kube | None, str | None]:
    """Connect to the kube context; (client, None) or (None, why not) without raising.

    Call it only after the context name passed the safety rule: it sends requests.
    """
    from e2e_harness import NO_CLUSTER_REASON

    try:
        kube = Kube.from_kubeconfig(context)
    except Exception as e:  # ConfigException, missing file, bad YAML: all mean "none"
        return None, f"{NO_CLUSTER_REASON} ({type(e).__name__}: {e})"
    try:
        kube.server_version(timeout=timeout)
    except Exception as e:
        return None, (
            f"{NO_CLUSTER_REASON}; the API server of context {kube.context!r} is unreachable "
            f"({type(e).__name__}: {str(e)[:200]})"
        )
    return kube, None


def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """Does ``url`` answer 2xx (the operator's liveness endpoint)?"""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) <= 299
    except (urllib.error.URLError, OSError, ValueError):
        return False


def condition(obj: Mapping[str, Any], kind: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def labels_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(str(i["metadata"]["name"]) for i in items)
