"""model.schema: the CRD's OpenAPI schema checked offline, errors naming the field.

Each bad policy is a minimal valid one plus one mistake; the table says which field the
error must name and a fragment of what it must say, so a user of ``audit --policy`` (or
``kubectl apply``, which the schema mirrors) knows what to fix.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
import yaml

from kube_guardrails.model import schema


def policy(spec: Any = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "p"},
    }
    if spec is not None:
        obj["spec"] = spec
    obj.update(extra)
    return obj


def exemption(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"reason": "SEC-1", "expires": "2027-01-31T00:00:00Z"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def lr(**fields: Any) -> dict[str, Any]:
    return {"hardening": {"limitRange": fields}}


def checks(**settings: Any) -> dict[str, Any]:
    return {"workloads": {"checks": settings}}


VALID = [
    pytest.param(policy(), id="no-spec"),
    pytest.param(policy({}), id="empty-spec"),
    pytest.param(
        policy({"mode": "Enforce", "priority": -1000, "excludeNamespaces": ["team-*"]}),
        id="enforce-lowest-priority",
    ),
    pytest.param(policy(lr(defaultRequest={"cpu": 1, "memory": "1e3"})), id="integer-quantity"),
    pytest.param(policy(lr(max={"ephemeral-storage": "10Gi"})), id="ephemeral-storage"),
    pytest.param(
        policy({"hardening": {"resourceQuota": {"enabled": True, "hard": {"pods": 10}}}}),
        id="quota-integer",
    ),
    pytest.param(policy(checks(probes={"action": "Off"})), id="action-off-quoted"),
    pytest.param(
        policy(checks(imageRegistry={"action": "Enforce", "allowed": ["registry.example.com/"]})),
        id="image-registry-allowed",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="2027-01-31T00:00:00.5+02:00")]}}),
        id="expires-offset-fraction",
    ),
    pytest.param(
        policy(
            {
                "namespaceSelector": {
                    "matchLabels": {"team": "a"},
                    "matchExpressions": [{"key": "env", "operator": "Exists"}],
                }
            }
        ),
        id="selector",
    ),
    pytest.param(
        {**policy(), "metadata": {"name": "p", "labels": {"a": "b"}, "uid": "u", "generation": 3}},
        id="metadata-other-fields",
    ),
    pytest.param(
        policy(
            status={
                "observedGeneration": 2,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Reconciled",
                        "message": "",
                        "lastTransitionTime": "2026-11-23T10:00:00Z",
                    }
                ],
                "namespaces": {"matched": 3, "hardened": 3},
                "violations": {"total": 1, "byCheck": {"probes": 1}},
                "kopf": {"progress": {}},
            }
        ),
        id="status-with-kopf-state",
    ),
]


@pytest.mark.parametrize("obj", VALID)
def test_valid_policies_have_no_errors(obj: dict[str, Any]) -> None:
    assert schema.validate(obj) == []


BAD = [
    # (object, field the error names, fragment of the message)
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="0001-01-01T00:00:00+01:00")]}}),
        "spec.workloads.exemptions[0].expires",
        "years 1970 to 9998",
        id="expires-year-1",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="9999-12-31T23:59:59-01:00")]}}),
        "spec.workloads.exemptions[0].expires",
        "years 1970 to 9998",
        id="expires-year-9999",
    ),
    pytest.param(
        policy(lr(defaultRequest={"cpu": "1e999999999"})),
        "spec.hardening.limitRange.defaultRequest.cpu",
        "not a quantity",
        id="quantity-huge-exponent",
    ),
    pytest.param(
        policy(lr(defaultRequest={"cpu": "1e100"})),
        "spec.hardening.limitRange.defaultRequest.cpu",
        "not a quantity",
        id="quantity-three-digit-exponent",
    ),
    pytest.param(policy({"mode": "enforce"}), "spec.mode", "one of Audit, Enforce", id="mode-case"),
    pytest.param(policy({"priority": 1001}), "spec.priority", "at most 1000", id="priority-high"),
    pytest.param(policy({"priority": -1001}), "spec.priority", "at least -1000", id="priority-low"),
    pytest.param(policy({"priority": "1"}), "spec.priority", "an integer", id="priority-string"),
    pytest.param(policy({"priority": True}), "spec.priority", "an integer", id="priority-bool"),
    pytest.param(policy({"modes": "Audit"}), "spec.modes", "unknown field", id="unknown-field"),
    pytest.param(policy([]), "spec", "must be an object", id="spec-list"),
    pytest.param(policy(specs={}), "specs", "unknown field", id="unknown-top-level"),
    pytest.param(
        {**policy(), "metadata": {"name": "n" * 64}}, "metadata.name", "63", id="name-too-long"
    ),
    pytest.param(
        policy({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}),
        "spec.namespaceSelector.matchExpressions[0].operator",
        "In, NotIn, Exists, DoesNotExist",
        id="selector-operator",
    ),
    pytest.param(
        policy({"namespaceSelector": {"matchExpressions": [{"operator": "Exists"}]}}),
        "spec.namespaceSelector.matchExpressions[0].key",
        "is required",
        id="selector-key-missing",
    ),
    pytest.param(
        policy({"namespaceSelector": {"matchLabels": {"team": 1}}}),
        "spec.namespaceSelector.matchLabels.team",
        "a string",
        id="selector-label-int",
    ),
    pytest.param(
        policy({"namespaceSelector": {"team": "a"}}),
        "spec.namespaceSelector.team",
        "unknown field",
        id="selector-bare-labels",
    ),
    pytest.param(
        policy({"excludeNamespaces": "team-*"}), "spec.excludeNamespaces", "a list", id="exclude"
    ),
    pytest.param(
        policy({"excludeNamespaces": [""]}),
        "spec.excludeNamespaces[0]",
        "must not be empty",
        id="exclude-empty",
    ),
    pytest.param(
        policy({"hardening": {"networkPolicy": {"policyTypes": ["Ingress", "All"]}}}),
        "spec.hardening.networkPolicy.policyTypes[1]",
        "Ingress, Egress",
        id="policy-type-unknown",
    ),
    pytest.param(
        policy({"hardening": {"networkPolicy": {"policyTypes": ["Egress", "Egress"]}}}),
        "spec.hardening.networkPolicy.policyTypes",
        "repeat",
        id="policy-type-repeated",
    ),
    pytest.param(
        policy({"hardening": {"networkPolicy": {"enabled": "yes"}}}),
        "spec.hardening.networkPolicy.enabled",
        "true or false",
        id="enabled-string",
    ),
    pytest.param(
        policy(lr(defaultRequest={"cpu": "1x"})),
        "spec.hardening.limitRange.defaultRequest.cpu",
        "not a quantity",
        id="quantity-suffix",
    ),
    pytest.param(
        policy(lr(default={"memory": "-1Gi"})),
        "spec.hardening.limitRange.default.memory",
        "not a quantity",
        id="quantity-negative",
    ),
    pytest.param(
        policy(lr(max={"cpu": 0.5})),
        "spec.hardening.limitRange.max.cpu",
        "an integer or a string",
        id="quantity-float",
    ),
    pytest.param(
        policy(lr(default={"gpu": "1"})),
        "spec.hardening.limitRange.default.gpu",
        "unknown field",
        id="resource-unknown",
    ),
    pytest.param(
        policy({"hardening": {"resourceQuota": {"enabled": True, "hard": {"pods": "lots"}}}}),
        "spec.hardening.resourceQuota.hard.pods",
        "not a quantity",
        id="quota-value",
    ),
    pytest.param(
        policy({"workloads": {"podSecurity": "restrcted"}}),
        "spec.workloads.podSecurity",
        "none, baseline, restricted",
        id="level-typo",
    ),
    pytest.param(
        policy(checks(probes={"action": False})),
        "spec.workloads.checks.probes.action",
        'quote the value (action: "Off")',
        id="action-off-unquoted",
    ),
    pytest.param(
        policy(checks(probes={"action": "Block"})),
        "spec.workloads.checks.probes.action",
        "Off, Audit, Enforce",
        id="action-unknown",
    ),
    pytest.param(
        policy(checks(probes={"severity": "urgent"})),
        "spec.workloads.checks.probes.severity",
        "low, medium, high, critical",
        id="severity-unknown",
    ),
    pytest.param(
        policy(checks(probes={"timeout": 3})),
        "spec.workloads.checks.probes.timeout",
        "allowed: action, allowed, severity",
        id="check-param-unknown",
    ),
    pytest.param(
        policy(checks(probes=None)),
        "spec.workloads.checks.probes",
        "an object, not null",
        id="check-null",
    ),
    pytest.param(
        policy(checks(imageRegistry={"allowed": "registry.example.com/"})),
        "spec.workloads.checks.imageRegistry.allowed",
        "a list",
        id="allowed-string",
    ),
    pytest.param(
        policy({"workloads": {"enforcement": {"gracePeriodSeconds": -1}}}),
        "spec.workloads.enforcement.gracePeriodSeconds",
        "at least 0",
        id="grace-negative",
    ),
    pytest.param(
        policy({"workloads": {"enforcement": {"gracePeriodSeconds": 604801}}}),
        "spec.workloads.enforcement.gracePeriodSeconds",
        "at most 604800",
        id="grace-above-week",
    ),
    pytest.param(
        policy({"workloads": {"enforcement": {"maxEvictionsPerMinute": 0}}}),
        "spec.workloads.enforcement.maxEvictionsPerMinute",
        "at least 1",
        id="evictions-zero",
    ),
    pytest.param(
        policy({"workloads": {"enforcement": {"dryRun": "true"}}}),
        "spec.workloads.enforcement.dryRun",
        "true or false",
        id="dry-run-string",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(reason=None)]}}),
        "spec.workloads.exemptions[0].reason",
        "is required",
        id="exemption-no-reason",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires=None)]}}),
        "spec.workloads.exemptions[0].expires",
        "is required",
        id="exemption-no-expiry",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(), exemption(reason="  ")]}}),
        "spec.workloads.exemptions[1].reason",
        "blank",
        id="exemption-blank-reason",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="next week")]}}),
        "spec.workloads.exemptions[0].expires",
        "RFC 3339",
        id="exemption-expires-words",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="2027-01-31T00:00:00")]}}),
        "spec.workloads.exemptions[0].expires",
        "RFC 3339",
        id="exemption-expires-no-zone",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(expires="2027-02-30T00:00:00Z")]}}),
        "spec.workloads.exemptions[0].expires",
        "RFC 3339",
        id="exemption-expires-no-such-day",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(checks=["probes", "probes"])]}}),
        "spec.workloads.exemptions[0].checks",
        "repeat",
        id="exemption-checks-repeated",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption(selector={"matchLabels": []})]}}),
        "spec.workloads.exemptions[0].selector.matchLabels",
        "an object",
        id="exemption-selector",
    ),
    pytest.param(
        policy({"workloads": {"exemptions": [exemption() for _ in range(101)]}}),
        "spec.workloads.exemptions",
        "at most 100 items",
        id="exemptions-too-many",
    ),
    pytest.param(
        policy(status={"conditions": [{"type": "Ready", "status": "Yes"}]}),
        "status.conditions[0].status",
        "True, False, Unknown",
        id="status-condition",
    ),
]


@pytest.mark.parametrize(("obj", "field", "fragment"), BAD)
def test_bad_policy_error_names_the_field(obj: dict[str, Any], field: str, fragment: str) -> None:
    errors = schema.validate(obj)
    assert field in [e.field for e in errors], errors
    message = next(e.message for e in errors if e.field == field)
    assert fragment in message


def test_every_error_is_reported_in_field_order() -> None:
    exemptions = [exemption() for _ in range(11)]
    exemptions[10]["expires"] = "soon"
    exemptions[2]["expires"] = "later"
    obj = policy({"priority": 5000, "mode": "x", "workloads": {"exemptions": exemptions}})
    assert [e.field for e in schema.validate(obj)] == [
        "spec.mode",
        "spec.priority",
        "spec.workloads.exemptions[2].expires",
        "spec.workloads.exemptions[10].expires",
    ]


def test_unquoted_off_is_reported_once() -> None:
    # YAML 1.1 reads Off as false: the type and enum errors must not both show up.
    obj = yaml.safe_load("spec: {workloads: {checks: {probes: {action: Off}}}}")
    errors = schema.validate({**policy(), **obj})
    assert len(errors) == 1


def test_errors_unpack_as_field_and_message() -> None:
    (error,) = schema.validate(policy({"mode": "x"}))
    field, message = error
    assert (field, message) == (error.field, error.message)
    assert str(error) == f"spec.mode: {message}"


def test_yaml_timestamps_are_strings_again() -> None:
    # Unquoted in YAML, a timestamp loads as a datetime; kubectl sends it as a string.
    expires = datetime.datetime(2027, 1, 31, tzinfo=datetime.UTC)
    obj = policy({"workloads": {"exemptions": [exemption(expires=expires)]}})
    assert schema.validate(obj) == []


def test_yaml_timestamp_without_zone_is_refused() -> None:
    # The API server refuses a date-time without a zone; PyYAML reads one as naive.
    obj = yaml.safe_load(
        "spec: {workloads: {exemptions: [{reason: r, expires: 2027-01-31T00:00:00}]}}"
    )
    errors = schema.validate({**policy(), **obj})
    assert [e.field for e in errors] == ["spec.workloads.exemptions[0].expires"]


def test_yaml_date_without_time_is_refused() -> None:
    obj = yaml.safe_load("spec: {workloads: {exemptions: [{reason: r, expires: 2027-01-31}]}}")
    errors = schema.validate({**policy(), **obj})
    assert [e.field for e in errors] == ["spec.workloads.exemptions[0].expires"]


def test_apply_defaults_fills_nested_defaults_and_keeps_values() -> None:
    obj = policy({"hardening": {"networkPolicy": {"enabled": False}}})
    before = copy.deepcopy(obj)
    out = schema.apply_defaults(obj)
    assert obj == before  # the input is not modified
    np = out["spec"]["hardening"]["networkPolicy"]
    assert np == {
        "enabled": False,
        "policyTypes": ["Ingress", "Egress"],
        "allowDNS": True,
        "allowSameNamespace": False,
    }
    assert out["spec"]["workloads"]["enforcement"]["gracePeriodSeconds"] == 300


def test_apply_defaults_leaves_explicit_values_alone() -> None:
    obj = policy(lr(defaultRequest={"cpu": "10m"}))
    out = schema.apply_defaults(obj)
    # A given map replaces the default map whole, as the API server does.
    assert out["spec"]["hardening"]["limitRange"]["defaultRequest"] == {"cpu": "10m"}


def test_openapi_schema_rejects_unknown_version() -> None:
    with pytest.raises(KeyError, match="v9"):
        schema.openapi_schema("v9")


def test_a_string_over_max_length_is_not_run_through_its_pattern() -> None:
    # The label-key pattern backtracks quadratically: 1 MB of "a." would take minutes.
    # Over maxLength the length error alone is reported (and nothing hangs).
    condition = {
        "type": "a." * 500_000 + "!",
        "status": "True",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "reason": "Reconciled",
        "message": "m",
    }
    errors = schema.validate(policy({}, status={"conditions": [condition]}))
    assert [(e.field, e.message) for e in errors] == [
        ("status.conditions[0].type", "must be at most 316 characters long")
    ]
