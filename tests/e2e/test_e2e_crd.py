"""The GuardrailPolicy CRD on a real API server (issue #2: "How it will be checked").

Malformed policies are sent with server-side dry run: the API server runs the whole
validation (schema, enums, bounds, CEL rules) and stores nothing, so these tests never
disturb the operator or the cluster.
"""

from __future__ import annotations

import pathlib
from typing import Any

import e2e_kube as kube_api
import e2e_scenario
import pytest
import yaml

from kube_guardrails import API_GROUP, API_VERSION, KIND, PLURAL

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
FUTURE = "2099-01-31T00:00:00Z"


def test_crd_is_established_with_the_documented_names(scenario: e2e_scenario.Scenario) -> None:
    crd = scenario.kube.get(kube_api.crd(f"{PLURAL}.{API_GROUP}"))
    established = kube_api.condition(crd, "Established")
    assert established and established["status"] == "True", crd.get("status")
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], crd["spec"]["scope"]) == (KIND, PLURAL, "Cluster")
    assert "gp" in names.get("shortNames", [])
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert API_VERSION in served
    assert "status" in (served[API_VERSION].get("subresources") or {})


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        pytest.param({"mode": "Sometimes"}, ["spec.mode"], id="mode-not-in-enum"),
        pytest.param({"priority": 5000}, ["spec.priority"], id="priority-too-high"),
        pytest.param({"priority": -5000}, ["spec.priority"], id="priority-too-low"),
        pytest.param(
            {"hardening": {"networkPolicy": {"policyTypes": ["Sideways"]}}},
            ["spec.hardening.networkPolicy.policyTypes"],
            id="policy-type-not-in-enum",
        ),
        pytest.param(
            {
                "hardening": {
                    "limitRange": {
                        "defaultRequest": {"cpu": "2"},
                        "default": {"cpu": "500m"},
                    }
                }
            },
            ["spec.hardening.limitRange", "defaultRequest"],
            id="default-request-above-default-cel",
        ),
        pytest.param(
            {"workloads": {"podSecurity": "paranoid"}},
            ["spec.workloads.podSecurity"],
            id="pod-security-not-in-enum",
        ),
        pytest.param(
            {"workloads": {"checks": {"privileged": {"action": "Block"}}}},
            ["spec.workloads.checks", "action"],
            id="check-action-not-in-enum",
        ),
        pytest.param(
            {"workloads": {"enforcement": {"gracePeriodSeconds": -1}}},
            ["spec.workloads.enforcement.gracePeriodSeconds"],
            id="grace-period-negative",
        ),
        pytest.param(
            {"workloads": {"enforcement": {"maxEvictionsPerMinute": 0}}},
            ["spec.workloads.enforcement.maxEvictionsPerMinute"],
            id="max-evictions-zero",
        ),
        pytest.param(
            {"workloads": {"exemptions": [{"checks": ["privileged"], "expires": FUTURE}]}},
            ["spec.workloads.exemptions[0]", "reason"],
            id="exemption-without-reason",
        ),
        pytest.param(
            {"workloads": {"exemptions": [{"checks": ["privileged"], "reason": "SEC-1"}]}},
            ["spec.workloads.exemptions[0]", "expires"],
            id="exemption-without-expires",
        ),
        pytest.param(
            {
                "workloads": {
                    "exemptions": [{"checks": ["privileged"], "reason": "x", "expires": "soon"}]
                }
            },
            ["spec.workloads.exemptions[0].expires"],
            id="exemption-expires-not-a-time",
        ),
    ],
)
def test_malformed_policy_is_refused_naming_the_field(
    scenario: e2e_scenario.Scenario, spec: dict[str, Any], fields: list[str]
) -> None:
    body = scenario.policy_body("bad", spec)
    with pytest.raises(kube_api.ApiError) as refused:
        scenario.kube.create(kube_api.policies(), body, dry_run=True)
    assert refused.value.status == 422, refused.value
    text = refused.value.text()
    missing = [f for f in fields if f not in text]
    assert not missing, f"the refusal does not name {missing}: {text}"


def test_unknown_field_is_refused_with_strict_field_validation(
    scenario: e2e_scenario.Scenario,
) -> None:
    body = scenario.policy_body("unknown", {"hardening": {"firewall": {"enabled": True}}})
    with pytest.raises(kube_api.ApiError) as refused:
        scenario.kube.create(kube_api.policies(), body, dry_run=True, field_validation="Strict")
    assert refused.value.status in (400, 422), refused.value
    assert "spec.hardening.firewall" in refused.value.text()


def test_unknown_field_is_pruned_by_the_structural_schema(
    scenario: e2e_scenario.Scenario,
) -> None:
    body = scenario.policy_body("pruned", {"hardening": {"firewall": {"enabled": True}}})
    stored = scenario.kube.create(
        kube_api.policies(), body, dry_run=True, field_validation="Ignore"
    )
    assert "firewall" not in stored["spec"].get("hardening", {})


def test_defaults_are_filled_in_by_the_api_server(scenario: e2e_scenario.Scenario) -> None:
    body = scenario.policy_body("defaults")
    del body["spec"]["mode"]
    stored = scenario.kube.create(kube_api.policies(), body, dry_run=True)
    assert stored["spec"]["mode"] == "Audit"


@pytest.mark.parametrize(
    "path", EXAMPLES or [pytest.param(None, id="none")], ids=lambda p: p.name if p else "none"
)
def test_example_policy_applies(scenario: e2e_scenario.Scenario, path: pathlib.Path | None) -> None:
    assert path is not None, "manifests/examples/ holds no example policy"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    policies = [d for d in docs if d.get("kind") == KIND]
    assert policies, f"{path.name} holds no {KIND}"
    for doc in policies:
        # Dry run: an example selecting every namespace must not start hardening the
        # whole test cluster.
        stored = scenario.kube.create(
            kube_api.policies(), doc, dry_run=True, field_validation="Strict"
        )
        assert stored["spec"]["mode"] == "Audit", f"{path.name} must start in Audit mode"


def test_printer_columns_are_served(scenario: e2e_scenario.Scenario) -> None:
    policy = scenario.policy("columns")
    scenario.wait_policy_ready(policy["metadata"]["name"])
    table = scenario.kube.request(
        "GET", kube_api.policies(policy["metadata"]["name"]), accept=kube_api.TABLE
    )
    columns = [c["name"] for c in table["columnDefinitions"]]
    for expected in ("Mode", "Namespaces", "Violations", "Ready", "Age"):
        assert expected in columns, columns
    row = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert row["Mode"] == "Audit"
    assert row["Ready"] == "True"


def test_short_name_resolves_through_discovery(scenario: e2e_scenario.Scenario) -> None:
    resources = scenario.kube.get(f"/apis/{API_GROUP}/{API_VERSION}")["resources"]
    by_name = {r["name"]: r for r in resources}
    assert "gp" in by_name[PLURAL].get("shortNames", [])
    assert f"{PLURAL}/status" in by_name
