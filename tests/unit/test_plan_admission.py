"""``plan`` for the generated admission policies: create / update / delete / unchanged /
conflict per object, as the operator decides (``admission.changed``, ownership by the
ownerReference to a GuardrailPolicy), and how it is shown.

That objects applied from ``admission.build`` come back ``unchanged`` from a real API
server is ``tests/integration/test_plan_cluster.py``'s part.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from kube_guardrails import admission
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.plan import core, render

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
OP_NS = "kube-guardrails-system"
VAP, BINDING = core.VAP, core.BINDING
DENY_NAME = admission.object_name("p", admission.DENY)
WARN_NAME = admission.object_name("p", admission.WARN)

Live = dict[tuple[str, str], dict[str, Any]]


def policy(uid: str = "u-1", **spec: Any) -> policy_model.Policy:
    return policy_model.parse(
        {"metadata": {"name": "p", "uid": uid}, "spec": spec}, known_checks=registry.ids()
    )


AUDIT: dict[str, Any] = {"workloads": {"podSecurity": "baseline"}}
ENFORCE: dict[str, Any] = {"mode": "Enforce", "workloads": {"podSecurity": "baseline"}}
NO_HARDENING: dict[str, Any] = {
    "workloads": {"podSecurity": "baseline"},
    "hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
}


def live_of(pol: policy_model.Policy) -> Live:
    """What the cluster holds once the operator applied ``pol``."""
    desired = admission.build(pol, now=NOW, operator_namespace=OP_NS)
    out: Live = {}
    for name, vap in desired.policies.items():
        out[VAP, name] = copy.deepcopy(vap)
        out[BINDING, name] = copy.deepcopy(desired.bindings[name])
    return out


def actions(plan: core.AdmissionPlan) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action for c in plan.changes}


def both(name: str, action: str) -> dict[tuple[str, str], str]:
    return {(VAP, name): action, (BINDING, name): action}


def _foreign(live: Live) -> Live:
    out = copy.deepcopy(live)
    for obj in out.values():  # ours only by an ownerReference to a GuardrailPolicy
        del obj["metadata"]["ownerReferences"]
    return out


def _edited(live: Live) -> Live:
    out = copy.deepcopy(live)
    out[BINDING, WARN_NAME]["spec"]["validationActions"] = ["Audit"]
    return out


@pytest.mark.parametrize(
    ("file_policy", "live", "expected"),
    [
        # New policy: every pair it needs is created (Audit: warn pair + deny pair for
        # the readiness gate, which is always Deny).
        (policy(**AUDIT), {}, both(DENY_NAME, "create") | both(WARN_NAME, "create")),
        # Nothing to harden: no gate, so only the warn pair.
        (policy(**NO_HARDENING), {}, both(WARN_NAME, "create")),
        # Applied already: unchanged.
        (
            policy(**AUDIT),
            live_of(policy(**AUDIT)),
            both(DENY_NAME, "unchanged") | both(WARN_NAME, "unchanged"),
        ),
        # Audit -> Enforce: the Enforce checks move from the warn to the deny policy;
        # the bindings (selector, actions) stay as they are.
        (
            policy(**ENFORCE),
            live_of(policy(**AUDIT)),
            {
                (VAP, DENY_NAME): "update",
                (BINDING, DENY_NAME): "unchanged",
                (VAP, WARN_NAME): "update",
                (BINDING, WARN_NAME): "unchanged",
            },
        ),
        # Hardening turned off: the deny pair (only the gate) is no longer needed.
        (
            policy(**NO_HARDENING),
            live_of(policy(**AUDIT)),
            both(DENY_NAME, "delete") | both(WARN_NAME, "unchanged"),
        ),
        # Someone edited our binding: the operator writes it back.
        (
            policy(**AUDIT),
            _edited(live_of(policy(**AUDIT))),
            both(DENY_NAME, "unchanged")
            | {(VAP, WARN_NAME): "unchanged"}
            | {(BINDING, WARN_NAME): "update"},
        ),
        # A new uid (the policy was deleted and created again): our ownerReference differs.
        (
            policy(uid="u-2", **AUDIT),
            live_of(policy(**AUDIT)),
            both(DENY_NAME, "update") | both(WARN_NAME, "update"),
        ),
        # Someone else's objects under our names: never touched, whatever we want.
        (
            policy(**AUDIT),
            _foreign(live_of(policy(**AUDIT))),
            both(DENY_NAME, "conflict") | both(WARN_NAME, "conflict"),
        ),
        # ... and not reported when we do not want the name.
        (
            policy(**NO_HARDENING),
            _foreign(live_of(policy(**AUDIT))),
            both(WARN_NAME, "conflict"),
        ),
    ],
)
def test_plan_admission(
    file_policy: policy_model.Policy, live: Live, expected: dict[tuple[str, str], str]
) -> None:
    plan = core.plan_admission([file_policy], live, now=NOW, operator_namespace=OP_NS)
    assert plan.available
    assert actions(plan) == expected


def test_reasons_validation_actions_and_checks() -> None:
    live = _edited(live_of(policy(**AUDIT)))
    del live[VAP, DENY_NAME]
    live[BINDING, DENY_NAME]["metadata"]["labels"]["kube-guardrails.io/policy"] = "other"
    plan = core.plan_admission([policy(**ENFORCE)], live, now=NOW, operator_namespace=OP_NS)
    by = {(c.kind, c.name): c for c in plan.changes}
    assert by[VAP, DENY_NAME].action == "create"
    assert by[BINDING, DENY_NAME].reason == "labels or ownerReference differ"
    assert by[BINDING, WARN_NAME].reason == "spec differs"
    assert by[BINDING, DENY_NAME].validation_actions == ("Deny",)
    assert by[VAP, WARN_NAME].validation_actions == ("Warn", "Audit")
    deny_checks = by[VAP, DENY_NAME].checks
    assert deny_checks[0] == admission.GATE_CHECK
    enforced = {
        a.check.id
        for a in admission.active_checks(policy(**ENFORCE))
        if a.action == "Enforce" and a.check.id not in admission.RUNTIME_ONLY
    }
    assert enforced and set(deny_checks[1:]) <= enforced
    assert "privileged" in deny_checks
    assert "privileged" not in by[VAP, WARN_NAME].checks


def test_labels_only_difference_says_so() -> None:
    live = live_of(policy(**AUDIT))
    live[VAP, WARN_NAME]["metadata"]["labels"]["kube-guardrails.io/policy"] = "other"
    plan = core.plan_admission([policy(**AUDIT)], live, now=NOW, operator_namespace=OP_NS)
    by = {(c.kind, c.name): c for c in plan.changes}
    assert (by[VAP, WARN_NAME].action, by[VAP, WARN_NAME].reason) == (
        "update",
        "labels or ownerReference differ",
    )


def test_deleted_pair_is_described_from_the_live_object() -> None:
    live = live_of(policy(**AUDIT))
    plan = core.plan_admission([policy(**NO_HARDENING)], live, now=NOW, operator_namespace=OP_NS)
    gone = [c for c in plan.changes if c.action == "delete"]
    assert {c.kind for c in gone} == {VAP, BINDING}
    assert all(c.checks == (admission.GATE_CHECK,) for c in gone)
    assert all(c.validation_actions == ("Deny",) for c in gone)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (NO_HARDENING, {admission.WARN}),
        (AUDIT, {admission.WARN, admission.DENY}),
    ],
)
def test_checks_of_reads_every_check_of_the_built_policy(
    spec: dict[str, Any], expected: set[str]
) -> None:
    pol = policy(**spec)
    desired = admission.build(pol, now=NOW, operator_namespace=OP_NS)
    whiches = {n.rsplit(".", 1)[1] for n in desired.policies}
    assert whiches == expected
    in_cel = {
        a.check.id for a in admission.active_checks(pol) if a.check.id not in admission.RUNTIME_ONLY
    }
    found: set[str] = set()
    for vap in desired.policies.values():
        found.update(core.checks_of(vap))
    # Every active check with CEL (those whose rule yields nothing at this level aside).
    assert found - {admission.GATE_CHECK} <= in_cel
    assert len(found - {admission.GATE_CHECK}) >= len(in_cel) - 3
    assert (admission.GATE_CHECK in found) is (admission.DENY in expected)


def test_rendering() -> None:
    plan = core.Plan(
        policies=(),
        namespaces=[],
        now=NOW,
        operator_namespace=OP_NS,
        admission=core.plan_admission(
            [policy(**ENFORCE)], live_of(policy(**AUDIT)), now=NOW, operator_namespace=OP_NS
        ),
    )
    doc = json.loads(render.render_json(plan, context="ctx", sources={}))
    assert doc["admission"]["available"] is True
    first = doc["admission"]["changes"][0]
    assert list(first) == [
        "kind",
        "name",
        "action",
        "reason",
        "policy",
        "validationActions",
        "checks",
    ]
    assert doc["summary"]["admission"] == {"create": 0, "update": 2, "delete": 0, "conflict": 0}
    text = render.render_table(plan, context="ctx", sources={})
    assert "Admission policies (2 objects unchanged):" in text
    assert f"  update    ValidatingAdmissionPolicy/{DENY_NAME}: [Deny] namespaceReady, " in text
    assert "admission: 0 create, 2 update, 0 delete, 0 conflict" in text.splitlines()[-1]
    plan.admission = core.plan_admission(
        [policy(**ENFORCE)], live_of(policy(**ENFORCE)), now=NOW, operator_namespace=OP_NS
    )
    text = render.render_table(plan, context="ctx", sources={})
    assert "Admission policies: no change (4 objects unchanged)" in text


def test_not_available_is_one_line() -> None:
    plan = core.Plan(policies=(), namespaces=[], now=NOW, operator_namespace=OP_NS)
    plan.admission = core.AdmissionPlan(available=False, reason="not served")
    assert "Admission policies: not served" in render.render_table(plan, context="c", sources={})
