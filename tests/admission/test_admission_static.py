"""The static admission policies (manifests/admission-protection.yaml) and the readiness
gate, against a real API server, with the identities that matter:

- a namespace admin: a ServiceAccount bound to the ``admin`` ClusterRole in its namespace,
  authenticated with its own token (no impersonation), i.e. a hostile workload owner;
- the cluster admin of the test kube config;
- the operator's ServiceAccount (impersonated, so the test needs no operator running);
- the garbage collector and namespace controller of the real controller manager.
"""

from __future__ import annotations

import datetime
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import admission_kube as ak
import pytest
import yaml
from conftest import RUN_LABEL

from kube_guardrails import LABEL_MANAGED_BY, admission
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model

REPO = pathlib.Path(__file__).resolve().parents[2]
OPERATOR = "system:serviceaccount:kube-guardrails-system:kube-guardrails"
POLICIES = "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
STATIC = REPO / "manifests" / "admission-protection.yaml"


def eventually(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def installed(kube: ak.Client, run_id: str) -> Iterator[None]:
    """The CRD and the static admission policies, installed as `kubectl apply -k` would."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    new_crds = [
        c["metadata"]["name"]
        for c in crds
        if not kube.call("GET", f"{CRDS}/{c['metadata']['name']}").ok
    ]
    for crd in crds:
        kube.apply(CRDS, crd["metadata"]["name"], crd)
    eventually(
        "the CRD to be served",
        lambda: kube.call("GET", POLICIES).ok,
    )
    docs = [d for d in yaml.safe_load_all(STATIC.read_text()) if d]
    existed = {
        d["metadata"]["name"]
        for d in docs
        if kube.call("GET", f"{_path(d)}/{d['metadata']['name']}").ok
    }
    for d in docs:
        kube.apply(_path(d), d["metadata"]["name"], d)
    # Admission policies take effect asynchronously: probe both with dry-run requests.
    owner = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "name": "probe",
        "uid": "00000000-0000-0000-0000-000000000000",
    }
    forged = {
        "metadata": {"name": "probe", "ownerReferences": [owner]},
        "spec": {"limits": [{"type": "Container", "default": {"memory": "1Gi"}}]},
    }
    labelled = {"metadata": {"name": f"probe-{run_id}", "labels": {admission.LABEL_HARDENED: "x"}}}
    eventually(
        "the static admission policies to take effect",
        lambda: (
            kube.call(
                "POST", "/api/v1/namespaces/default/limitranges", forged, query={"dryRun": "All"}
            ).status
            == 403
            and kube.call("POST", ak.NAMESPACES, labelled, query={"dryRun": "All"}).status == 403
        ),
    )
    yield
    # Leave the cluster as found: what this fixture installed goes again.
    for d in reversed(docs):
        if d["metadata"]["name"] not in existed:
            kube.delete(f"{_path(d)}/{d['metadata']['name']}")
    for name in new_crds:
        kube.delete(f"{CRDS}/{name}")


def _path(doc: dict[str, Any]) -> str:
    return ak.VAP if doc["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB


@pytest.fixture(scope="module")
def operator(kube: ak.Client) -> ak.Client:
    # system:masters for RBAC (the test cluster has no ClusterRole installed for the SA);
    # admission policies see the user name, which is the operator's.
    return kube.impersonating(OPERATOR, groups=("system:masters",))


def _namespace(kube: ak.Client, run_id: str, prefix: str, **labels: str) -> str:
    name = f"{prefix}-{run_id}-{uuid.uuid4().hex[:4]}"
    kube.must(
        "POST",
        ak.NAMESPACES,
        {"metadata": {"name": name, "labels": {RUN_LABEL: run_id, **labels}}},
    )
    return name


@pytest.fixture(scope="module")
def tenant(kube: ak.Client, run_id: str, installed: None) -> tuple[str, ak.Client]:
    """A namespace and a client for its admin ServiceAccount, using that SA's own token."""
    ns = _namespace(kube, run_id, "tenant")
    kube.must("POST", f"{ak.NAMESPACES}/{ns}/serviceaccounts", {"metadata": {"name": "dev"}})
    kube.must(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "dev-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": ns}],
        },
    )
    # ``admin`` may only read LimitRanges and ResourceQuotas; grant writing them too, so that
    # what stops this user below is the admission policy, not RBAC.
    kube.must(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "limits-editor"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["limitranges", "resourcequotas"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    kube.must(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "dev-limits"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "limits-editor",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": ns}],
        },
    )
    token = kube.must(
        "POST",
        f"{ak.NAMESPACES}/{ns}/serviceaccounts/dev/token",
        {"spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    return ns, kube.with_token(token)


def _policy(
    kube: ak.Client, run_id: str, name: str, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": f"{name}-{run_id}", "labels": {RUN_LABEL: run_id}},
        # Selects nothing but the test's own namespaces, should an operator be running.
        "spec": spec or {"namespaceSelector": {"matchLabels": {"kube-guardrails.io/none": run_id}}},
    }
    return kube.must("POST", POLICIES, body)


def _owner(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "name": policy["metadata"]["name"],
        "uid": policy["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


MANAGED = {
    "NetworkPolicy": (
        "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
        {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    ),
    "LimitRange": (
        "/api/v1/namespaces/{ns}/limitranges",
        {"limits": [{"type": "Container", "default": {"memory": "512Mi"}}]},
    ),
    "ResourceQuota": ("/api/v1/namespaces/{ns}/resourcequotas", {"hard": {"pods": "10"}}),
}


def _managed(client: ak.Client, ns: str, kind: str, owner: dict[str, Any] | None) -> ak.Response:
    path, spec = MANAGED[kind]
    meta: dict[str, Any] = {
        "name": f"kube-guardrails-{kind.lower()}",
        "labels": {LABEL_MANAGED_BY: "kube-guardrails"},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return client.call("POST", path.format(ns=ns), {"metadata": meta, "spec": spec})


def _forbidden_by(r: ak.Response, policy: str) -> bool:
    return r.status == 403 and f"ValidatingAdmissionPolicy '{policy}'" in r.message


TAMPER = "kube-guardrails-protect-managed-objects"
LABEL_POLICY_NAME = "kube-guardrails-protect-readiness-label"


@pytest.mark.parametrize("kind", sorted(MANAGED))
def test_managed_objects_resist_namespace_and_cluster_admins(
    kube: ak.Client, operator: ak.Client, tenant: tuple[str, ak.Client], run_id: str, kind: str
) -> None:
    ns, dev = tenant
    policy = _policy(kube, run_id, f"tamper-{kind.lower()}")
    owner = _owner(policy)
    path = MANAGED[kind][0].format(ns=ns) + f"/kube-guardrails-{kind.lower()}"

    # Only the operator creates owned objects; a forged owner is refused to everyone else.
    forged = _managed(dev, ns, kind, owner)
    assert _forbidden_by(forged, TAMPER), forged
    created = _managed(operator, ns, kind, owner)
    assert created.ok, created.message
    merge = "application/merge-patch+json"
    json_patch = "application/json-patch+json"

    attempts = {
        "edit the spec": ("PATCH", {"metadata": {"annotations": {"x": "y"}}, "spec": {}}, merge),
        "remove the managed-by label": (
            "PATCH",
            [{"op": "remove", "path": "/metadata/labels"}],
            json_patch,
        ),
        "disown it": ("PATCH", [{"op": "remove", "path": "/metadata/ownerReferences"}], json_patch),
        "delete it": ("DELETE", {"propagationPolicy": "Background"}, "application/json"),
    }
    for who, client in (("namespace admin", dev), ("cluster admin", kube)):
        for what, (method, body, ctype) in attempts.items():
            r = client.call(method, path, body, content_type=ctype)
            assert _forbidden_by(r, TAMPER), f"{who} could {what}: HTTP {r.status} {r.message}"
            assert policy["metadata"]["name"] in r.message  # the message names the owner
    # A collection delete is admitted object by object: ours survives it.
    dev.call("DELETE", MANAGED[kind][0].format(ns=ns), {"propagationPolicy": "Background"})
    assert kube.call("GET", path).ok

    # The operator itself may change it; a namespace admin's own objects stay theirs.
    r = operator.call("PATCH", path, {"metadata": {"annotations": {"x": "y"}}}, content_type=merge)
    assert r.ok, r.message
    mine_path, spec = MANAGED[kind]
    mine = dev.call("POST", mine_path.format(ns=ns), {"metadata": {"name": "mine"}, "spec": spec})
    assert mine.ok, mine.message
    assert dev.delete(mine_path.format(ns=ns) + "/mine").ok

    # Uninstalling: deleting the GuardrailPolicy lets the garbage collector remove it.
    kube.delete(f"{POLICIES}/{policy['metadata']['name']}")
    eventually(f"{kind} to be garbage-collected", lambda: kube.call("GET", path).status == 404)


def test_namespace_deletion_removes_managed_objects(
    kube: ak.Client, operator: ak.Client, run_id: str, installed: None
) -> None:
    ns = _namespace(kube, run_id, "doomed")
    policy = _policy(kube, run_id, "doomed")
    for kind in MANAGED:
        assert _managed(operator, ns, kind, _owner(policy)).ok
    try:
        kube.delete(f"{ak.NAMESPACES}/{ns}")
        eventually(
            "the namespace to be gone",
            lambda: kube.call("GET", f"{ak.NAMESPACES}/{ns}").status == 404,
            timeout=120,
        )
    finally:
        kube.delete(f"{POLICIES}/{policy['metadata']['name']}")


def test_only_the_operator_sets_the_readiness_label(
    kube: ak.Client, operator: ak.Client, run_id: str, installed: None
) -> None:
    label = admission.LABEL_HARDENED
    ns = _namespace(kube, run_id, "ready")
    path = f"{ak.NAMESPACES}/{ns}"
    merge = "application/merge-patch+json"

    def set_label(client: ak.Client, value: str | None) -> ak.Response:
        return client.call(
            "PATCH", path, {"metadata": {"labels": {label: value}}}, content_type=merge
        )

    assert _forbidden_by(set_label(kube, "forged"), LABEL_POLICY_NAME)
    assert set_label(kube.impersonating(OPERATOR, groups=("system:masters",)), "uid-1").ok
    assert _forbidden_by(set_label(kube, "other"), LABEL_POLICY_NAME)
    assert _forbidden_by(set_label(kube, None), LABEL_POLICY_NAME)
    # Other labels stay free, and the operator may remove its own.
    r = kube.call("PATCH", path, {"metadata": {"labels": {"team": "a"}}}, content_type=merge)
    assert r.ok, r.message
    assert set_label(operator, None).ok
    # Nobody but the operator creates a namespace that claims to be hardened already.
    forged = kube.call(
        "POST",
        ak.NAMESPACES,
        {"metadata": {"name": f"forged-{run_id}", "labels": {RUN_LABEL: run_id, label: "x"}}},
    )
    assert _forbidden_by(forged, LABEL_POLICY_NAME), forged


COMPLIANT_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "app"},
    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
}


def test_readiness_gate_refuses_pods_until_the_namespace_is_hardened(
    kube: ak.Client, operator: ak.Client, run_id: str, installed: None
) -> None:
    selector = {"kube-guardrails.io/gated": run_id}
    raw = _policy(kube, run_id, "gate", {"namespaceSelector": {"matchLabels": selector}})
    pol = policy_model.parse(raw, known_checks=registry.ids())
    desired = admission.build(pol, now=datetime.datetime.now(datetime.UTC))
    assert set(desired.policies) == {
        admission.object_name(pol.name, admission.DENY),
        admission.object_name(pol.name, admission.WARN),
    }
    for manifest in desired.objects:
        path = ak.VAP if manifest["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
        operator.apply(path, manifest["metadata"]["name"], manifest)
    ns = _namespace(kube, run_id, "gated", **selector)
    pods = ak.collection("Pod", ns)

    def refused() -> bool:
        r = kube.call("POST", pods, COMPLIANT_POD, query={"dryRun": "All"})
        return r.status == 403 and admission.GATE_CHECK in r.message

    eventually("the gate to refuse Pods in a new namespace", refused)
    r = kube.call("POST", pods, COMPLIANT_POD, query={"dryRun": "All"})
    assert "not hardened yet" in r.message, r.message
    # Deployments are not gated: they create Pods later, through the gate.
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": COMPLIANT_POD["spec"]},
        },
    }
    assert kube.call("POST", ak.collection("Deployment", ns), deploy, query={"dryRun": "All"}).ok
    merge = "application/merge-patch+json"
    r = operator.call(
        "PATCH",
        f"{ak.NAMESPACES}/{ns}",
        {"metadata": {"labels": {admission.LABEL_HARDENED: pol.uid}}},
        content_type=merge,
    )
    assert r.ok, r.message
    eventually(
        "Pods to be admitted once hardened",
        lambda: kube.call("POST", pods, COMPLIANT_POD, query={"dryRun": "All"}).ok,
    )

    # Deleting the policy removes its admission policies and bindings (uninstall).
    kube.delete(f"{POLICIES}/{pol.name}")
    for name in desired.policies:
        for path in (ak.VAP, ak.VAPB):
            eventually(
                f"{path}/{name} to be garbage-collected",
                lambda p=f"{path}/{name}": kube.call("GET", p).status == 404,
            )


def test_namespace_admins_cannot_touch_generated_admission_policies(
    kube: ak.Client, operator: ak.Client, tenant: tuple[str, ak.Client], run_id: str
) -> None:
    """Admission policies never apply to admission configuration objects (the API server
    exempts them), so the generated ones are protected by RBAC: they are cluster-scoped and
    only cluster admins and the operator may write them."""
    _, dev = tenant
    raw = _policy(kube, run_id, "rbac")
    pol = policy_model.parse(raw, known_checks=registry.ids())
    desired = admission.build(pol, now=datetime.datetime.now(datetime.UTC))
    try:
        for manifest in desired.objects:
            path = ak.VAP if manifest["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
            name = manifest["metadata"]["name"]
            operator.apply(path, name, manifest)
            assert dev.call("DELETE", f"{path}/{name}").status == 403
            r = dev.call(
                "PATCH",
                f"{path}/{name}",
                {"spec": {"validationActions": ["Audit"]}}
                if path == ak.VAPB
                else {"spec": {"validations": []}},
                content_type="application/merge-patch+json",
            )
            assert r.status == 403, r.message
    finally:
        kube.delete(f"{POLICIES}/{pol.name}")
