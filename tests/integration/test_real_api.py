"""The operator's API adapters (``kube_guardrails.k8s``) against a real API server.

What is checked here is decided by the API server, not by our code: which answer the
Eviction API gives with and without PodDisruptionBudgets, the uid preconditions, what the
server stores after defaulting (a managed object must still "match" what the operator
wants, or every resync would rewrite it), which malformed policies the CRD refuses
(schema and CEL) and whether the offline schema check agrees, and garbage collection
through the ownerReference the builders write. Skipped with the reason when no test
cluster is configured (``real_api.connect``).
"""

from __future__ import annotations

import datetime
import functools
import uuid
from typing import Any

import pytest
import real_api
from real_api import RealApi

from kube_guardrails import API_GROUP, API_VERSION, KIND, PLURAL, builders, violations
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.k8s import events
from kube_guardrails.k8s import hardening as k8s_hardening
from kube_guardrails.k8s import workloads as k8s_workloads
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import schema
from kube_guardrails.services import enforcement

POLICIES = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
ANN = violations.ANNOTATION_VIOLATIONS
FUTURE = "2099-01-31T00:00:00Z"


def _pod(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
        },
    }


def _pdb(namespace: str, name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        # Two with one pod: never satisfiable, whether or not a (fake) kubelet makes
        # the pod Ready.
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": app}}},
    }


def _ref_with_uid(namespace: str, name: str, uid: str | None) -> enforcement.ObjectRef:
    return enforcement.ObjectRef(
        api_version="v1", kind="Pod", name=name, namespace=namespace, uid=uid
    )


def _create_pod(api: RealApi, namespace: str, name: str) -> dict[str, Any]:
    return api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=_pod(namespace, name))


