"""GuardrailPolicy parsing: defaults, errors with field paths, selection and priority."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kube_guardrails import planning
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model


def gp(spec: Any = None, name: str = "p", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "spec": {} if spec is None else spec}


def test_defaults_equal_the_crd_defaults() -> None:
    pol = policy_model.parse(gp(uid="u", generation=3))
    assert pol.mode == "Audit" and pol.priority == 0 and not pol.enforcing
    assert pol.namespace_selector.empty and pol.exclude_namespaces == ()
    np = pol.hardening.network_policy
    assert (np.enabled, np.policy_types, np.allow_dns, np.allow_same_namespace) == (
        True,
        ("Ingress", "Egress"),
        True,
        False,
    )
    lr = pol.hardening.limit_range
    assert lr.enabled and dict(lr.default) == {"cpu": "500m", "memory": "512Mi"}
    assert dict(lr.default_request) == {"cpu": "100m", "memory": "128Mi"}
    assert not pol.hardening.resource_quota.enabled
    assert pol.workloads.pod_security == "baseline"
    assert (pol.uid, pol.generation) == ("u", 3)


ERRORS = [
    # (id, spec, field, message fragment)
    ("mode", {"mode": "Block"}, "spec.mode", "must be one of Audit, Enforce"),
    ("priority-type", {"priority": "high"}, "spec.priority", "must be an integer"),
    ("priority-bool", {"priority": True}, "spec.priority", "must be an integer"),
    ("priority-range", {"priority": 5000}, "spec.priority", "between -1000 and 1000"),
    ("unknown-field", {"modes": "Audit"}, "spec.modes", "unknown field"),
    (
        "selector-operator",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}},
        "spec.namespaceSelector.matchExpressions[0].operator",
        "must be one of",
    ),
    (
        "selector-values",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "spec.namespaceSelector.matchExpressions[0].values",
        "non-empty",
    ),
    (
        "selector-labels",
        {"namespaceSelector": {"matchLabels": {"a": 1}}},
        "spec.namespaceSelector.matchLabels.a",
        "strings",
    ),
    ("exclude-type", {"excludeNamespaces": "team-*"}, "spec.excludeNamespaces", "list"),
    ("exclude-item", {"excludeNamespaces": ["", "x"]}, "spec.excludeNamespaces[0]", "non-empty"),
    (
        "policy-type",
        {"hardening": {"networkPolicy": {"policyTypes": ["Ingress", "Outgress"]}}},
        "spec.hardening.networkPolicy.policyTypes[1]",
        "Ingress or Egress",
    ),
    (
        "policy-types-repeat",
        {"hardening": {"networkPolicy": {"policyTypes": ["Egress", "Egress"]}}},
        "spec.hardening.networkPolicy.policyTypes",
        "must not repeat",
    ),
    (
        "policy-types-empty",
        {"hardening": {"networkPolicy": {"policyTypes": []}}},
        "spec.hardening.networkPolicy.policyTypes",
        "when enabled",
    ),
    (
        "allow-dns-type",
        {"hardening": {"networkPolicy": {"allowDNS": "yes"}}},
        "spec.hardening.networkPolicy.allowDNS",
        "true or false",
    ),
    (
        "quantity",
        {"hardening": {"limitRange": {"default": {"cpu": "lots"}}}},
        "spec.hardening.limitRange.default.cpu",
        "",
    ),
    (
        "resource-name",
        {"hardening": {"limitRange": {"default": {"gpu": "1"}}}},
        "spec.hardening.limitRange.default.gpu",
        "must be one of",
    ),
    (
        "request-above-limit",
        {"hardening": {"limitRange": {"defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}}}},
        "spec.hardening.limitRange.defaultRequest.cpu",
        "above default.cpu",
    ),
    (
        "limit-above-max",
        {"hardening": {"limitRange": {"default": {"memory": "2Gi"}, "max": {"memory": "1Gi"}}}},
        "spec.hardening.limitRange.default.memory",
        "above max.memory",
    ),
    (
        "quota-empty",
        {"hardening": {"resourceQuota": {"enabled": True}}},
        "spec.hardening.resourceQuota.hard",
        "at least one",
    ),
    (
        "quota-quantity",
        {"hardening": {"resourceQuota": {"enabled": True, "hard": {"pods": "many"}}}},
        "spec.hardening.resourceQuota.hard.pods",
        "",
    ),
    ("hardening-type", {"hardening": []}, "spec.hardening", "must be an object"),
    ("level", {"workloads": {"podSecurity": "strict"}}, "spec.workloads.podSecurity", "one of"),
    (
        "check-unknown",
        {"workloads": {"checks": {"noSuchCheck": {"action": "Audit"}}}},
        "spec.workloads.checks.noSuchCheck",
        "unknown check",
    ),
    (
        "check-action",
        {"workloads": {"checks": {"probes": {"action": "Deny"}}}},
        "spec.workloads.checks.probes.action",
        "must be one of Off, Audit, Enforce",
    ),
    (
        "registry-allowed",
        {"workloads": {"checks": {"imageRegistry": {"allowed": "registry.example.com/"}}}},
        "spec.workloads.checks.imageRegistry.allowed",
        "list of registry prefixes",
    ),
    (
        "grace-period",
        {"workloads": {"enforcement": {"gracePeriodSeconds": -1}}},
        "spec.workloads.enforcement.gracePeriodSeconds",
        "between 0",
    ),
    (
        "exemption-reason",
        {"workloads": {"exemptions": [{"expires": "2027-01-31T00:00:00Z"}]}},
        "spec.workloads.exemptions[0].reason",
        "is required",
    ),
    (
        "exemption-expires",
        {"workloads": {"exemptions": [{"reason": "SEC-1"}]}},
        "spec.workloads.exemptions[0].expires",
        "is required",
    ),
    (
        "exemption-time-zone",
        {"workloads": {"exemptions": [{"reason": "SEC-1", "expires": "2027-01-31T00:00:00"}]}},
        "spec.workloads.exemptions[0].expires",
        "no time zone",
    ),
    (
        "exemption-check",
        {
            "workloads": {
                "exemptions": [
                    {"reason": "r", "expires": "2027-01-01T00:00:00Z", "checks": ["nope"]}
                ]
            }
        },
        "spec.workloads.exemptions[0].checks[0]",
        "unknown check",
    ),
]


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [pytest.param(spec, field, frag, id=case) for case, spec, field, frag in ERRORS],
)
def test_errors_name_the_field(spec: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(policy_model.PolicyError) as caught:
        policy_model.parse(gp(spec), known_checks=registry.ids())
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        pytest.param([], "", id="not-a-mapping"),
        pytest.param({"metadata": {}}, "metadata.name", id="no-name"),
        pytest.param({"metadata": {"name": "p"}, "spec": "x"}, "spec", id="spec-not-object"),
    ],
)
def test_malformed_objects(obj: Any, field: str) -> None:
    with pytest.raises(policy_model.PolicyError) as caught:
        policy_model.parse(obj)
    assert caught.value.field == field


def test_exemption_parsing_and_expiry() -> None:
    pol = policy_model.parse(
        gp(
            {
                "workloads": {
                    "exemptions": [
                        {
                            "namespaces": ["team-a"],
                            "selector": {"matchLabels": {"app": "legacy"}},
                            "checks": ["runAsNonRoot"],
                            "reason": "vendor image, ticket SEC-123",
                            "expires": "2027-01-31T00:00:00Z",
                        }
                    ]
                }
            }
        ),
        known_checks=registry.ids(),
    )
    (ex,) = pol.workloads.exemptions
    expiry = datetime.datetime(2027, 1, 31, tzinfo=datetime.UTC)
    assert ex.expires == expiry and ex.checks == frozenset({"runAsNonRoot"})
    assert not ex.expired(expiry - datetime.timedelta(seconds=1))
    assert ex.expired(expiry)


# ----------------------------------------------------------------- selection and priority

OPERATOR_NS = "kube-guardrails-system"


@pytest.mark.parametrize(
    ("spec", "namespace", "labels", "selected"),
    [
        pytest.param({}, "team-a", {}, True, id="empty-selector-selects-all"),
        pytest.param({}, "kube-system", {}, False, id="kube-system-always-excluded"),
        pytest.param({}, "kube-public", {}, False, id="kube-public-always-excluded"),
        pytest.param({}, "kube-node-lease", {}, False, id="kube-node-lease-always-excluded"),
        pytest.param({}, OPERATOR_NS, {}, False, id="operator-namespace-excluded"),
        pytest.param({"excludeNamespaces": ["team-*"]}, "team-a", {}, False, id="glob-excluded"),
        pytest.param({"excludeNamespaces": ["team-?"]}, "team-ab", {}, True, id="glob-one-char"),
        pytest.param(
            {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
            "a",
            {"env": "prod"},
            True,
            id="match-labels",
        ),
        pytest.param(
            {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
            "a",
            {"env": "dev"},
            False,
            id="match-labels-other-value",
        ),
        pytest.param(
            {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists"}]}},
            "a",
            {"env": ""},
            True,
            id="exists",
        ),
        pytest.param(
            {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]
                }
            },
            "a",
            {},
            True,
            id="not-in-missing-key",
        ),
        pytest.param(
            {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]
                }
            },
            "a",
            {"tier": "x"},
            False,
            id="does-not-exist",
        ),
    ],
)
def test_selects_namespace(
    spec: dict[str, Any], namespace: str, labels: dict[str, str], selected: bool
) -> None:
    pol = policy_model.parse(gp(spec))
    assert (
        policy_model.selects_namespace(
            pol, name=namespace, labels=labels, operator_namespace=OPERATOR_NS
        )
        is selected
    )


@pytest.mark.parametrize(
    ("policies", "order"),
    [
        pytest.param([("b", 0), ("a", 0)], ["a", "b"], id="ties-by-name"),
        pytest.param([("a", 0), ("b", 5)], ["b", "a"], id="priority-first"),
        pytest.param([("a", -5), ("b", 0), ("c", 5)], ["c", "b", "a"], id="negative"),
        pytest.param([], [], id="none"),
    ],
)
def test_matching_order_and_governing_policy(
    policies: list[tuple[str, int]], order: list[str]
) -> None:
    pols = [policy_model.parse(gp({"priority": prio}, name=name)) for name, prio in policies]
    found = planning.matching_policies(
        pols, namespace="team-a", labels={}, operator_namespace=OPERATOR_NS
    )
    assert [p.name for p in found] == order
    governing = planning.governing_policy(
        pols, namespace="team-a", labels={}, operator_namespace=OPERATOR_NS
    )
    assert (governing.name if governing else None) == (order[0] if order else None)


def test_excluded_namespace_has_no_governing_policy() -> None:
    pols = [policy_model.parse(gp({"excludeNamespaces": ["legacy-*"]}))]
    assert (
        planning.governing_policy(
            pols, namespace="legacy-app", labels={}, operator_namespace=OPERATOR_NS
        )
        is None
    )


# --------------------------------------------------------------------------- hostile values
# What users write reaches the operator's parsers (issue 10, item 4): each must give an
# error naming the field, never an exception of another kind, and in linear time.

from kube_guardrails.model import quantity, selectors  # noqa: E402


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("1e999999999", "not a quantity", id="huge-exponent"),
        pytest.param("1e999", "too large", id="exponent-999"),
        pytest.param(float("nan"), "not a finite number", id="nan"),
        pytest.param(float("inf"), "not a finite number", id="inf"),
        pytest.param(10**5000, "too large", id="huge-int"),
        pytest.param("1" * 20000 + "x", "longer than 64", id="long-digits"),
        pytest.param("1" * 60 + "x", "not a quantity", id="digits-then-junk"),
        pytest.param(True, "not a quantity", id="bool"),
        pytest.param(["1"], "not a quantity", id="list"),
    ],
)
def test_quantity_refuses_hostile_values(value: object, fragment: str) -> None:
    with pytest.raises(quantity.QuantityError) as info:
        quantity.parse_quantity(value)
    assert fragment in str(info.value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100m", "0.100"),
        ("1e3", "1E+3"),
        ("1.5e-3", "0.0015"),
        (" 2Gi ", "2147483648"),
        ("5.", "5"),
        (".5", "0.5"),
        (3, "3"),
        (0.25, "0.25"),
        ("1e30", "1E+30"),
    ],
)
def test_quantity_still_parses_the_grammar(value: object, expected: str) -> None:
    assert str(quantity.parse_quantity(value)) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("0001-01-01T00:00:00+01:00", "out of range", id="year-1-with-offset"),
        pytest.param("9999-12-31T23:59:59-01:00", "out of range", id="year-9999-with-offset"),
        pytest.param("1969-12-31T00:00:00Z", "out of range", id="before-1970"),
        pytest.param("x" * 100_000, "not an RFC 3339 time", id="long"),
        pytest.param("2027-01-31T00:00:00", "no time zone", id="no-zone"),
    ],
)
def test_parse_time_names_the_field(value: str, fragment: str) -> None:
    with pytest.raises(policy_model.PolicyError) as info:
        policy_model.parse_time(value, "spec.workloads.exemptions[0].expires")
    assert info.value.field == "spec.workloads.exemptions[0].expires"
    assert fragment in info.value.message


def test_parse_time_is_utc() -> None:
    parsed = policy_model.parse_time("2027-01-31T01:00:00+01:00", "f")
    assert parsed == datetime.datetime(2027, 1, 31, tzinfo=datetime.UTC)
    assert parsed.utcoffset() == datetime.timedelta(0)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param({"matchLabels": {"a" * 400: "x"}}, "matchLabels.", id="long-key"),
        pytest.param({"matchLabels": {"app": "x" * 64}}, "matchLabels.app", id="long-value"),
        pytest.param({"matchLabels": {"a b": "x"}}, "matchLabels.a b", id="bad-key"),
        pytest.param({"matchLabels": {f"k{i}": "v" for i in range(101)}}, "", id="too-many"),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["v"] * 101}]},
            "matchExpressions[0].values",
            id="too-many-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["-x"]}]},
            "matchExpressions[0].values[0]",
            id="bad-value",
        ),
    ],
)
def test_selector_bounds(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(selectors.SelectorError) as info:
        selectors.parse_selector(raw)
    assert info.value.field.startswith(field)
    assert len(str(info.value)) < 300


def test_policy_with_overflowing_expiry_is_a_policy_error() -> None:
    raw = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "workloads": {
                "exemptions": [
                    {
                        "checks": ["privileged"],
                        "reason": "r",
                        "expires": "0001-01-01T00:00:00+01:00",
                    }
                ]
            }
        },
    }
    with pytest.raises(policy_model.PolicyError) as info:
        policy_model.parse(raw, known_checks=registry.ids())
    assert info.value.field == "spec.workloads.exemptions[0].expires"


def test_policy_with_huge_quantity_is_a_policy_error() -> None:
    raw = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "p"},
        "spec": {"hardening": {"limitRange": {"defaultRequest": {"cpu": "1e999999999"}}}},
    }
    with pytest.raises(policy_model.PolicyError) as info:
        policy_model.parse(raw, known_checks=registry.ids())
    assert info.value.field == "spec.hardening.limitRange.defaultRequest.cpu"
