"""Desired managed objects (builders) and the live-vs-desired comparison."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kube_guardrails import builders
from kube_guardrails.model import policy as policy_model

OWNED = {
    "apiVersion": "kube-guardrails.io/v1alpha1",
    "kind": "GuardrailPolicy",
    "name": "baseline",
    "uid": "u-1",
    "controller": True,
    "blockOwnerDeletion": False,
}
DNS_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
SAME_NS = {"podSelector": {}}


def make(hardening: dict[str, Any] | None = None, **spec: Any) -> policy_model.Policy:
    return policy_model.parse(
        {
            "metadata": {"name": "baseline", "uid": "u-1", "generation": 1},
            "spec": {"hardening": hardening or {}, **spec},
        }
    )


@pytest.mark.parametrize(
    ("network_policy", "expected_spec"),
    [
        pytest.param(
            {},
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [DNS_RULE]},
            id="defaults-deny-both-allow-dns",
        ),
        pytest.param(
            {"allowDNS": False},
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            id="deny-everything",
        ),
        pytest.param(
            {"policyTypes": ["Ingress"]},
            {"podSelector": {}, "policyTypes": ["Ingress"]},
            id="ingress-only-no-dns-rule",
        ),
        pytest.param(
            {"policyTypes": ["Egress"], "allowSameNamespace": True},
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [DNS_RULE, {"to": [SAME_NS]}],
            },
            id="egress-dns-and-same-namespace",
        ),
        pytest.param(
            {"allowSameNamespace": True, "allowDNS": False},
            {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [SAME_NS]}],
                "egress": [{"to": [SAME_NS]}],
            },
            id="same-namespace-both-ways",
        ),
        pytest.param(
            {"policyTypes": ["Egress", "Ingress"]},
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [DNS_RULE]},
            id="types-in-canonical-order",
        ),
    ],
)
def test_network_policy(network_policy: dict[str, Any], expected_spec: dict[str, Any]) -> None:
    obj = builders.build_network_policy("team-a", make({"networkPolicy": network_policy}))
    assert obj == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "kube-guardrails-default-deny",
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "kube-guardrails",
                "kube-guardrails.io/policy": "baseline",
            },
            "ownerReferences": [OWNED],
        },
        "spec": expected_spec,
    }


@pytest.mark.parametrize(
    ("limit_range", "expected_limit"),
    [
        pytest.param(
            {},
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "512Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            },
            id="defaults",
        ),
        pytest.param(
            {"default": {"cpu": "1"}, "defaultRequest": {"cpu": "200m"}},
            {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "200m"}},
            id="cpu-only",
        ),
        pytest.param(
            {"default": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "200m"}},
            {
                "type": "Container",
                "default": {"cpu": "1", "memory": "1Gi"},
                "defaultRequest": {"cpu": "200m", "memory": "1Gi"},
            },
            id="server-defaulting-request-from-limit",
        ),
        pytest.param(
            {"default": {}, "defaultRequest": {}, "max": {"cpu": "2"}},
            {
                "type": "Container",
                "default": {"cpu": "2"},
                "defaultRequest": {"cpu": "2"},
                "max": {"cpu": "2"},
            },
            id="server-defaulting-limit-from-max",
        ),
    ],
)
def test_limit_range(limit_range: dict[str, Any], expected_limit: dict[str, Any]) -> None:
    obj = builders.build_limit_range("team-a", make({"limitRange": limit_range}))
    assert obj["kind"] == "LimitRange" and obj["apiVersion"] == "v1"
    assert obj["metadata"]["name"] == "kube-guardrails-limits"
    assert obj["spec"] == {"limits": [expected_limit]}


def test_resource_quota() -> None:
    pol = make({"resourceQuota": {"enabled": True, "hard": {"pods": "20", "requests.cpu": "4"}}})
    obj = builders.build_resource_quota("team-a", pol)
    assert obj["metadata"]["name"] == "kube-guardrails-quota"
    assert obj["spec"] == {"hard": {"pods": "20", "requests.cpu": "4"}}


@pytest.mark.parametrize(
    ("hardening", "present"),
    [
        pytest.param({}, {"NetworkPolicy", "LimitRange"}, id="defaults"),
        pytest.param(
            {"resourceQuota": {"enabled": True, "hard": {"pods": "5"}}},
            {"NetworkPolicy", "LimitRange", "ResourceQuota"},
            id="with-quota",
        ),
        pytest.param({"networkPolicy": {"enabled": False}}, {"LimitRange"}, id="no-netpol"),
        pytest.param(
            {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
            set(),
            id="nothing",
        ),
    ],
)
def test_desired_objects(hardening: dict[str, Any], present: set[str]) -> None:
    desired = builders.desired_objects("team-a", make(hardening))
    assert set(desired) == set(builders.MANAGED_KINDS)
    assert {k.kind for k, v in desired.items() if v is not None} == present


def test_no_policy_means_nothing_desired() -> None:
    assert all(v is None for v in builders.desired_objects("team-a", None).values())


def test_policy_without_uid_gets_no_owner_reference() -> None:
    pol = policy_model.parse({"metadata": {"name": "from-file"}, "spec": {}})
    assert "ownerReferences" not in builders.build_limit_range("a", pol)["metadata"]


# ----------------------------------------------------------------------- comparison

DESIRED_NP = builders.build_network_policy("team-a", make({"networkPolicy": {}}))
DESIRED_LR = builders.build_limit_range("team-a", make({"limitRange": {}}))


def live(desired: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """What the server would return for ``desired``, then edited by someone."""
    obj = copy.deepcopy(desired)
    obj["metadata"].update(uid="x", resourceVersion="42", creationTimestamp="2026-01-01T00:00:00Z")
    obj["metadata"]["managedFields"] = [{"manager": "kube-guardrails"}]
    obj["status"] = {}
    edit(obj)
    return obj


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        cur: Any = obj
        for p in parents:
            cur = cur[int(p)] if isinstance(cur, list) else cur.setdefault(p, {})
        if isinstance(cur, list):
            cur[int(last)] = value
        elif value is ...:
            del cur[last]
        else:
            cur[last] = value

    return edit


@pytest.mark.parametrize(
    ("desired", "edit", "expected"),
    [
        pytest.param(DESIRED_NP, lambda o: None, True, id="np-as-stored"),
        pytest.param(
            DESIRED_NP, _set("metadata.labels.team", "a"), True, id="np-someone-adds-a-label"
        ),
        pytest.param(
            DESIRED_NP, _set("metadata.annotations", {"note": "x"}), True, id="np-annotation"
        ),
        pytest.param(DESIRED_NP, _set("spec.ingress", []), True, id="np-empty-list-is-absent"),
        pytest.param(
            DESIRED_NP,
            lambda o: o["metadata"]["labels"].update({"kube-guardrails.io/policy": "other"}),
            False,
            id="np-our-label-changed",
        ),
        pytest.param(DESIRED_NP, _set("metadata.ownerReferences", []), False, id="np-owner-gone"),
        pytest.param(
            DESIRED_NP,
            _set("spec.ingress", [{"from": [{"podSelector": {}}]}]),
            False,
            id="np-extra-allow-rule",
        ),
        pytest.param(
            DESIRED_NP,
            _set("spec.podSelector", {"matchLabels": {"app": "x"}}),
            False,
            id="np-narrowed-selector",
        ),
        pytest.param(DESIRED_NP, _set("spec.policyTypes", ["Ingress"]), False, id="np-types"),
        pytest.param(DESIRED_NP, _set("spec.egress", ...), False, id="np-dns-rule-removed"),
        pytest.param(DESIRED_LR, lambda o: None, True, id="lr-as-stored"),
        pytest.param(
            DESIRED_LR,
            _set("spec.limits.0.default.cpu", "0.5"),
            True,
            id="lr-normalised-quantity",
        ),
        pytest.param(
            DESIRED_LR, _set("spec.limits.0.default.cpu", "8"), False, id="lr-limit-raised"
        ),
        pytest.param(
            DESIRED_LR,
            _set("spec.limits.0.max", {"cpu": "4"}),
            False,
            id="lr-extra-max",
        ),
        pytest.param(
            DESIRED_LR,
            _set("spec.limits.0.default.ephemeral-storage", "1Gi"),
            False,
            id="lr-extra-resource",
        ),
    ],
)
def test_matches(
    desired: dict[str, Any], edit: Callable[[dict[str, Any]], None], expected: bool
) -> None:
    assert builders.matches(live(desired, edit), desired) is expected


_GP = {"apiVersion": "kube-guardrails.io/v1alpha1", "kind": "GuardrailPolicy", "name": "p"}


@pytest.mark.parametrize(
    ("meta", "uids", "expected"),
    [
        pytest.param({"ownerReferences": [{**_GP, "uid": "u1"}]}, None, True, id="owned"),
        pytest.param(
            {"ownerReferences": [{**_GP, "uid": "u1"}]}, {"u1", "u2"}, True, id="owned-known"
        ),
        pytest.param(
            {"ownerReferences": [{**_GP, "uid": "forged"}]}, {"u1"}, False, id="unknown-uid"
        ),
        pytest.param(
            {"labels": {"app.kubernetes.io/managed-by": "kube-guardrails"}},
            None,
            False,
            id="label-only-is-not-ownership",
        ),
        pytest.param(
            {"ownerReferences": [{**_GP, "uid": "u1"}], "labels": {}},
            {"u1"},
            True,
            id="managed-by-label-removed-still-ours",
        ),
        pytest.param(
            {"ownerReferences": [{**_GP, "apiVersion": "example.com/v1", "uid": "u1"}]},
            None,
            False,
            id="other-group",
        ),
        pytest.param(
            {"ownerReferences": [{**_GP, "kind": "Deployment", "uid": "u1"}]},
            None,
            False,
            id="other-kind",
        ),
        pytest.param({"ownerReferences": "junk"}, None, False, id="malformed"),
        pytest.param({}, None, False, id="no-owner"),
    ],
)
def test_is_managed(meta: dict[str, Any], uids: set[str] | None, expected: bool) -> None:
    assert builders.is_managed({"metadata": meta}, policy_uids=uids) is expected
