"""Admission without a webhook and the bypasses of issue 9, on a real control plane.

What the API server itself decides with the operator's generated admission policies
(refusals in Enforce, warnings in Audit, the namespace readiness gate, also with the
operator stopped), who may change the managed objects, and each bypass found in the
issue as a regression test that now refuses or evicts.

Timing: the API server picks up a new or changed admission policy from its own watch, a
moment after the operator wrote it, so refusals are waited for (dry-run requests until
the verdict shows) before the real request is made; nothing asserts on durations.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import pathlib
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario
import kubernetes
import pytest
import yaml

from kube_guardrails import ANNOTATION_PREFIX, LABEL_MANAGED_BY
from kube_guardrails.admission import policies as generated

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
_K8S: Any = kubernetes

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
VAPS = f"{ADMISSION}/validatingadmissionpolicies"
BINDINGS = f"{ADMISSION}/validatingadmissionpolicybindings"
NP_NAME = "kube-guardrails-default-deny"
ANN = ANNOTATION_PREFIX + "violations"
SINCE = ANNOTATION_PREFIX + "violations-since"
READY_LABEL = generated.LABEL_HARDENED
# The ServiceAccount admission plugin's refusal of a Pod in a namespace whose default
# ServiceAccount the controller manager has not created yet.
NO_SERVICE_ACCOUNT = "error looking up service account"


# ------------------------------------------------------------------ helpers


class Answer:
    """One API answer: status, body and the warnings (``Warning`` headers) it carried."""

    def __init__(self, status: int, body: Obj, warnings: list[str]) -> None:
        self.status, self.body, self.warnings = status, body, warnings

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")


def call(
    kube: kube_api.Kube,
    method: str,
    path: str,
    body: Any = None,
    *,
    dry_run: bool = False,
    content_type: str | None = None,
) -> Answer:
    """A request whose refusal is an answer, not an exception, with its warnings."""
    response = kube._send(
        method,
        path,
        query={"dryRun": "All"} if dry_run else None,
        body=body,
        content_type=content_type,
        accept="application/json",
        timeout=(5.0, 30.0),
    )
    data = response.read()
    decoded = json.loads(data) if data else {}
    headers = response.headers
    raw = headers.getlist("Warning") if hasattr(headers, "getlist") else []
    warnings = [_warning_text(w) for w in raw]
    return Answer(response.status, decoded, warnings)


def _warning_text(header: str) -> str:
    m = re.match(r'^\d{3} \S+ "(.*)"$', header.strip(), re.S)
    return m.group(1).replace('\\"', '"') if m else header


def with_token(kube: kube_api.Kube, token: str) -> kube_api.Kube:
    """The same API server, authenticated with a ServiceAccount token instead."""
    conf = _K8S.client.Configuration()
    base = kube.api.configuration
    conf.host, conf.ssl_ca_cert, conf.verify_ssl = base.host, base.ssl_ca_cert, base.verify_ssl
    conf.api_key = {"authorization": f"Bearer {token}"}
    return kube_api.Kube(_K8S.client.ApiClient(conf), context=kube.context)


def namespace_admin(scenario: Scenario, ns: str) -> kube_api.Kube:
    """A ServiceAccount bound to the ``admin`` ClusterRole in ``ns``, with its own token."""
    kube = scenario.kube
    kube.create(
        kube_api.core(ns, "serviceaccounts"),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ns-admin"}},
    )
    kube.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "ns-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "ns-admin", "namespace": ns}],
        },
    )
    review = kube.create(
        kube_api.core(ns, "serviceaccounts", "ns-admin") + "/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    admin = with_token(kube, review["status"]["token"])
    # The RoleBinding takes a moment to reach the authorizer: until then RBAC refuses
    # everything with 403, which a test must not mistake for an admission refusal.
    scenario.wait(
        lambda: call(admin, "GET", kube_api.core(ns, "serviceaccounts")).ok,
        "the namespace admin's RoleBinding in effect",
    )
    return admin


def names_of(policy: str) -> tuple[str, str]:
    return generated.all_names(policy)


def admission_objects(kube: kube_api.Kube, policy: str) -> list[str]:
    """``kind/name`` of every live VAP and binding named for ``policy``."""
    out = []
    for path, kind in ((VAPS, "vap"), (BINDINGS, "binding")):
        for name in names_of(policy):
            if kube.get_or_none(f"{path}/{name}") is not None:
                out.append(f"{kind}/{name}")
    return out


def wait_refused(scenario: Scenario, path: str, body: Obj, fragment: str) -> Answer:
    """Dry-run until the API server refuses ``body`` naming ``fragment`` (policies load)."""

    def refused() -> Answer | None:
        answer = call(scenario.kube, "POST", path, body, dry_run=True)
        return answer if not answer.ok and fragment in answer.message else None

    return scenario.wait(refused, f"a refusal naming {fragment!r} for {path}")


def wait_warned(scenario: Scenario, path: str, body: Obj, fragment: str) -> Answer:
    def warned() -> Answer | None:
        answer = call(scenario.kube, "POST", path, body, dry_run=True)
        return answer if answer.ok and any(fragment in w for w in answer.warnings) else None

    return scenario.wait(warned, f"a warning naming {fragment!r} for {path}")


def privileged_pod(scenario: Scenario, ns: str, name: str) -> Obj:
    return e2e_scenario.pod(ns, name, scenario.env.settings.image, privileged=True)


def enforce_checks(grace: int = 0) -> dict[str, Any]:
    return {
        "workloads": {
            "checks": {"privileged": {"action": "Enforce"}},
            "enforcement": {"gracePeriodSeconds": grace, "maxEvictionsPerMinute": 100},
        }
    }


def scoped_protection(
    scenario: Scenario, ns: str, finalizer: Callable[[Callable[[], None]], None]
) -> None:
    """``manifests/admission-protection.yaml`` as shipped, bound to ``ns`` only.

    The shipped bindings select every namespace: installed as they are, they would also
    refuse the other e2e tests' own edits of managed objects (run in parallel). The
    policies (the CEL that decides) are the file's, unchanged, under this test's names.
    """
    docs = list(yaml.safe_load_all((ROOT / "manifests/admission-protection.yaml").read_text()))
    suffix = scenario.name("prot")
    renamed: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] == "ValidatingAdmissionPolicy":
            renamed[doc["metadata"]["name"]] = f"{doc['metadata']['name'][:180]}-{suffix}"
    for doc in docs:
        body = copy.deepcopy(doc)
        labels = body["metadata"].setdefault("labels", {})
        labels[harness.LABEL_RUN] = scenario.env.run
        if body["kind"] == "ValidatingAdmissionPolicy":
            body["metadata"]["name"] = renamed[doc["metadata"]["name"]]
            path = VAPS
        else:
            body["metadata"]["name"] = renamed[doc["spec"]["policyName"]]
            body["spec"]["policyName"] = renamed[doc["spec"]["policyName"]]
            body["spec"].setdefault("matchResources", {})["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": ns}
            }
            path = BINDINGS
        scenario.kube.create(path, body)
        target = f"{path}/{body['metadata']['name']}"
        finalizer(lambda target=target: scenario.kube.delete(target))


def _np(scenario: Scenario, ns: str) -> Obj | None:
    return scenario.kube.get_or_none(kube_api.network_policies(ns, NP_NAME))


def _restored(scenario: Scenario, ns: str, before: Obj) -> Obj | None:
    now = _np(scenario, ns)
    if now is None:
        return None
    same = now["spec"] == before["spec"] and now["metadata"].get("labels", {}).get(
        LABEL_MANAGED_BY
    ) == before["metadata"]["labels"].get(LABEL_MANAGED_BY)
    return now if same else None


# ------------------------------------------------------------------ verdicts


def test_violating_pod_and_deployment_refused_in_enforce_warned_in_audit(
    scenario: Scenario,
) -> None:
    image = scenario.env.settings.image
    enforce_ns = scenario.namespace("enf", extra_labels={"gate": "enforce"})["metadata"]["name"]
    audit_ns = scenario.namespace("aud", extra_labels={"gate": "audit"})["metadata"]["name"]
    scenario.workload_policy(
        "enf",
        {"mode": "Enforce", **enforce_checks()},
        namespace_selector={"matchLabels": {**scenario.labels, "gate": "enforce"}},
    )
    scenario.workload_policy(
        "aud", namespace_selector={"matchLabels": {**scenario.labels, "gate": "audit"}}
    )
    pod = privileged_pod(scenario, enforce_ns, "bad")
    wait_refused(scenario, kube_api.pods(enforce_ns), pod, "privileged")
    refused = call(scenario.kube, "POST", kube_api.pods(enforce_ns), pod)
    assert refused.status in (403, 422), refused.body
    assert "privileged" in refused.message and '"main"' in refused.message, refused.message
    assert scenario.kube.get_or_none(kube_api.pods(enforce_ns, "bad")) is None
    deploy = e2e_scenario.deployment(enforce_ns, "bad", image, replicas=1, privileged=True)
    refused = call(scenario.kube, "POST", kube_api.deployments(enforce_ns), deploy)
    assert not refused.ok and "privileged" in refused.message, refused.body
    # A compliant Pod is admitted (a workload policy hardens nothing: no readiness gate).
    ok = call(
        scenario.kube,
        "POST",
        kube_api.pods(enforce_ns),
        e2e_scenario.pod(enforce_ns, "good", image),
    )
    assert ok.ok, ok.body

    # Audit: admitted, and the response carries the warning kubectl prints.
    audit_pod = privileged_pod(scenario, audit_ns, "warned")
    wait_warned(scenario, kube_api.pods(audit_ns), audit_pod, "privileged")
    created = call(scenario.kube, "POST", kube_api.pods(audit_ns), audit_pod)
    assert created.ok, created.body
    # The API server prefixes each: "Validation failed for ValidatingAdmissionPolicy ...".
    assert any("privileged (kube-guardrails policy" in w for w in created.warnings), (
        created.warnings
    )
    deploy = e2e_scenario.deployment(audit_ns, "warned", image, replicas=1, privileged=True)
    created = call(scenario.kube, "POST", kube_api.deployments(audit_ns), deploy)
    assert created.ok and any("privileged" in w for w in created.warnings), created.warnings


def test_readiness_gate_closes_the_race_in_a_burst_of_namespaces(scenario: Scenario) -> None:
    """Pods created right after their namespace are refused until it is hardened; every
    Pod that gets in finds the default-deny NetworkPolicy already in place."""
    image = scenario.env.settings.image
    scenario.policy("gate")  # Audit, hardening on (NetworkPolicy + LimitRange): gated
    # The API server must have loaded the gate before the burst.
    probe = scenario.namespace("probe")["metadata"]["name"]
    scenario.wait(
        lambda: scenario.kube.get_or_none(f"{VAPS}/{names_of(scenario.name('gate'))[0]}"),
        "the deny admission policy with the readiness gate",
    )
    scenario.wait_hardened(probe)
    # The API server loads new admission policies a moment after they are stored: wait
    # until this policy's warn policy (created after its deny policy) speaks.
    wait_warned(
        scenario,
        kube_api.pods(probe),
        e2e_scenario.pod(probe, "probe", image),
        f"(kube-guardrails policy {scenario.name('gate')})",
    )
    refusals = 0
    admitted: dict[str, Obj] = {}
    lock = threading.Lock()

    def attempt(ns: str) -> None:
        nonlocal refusals
        answer = call(
            scenario.kube, "POST", kube_api.pods(ns), e2e_scenario.pod(ns, "early", image)
        )
        with lock:
            if answer.ok:
                admitted[ns] = answer.body
            elif NO_SERVICE_ACCOUNT not in answer.message:
                assert generated.GATE_CHECK in answer.message, answer.body
                refusals += 1
            # else: refused before the gate (the namespace's default ServiceAccount is not
            # created yet: the controller manager races the burst too); tried again below.

    def create_then_pod(_: int) -> str:
        # The Pod right after its namespace, as a deploy pipeline would send them.
        with lock:  # Scenario numbers its namespaces: one at a time
            ns = str(scenario.namespace("burst")["metadata"]["name"])
        attempt(ns)
        return ns

    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        burst = list(pool.map(create_then_pod, range(10)))

    def try_all() -> bool:
        for ns in burst:
            if ns not in admitted:
                attempt(ns)
        return len(admitted) == len(burst)

    scenario.wait(try_all, "every namespace of the burst admitting Pods")
    for ns, pod in admitted.items():
        np = _np(scenario, ns)
        assert np is not None, f"Pod admitted in {ns} without its NetworkPolicy"
        # One etcd: resourceVersions order the writes. The NetworkPolicy came first.
        assert int(np["metadata"]["resourceVersion"]) < int(pod["metadata"]["resourceVersion"])
        labels = scenario.kube.get(kube_api.namespaces(ns))["metadata"]["labels"]
        assert labels.get(READY_LABEL), labels
    # How many Pods reached the gate depends on who wins each race (on a quiet machine the
    # operator can harden all ten namespaces first): the refusal itself is proven
    # deterministically by test_object_with_our_name_but_not_ours_is_reported, where a
    # foreign object keeps a selected namespace unhardened.
    print(f"readiness gate: {refusals} Pod(s) refused in a burst of {len(burst)} namespaces")


# ------------------------------------------------------------------ tamper


def test_namespace_admin_cannot_change_managed_objects_and_the_operator_restores(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    policy = scenario.policy("tamper")
    protected = scenario.namespace("prot")["metadata"]["name"]
    open_ns = scenario.namespace("open")["metadata"]["name"]
    scoped_protection(scenario, protected, request.addfinalizer)
    np, _ = scenario.wait_hardened(protected)
    admin = namespace_admin(scenario, protected)
    path = kube_api.network_policies(protected, NP_NAME)

    def refused(answer: Answer) -> bool:
        """Refused by the protection policy (its message), not by anything else."""
        return answer.status in (403, 422) and "is managed by kube-guardrails" in answer.message

    # Until the API server has loaded the scoped protection, wait with a harmless edit.
    scenario.wait(
        lambda: refused(
            call(
                admin,
                "PATCH",
                path,
                {"metadata": {"annotations": {"probe": "1"}}},
                dry_run=True,
                content_type=kube_api.MERGE,
            )
        ),
        "the protection policy loaded",
    )
    attempts = {
        "edit": ("PATCH", {"spec": {"ingress": [{}], "egress": [{}]}}),
        "remove-managed-by-label": ("PATCH", {"metadata": {"labels": {LABEL_MANAGED_BY: None}}}),
        "disown": ("PATCH", {"metadata": {"ownerReferences": None}}),
        "delete": ("DELETE", None),
    }
    for what, (method, body) in attempts.items():
        answer = call(
            admin, method, path, body, content_type=kube_api.MERGE if body is not None else None
        )
        assert refused(answer), f"{what}: {answer.status} {answer.body}"
    assert _np(scenario, protected) == np or _np(scenario, protected)["spec"] == np["spec"]
    # The generated admission policies are cluster-scoped: RBAC keeps namespace admins out.
    deny = names_of(policy["metadata"]["name"])[0]
    assert call(admin, "DELETE", f"{VAPS}/{deny}").status == 403

    # Issue 9: a cluster admin (not covered by the scoped protection here) removes the
    # managed-by label and opens the NetworkPolicy: ownership is the ownerReference, so
    # the operator restores it.
    np_open, _ = scenario.wait_hardened(open_ns)
    scenario.kube.patch(
        kube_api.network_policies(open_ns, NP_NAME),
        {"metadata": {"labels": {LABEL_MANAGED_BY: None}}, "spec": {"ingress": [{}]}},
    )
    scenario.wait(
        lambda: _restored(scenario, open_ns, np_open), "the opened NetworkPolicy restored"
    )
    # The generated admission policy: edited or deleted by a cluster admin, restored.
    scenario.kube.patch(f"{VAPS}/{deny}", {"spec": {"validations": [{"expression": "true"}]}})
    scenario.wait(
        lambda: (
            READY_LABEL
            in str(scenario.kube.get(f"{VAPS}/{deny}")["spec"]["validations"][0]["expression"])
            or None
        ),
        "the edited admission policy restored (its readiness gate back)",
    )
    scenario.kube.delete(f"{BINDINGS}/{deny}")
    scenario.wait(
        lambda: scenario.kube.get_or_none(f"{BINDINGS}/{deny}"), "the deleted binding restored"
    )


def test_object_with_our_name_but_not_ours_is_reported(scenario: Scenario) -> None:
    ns = scenario.namespace("foreign", selected=False)["metadata"]["name"]
    scenario.kube.create(
        kube_api.network_policies(ns),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": NP_NAME},
            "spec": {"podSelector": {}, "ingress": [{}]},
        },
    )
    policy = scenario.policy("foreign")
    namespace = scenario.set_selected(ns, True)
    event = scenario.wait_event(namespace, "HardeningConflict", type_="Warning")
    assert NP_NAME in event["message"], event
    ready = scenario.wait_policy_ready(policy["metadata"]["name"], status="False")
    condition = kube_api.condition(ready, "Ready") or {}
    assert condition.get("reason") == "HardeningConflict" and ns in condition.get("message", "")
    # The counts are another part of the status, written in a batch of their own.
    scenario.wait(
        lambda: (
            (scenario.read_policy(policy["metadata"]["name"]).get("status") or {}).get("namespaces")
            == {"matched": 1, "hardened": 0}
        ),
        "status.namespaces: 1 matched, 0 hardened",
    )
    # Never overwritten, and the namespace is not marked ready.
    assert _np(scenario, ns)["spec"]["ingress"] == [{}]
    labels = scenario.kube.get(kube_api.namespaces(ns))["metadata"]["labels"]
    assert READY_LABEL not in labels
    # So the readiness gate holds: a selected namespace without its default-deny
    # NetworkPolicy admits no Pod (deterministic: nothing races the operator here).
    pod = e2e_scenario.pod(ns, "early", scenario.env.settings.image)
    wait_refused(scenario, kube_api.pods(ns), pod, generated.GATE_CHECK)
    refused = call(scenario.kube, "POST", kube_api.pods(ns), pod)
    assert refused.status == 403 and generated.GATE_CHECK in refused.message, refused.body
    # The owner removes the foreign object: the operator hardens, labels, Pods are admitted.
    scenario.kube.delete(kube_api.network_policies(ns, NP_NAME))
    scenario.wait_hardened(ns)

    def admitted() -> Answer | None:
        answer = call(scenario.kube, "POST", kube_api.pods(ns), pod)
        return answer if answer.ok else None

    created = scenario.wait(admitted, f"a Pod admitted in {ns} once it is hardened").body
    np = _np(scenario, ns)
    assert np is not None and np["spec"].get("ingress") != [{}], np
    assert int(np["metadata"]["resourceVersion"]) < int(created["metadata"]["resourceVersion"])


# ------------------------------------------------------------------ bypasses


def test_forged_annotations_and_owners_do_not_stop_an_eviction(scenario: Scenario) -> None:
    """Issue 9: a copied violations annotation with since in 2999, a DaemonSet owner of
    another API group, and a Node owner without the kubelet's mirror annotation. Red
    team: the mirror annotation itself, which the API server accepts from any Pod
    creator (with spec.nodeName), without the Node owner the kubelet writes."""
    ns = scenario.namespace("forge")["metadata"]["name"]
    policy = scenario.workload_policy("forge", enforce_checks(grace=5))  # Audit for now
    name = policy["metadata"]["name"]
    node = scenario.kube.list(kube_api.core(None, "nodes"))
    pods: list[Obj] = []
    future = privileged_pod(scenario, ns, "future")
    future["metadata"]["annotations"] = {
        ANN: f"{name}/privileged(main)!",
        SINCE: "2999-01-01T00:00:00Z",
    }
    pods.append(future)
    fake_ds = privileged_pod(scenario, ns, "fake-ds")
    fake_ds["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "example.com/v1",
            "kind": "DaemonSet",
            "name": "d",
            "uid": "0000",
            "controller": False,
        }
    ]
    pods.append(fake_ds)
    if node:  # a real Node (fake-node's), so garbage collection keeps the Pod
        fake_static = privileged_pod(scenario, ns, "node-owned")
        meta = node[0]["metadata"]
        fake_static["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}
        ]
        pods.append(fake_static)
        fake_mirror = privileged_pod(scenario, ns, "fake-mirror")
        fake_mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "forged"}
        fake_mirror["spec"]["nodeName"] = meta["name"]
        pods.append(fake_mirror)
    created = [scenario.create(kube_api.pods(ns), p) for p in pods]
    for pod in created:
        scenario.wait_annotated(pod)
    # Enforce from now on (the Pods exist already: admission only judges new ones).
    scenario.patch_policy(name, {"mode": "Enforce"})
    for pod in created:
        scenario.wait(lambda p=pod: scenario.evicted(p), f"{e2e_scenario.describe(pod)} evicted")
        assert scenario.events(pod["metadata"]["uid"], e2e_scenario.GUARDRAIL_EVICTION), pod


# The API server's cap on the total size of one object's annotations (keys and values).
ANNOTATIONS_CAP = 256 * 1024


def test_annotations_filled_to_the_cap_do_not_stop_an_eviction(scenario: Scenario) -> None:
    """Red team: the workload owner fills the 256 KiB the API server allows for an
    object's annotations, leaving no room for the violations annotation (its patch is
    refused, 422). The developer still gets the Warning Event, and once the policy
    enforces, the Pod is evicted (it was never tracked: no eviction, ever, and the
    refused patch was retried every 10 s)."""
    ns = scenario.namespace("full")["metadata"]["name"]
    policy = scenario.workload_policy("full", enforce_checks(grace=5))  # Audit for now
    pod = privileged_pod(scenario, ns, "full")
    # 40 bytes left: too few for ours (two keys of 30+ characters), and the Pod sets its
    # own resources so that no LimitRange adds an annotation on creation.
    filler = ANNOTATIONS_CAP - len("filler") - 40
    pod["metadata"]["annotations"] = {"filler": "x" * filler}
    created = scenario.create(kube_api.pods(ns), pod)
    uid = created["metadata"]["uid"]
    scenario.wait(
        lambda: scenario.events(uid, e2e_scenario.GUARDRAIL_VIOLATION) or None,
        "the violation's Warning Event, without the annotation",
    )
    assert ANN not in scenario.kube.get(kube_api.pods(ns, "full"))["metadata"]["annotations"]
    scenario.patch_policy(policy["metadata"]["name"], {"mode": "Enforce"})
    scenario.wait(lambda: scenario.evicted(created), f"{e2e_scenario.describe(created)} evicted")


def test_huge_annotation_does_not_stall_reviews(scenario: Scenario) -> None:
    ns = scenario.namespace("huge")["metadata"]["name"]
    scenario.workload_policy("huge")
    huge = privileged_pod(scenario, ns, "huge")
    huge["metadata"]["annotations"] = {ANN: "a" + " " * 120000 + "a"}
    huge = scenario.create(kube_api.pods(ns), huge)
    other = scenario.create(kube_api.pods(ns), privileged_pod(scenario, ns, "other"))
    assert "privileged" in scenario.wait_annotated(other)
    # The hand-written value is replaced by the canonical one.
    scenario.wait(
        lambda: (scenario.annotation(huge) or "").endswith("/privileged(main)") or None,
        "the 120 KB annotation rewritten",
    )


def test_bad_policy_edit_is_reported_and_stops_enforcing(scenario: Scenario) -> None:
    """A quantity the schema refuses is refused at the API server (the old generation
    stays, unchanged and valid); an edit only the operator can judge (an unknown check)
    is PolicyInvalid: Ready False, a Warning Event, and the policy is ignored (its
    admission policies are removed) until fixed, never silently kept as if valid."""
    ns = scenario.namespace("bad")["metadata"]["name"]
    policy = scenario.workload_policy("bad", {"mode": "Enforce", **enforce_checks()})
    name = policy["metadata"]["name"]
    wait_refused(scenario, kube_api.pods(ns), privileged_pod(scenario, ns, "x"), "privileged")
    with pytest.raises(kube_api.ApiError) as refused:
        scenario.patch_policy(
            name, {"hardening": {"limitRange": {"default": {"cpu": "1e999999999"}}}}
        )
    assert "spec.hardening.limitRange.default.cpu" in refused.value.text()

    scenario.patch_policy(name, {"workloads": {"checks": {"noSuchCheck": {"action": "Audit"}}}})
    invalid = scenario.wait_policy_ready(name, status="False")
    condition = kube_api.condition(invalid, "Ready") or {}
    assert condition.get("reason") == e2e_scenario.POLICY_INVALID, condition
    scenario.wait_event(invalid, e2e_scenario.POLICY_INVALID, type_="Warning")
    scenario.wait(lambda: not admission_objects(scenario.kube, name), "admission policies removed")

    scenario.patch_policy(name, {"workloads": {"checks": {"noSuchCheck": None}}})
    scenario.wait_policy_ready(name)
    scenario.wait(lambda: admission_objects(scenario.kube, name) or None, "admission policies back")


# ------------------------------------------------------------------ failure behaviour


def test_admission_keeps_enforcing_with_the_operator_down(
    scenario: Scenario, restartable: e2e_scenario.Env
) -> None:
    stop = os.environ.get("KUBE_GUARDRAILS_E2E_STOP_COMMAND")
    if not stop:
        pytest.skip("no way to stop the operator: KUBE_GUARDRAILS_E2E_STOP_COMMAND (hack/e2e.sh)")
    ns = scenario.namespace("down")["metadata"]["name"]
    policy = scenario.workload_policy("down", {"mode": "Enforce", **enforce_checks()})
    pod = privileged_pod(scenario, ns, "bad")
    wait_refused(scenario, kube_api.pods(ns), pod, "privileged")
    subprocess.run(stop, shell=True, check=True, timeout=120)
    try:
        assert not restartable.operator_alive()
        refused = call(scenario.kube, "POST", kube_api.pods(ns), pod)
        assert not refused.ok and "privileged" in refused.message, refused.body
    finally:
        restartable.restart_operator()
    # Deleting the policy removes its admission policies (ownerReference, GC).
    scenario.delete_policy(policy["metadata"]["name"])
    scenario.wait(
        lambda: not admission_objects(scenario.kube, policy["metadata"]["name"]),
        "no admission policy or binding left after the policy's deletion",
    )


def test_deleting_policies_leaves_no_admission_objects(scenario: Scenario) -> None:
    names = [scenario.policy(f"u{i}")["metadata"]["name"] for i in range(2)]
    for name in names:
        scenario.wait(lambda n=name: admission_objects(scenario.kube, n) or None, f"{name} applied")
    for name in names:
        scenario.delete_policy(name)
    for name in names:
        scenario.wait(lambda n=name: not admission_objects(scenario.kube, n), f"{name} collected")
    assert not [
        item["metadata"]["name"]
        for path in (VAPS, BINDINGS)
        for item in scenario.kube.list(path)
        if any(item["metadata"]["name"] in names_of(n) for n in names)
    ]


def test_no_write_to_admission_objects_or_namespaces_on_resync(
    scenario: Scenario, resync_window: float
) -> None:
    """Written once; the resyncs that follow compare and write nothing (not even to the
    namespace's readiness label)."""
    policy = scenario.policy("quiet", {"mode": "Enforce"})
    ns = scenario.namespace("quiet")["metadata"]["name"]
    name = policy["metadata"]["name"]
    scenario.wait_hardened(ns)
    scenario.wait(
        lambda: scenario.kube.get(kube_api.namespaces(ns))["metadata"]["labels"].get(READY_LABEL),
        "the readiness label",
    )
    paths = [f"{base}/{n}" for base in (VAPS, BINDINGS) for n in names_of(name)]
    # deny + warn, each with its binding
    scenario.wait(
        lambda: all(scenario.kube.get_or_none(p) is not None for p in paths),
        "the four admission objects",
    )
    paths.append(kube_api.namespaces(ns))

    def versions() -> dict[str, str]:
        return {p: scenario.kube.get(p)["metadata"]["resourceVersion"] for p in paths}

    before = versions()
    harness.hold_for(
        lambda: versions() == before,
        duration=resync_window,
        interval=1.0,
        what="no write to admission objects or the namespace",
    )