def _report_running(api: RealApi, pod: dict[str, Any]) -> dict[str, Any]:
    """Write the status a kubelet would (Running, Ready): the API server evicts a Pending
    pod without consulting any budget, so budgets are only tested on a running one."""
    meta = pod["metadata"]
    return api.request(
        "PATCH",
        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
        body={
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
        content_type=k8s_client.MERGE_PATCH,
    )


def _pdb_observed(api: RealApi, namespace: str, name: str) -> bool:
    """The disruption controller has computed the budget (else the answer is not final)."""
    pdb = api.get_or_none(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}")
    status = (pdb or {}).get("status") or {}
    return bool(pdb) and status.get("observedGeneration") == pdb["metadata"]["generation"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("budgets", "wrong_uid", "expected"),
    [
        pytest.param(0, False, k8s_workloads.EVICTED, id="no-budget-201"),
        pytest.param(1, False, k8s_workloads.BLOCKED, id="budget-refuses-429"),
        pytest.param(2, False, k8s_workloads.FAILED, id="two-budgets-500"),
        pytest.param(0, True, k8s_workloads.FAILED, id="uid-precondition-409"),
    ],
)
async def test_eviction_answers_of_a_real_api_server(
    real_api_session: RealApi, real_namespace: str, budgets: int, wrong_uid: bool, expected: str
) -> None:
    """A minAvailable: 2 budget over one pod allows no disruption (429); two budgets
    selecting one pod are a server error (500); a stale uid fails the precondition (409).
    Only a granted eviction touches the pod."""
    api = real_api_session
    pod = _report_running(api, _create_pod(api, real_namespace, "web"))
    for i in range(budgets):
        api.request(
            "POST",
            f"/apis/policy/v1/namespaces/{real_namespace}/poddisruptionbudgets",
            body=_pdb(real_namespace, f"pdb-{i}", "web"),
        )
        real_api.wait_for(
            lambda i=i: _pdb_observed(api, real_namespace, f"pdb-{i}"),  # type: ignore[misc]
            what="the disruption controller to observe the budget",
        )
    ref = enforcement.ObjectRef.of(pod)
    if wrong_uid:
        ref = _ref_with_uid(real_namespace, "web", str(uuid.uuid4()))
    gateway = k8s_workloads.Gateway(api.api_client)
    assert await gateway.evict(ref) == expected
    after = await gateway.get(enforcement.ObjectRef.of(pod))
    if expected == k8s_workloads.EVICTED:
        # Graceful deletion: the pod is terminating (no kubelet finishes it) or gone.
        assert after is None or after["metadata"].get("deletionTimestamp")
    else:
        assert after is not None and not after["metadata"].get("deletionTimestamp")


async def test_eviction_of_a_pod_that_is_gone(
    real_api_session: RealApi, real_namespace: str
) -> None:
    gateway = k8s_workloads.Gateway(real_api_session.api_client)
    gone = _ref_with_uid(real_namespace, "nope", None)
    assert await gateway.evict(gone) == k8s_workloads.GONE


async def test_annotation_patch_is_owned_by_the_operator_and_guarded_by_uid(
    real_api_session: RealApi, real_namespace: str
) -> None:
    api = real_api_session
    body = _pod(real_namespace, "web")
    body["metadata"]["annotations"] = {"team": "a"}
    pod = api.request("POST", f"/api/v1/namespaces/{real_namespace}/pods", body=body)
    gateway = k8s_workloads.Gateway(api.api_client)
    ref = enforcement.ObjectRef.of(pod)

    patched = await gateway.patch_annotations(ref, {ANN: "baseline/privileged(app)"})
    assert patched is not None
    assert patched["metadata"]["annotations"] == {"team": "a", ANN: "baseline/privileged(app)"}
    assert patched["spec"]["containers"] == pod["spec"]["containers"]
    # The server records who owns which field: the operator owns its annotation only.
    ours = [m for m in patched["metadata"]["managedFields"] if m["manager"] == "kube-guardrails"]
    assert [m["operation"] for m in ours] == ["Update"]
    assert ours[0]["fieldsV1"] == {"f:metadata": {"f:annotations": {f"f:{ANN}": {}}}}

    await gateway.patch_annotations(ref, {ANN: None})
    current = await gateway.get(ref)
    assert current is not None and current["metadata"]["annotations"] == {"team": "a"}

    # A Pod recreated under the same name is another object: the uid guard refuses. A
    # real server answers 422 (metadata.uid is immutable), not 409.
    stale = _ref_with_uid(real_namespace, "web", str(uuid.uuid4()))
    with pytest.raises(k8s_client.ApiError) as refused:
        await gateway.patch_annotations(stale, {ANN: "x"})
    assert refused.value.status == 422, refused.value
    assert "metadata.uid" in refused.value.message, refused.value.message
    current = await gateway.get(ref)
    assert current is not None and ANN not in current["metadata"]["annotations"]

    gone = _ref_with_uid(real_namespace, "nope", None)
    assert await gateway.patch_annotations(gone, {ANN: None}) is None


@pytest.mark.parametrize("page", [500, 1], ids=["one-page", "page-per-event"])
async def test_violation_event_times_are_read_back_by_the_uid_they_regard(
    real_api_session: RealApi, real_namespace: str, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a new leader reads to find the Events its predecessor posted: only ours, of
    the reason asked, by the uid of the object they regard, the newest time of each (also
    when the LIST comes in pages: the API server's ``limit``/``continue``)."""
    monkeypatch.setattr(events, "LIST_PAGE", page)
    api = real_api_session
    pod = _create_pod(api, real_namespace, "web")
    other = _create_pod(api, real_namespace, "other")
    gateway = k8s_workloads.Gateway(api.api_client)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    ref = enforcement.ObjectRef.of(pod)
    post = functools.partial(gateway.post_event, type="Warning", message="m", action="Review")
    assert await post(regarding=ref, reason="GuardrailViolation")
    assert await post(regarding=enforcement.ObjectRef.of(other), reason="GuardrailCompliant")
    after = datetime.datetime.now(datetime.UTC)
    # An older one of ours, and one of another tool (no managed-by label), both about web.
    for labels, stamp in (
        ({"app.kubernetes.io/managed-by": "kube-guardrails"}, "2020-01-01T00:00:00Z"),
        ({}, "2099-01-01T00:00:00Z"),
    ):
        api.request(
            "POST",
            f"/api/v1/namespaces/{real_namespace}/events",
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": "web.", "labels": labels},
                "involvedObject": ref.as_reference(),
                "reason": "GuardrailViolation",
                "message": "m",
                "type": "Warning",
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "source": {"component": "someone"},
            },
        )
    times = await gateway.event_times(namespace=real_namespace, reason="GuardrailViolation")
    assert set(times) == {pod["metadata"]["uid"]}
    assert before <= times[pod["metadata"]["uid"]] <= after


def _policy(api: RealApi, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "labels": {real_api.LABEL_RUN: api.run}},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {
                "hardening": {
                    "networkPolicy": {"allowSameNamespace": True, "policyTypes": ["Ingress"]},
                    "limitRange": {
                        "defaultRequest": {"cpu": "0.1", "memory": "128Mi"},
                        "default": {"cpu": "1000m", "memory": "1Gi"},
                        "max": {"cpu": "2", "memory": "2048Mi", "ephemeral-storage": "1G"},
                    },
                    "resourceQuota": {
                        "enabled": True,
                        "hard": {"pods": "10", "requests.cpu": "4000m", "limits.memory": "8Gi"},
                    },
                }
            },
            id="quantities-the-server-rewrites",
        ),
        pytest.param(
            {"hardening": {"networkPolicy": {"allowDNS": False, "policyTypes": ["Egress"]}}},
            id="egress-only-no-dns",
        ),
    ],
)
def test_stored_managed_objects_match_what_the_operator_wants(
    real_api_session: RealApi, real_namespace: str, spec: dict[str, Any]
) -> None:
    """After the server's defaulting and quantity canonicalisation (1000m -> 1, 0.1 ->
    100m, protocol TCP filled in), the stored object still matches the desired one: else
    the operator would rewrite it on every resync. And its ownerReference is one the
    garbage collector accepts: deleting the policy removes every managed object."""
    api = real_api_session
    created = api.request("POST", POLICIES, body=_policy(api, api.name("gp"), spec))
    try:
        policy = policy_model.parse(created)
        gateway = k8s_hardening.Gateway(api.api_client)
        stored: list[tuple[builders.Kind, dict[str, Any]]] = []
        for kind, desired in builders.desired_objects(real_namespace, policy).items():
            if desired is None:
                continue
            live = gateway.create(kind, desired)
            assert builders.matches(live, desired), (kind.kind, live["spec"], desired["spec"])
            again = gateway.get(kind, namespace=real_namespace, name=kind.name)
            assert again is not None and builders.matches(again, desired)
            stored.append((kind, live))
        assert stored
    finally:
        api.delete(f"{POLICIES}/{created['metadata']['name']}")

    def collected() -> bool:
        return all(
            gateway.get(kind, namespace=real_namespace, name=kind.name) is None
            for kind, _ in stored
        )

    real_api.wait_for(collected, what="garbage collection of the managed objects")


