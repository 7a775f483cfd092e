"""The admission generator's pure contract: coverage of the registry, determinism, how a
policy maps onto policies/bindings, exemptions and their expiry, names and ownership.

Whether the generated CEL gives the engine's verdict is proven against a real API server in
``tests/admission/test_admission_verdict.py``.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import json
import re
from typing import Any

import pytest

from kube_guardrails import OPERATOR_NAMESPACE, admission, planning
from kube_guardrails.admission import cel, rules
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import selectors

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


def parse(spec: dict[str, Any], *, name: str = "p", uid: str = "u-1") -> policy_model.Policy:
    return policy_model.parse(
        {"metadata": {"name": name, "uid": uid}, "spec": spec}, known_checks=registry.ids()
    )


def validations(vap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """check id -> validation (the id is the start of every message)."""
    out = {}
    for v in vap["spec"]["validations"]:
        text = v.get("message") or v["messageExpression"]
        m = re.search(r'"(\w+) \(kube-guardrails policy', text) or re.match(r"^(\w+) \(", text)
        assert m, text
        out[m.group(1)] = v
    return out


# --------------------------------------------------------------------------- registry


def test_every_check_has_cel_or_is_runtime_only() -> None:
    ids = registry.ids()
    missing = sorted(ids - set(rules.RULES) - set(rules.RUNTIME_ONLY))
    assert not missing, f"checks with neither CEL nor a RUNTIME_ONLY reason: {missing}"
    assert not set(rules.RULES) & set(rules.RUNTIME_ONLY)
    assert set(rules.RULES) | set(rules.RUNTIME_ONLY) == ids, "entries for unknown checks"
    assert all(reason.strip() for reason in rules.RUNTIME_ONLY.values())


POLICIES = [
    {},
    {"workloads": {"podSecurity": "restricted"}},
    {"workloads": {"podSecurity": "none", "checks": {"privileged": {"action": "Enforce"}}}},
    {
        "mode": "Enforce",
        "workloads": {
            "podSecurity": "baseline",
            "checks": {
                "runAsNonRoot": {"action": "Audit"},
                "probes": {"action": "Off"},
                "imageRegistry": {"action": "Enforce", "allowed": ["registry.example.com/"]},
                "hostPorts": {"severity": "low"},
            },
        },
    },
]


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize("spec", POLICIES)
def test_same_input_same_output(spec: dict[str, Any]) -> None:
    one = admission.build(parse(spec), now=NOW)
    two = admission.build(parse(copy.deepcopy(spec)), now=NOW)
    assert json.dumps(one.objects) == json.dumps(two.objects)
    assert one == two


def test_audit_mode_warns_everything_and_gates_pods() -> None:
    pol = parse({})
    desired = admission.build(pol, now=NOW)
    deny, warn = admission.object_name("p", "deny"), admission.object_name("p", "warn")
    assert list(desired.policies) == [deny, warn]
    assert set(validations(desired.policies[deny])) == {admission.GATE_CHECK}
    assert set(validations(desired.policies[warn])) == {
        a.check.id for a in planning.active_checks(pol) if a.check.id != "imageRegistry"
    }  # imageRegistry without an allow-list cannot fail: no validation
    assert desired.bindings[deny]["spec"]["validationActions"] == ["Deny"]
    assert desired.bindings[warn]["spec"]["validationActions"] == ["Warn", "Audit"]
    assert [o["metadata"]["name"] for o in desired.objects] == [deny, deny, warn, warn]


def test_enforce_mode_denies_only_enforce_action_checks() -> None:
    pol = parse(POLICIES[3])
    desired = admission.build(pol, now=NOW)
    deny = validations(desired.policies[admission.object_name("p", "deny")])
    warn = validations(desired.policies[admission.object_name("p", "warn")])
    actions = {a.check.id: a.action for a in planning.active_checks(pol)}
    assert set(deny) == {c for c, a in actions.items() if a == "Enforce"} | {admission.GATE_CHECK}
    assert set(warn) == {c for c, a in actions.items() if a == "Audit"}
    assert "runAsNonRoot" in warn and "imageRegistry" in deny and "probes" not in warn


def test_no_hardening_no_gate_and_nothing_to_deny_no_deny_pair() -> None:
    spec = {"hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}}}
    desired = admission.build(parse(spec), now=NOW)
    assert list(desired.policies) == [admission.object_name("p", "warn")]
    assert list(admission.build(parse({}), now=NOW, readiness_gate=False).policies) == [
        admission.object_name("p", "warn")
    ]


def test_binding_selects_the_policy_s_namespaces_minus_system_ones() -> None:
    spec = {
        "namespaceSelector": {
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x", "b"]}],
        },
        "excludeNamespaces": ["sandbox-*"],
    }
    desired = admission.build(parse(spec), now=NOW, operator_namespace="ops")
    binding = desired.bindings[admission.object_name("p", "warn")]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"team": "a"},
        "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["b", "x"]},
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-node-lease", "kube-public", "kube-system", "ops"],
            },
        ],
    }
    conditions = desired.policies[admission.object_name("p", "warn")]["spec"]["matchConditions"]
    assert any("request.namespace.matches" in c["expression"] for c in conditions)


def test_owned_by_the_policy_with_our_labels() -> None:
    desired = admission.build(parse({}, uid="abc"), now=NOW)
    for obj in desired.objects:
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "kube-guardrails.io/v1alpha1",
                "kind": "GuardrailPolicy",
                "name": "p",
                "uid": "abc",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
        assert meta["labels"] == {
            "app.kubernetes.io/managed-by": "kube-guardrails",
            "kube-guardrails.io/policy": "p",
        }
    no_uid = admission.build(parse({}, uid=""), now=NOW)
    assert all("ownerReferences" not in o["metadata"] for o in no_uid.objects)


def test_long_policy_names_give_valid_distinct_object_names() -> None:
    long_a, long_b = "a" * 250, "a" * 249 + "b"
    names = {admission.object_name(n, w) for n in (long_a, long_b) for w in ("deny", "warn")}
    assert len(names) == 4
    assert all(len(n) <= 253 for n in names)
    assert admission.all_names("p") == ("kube-guardrails.p.deny", "kube-guardrails.p.warn")


def test_default_operator_namespace_is_excluded() -> None:
    desired = admission.build(parse({}), now=NOW)
    binding = desired.bindings[admission.object_name("p", "warn")]
    (expr,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert OPERATOR_NAMESPACE in expr["values"]


# --------------------------------------------------------------------------- exemptions


def exemption(expires: str, **extra: Any) -> dict[str, Any]:
    return {"reason": "ticket", "expires": expires, **extra}


def test_expired_exemptions_are_left_out_and_the_next_expiry_is_returned() -> None:
    spec = {
        "workloads": {
            "exemptions": [
                exemption("2026-01-01T00:00:00Z", checks=["privileged"]),  # expired
                exemption("2027-03-01T00:00:00Z", checks=["hostPorts"], namespaces=["t-*"]),
                exemption("2026-12-01T00:00:00Z", selector={"matchLabels": {"app": "x"}}),
            ]
        }
    }
    desired = admission.build(parse(spec), now=NOW)
    assert desired.next_change == datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    vap = desired.policies[admission.object_name("p", "warn")]
    names = [v["name"] for v in vap["spec"]["variables"]]
    assert "exemption0" in names and "exemption1" in names and "exemption2" not in names
    checks = validations(vap)
    # exemption0 (hostPorts, in t-*) and exemption1 (everything, app=x): by check id.
    assert checks["hostPorts"]["expression"].startswith(
        "variables.exemption0 || variables.exemption1 || "
    )
    assert checks["privileged"]["expression"].startswith("variables.exemption1 || size(")
    # At the expiry itself the exemption no longer applies (Exemption.expired: now >= expires).
    later = admission.build(parse(spec), now=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC))
    assert later.next_change == datetime.datetime(2027, 3, 1, tzinfo=datetime.UTC)
    assert (
        admission.build(
            parse(spec), now=datetime.datetime(2028, 1, 1, tzinfo=datetime.UTC)
        ).next_change
        is None
    )


def test_exemption_terms_are_cel_of_namespace_globs_and_selectors() -> None:
    spec = {
        "workloads": {
            "exemptions": [
                exemption(
                    "2027-01-01T00:00:00Z",
                    namespaces=["team-?", "legacy"],
                    selector={
                        "matchLabels": {"app": "old"},
                        "matchExpressions": [{"key": "tier", "operator": "Exists"}],
                    },
                )
            ]
        }
    }
    vap = admission.build(parse(spec), now=NOW).policies[admission.object_name("p", "warn")]
    (term,) = [v for v in vap["spec"]["variables"] if v["name"] == "exemption0"]
    assert term["expression"] == (
        '(request.namespace.matches("(?:^team\\\\-(?s:.)$)|(?:^legacy$)")) && '
        '(("app" in variables.labels && variables.labels["app"] in ["old"]) && '
        '("tier" in variables.labels))'
    )


# --------------------------------------------------------------------------- CEL helpers

NAMES = ["team-a", "team-ab", "team-", "teamx", "a", "kube-system", "x-1", "sandbox-9", "[a]", "b"]
PATTERNS = ["team-*", "team-?", "*", "?", "kube-*", "[ab]", "[!ab]", "x-[0-9]", "[a", "*-*", "b*"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_glob_regex_matches_like_fnmatch(pattern: str) -> None:
    regex = re.compile(cel.glob_regex(pattern))
    for name in NAMES:
        assert bool(regex.search(name)) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("a", '"a"'),
        ('q"uote', '"q\\"uote"'),
        ("back\\slash", '"back\\\\slash"'),
        ("nl\n", '"nl\\n"'),
    ],
)
def test_string_literals_are_escaped(value: str, literal: str) -> None:
    assert cel.string(value) == literal


def test_label_selector_round_trips() -> None:
    raw = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "c", "operator": "DoesNotExist"}],
    }
    sel = selectors.parse_selector(raw)
    again = selectors.parse_selector(cel.label_selector(sel))
    assert set(again.requirements) == set(sel.requirements)
