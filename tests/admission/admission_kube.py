"""A JSON client for the admission tests: requests with the response's ``Warning`` headers.

Admission warnings (``validationActions: [Warn]``) travel only in HTTP ``Warning`` headers,
which the e2e client does not return; this one does. It rides on the official
``kubernetes`` package for the kube config, TLS and credentials, like ``tests/e2e``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import kubernetes

Obj = dict[str, Any]
_K8S: Any = kubernetes

NO_CLUSTER = (
    'no Kubernetes cluster configured: export KUBECONFIG (e.g. eval "$(../shared/kube/cluster '
    'env)"), or set KUBE_GUARDRAILS_ADMISSION_CONTEXT'
)
# Only clusters that are obviously for testing are written to (the e2e suite's rule).
_TEST_CONTEXT = re.compile(r"^(kind-|k3d-)|minikube|docker-desktop|test|e2e")


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: Obj
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")


class Client:
    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    @classmethod
    def connect(cls) -> tuple[Client | None, str]:
        """A client for the test cluster, or (None, why the tests must skip)."""
        context = os.environ.get("KUBE_GUARDRAILS_ADMISSION_CONTEXT") or None
        try:
            _, current = _K8S.config.list_kube_config_contexts()
        except Exception as e:  # no kube config at all
            return None, f"{NO_CLUSTER} ({type(e).__name__})"
        name = context or (current or {}).get("name") or ""
        if not _TEST_CONTEXT.search(name) and not os.environ.get(
            "KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT"
        ):
            return None, (
                f"kube context {name!r} does not look like a test cluster (kind-, k3d-, "
                "minikube, *test*, *e2e*); set KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1 to allow"
            )
        try:
            api = _K8S.config.new_client_from_config(context=name)
            client = cls(api)
            client.call("GET", "/version", timeout=5)
        except Exception as e:
            return None, f"{NO_CLUSTER} (context {name!r}: {type(e).__name__}: {e})"
        return client, ""

    def with_token(self, token: str) -> Client:
        """The same server, authenticated as a ServiceAccount token instead."""
        conf = _K8S.client.Configuration()
        base = self.api.configuration
        conf.host = base.host
        conf.ssl_ca_cert = base.ssl_ca_cert
        conf.verify_ssl = base.verify_ssl
        conf.api_key = {"authorization": f"Bearer {token}"}
        return Client(_K8S.client.ApiClient(conf))

    def impersonating(self, user: str, *, groups: tuple[str, ...] = ()) -> Client:
        """The same credentials acting as ``user`` (admission sees that user name)."""
        other = _K8S.client.ApiClient(self.api.configuration)
        other.set_default_header("Impersonate-User", user)
        for group in groups[:1]:  # one header value is all the client can send
            other.set_default_header("Impersonate-Group", group)
        return Client(other)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Response:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        raw = self.api.call_api(*serialized, _request_timeout=(5.0, timeout))
        data = raw.read()
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"raw": data.decode(errors="replace")}
        warnings = tuple(_warning_text(w) for w in raw.response.headers.getlist("Warning"))
        return Response(status=raw.status, body=decoded, warnings=warnings)

    def must(self, method: str, path: str, body: Any = None, **kw: Any) -> Obj:
        r = self.call(method, path, body, **kw)
        if not r.ok:
            raise AssertionError(f"{method} {path}: HTTP {r.status}: {r.message or r.body}")
        return r.body

    def apply(self, path: str, name: str, body: Obj) -> Obj:
        """Server-side apply (field manager kube-guardrails-tests), forced."""
        return self.must(
            "PATCH",
            f"{path}/{name}",
            body,
            query={"fieldManager": "kube-guardrails-tests", "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def delete(self, path: str) -> Response:
        return self.call("DELETE", path, {"propagationPolicy": "Background"})


def _warning_text(header: str) -> str:
    """``299 - "text"`` -> ``text`` (RFC 7234 warn-code, agent, quoted text)."""
    m = re.match(r'^\d{3} \S+ "(.*)"$', header.strip(), re.S)
    if not m:
        return header
    return m.group(1).replace('\\"', '"').replace("\\\\", "\\")


RESOURCES: dict[str, tuple[str, str]] = {
    # kind -> (group/version prefix, plural)
    "Pod": ("/api/v1", "pods"),
    "ReplicationController": ("/api/v1", "replicationcontrollers"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
}


def collection(kind: str, namespace: str) -> str:
    prefix, plural = RESOURCES[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}"


VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
VAPB = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
NAMESPACES = "/api/v1/namespaces"