# Malformed policies: (spec, a field the refusal must name). Each is sent with a
# server-side dry run, so nothing is stored.
REFUSED: list[Any] = [
    pytest.param({"mode": "Sometimes"}, "spec.mode", id="mode-enum"),
    pytest.param({"priority": 5000}, "spec.priority", id="priority-max"),
    pytest.param(
        {"hardening": {"networkPolicy": {"policyTypes": ["Sideways"]}}},
        "spec.hardening.networkPolicy.policyTypes",
        id="policy-types-enum",
    ),
    pytest.param(
        {"hardening": {"networkPolicy": {"policyTypes": ["Ingress", "Ingress"]}}},
        "spec.hardening.networkPolicy.policyTypes",
        id="policy-types-set",
    ),
    pytest.param(
        {"workloads": {"enforcement": {"gracePeriodSeconds": -1}}},
        "spec.workloads.enforcement.gracePeriodSeconds",
        id="grace-min",
    ),
    pytest.param(
        {"workloads": {"exemptions": [{"reason": "x", "expires": "soon"}]}},
        "spec.workloads.exemptions[0].expires",
        id="expires-format",
    ),
    pytest.param(
        {"workloads": {"exemptions": [{"expires": FUTURE}]}},
        "spec.workloads.exemptions[0]",
        id="exemption-without-reason",
    ),
    pytest.param(
        {"hardening": {"firewall": {"enabled": True}}},
        "spec.hardening.firewall",
        id="unknown-field-strict",
    ),
]


@pytest.mark.parametrize(("spec", "field"), REFUSED)
def test_malformed_policies_are_refused_by_the_server_and_offline_alike(
    real_api_session: RealApi, spec: dict[str, Any], field: str
) -> None:
    """The API server is the truth for the CRD; ``kube-guardrails audit --policy`` (the
    offline schema check) must refuse the same documents naming the same field."""
    api = real_api_session
    body = _policy(api, api.name("bad"), spec)
    with pytest.raises(k8s_client.ApiError) as refused:
        api.request(
            "POST", POLICIES, query={"dryRun": "All", "fieldValidation": "Strict"}, body=body
        )
    assert refused.value.status in (400, 422), refused.value
    assert field in refused.value.message, refused.value.message
    offline = schema.validate(body)
    assert any(e.field.startswith(field) for e in offline), offline


def test_cel_rule_is_enforced_by_the_server_and_by_the_operator(
    real_api_session: RealApi,
) -> None:
    """A CEL rule (defaultRequest not above default) is evaluated by the server; offline,
    the schema check skips CEL and ``policy.parse`` refuses the same policy instead."""
    api = real_api_session
    spec = {"hardening": {"limitRange": {"defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}}}}
    body = _policy(api, api.name("cel"), spec)
    with pytest.raises(k8s_client.ApiError) as refused:
        api.request("POST", POLICIES, query={"dryRun": "All"}, body=body)
    assert refused.value.status == 422, refused.value
    assert "spec.hardening.limitRange" in refused.value.message, refused.value.message
    with pytest.raises(policy_model.PolicyError) as parsed:
        policy_model.parse(body)
    assert parsed.value.field.startswith("spec.hardening.limitRange.defaultRequest")


def test_defaults_stored_by_the_server_are_the_ones_the_operator_assumes(
    real_api_session: RealApi,
) -> None:
    """``schema.apply_defaults`` (offline) fills in exactly what the server stores."""
    api = real_api_session
    body = _policy(api, api.name("defaults"), {"workloads": {"exemptions": []}})
    stored = api.request("POST", POLICIES, query={"dryRun": "All"}, body=body)
    assert stored["spec"] == schema.apply_defaults(body)["spec"]
