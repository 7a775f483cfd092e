"""The real operator against the kmock API emulator: workload annotations, Events, Enforce.

The operator runs with its real handler modules (``KopfRunner``); the emulator is the
API server. kmock stays here because these tests script the API's answers in sequences
a real server gives only by timing (a 429 twice, then 201) and count the requests the
operator made (never a DELETE of a Pod, exactly one eviction request). What the real
API server answers (PodDisruptionBudgets, uid preconditions, several budgets) is tested
against a real one in ``test_real_api.py`` and end to end in ``tests/e2e``.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import kmock
import kmock_support
import pytest
from operator_support import Operator, OperatorFactory, eventually

from kube_guardrails import API_GROUP, API_VERSION, PLURAL, violations

Api = Callable[..., Awaitable[Any]]
POLICIES = f"{API_GROUP}/{API_VERSION}/{PLURAL}"
NS = "team-a"
ANN = violations.ANNOTATION_VIOLATIONS
SINCE = violations.ANNOTATION_SINCE
EVICTION = f"/api/v1/namespaces/{NS}/pods/web/eviction"


@pytest.fixture()
def workloads_on(kubeconfig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_GUARDRAILS_WORKLOADS", "true")
    monkeypatch.setenv("KUBE_GUARDRAILS_EVICTION_BACKOFF_SECONDS", "0.2")


def policy(
    name: str = "baseline",
    *,
    mode: str = "Audit",
    grace: int = 300,
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": mode,
            "hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
            "workloads": {
                "podSecurity": "baseline",
                "enforcement": {
                    "gracePeriodSeconds": grace,
                    "maxEvictionsPerMinute": 10,
                    "dryRun": dry_run,
                },
            },
        },
    }


def pod_spec(*, privileged: bool = False) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "app",
                "image": "registry.example.com/web:1.2.3",
                "securityContext": {"privileged": privileged, "readOnlyRootFilesystem": True},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "livenessProbe": {"httpGet": {"path": "/", "port": 8080}},
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
            }
        ]
    }


def pod(name: str = "web", *, privileged: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": pod_spec(privileged=privileged),
        "status": {"phase": "Running"},
    }


def deployment(name: str = "web", *, privileged: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(privileged=privileged),
            },
        },
    }


COLLECTIONS = {
    "Pod": ("v1/pods", f"/api/v1/namespaces/{NS}/pods"),
    "Deployment": ("apps/v1/deployments", f"/apis/apps/v1/namespaces/{NS}/deployments"),
}


async def setup(api: Api, *policies: dict[str, Any]) -> None:
    status, _ = await api("POST", "/api/v1/namespaces", json={"metadata": {"name": NS}})
    assert status < 300
    for obj in policies:
        status, _ = await api("POST", f"/apis/{POLICIES}", json=obj)
        assert status < 300


async def create(api: Api, obj: dict[str, Any]) -> None:
    status, body = await api("POST", COLLECTIONS[obj["kind"]][1], json=obj)
    assert status < 300, body


def lookup(
    emulator: kmock_support.GuardrailsEmulator, resource: str, name: str
) -> dict[str, Any] | None:
    """The object as the emulator holds it now (None if absent or deleted)."""
    try:
        obj = emulator.objects[resource, NS, name]
    except KeyError:
        return None
    return None if obj.deleted else copy.deepcopy(dict(obj.raw))


def stored(emulator: kmock_support.GuardrailsEmulator, kind: str, name: str = "web") -> Any:
    return lookup(emulator, COLLECTIONS[kind][0], name)


def annotations(emulator: kmock_support.GuardrailsEmulator, kind: str) -> dict[str, str]:
    obj = stored(emulator, kind)
    return dict((obj or {}).get("metadata", {}).get("annotations") or {})


def events(
    emulator: kmock_support.GuardrailsEmulator, *, kind: str = "Pod", reason: str | None = None
) -> list[dict[str, Any]]:
    out = []
    for name in emulator.names("v1/events", NS):
        ev = lookup(emulator, "v1/events", name)
        if ev is None or ev["involvedObject"].get("kind") != kind:
            continue
        if reason is None or ev["reason"] == reason:
            out.append(ev)
    return sorted(out, key=lambda e: e["metadata"]["resourceVersion"])


def requests_to(emulator: kmock_support.GuardrailsEmulator, method: str, path: str) -> int:
    return sum(
        1
        for r in emulator.requests_since(0)
        if str(r.method.value).upper() == method and r.url.path == path
    )


def pod_deletes(emulator: kmock_support.GuardrailsEmulator) -> int:
    return sum(
        1
        for r in emulator.requests_since(0)
        if str(r.method.value).upper() == "DELETE"
        and r.resource is not None
        and r.resource.plural == "pods"
    )


def script_eviction(
    emulator: kmock_support.GuardrailsEmulator, answers: list[int]
) -> list[dict[str, Any]]:
    """Answer the eviction endpoint with the given statuses, then 201; returns the bodies."""
    received: list[dict[str, Any]] = []
    queue = list(answers)

    def react(request: kmock.Request) -> kmock.Response:
        received.append(copy.deepcopy(request.data))
        code = queue.pop(0) if queue else 201
        if code == 429:
            return kmock.Response(
                status=429,
                payload={
                    "apiVersion": "v1",
                    "kind": "Status",
                    "status": "Failure",
                    "code": 429,
                    "reason": "TooManyRequests",
                    "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                },
            )
        return kmock.Response(
            status=201,
            payload={"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201},
        )

    emulator[f"post {EVICTION}"] << react
    return received


async def ready(operator: Operator, *policy_names: str) -> None:
    """The workload side has started and has seen the namespace and the policies.

    (Not ``Operator.caught_up``: that waits for the hardening side too, which these
    tests switch off in their policies.)
    """
    memo = operator.memo
    await eventually(
        lambda: memo.get("runtime") is not None and memo.runtime.workloads is not None,
        what="workloads started",
    )
    await eventually(lambda: memo.runtime.workloads.namespace_known(NS), what="namespace seen")
    await eventually(
        lambda: {p.name for p in memo.runtime.policies.valid()} >= set(policy_names),
        what="policies",
    )


async def reviewed(operator: Operator, after: int) -> None:
    await eventually(
        lambda: operator.memo.runtime.workloads.reviews > after, what="workload reviewed"
    )


# --------------------------------------------------------------------------- Audit


@pytest.mark.parametrize("make", [pod, deployment], ids=["pod", "deployment"])
async def test_violation_annotated_once_and_cleared_when_fixed(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
    make: Callable[..., dict[str, Any]],
) -> None:
    await setup(api, policy())
    await ready(operator, "baseline")
    obj = make(privileged=True)
    kind = obj["kind"]
    await create(api, obj)
    await eventually(
        lambda: annotations(emulator, kind).get(ANN) == "baseline/privileged(app)",
        what="violation annotation",
    )
    assert SINCE in annotations(emulator, kind)
    [warning] = await eventually(
        lambda: events(emulator, kind=kind, reason="GuardrailViolation"), what="Warning Event"
    )
    assert warning["type"] == "Warning"
    assert warning["involvedObject"]["name"] == "web"
    assert warning["involvedObject"]["uid"] == stored(emulator, kind)["metadata"]["uid"]
    assert "privileged" in warning["message"] and "Fix:" in warning["message"]

    # A change that does not touch the violations: reviewed again, nothing written.
    reviews = operator.memo.runtime.workloads.reviews
    mark = emulator.mark()
    path = f"{COLLECTIONS[kind][1]}/web"
    await api("PATCH", path, json={"metadata": {"labels": {"touched": "yes"}}})
    await reviewed(operator, reviews)
    plural = COLLECTIONS[kind][0].rsplit("/", 1)[1]
    # The only write to the workload or its Events is the test's own patch: no annotation
    # rewrite, no second Event.
    writes = [emulator.describe(r) for r in emulator.writes_since(mark)]
    assert [w for w in writes if w.split()[1] in (plural, "events")] == [f"PATCH {plural}"]
    assert len(events(emulator, kind=kind)) == 1

    # Fixed: the annotation goes and a Normal Event says so.
    fixed = stored(emulator, kind)
    if kind == "Pod":
        fixed["spec"] = pod_spec()
    else:
        fixed["spec"]["template"]["spec"] = pod_spec()
    await api("PATCH", path, json={"spec": fixed["spec"]})
    await eventually(lambda: ANN not in annotations(emulator, kind), what="annotation removed")
    assert SINCE not in annotations(emulator, kind)
    [normal] = await eventually(
        lambda: events(emulator, kind=kind, reason="GuardrailCompliant"), what="Normal Event"
    )
    assert normal["type"] == "Normal"
    assert "baseline/privileged(app)" in normal["message"]


async def test_compliant_pod_gets_no_write(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
) -> None:
    await setup(api, policy())
    await ready(operator, "baseline")
    reviews = operator.memo.runtime.workloads.reviews
    mark = emulator.mark()
    await create(api, pod())
    await create(api, deployment())
    await eventually(
        lambda: operator.memo.runtime.workloads.reviews >= reviews + 2,
        what="both workloads reviewed",
    )
    writes = emulator.count(
        r
        for r in emulator.writes_since(mark)
        if r.resource is not None and r.resource.plural in ("pods", "deployments", "events")
    )
    # The only writes are the test's own two creations: nothing on or about the workloads.
    assert writes == {"POST pods": 1, "POST deployments": 1}, writes
    assert events(emulator, kind="Pod") == []
    assert events(emulator, kind="Deployment") == []


async def test_restart_writes_nothing_for_known_violations(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator_factory: OperatorFactory,
) -> None:
    await setup(api, policy())
    async with operator_factory() as first:
        await ready(first, "baseline")
        await create(api, pod(privileged=True))
        await eventually(lambda: ANN in annotations(emulator, "Pod"), what="annotation")
        await eventually(lambda: events(emulator), what="Warning Event")
    annotated = annotations(emulator, "Pod")
    mark = emulator.mark()
    async with operator_factory() as second:
        await ready(second, "baseline")
        await reviewed(second, 0)
    writes = [
        emulator.describe(r)
        for r in emulator.writes_since(mark)
        if r.resource is not None and r.resource.plural in ("pods", "events")
    ]
    assert writes == []  # the annotation is the memory: same set, nothing to say
    assert annotations(emulator, "Pod") == annotated
    assert len(events(emulator)) == 1


# --------------------------------------------------------------------------- Enforce


async def test_enforce_evicts_after_the_grace_period(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
) -> None:
    received = script_eviction(emulator, [])
    await setup(api, policy(mode="Enforce", grace=1))
    await ready(operator, "baseline")
    await create(api, pod(privileged=True))
    await eventually(lambda: received, what="eviction request")
    uid = stored(emulator, "Pod")["metadata"]["uid"]
    assert received[0]["apiVersion"] == "policy/v1"
    assert received[0]["kind"] == "Eviction"
    assert received[0]["metadata"] == {"name": "web", "namespace": NS}
    assert received[0]["deleteOptions"] == {"preconditions": {"uid": uid}}
    reasons = [e["reason"] for e in events(emulator)]
    assert reasons == ["GuardrailViolation", "GuardrailEviction"]
    eviction_event = events(emulator, reason="GuardrailEviction")[0]
    assert eviction_event["type"] == "Warning"
    # The annotation (with its first-observed time) was written before the eviction.
    assert annotations(emulator, "Pod")[ANN] == "baseline/privileged(app)!"
    assert pod_deletes(emulator) == 0
    await eventually(
        lambda: operator.memo.runtime.workloads.enforcer.evictions == 1, what="eviction recorded"
    )
    assert requests_to(emulator, "POST", EVICTION) == 1


async def test_pdb_refusal_is_retried_never_bypassed(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
) -> None:
    """kmock on purpose: a scripted fault sequence (429, 429, then 201) and the exact
    number of attempts and Events; a real budget cannot be made to refuse exactly twice."""
    received = script_eviction(emulator, [429, 429])
    await setup(api, policy(mode="Enforce", grace=0))
    await ready(operator, "baseline")
    await create(api, pod(privileged=True))
    await eventually(lambda: len(received) >= 3, what="two refusals and a third attempt")
    assert pod_deletes(emulator) == 0
    assert operator.memo.runtime.workloads.enforcer.refusals == 2
    await eventually(
        lambda: operator.memo.runtime.workloads.enforcer.evictions == 1, what="eviction recorded"
    )
    eviction_events = events(emulator, reason="GuardrailEviction")
    assert len(eviction_events) == 2  # "evicting" once, "refused, retrying" once
    assert "PodDisruptionBudget" in eviction_events[1]["message"]
    assert stored(emulator, "Pod") is not None  # only the API server may remove it


async def test_throttled_violation_event_is_retried_not_lost(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
) -> None:
    """kmock on purpose: the Events endpoint answers 429, 503, 429 (API Priority and
    Fairness throttling under load, a restarting server), then accepts: the violation's
    Event is posted once, after the retries, never lost and never doubled."""
    attempts: list[dict[str, Any]] = []
    posted: list[dict[str, Any]] = []
    queue = [429, 503, 429]

    def react(request: kmock.Request) -> kmock.Response:
        attempts.append(copy.deepcopy(request.data))
        code = queue.pop(0) if queue else 201
        if code != 201:
            return kmock.Response(
                status=code,
                payload={"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code},
            )
        posted.append(copy.deepcopy(request.data))
        return kmock.Response(status=201, payload=request.data)

    emulator[f"post /api/v1/namespaces/{NS}/events"] << react
    await setup(api, policy())
    await ready(operator, "baseline")
    await create(api, pod(privileged=True))
    await eventually(lambda: len(posted) >= 1, what="the Event posted after the refusals")
    assert [e["reason"] for e in posted] == ["GuardrailViolation"]
    assert len(attempts) == 4
    # Reviewed again (a label change): the Event is not posted a second time.
    reviews = operator.memo.runtime.workloads.reviews
    await api(
        "PATCH", f"/api/v1/namespaces/{NS}/pods/web", json={"metadata": {"labels": {"x": "y"}}}
    )
    await reviewed(operator, reviews)
    assert [e["reason"] for e in posted] == ["GuardrailViolation"]


async def test_dry_run_does_not_evict(
    workloads_on: None,
    emulator: kmock_support.GuardrailsEmulator,
    api: Api,
    operator: Operator,
) -> None:
    received = script_eviction(emulator, [])
    await setup(api, policy(mode="Enforce", grace=0, dry_run=True))
    await ready(operator, "baseline")
    await create(api, pod(privileged=True))
    [would] = await eventually(
        lambda: events(emulator, reason="GuardrailEviction"), what="would-evict Event"
    )
    assert would["type"] == "Warning"
    assert would["message"].startswith("dry run: would evict")
    reviews = operator.memo.runtime.workloads.reviews
    await api(
        "PATCH", f"/api/v1/namespaces/{NS}/pods/web", json={"metadata": {"labels": {"x": "y"}}}
    )
    await reviewed(operator, reviews)
    assert received == []
    assert pod_deletes(emulator) == 0
    assert len(events(emulator, reason="GuardrailEviction")) == 1
