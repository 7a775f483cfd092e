"""Fakes for the workload use cases: an in-memory gateway, a status sink, a clock.

The gateway applies merge patches to its own copy of each object, as the API server
would, and records every call, so tests assert on writes and Events without a cluster
(and without mocking the kubernetes client). It has no delete method at all: the
enforcement code cannot fall back to deleting a Pod even by accident.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.services import enforcement

T0 = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self, start: datetime.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Event:
    regarding: enforcement.ObjectRef
    type: str
    reason: str
    message: str
    action: str
    at: datetime.datetime = T0  # lastTimestamp: the gateway's clock when posted


class FakeGateway:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.patches: list[tuple[enforcement.ObjectRef, dict[str, str | None]]] = []
        self.events: list[Event] = []
        self.evictions: list[enforcement.ObjectRef] = []
        self.eviction_results: list[enforcement.Eviction] = []
        self.fail_patches = 0
        self.fail_patches_applied = 0  # applied, but the client saw an error (timeout)
        self.fail_events = 0
        # (namespace, name) -> uid of the DaemonSets that exist; lookups made.
        self.daemonsets: dict[tuple[str, str], str] = {}
        self.daemonset_lookups = 0
        # name -> uid of the Nodes that exist (mirror-Pod claims are checked against them).
        self.nodes: dict[str, str] = {}
        self.node_lookups = 0
        # Stamps posted Events (set it to the service's clock); LISTs of Events made.
        self.clock: Callable[[], datetime.datetime] = lambda: T0
        self.event_lists: list[str] = []
        self.fail_event_lists = 0
        # The API server's cap on the total size of an object's annotations (256 KiB):
        # a patch past it is refused with 422 Invalid, as the real one does.
        self.annotation_limit = 256 * 1024
        self.refused_patches = 0

    def put(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as the API server would hold it; returns the stored copy."""
        stored = copy.deepcopy(dict(body))
        meta = stored["metadata"]
        self.objects[(stored["kind"], meta.get("namespace"), meta["name"])] = stored
        return copy.deepcopy(stored)

    @property
    def writes(self) -> int:
        return len(self.patches)

    async def patch_annotations(
        self, ref: enforcement.ObjectRef, annotations: Mapping[str, str | None]
    ) -> Mapping[str, Any] | None:
        if self.fail_patches:
            self.fail_patches -= 1
            raise OSError("503 Service Unavailable")
        self.patches.append((ref, dict(annotations)))
        obj = self.objects.get((ref.kind, ref.namespace, ref.name))
        if obj is None:
            return None
        after = {**(obj["metadata"].get("annotations") or {}), **annotations}
        if sum(len(k) + len(v) for k, v in after.items() if v is not None) > self.annotation_limit:
            self.patches.pop()  # not written
            self.refused_patches += 1
            raise k8s_client.ApiError(
                status=422,
                reason="Invalid",
                message="metadata.annotations: Too long: may not be more than 262144 bytes",
                method="PATCH",
                path=f"/api/v1/namespaces/{ref.namespace}/pods/{ref.name}",
            )
        current = obj["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        if not current:
            del obj["metadata"]["annotations"]
        if self.fail_patches_applied:
            self.fail_patches_applied -= 1
            raise TimeoutError("read timed out")  # written, but the answer was lost
        return copy.deepcopy(obj)

    async def post_event(
        self,
        *,
        regarding: enforcement.ObjectRef,
        type: enforcement.EventType,
        reason: str,
        message: str,
        action: str,
    ) -> bool:
        if self.fail_events:
            self.fail_events -= 1
            return False  # a retryable failure (throttled, outage), as k8s.events reports it
        self.events.append(Event(regarding, type, reason, message, action, self.clock()))
        return True

    async def event_times(self, *, namespace: str, reason: str) -> dict[str, datetime.datetime]:
        self.event_lists.append(namespace)
        if self.fail_event_lists:
            self.fail_event_lists -= 1
            raise OSError("503 Service Unavailable")
        times: dict[str, datetime.datetime] = {}
        for e in self.events:
            uid = e.regarding.uid
            if e.reason == reason and e.regarding.namespace == namespace and uid:
                times[uid] = max(times.get(uid, e.at), e.at)
        return times

    async def evict(self, ref: enforcement.ObjectRef) -> str:
        self.evictions.append(ref)
        result = (
            self.eviction_results.pop(0) if self.eviction_results else enforcement.Eviction.EVICTED
        )
        if result is enforcement.Eviction.EVICTED:
            self.objects.pop((ref.kind, ref.namespace, ref.name), None)
        return result

    async def daemonset_uid(self, *, namespace: str, name: str) -> str | None:
        self.daemonset_lookups += 1
        return self.daemonsets.get((namespace, name))

    async def node_uid(self, *, name: str) -> str | None:
        self.node_lookups += 1
        return self.nodes.get(name)

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


class FakeStatus:
    def __init__(self) -> None:
        self.violations: dict[str, tuple[int, dict[str, int]]] = {}
        self.calls = 0

    def set_violations(self, policy: str, *, total: int, by_check: Mapping[str, int]) -> None:
        self.calls += 1
        self.violations[policy] = (total, dict(by_check))


def compliant_pod(
    name: str = "web",
    *,
    namespace: str = "team-a",
    labels: Mapping[str, str] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """A Pod that passes every check at restricted, best practices included."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "labels": dict(labels or {"app": name}),
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/web:1.2.3",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                    "livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                }
            ],
        },
        "status": {"phase": "Running"},
    }


def privileged(body: dict[str, Any]) -> dict[str, Any]:
    """The same object with its first container privileged (a baseline violation)."""
    out = copy.deepcopy(body)
    spec = out["spec"]["template"]["spec"] if out["kind"] == "Deployment" else out["spec"]
    spec["containers"][0]["securityContext"]["privileged"] = True
    return out


def deployment(name: str = "web", *, namespace: str = "team-a") -> dict[str, Any]:
    pod = compliant_pod(name, namespace=namespace)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-deploy-{name}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod["spec"]},
        },
    }


def policy(
    name: str = "baseline",
    *,
    mode: str = "Audit",
    level: str = "baseline",
    grace: int = 60,
    rate: int = 10,
    dry_run: bool = False,
    exemptions: list[dict[str, Any]] | None = None,
    selector: Mapping[str, Any] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    workloads_spec: dict[str, Any] = {
        "podSecurity": level,
        "enforcement": {
            "gracePeriodSeconds": grace,
            "maxEvictionsPerMinute": rate,
            "dryRun": dry_run,
        },
    }
    if exemptions:
        workloads_spec["exemptions"] = exemptions
    spec: dict[str, Any] = {"mode": mode, "workloads": workloads_spec}
    if selector is not None:
        spec["namespaceSelector"] = dict(selector)
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name, "uid": uid or f"uid-policy-{name}", "generation": 1},
        "spec": spec,
    }
