"""The static admission policies (manifests/admission-protection.yaml) stay in step with
the code and the other manifests: the operator's identity, the protected kinds, the
readiness label. Their behaviour is tested on a real API server in tests/admission.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from kube_guardrails import API_GROUP, KIND, admission, builders

MANIFESTS = pathlib.Path(__file__).resolve().parents[2] / "manifests"


def docs() -> dict[tuple[str, str], dict[str, Any]]:
    loaded = yaml.safe_load_all((MANIFESTS / "admission-protection.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in loaded if d}


def operator_user() -> str:
    sa = yaml.safe_load((MANIFESTS / "serviceaccount.yaml").read_text())
    return f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"


def test_every_policy_has_a_deny_binding() -> None:
    found = docs()
    policies = [name for kind, name in found if kind == "ValidatingAdmissionPolicy"]
    assert len(policies) == 2
    for name in policies:
        binding = found[("ValidatingAdmissionPolicyBinding", name)]
        assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
        assert found[("ValidatingAdmissionPolicy", name)]["spec"]["failurePolicy"] == "Fail"


def test_tamper_protection_covers_the_managed_kinds_and_names_the_operator() -> None:
    spec = docs()[("ValidatingAdmissionPolicy", "kube-guardrails-protect-managed-objects")]["spec"]
    covered = {
        (group, resource)
        for rule in spec["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    managed = {(k.api_version.rpartition("/")[0], k.plural) for k in builders.MANAGED_KINDS}
    assert covered == managed
    for rule in spec["matchConstraints"]["resourceRules"]:
        assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    (condition,) = spec["matchConditions"]
    assert f"'{API_GROUP}/'" in condition["expression"]
    assert f"'{KIND}'" in condition["expression"]
    (validation,) = spec["validations"]
    allowed = validation["expression"]
    assert f"'{operator_user()}'" in allowed
    assert "'system:serviceaccount:kube-system:generic-garbage-collector'" in allowed
    assert "'system:serviceaccount:kube-system:namespace-controller'" in allowed


def test_readiness_label_policy_guards_the_generator_s_label() -> None:
    spec = docs()[("ValidatingAdmissionPolicy", "kube-guardrails-protect-readiness-label")]["spec"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"].count(f"'{admission.LABEL_HARDENED}'") == 3
    (validation,) = spec["validations"]
    assert validation["expression"] == f"request.userInfo.username == '{operator_user()}'"
