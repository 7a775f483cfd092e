"""What one e2e test works with: its own namespaces and policies, and domain look-ups.

Every test gets a :class:`Scenario` (the ``scenario`` fixture). Its policies select
only its own namespaces (by the run and case labels), so tests never see each other's
objects even though GuardrailPolicies are cluster-scoped; everything it creates is
labelled and deleted at the end of the test.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import e2e_harness as harness
import e2e_kube as kube_api

from kube_guardrails import (
    ANNOTATION_VIOLATIONS,
    API_GROUP,
    API_VERSION,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_POLICY,
    MANAGED_BY_VALUE,
    OPERATOR_NAMESPACE,
)

T = TypeVar("T")
Obj = kube_api.Obj

MANAGED = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
OPERATOR_SELF_LABELS = "app.kubernetes.io/name=kube-guardrails"

# Event reasons (DESIGN section 5 and issue #3).
NAMESPACE_HARDENED = "NamespaceHardened"
HARDENING_RESTORED = "HardeningRestored"
GUARDRAIL_VIOLATION = "GuardrailViolation"
GUARDRAIL_EVICTION = "GuardrailEviction"
POLICY_INVALID = "PolicyInvalid"
EXEMPTION_EXPIRED = "ExemptionExpired"

# Best-practice checks a pause container cannot satisfy meaningfully (it has no
# endpoint to probe), so workload tests turn them off and test one check at a time.
QUIET_CHECKS: dict[str, Any] = {"probes": {"action": "Off"}}


@dataclasses.dataclass
class Env:
    """The session: cluster connection, harness settings, and this run's id."""

    kube: kube_api.Kube
    settings: harness.E2ESettings
    run: str

    def operator_alive(self) -> bool:
        if self.settings.mode == "local":
            return kube_api.http_ok(self.settings.liveness_url)
        return bool(self.operator_pods()) and all(_pod_ready(p) for p in self.operator_pods())

    def operator_pods(self) -> list[Obj]:
        return self.kube.list(kube_api.pods(OPERATOR_NAMESPACE), labels=OPERATOR_SELF_LABELS)

    def restart_operator(self) -> None:
        """Restart the operator with the command hack/e2e.sh provides; waits until live."""
        command = self.settings.restart_command
        assert command, "no restart command configured (KUBE_GUARDRAILS_E2E_RESTART_COMMAND)"
        # A shell command by design: hack/e2e.sh passes its own restart invocation.
        subprocess.run(command, shell=True, check=True, timeout=300)
        harness.wait_for(self.operator_alive, timeout=120, what="the operator to be live again")

    def resync_window(self) -> float:
        """Seconds that surely contain two full resyncs of the operator."""
        resync = self.settings.resync_seconds
        assert resync is not None
        return max(2.5 * resync, resync + 5.0)


