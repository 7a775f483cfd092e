"""The install manifests on a real API server (issue #2, "How it will be checked").

* ``kubectl apply -k manifests/`` applies cleanly (server-side dry run);
* the operator's pod passes the ``restricted`` Pod Security Standard as the API
  server's own Pod Security admission enforces it;
* in-cluster, the operator's service account has exactly the permissions of its
  ClusterRole (and what every service account gets anyway), nothing more.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

import e2e_kube as kube_api
import e2e_manifests
import e2e_scenario
import pytest

from kube_guardrails import OPERATOR_NAMESPACE

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SERVICE_ACCOUNT = "kube-guardrails"
Rule = tuple[str, str, str, str]  # (apiGroup, resource, verb, resourceName)


_kubectl = e2e_manifests.kubectl
rendered_manifests = e2e_manifests.rendered_manifests


def _one(docs: Iterable[Obj], kind: str) -> Obj:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in manifests/, found {len(found)}"
    return found[0]


@pytest.mark.e2e_serial
def test_install_manifests_apply_cleanly(scenario: Scenario) -> None:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (needed for kubectl apply -k)")
    created = False
    if scenario.kube.get_or_none(kube_api.namespaces(OPERATOR_NAMESPACE)) is None:
        # Namespaced objects can only be dry-run into an existing namespace.
        scenario.kube.create(
            kube_api.namespaces(),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}},
        )
        created = True
    try:
        context = ["--context", scenario.kube.context] if scenario.kube.context else []
        result = subprocess.run(
            [kubectl, *context, "apply", "-k", str(MANIFESTS), "--dry-run=server"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    finally:
        if created:
            scenario.kube.delete(kube_api.namespaces(OPERATOR_NAMESPACE))


def test_operator_pod_passes_restricted_pod_security_admission(scenario: Scenario) -> None:
    deployment = _one(rendered_manifests(), "Deployment")
    ns = scenario.namespace(
        "psa",
        selected=False,
        extra_labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )["metadata"]["name"]
    template = deployment["spec"]["template"]
    account = template["spec"].get("serviceAccountName")
    if account:
        # The ServiceAccount admission plugin refuses pods naming a missing account.
        scenario.create(
            kube_api.core(ns, "serviceaccounts"),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "kube-guardrails-psa-",
            "namespace": ns,
            "labels": dict(template.get("metadata", {}).get("labels") or {}),
        },
        "spec": copy.deepcopy(template["spec"]),
    }
    try:
        scenario.kube.create(kube_api.pods(ns), pod, dry_run=True)
    except kube_api.ApiError as e:
        pytest.fail(f"restricted Pod Security admission refused the operator's pod: {e.text()}")
    moved = copy.deepcopy(deployment)
    moved["metadata"]["namespace"] = ns
    scenario.kube.create(kube_api.deployments(ns), moved, dry_run=True)


def _expand(rules: Iterable[Mapping[str, Any]]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        if rule.get("nonResourceURLs"):
            for url in rule["nonResourceURLs"]:
                for verb in rule.get("verbs") or []:
                    out.add(("<url>", url, verb, ""))
            continue
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    for name in rule.get("resourceNames") or [""]:
                        out.add((group, resource, verb, name))
    return out


def _allowed(kube: kube_api.Kube, user: str, namespace: str) -> set[Rule]:
    review = kube.impersonating(user).create(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
    )
    status = review["status"]
    assert not status.get("incomplete"), status.get("evaluationError")
    return _expand(status.get("resourceRules") or []) | _expand(
        status.get("nonResourceRules") or []
    )


def _granted_by_manifests(docs: list[Obj], namespace: str | None) -> set[Rule]:
    """Rules the manifests bind to the operator's service account (cluster, or in ns)."""

    def binds_us(binding: Obj) -> bool:
        return any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == SERVICE_ACCOUNT
            and s.get("namespace", binding["metadata"].get("namespace")) == OPERATOR_NAMESPACE
            for s in binding.get("subjects") or []
        )

    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"].endswith("Role")}
    rules: set[Rule] = set()
    for binding in docs:
        kind = binding.get("kind")
        if kind == "RoleBinding" and binding["metadata"].get("namespace") != namespace:
            continue
        if kind not in ("ClusterRoleBinding", "RoleBinding") or not binds_us(binding):
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], ref["name"]))
        assert role is not None, f"{kind} {binding['metadata']['name']} refers to a missing role"
        rules |= _expand(role.get("rules") or [])
    return rules


def _operator_account(scenario: Scenario) -> str:
    account = scenario.env.settings.operator_account
    if not account:
        pytest.skip(
            "the operator runs with your own kube credentials (E2E_SERVICE_ACCOUNT=0): run "
            "hack/e2e.sh (its ServiceAccount with a token) or E2E_OPERATOR=in-cluster"
        )
    return account


def test_operator_authenticates_as_its_service_account(scenario: Scenario) -> None:
    """The local operator's kube config really is the ServiceAccount's token.

    Every other e2e test then passes with exactly the install's RBAC behind the operator:
    a missing rule would fail them (a 403 in the operator's log and nothing done).
    """
    account = _operator_account(scenario)
    config_file = scenario.env.settings.operator_kubeconfig
    if not config_file:
        assert scenario.env.settings.mode == "in-cluster"
        pods = scenario.env.operator_pods()
        assert pods, "in-cluster mode but no operator Pod found"
        assert {p["spec"].get("serviceAccountName") for p in pods} == {SERVICE_ACCOUNT}
        return
    operator = kube_api.Kube.from_kubeconfig(config_file=config_file)
    assert operator.whoami() == account
    # And the account is not an admin: it may not read Secrets anywhere.
    with pytest.raises(kube_api.ApiError) as refused:
        operator.list(kube_api.core(None, "secrets"))
    assert refused.value.status == 403, refused.value


def test_operator_has_exactly_the_permissions_of_its_cluster_role(
    scenario: Scenario,
) -> None:
    operator = _operator_account(scenario)
    assert operator == f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
    docs = rendered_manifests()
    # A service account that exists nowhere has only what every account gets
    # (discovery, self reviews): the baseline to subtract.
    nobody = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{scenario.name('nobody')}"
    elsewhere = scenario.namespace(selected=False)["metadata"]["name"]
    for namespace in (elsewhere, OPERATOR_NAMESPACE):
        actual = _allowed(scenario.kube, operator, namespace)
        baseline = _allowed(scenario.kube, nobody, namespace)
        expected = _granted_by_manifests(docs, namespace)
        extra = sorted(actual - baseline - expected)
        missing = sorted(expected - actual)
        assert not extra, f"in {namespace}: permissions beyond the manifests: {extra}"
        assert not missing, f"in {namespace}: ClusterRole rules not in effect: {missing}"