class Scenario:
    """One test's namespaces, policies and helpers; cleans up after itself."""

    def __init__(self, env: Env, case: str) -> None:
        self.env = env
        self.kube = env.kube
        self.case = harness.dns_label(case, limit=40)
        self.timeout = env.settings.timeout
        self._namespaces: list[str] = []
        self._policies: list[str] = []
        self._counter = 0
        self._service_accounts: set[str] = set()

    # ------------------------------------------------------------- identities

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every namespace this test creates; its policies select them."""
        return {harness.LABEL_RUN: self.env.run, harness.LABEL_CASE: self.case}

    def name(self, suffix: str) -> str:
        return harness.object_name(self.env.run, self.case, suffix)

    # ------------------------------------------------------------- namespaces

    def namespace(
        self,
        suffix: str = "",
        *,
        selected: bool = True,
        extra_labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create a namespace; ``selected=False`` leaves out the label the policies select.

        Pod Security admission is set to ``privileged`` so that the violating pods the
        tests need are admitted on clusters that enforce a level by default.
        """
        self._counter += 1
        name = self.name(f"{suffix or 'ns'}{self._counter}")
        labels = {harness.LABEL_RUN: self.env.run}
        if selected:
            labels.update(self.labels)
        labels["pod-security.kubernetes.io/enforce"] = "privileged"
        labels.update(extra_labels or {})
        self._namespaces.append(name)
        return self.kube.create(
            kube_api.namespaces(),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
        )

    def set_selected(self, namespace: str, selected: bool) -> Obj:
        value = self.case if selected else None
        return self.kube.patch(
            kube_api.namespaces(namespace), {"metadata": {"labels": {harness.LABEL_CASE: value}}}
        )

    # ------------------------------------------------------------- policies

    def policy_body(
        self,
        suffix: str,
        spec: Mapping[str, Any] | None = None,
        *,
        namespace_selector: Mapping[str, Any] | None = None,
    ) -> Obj:
        """A GuardrailPolicy selecting this test's namespaces; ``spec`` overrides fields.

        ``namespace_selector`` replaces the default selector (this test's labels) whole.
        """
        selector = namespace_selector or {"matchLabels": self.labels}
        base: dict[str, Any] = {"mode": "Audit", "namespaceSelector": dict(selector)}
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": self.name(suffix), "labels": {harness.LABEL_RUN: self.env.run}},
            "spec": harness.deep_merge(base, spec or {}),
        }

    def policy(
        self,
        suffix: str = "p",
        spec: Mapping[str, Any] | None = None,
        *,
        namespace_selector: Mapping[str, Any] | None = None,
    ) -> Obj:
        body = self.policy_body(suffix, spec, namespace_selector=namespace_selector)
        self._policies.append(body["metadata"]["name"])
        return self.kube.create(kube_api.policies(), body)

    def workload_policy(
        self,
        suffix: str = "p",
        spec: Mapping[str, Any] | None = None,
        *,
        namespace_selector: Mapping[str, Any] | None = None,
    ) -> Obj:
        """A policy for workload tests: baseline checks, no hardening (not under test)."""
        base = {
            "hardening": {
                "networkPolicy": {"enabled": False},
                "limitRange": {"enabled": False},
            },
            "workloads": {"podSecurity": "baseline", "checks": QUIET_CHECKS},
        }
        return self.policy(
            suffix, harness.deep_merge(base, spec or {}), namespace_selector=namespace_selector
        )

    def patch_policy(self, name: str, spec: Mapping[str, Any]) -> Obj:
        return self.kube.patch(kube_api.policies(name), {"spec": dict(spec)})

    def delete_policy(self, name: str) -> None:
        self.kube.delete(kube_api.policies(name))

    def read_policy(self, name: str) -> Obj:
        return self.kube.get(kube_api.policies(name))

    def wait_policy_ready(self, name: str, status: str = "True") -> Obj:
        """Wait until the operator has reconciled the policy's current generation."""

        def ready() -> Obj | None:
            obj = self.read_policy(name)
            cond = kube_api.condition(obj, "Ready")
            observed = (obj.get("status") or {}).get("observedGeneration")
            current = obj["metadata"].get("generation")
            if cond and cond.get("status") == status and observed == current:
                return obj
            return None

        return self.wait(ready, f"policy {name} Ready={status} at its current generation")

    # ------------------------------------------------------------- managed objects

    def managed(self, namespace: str, kind: str) -> list[Obj]:
        """The operator's objects of ``kind`` (NetworkPolicy, LimitRange, ResourceQuota)."""
        path = {
            "NetworkPolicy": kube_api.network_policies,
            "LimitRange": kube_api.limit_ranges,
            "ResourceQuota": kube_api.resource_quotas,
        }[kind](namespace)
        return self.kube.list(path, labels=MANAGED)

    def hardened(self, namespace: str, policy: str | None = None) -> tuple[Obj, Obj] | None:
        """(NetworkPolicy, LimitRange) when both exist (and belong to ``policy``), else None."""
        nps = self.managed(namespace, "NetworkPolicy")
        lrs = self.managed(namespace, "LimitRange")
        if len(nps) != 1 or len(lrs) != 1:
            return None
        if policy is not None and any(
            o["metadata"]["labels"].get(LABEL_POLICY) != policy for o in (nps[0], lrs[0])
        ):
            return None
        return nps[0], lrs[0]

    def wait_hardened(self, namespace: str, policy: str | None = None) -> tuple[Obj, Obj]:
        return self.wait(
            lambda: self.hardened(namespace, policy),
            f"namespace {namespace} hardened (one managed NetworkPolicy and LimitRange"
            + (f" of policy {policy})" if policy else ")"),
        )

    def wait_unhardened(self, namespace: str) -> None:
        self.wait(
            lambda: (
                not self.managed(namespace, "NetworkPolicy")
                and not self.managed(namespace, "LimitRange")
            ),
            f"managed objects gone from namespace {namespace}",
        )

    # ------------------------------------------------------------- events

    def events(self, uid: str, reason: str | None = None) -> list[Obj]:
        """Events regarding the object with ``uid``, in any namespace.

        Events about cluster-scoped objects (Namespaces, GuardrailPolicies) live in
        whatever namespace the poster chose (usually ``default``), so the look-up is by
        the involved object's uid across all namespaces.
        """
        fields = f"involvedObject.uid={uid}"
        if reason:
            fields += f",reason={reason}"
        return self.kube.list(kube_api.core(None, "events"), fields=fields)

    def wait_event(self, obj: Obj, reason: str, *, type_: str | None = None) -> Obj:
        uid = obj["metadata"]["uid"]

        def found() -> Obj | None:
            for event in self.events(uid, reason):
                if type_ is None or event.get("type") == type_:
                    return event
            return None

        return self.wait(found, f"{reason} event about {describe(obj)}")

    # ------------------------------------------------------------- workloads

    def create(self, path: str, body: Mapping[str, Any]) -> Obj:
        if body.get("kind") == "Pod":
            self.wait_service_account(str(body["metadata"]["namespace"]))
        return self.kube.create(path, body)

    def wait_service_account(self, namespace: str) -> None:
        """Until the namespace's ``default`` ServiceAccount exists (once per namespace).

        The controller manager creates it after the namespace, and the API server refuses
        a Pod without it (its ServiceAccount admission waits a second or two at most);
        on a loaded machine that can take longer (seen: 7 s).
        """
        if namespace in self._service_accounts:
            return
        self.wait(
            lambda: self.kube.get_or_none(kube_api.core(namespace, "serviceaccounts", "default")),
            f"the default ServiceAccount of namespace {namespace}",
        )
        self._service_accounts.add(namespace)

    def read(self, obj: Obj) -> Obj | None:
        return self.kube.get_or_none(self_path(obj))

    def annotation(self, obj: Obj) -> str | None:
        current = self.read(obj)
        if current is None:
            return None
        value = (current["metadata"].get("annotations") or {}).get(ANNOTATION_VIOLATIONS)
        return str(value) if value is not None else None

    def wait_annotated(self, obj: Obj) -> str:
        return self.wait(lambda: self.annotation(obj), f"violation annotation on {describe(obj)}")

    def wait_running(self, pod: Obj) -> Obj:
        def running() -> Obj | None:
            current = self.read(pod)
            if current and (current.get("status") or {}).get("phase") == "Running":
                return current
            return None

        return self.wait(running, f"{describe(pod)} Running", timeout=max(self.timeout, 180))

    def evicted(self, pod: Obj) -> bool:
        """Gone, replaced (another uid) or terminating: the operator evicted it."""
        current = self.read(pod)
        if current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]:
            return True
        return bool(current["metadata"].get("deletionTimestamp"))

    def pods(self, namespace: str, labels: str | None = None) -> list[Obj]:
        return self.kube.list(kube_api.pods(namespace), labels=labels)

    # ------------------------------------------------------------- waiting

    def wait(
        self, predicate: Callable[[], T | None], what: str, *, timeout: float | None = None
    ) -> T:
        return harness.wait_for(predicate, timeout=timeout or self.timeout, what=what)

    def timed(self, predicate: Callable[[], T | None], what: str) -> tuple[T, float]:
        """Wait like :meth:`wait` and also return how long it took (for reports only)."""
        start = time.monotonic()
        value = self.wait(predicate, what)
        return value, time.monotonic() - start

    # ------------------------------------------------------------- cleanup

    def cleanup(self) -> None:
        """Policies first (their managed objects go by garbage collection), then namespaces.

        Namespace deletion is not awaited: it finishes in the background and no other
        test selects these namespaces.
        """
        errors: list[str] = []
        for name in self._policies:
            try:
                self.kube.delete(kube_api.policies(name))
            except kube_api.ApiError as e:
                errors.append(str(e))
        for name in self._namespaces:
            try:
                self.kube.delete(kube_api.namespaces(name))
            except kube_api.ApiError as e:
                errors.append(str(e))
        assert not errors, "cleanup failed: " + "; ".join(errors)


# ----------------------------------------------------------------- object builders


def self_path(obj: Mapping[str, Any]) -> str:
    """API path of an object as the server returned it (kind + namespace + name)."""
    meta = obj["metadata"]
    ns, name, kind = meta.get("namespace"), meta["name"], obj.get("kind")
    builders: dict[str, Callable[..., str]] = {
        "Pod": kube_api.pods,
        "Deployment": kube_api.deployments,
        "DaemonSet": kube_api.daemonsets,
        "StatefulSet": kube_api.statefulsets,
        "ReplicaSet": kube_api.replicasets,
        "Job": kube_api.jobs,
        "CronJob": kube_api.cronjobs,
        "NetworkPolicy": kube_api.network_policies,
        "LimitRange": kube_api.limit_ranges,
        "ResourceQuota": kube_api.resource_quotas,
        "PodDisruptionBudget": kube_api.pod_disruption_budgets,
    }
    if kind == "Namespace":
        return kube_api.namespaces(name)
    if kind == KIND:
        return kube_api.policies(name)
    return builders[str(kind)](ns, name)


def describe(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', 'object')} {where}{meta['name']}"


def pod_spec(image: str, *, privileged: bool = False) -> Obj:
    """A pod spec that passes restricted and the best practices (except probes).

    ``privileged=True`` breaks exactly one baseline control (``privileged``): the API
    server refuses ``allowPrivilegeEscalation: false`` with ``privileged: true``, so
    that field is dropped too (restricted would flag it; the tests use baseline).
    """
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if privileged:
        security = {"privileged": True, "readOnlyRootFilesystem": True}
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65535,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "tolerations": [{"operator": "Exists"}],
        "containers": [
            {
                "name": "main",
                "image": image,
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "32Mi"},
                },
                "securityContext": security,
            }
        ],
    }


def pod(
    namespace: str,
    name: str,
    image: str,
    *,
    privileged: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {"app": name})},
        "spec": pod_spec(image, privileged=privileged),
    }


def deployment(
    namespace: str, name: str, image: str, *, replicas: int, privileged: bool = False
) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(image, privileged=privileged),
            },
        },
    }


def daemonset(namespace: str, name: str, image: str, *, privileged: bool = False) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(image, privileged=privileged),
            },
        },
    }


def _template(name: str, image: str, *, privileged: bool, restart: str | None = None) -> Obj:
    spec = pod_spec(image, privileged=privileged)
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": {"app": name}}, "spec": spec}


def controller(
    kind: str,
    namespace: str,
    name: str,
    image: str,
    *,
    privileged: bool = False,
    replicas: int = 1,
    suspend: bool = False,
) -> Obj:
    """A StatefulSet, ReplicaSet, Deployment (``replicas`` Pods), DaemonSet, Job (one Pod,
    none when ``suspend``) or CronJob (always suspended: only Jobs made from it run)."""
    selector = {"matchLabels": {"app": name}}
    spec: dict[str, Any]
    if kind in ("StatefulSet", "ReplicaSet", "Deployment"):
        spec = {
            "replicas": replicas,
            "selector": selector,
            "template": _template(name, image, privileged=privileged),
        }
        if kind == "StatefulSet":
            spec["serviceName"] = name
    elif kind == "DaemonSet":
        spec = {"selector": selector, "template": _template(name, image, privileged=privileged)}
    elif kind == "Job":
        spec = {
            "backoffLimit": 0,
            "suspend": suspend,
            "template": _template(name, image, privileged=privileged, restart="Never"),
        }
    else:
        spec = {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": _template(name, image, privileged=privileged, restart="Never"),
                }
            },
        }
    api_version = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def pod_disruption_budget(namespace: str, name: str, *, app: str, min_available: int) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }


def owner_is(obj: Mapping[str, Any], policy: Mapping[str, Any]) -> bool:
    """Is ``policy`` among the object's ownerReferences (so GC removes it with the policy)?"""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if (
            ref.get("kind") == KIND
            and ref.get("apiVersion") == f"{API_GROUP}/{API_VERSION}"
            and ref.get("name") == policy["metadata"]["name"]
            and ref.get("uid") == policy["metadata"]["uid"]
        ):
            return True
    return False


def resource_version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def _pod_ready(pod_obj: Mapping[str, Any]) -> bool:
    for cond in (pod_obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False
