"""The pure part of ``kube-guardrails plan``: selection, hardening changes, verdicts, evictions."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import pytest

from kube_guardrails import builders
from kube_guardrails.checks import registry
from kube_guardrails.k8s import reader
from kube_guardrails.model import policy as policy_model
from kube_guardrails.plan import core, render

NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)
OP_NS = "kube-guardrails-system"


def policy(name: str, **spec: Any) -> policy_model.Policy:
    meta: dict[str, Any] = {"name": name}
    if "uid" in spec:
        meta["uid"] = spec.pop("uid")
    return policy_model.parse(
        {"metadata": meta, "spec": spec},
        known_checks=registry.ids(),
    )


def ns(name: str, terminating: bool = False, **labels: str) -> core.Namespace:
    return core.Namespace(name=name, labels=labels, terminating=terminating)


def pod_spec(*, privileged: bool = False, image: str = "registry.example.com/app:1.0") -> Any:
    container: dict[str, Any] = {"name": "app", "image": image}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"containers": [container]}


def pod(
    name: str,
    namespace: str,
    *,
    privileged: bool = False,
    owners: list[dict[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "ownerReferences": owners or [],
        },
        "spec": pod_spec(privileged=privileged),
        "status": {"phase": "Running"},
    }


def controller(
    kind: str, name: str, namespace: str, *, owners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec(privileged=True)}
    spec: dict[str, Any] = (
        {"jobTemplate": {"spec": {"template": template}}}
        if kind == "CronJob"
        else {"template": template}
    )
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners or []},
        "spec": spec,
    }


def owner(kind: str, name: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "controller": True}


# Only the privileged check, with action Enforce (the best-practice checks are on by default).
PRIVILEGED_ONLY = {
    "workloads": {
        "podSecurity": "none",
        "checks": {
            **{
                c.id: {"action": "Off"}
                for c in registry.all_checks()
                if c.category is registry.Category.BEST_PRACTICE
            },
            "privileged": {"action": "Enforce"},
        },
    }
}


# --------------------------------------------------------------------- selection


SELECTION_POLICIES = {
    "all": policy("all"),
    "labelled": policy("labelled", namespaceSelector={"matchLabels": {"tier": "web"}}),
    "excluding": policy("excluding", excludeNamespaces=["team-*", "legacy"]),
}
SELECTION_NAMESPACES = [
    ns("kube-system"),
    ns("kube-public"),
    ns(OP_NS),
    ns("team-a", tier="web"),
    ns("legacy"),
    ns("web", tier="web"),
    ns("db", tier="db"),
]


@pytest.mark.parametrize("policy_name", sorted(SELECTION_POLICIES))
@pytest.mark.parametrize("namespace", SELECTION_NAMESPACES, ids=lambda n: n.name)
def test_not_selected_reason_agrees_with_the_operators_selection(
    policy_name: str, namespace: core.Namespace
) -> None:
    pol = SELECTION_POLICIES[policy_name]
    reason = core.not_selected_reason(
        pol, name=namespace.name, labels=namespace.labels, operator_namespace=OP_NS
    )
    selects = policy_model.selects_namespace(
        pol, name=namespace.name, labels=namespace.labels, operator_namespace=OP_NS
    )
    assert (reason is None) == selects


@pytest.mark.parametrize(
    ("pol", "namespace", "reason"),
    [
        ("all", ns("kube-system"), "system namespace (always excluded)"),
        ("all", ns(OP_NS), "the operator's namespace (always excluded)"),
        ("excluding", ns("team-a"), "excludeNamespaces: team-*"),
        ("excluding", ns("legacy"), "excludeNamespaces: legacy"),
        ("labelled", ns("db", tier="db"), "namespaceSelector does not match its labels"),
        ("labelled", ns("web", tier="web"), None),
    ],
    ids=["system", "operator", "glob", "name", "selector", "selected"],
)
def test_not_selected_reason_says_why(
    pol: str, namespace: core.Namespace, reason: str | None
) -> None:
    assert (
        core.not_selected_reason(
            SELECTION_POLICIES[pol],
            name=namespace.name,
            labels=namespace.labels,
            operator_namespace=OP_NS,
        )
        == reason
    )


# --------------------------------------------------------------------- hardening change

_BASE = policy("base", uid="u-base")
_WANT = builders.build_network_policy("team", _BASE)
_OTHER = builders.build_network_policy("team", policy("other", uid="u-other"))
_EDITED = {**_WANT, "spec": {**_WANT["spec"], "policyTypes": ["Ingress"]}}
_FOREIGN = {**_WANT, "metadata": {"name": _WANT["metadata"]["name"], "labels": {}}}


@pytest.mark.parametrize(
    ("live", "want", "action"),
    [
        (None, _WANT, "create"),
        (_WANT, _WANT, "unchanged"),
        (_EDITED, _WANT, "update"),
        (_OTHER, _WANT, "update"),
        (_WANT, None, "delete"),
        (None, None, "unchanged"),
        (_FOREIGN, _WANT, "conflict"),
        (_FOREIGN, None, "unchanged"),
    ],
    ids=[
        "absent",
        "same",
        "edited",
        "other-policy",
        "unwanted",
        "nothing",
        "foreign",
        "foreign-unwanted",
    ],
)
def test_planned_change(live: Any, want: Any, action: str) -> None:
    assert builders.planned_change(live, want).action == action


def test_planned_change_names_the_policy_switch() -> None:
    assert builders.planned_change(_OTHER, _WANT).reason == "policy other -> base"


# --------------------------------------------------------------------- compute


def plan_of(
    policies: list[policy_model.Policy],
    *,
    cluster: list[policy_model.Policy] | None = None,
    namespaces: list[core.Namespace] | None = None,
    managed: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    workloads: list[dict[str, Any]] | None = None,
    now: datetime.datetime = NOW,
) -> core.Plan:
    return core.compute(
        policies=policies,
        cluster_policies=cluster or [],
        namespaces=[ns("team")] if namespaces is None else namespaces,
        managed=managed or {},
        workloads=iter(workloads or []),
        operator_namespace=OP_NS,
        now=now,
    )


def actions(plan: core.Plan, namespace: str) -> dict[str, str]:
    nsp = next(n for n in plan.namespaces if n.name == namespace)
    return {c.kind: c.action for c in nsp.changes}


def live_objects(namespace: str, pol: policy_model.Policy) -> dict[tuple[str, str], Any]:
    return {
        (kind.kind, namespace): obj
        for kind, obj in builders.desired_objects(namespace, pol).items()
        if obj is not None
    }


def test_new_policy_creates_hardening_in_selected_namespaces_only() -> None:
    pol = policy("team", namespaceSelector={"matchLabels": {"tier": "web"}})
    plan = plan_of([pol], namespaces=[ns("web", tier="web"), ns("db"), ns("kube-system")])
    assert actions(plan, "web") == {
        "NetworkPolicy": "create",
        "LimitRange": "create",
        "ResourceQuota": "unchanged",
    }
    assert actions(plan, "db") == dict.fromkeys(actions(plan, "db"), "unchanged")
    assert [n.name for n in plan.namespaces if n.selected] == ["web"]
    assert plan.count_changes() == {"create": 2, "update": 0, "delete": 0, "conflict": 0}


def test_higher_priority_cluster_policy_keeps_governing() -> None:
    existing = policy("strong", uid="u1", priority=100)
    plan = plan_of(
        [policy("weak", priority=5)],
        cluster=[existing],
        managed=live_objects("team", existing),
    )
    nsp = plan.namespaces[0]
    assert nsp.selected_by == ("weak",)
    assert (nsp.governing_before, nsp.governing_after) == ("strong", "strong")
    assert nsp.writes == []


def test_priority_tie_goes_to_the_first_name() -> None:
    existing = policy("b-policy", uid="u1")
    plan = plan_of([policy("a-policy")], cluster=[existing], managed=live_objects("team", existing))
    nsp = plan.namespaces[0]
    assert nsp.governing_after == "a-policy"
    assert {c.kind: c.reason for c in nsp.writes} == {
        "NetworkPolicy": "policy b-policy -> a-policy",
        "LimitRange": "policy b-policy -> a-policy",
    }


def test_file_policy_replaces_the_same_named_cluster_policy() -> None:
    old = policy("team", uid="u1")  # selected every namespace
    new = policy("team", namespaceSelector={"matchLabels": {"tier": "web"}})
    plan = plan_of(
        [new],
        cluster=[old],
        namespaces=[ns("team"), ns("web", tier="web")],
        managed={**live_objects("team", old), **live_objects("web", old)},
    )
    assert plan.policies == (core.PolicyInfo("team", "Audit", 0, replaces=True),)
    assert actions(plan, "team")["NetworkPolicy"] == "delete"
    assert actions(plan, "team")["LimitRange"] == "delete"
    # Same uid (applied in place): the ownerReference still matches, nothing to do.
    assert actions(plan, "web")["NetworkPolicy"] == "unchanged"


def test_changed_hardening_settings_are_updates() -> None:
    old = policy("team", uid="u1")
    new = policy(
        "team",
        hardening={"resourceQuota": {"enabled": True, "hard": {"pods": "10"}}},
    )
    plan = plan_of([new], cluster=[old], managed=live_objects("team", old))
    assert actions(plan, "team") == {
        "NetworkPolicy": "unchanged",
        "LimitRange": "unchanged",
        "ResourceQuota": "create",
    }


def test_foreign_object_is_a_conflict_and_terminating_namespaces_are_left_alone() -> None:
    foreign = {"metadata": {"name": builders.LIMIT_RANGE_NAME, "labels": {}}, "spec": {}}
    plan = plan_of(
        [policy("team")],
        namespaces=[ns("team"), ns("going", terminating=True)],
        managed={("LimitRange", "team"): foreign},
    )
    assert actions(plan, "team")["LimitRange"] == "conflict"
    going = next(n for n in plan.namespaces if n.name == "going")
    assert going.terminating and going.changes == []


def test_invalid_cluster_policies_are_reported() -> None:
    plan = core.compute(
        policies=[policy("team")],
        cluster_policies=[],
        namespaces=[],
        managed={},
        workloads=[],
        operator_namespace=OP_NS,
        now=NOW,
        invalid_cluster_policies=["zz", "broken"],
    )
    assert plan.invalid_cluster_policies == ("broken", "zz")


# --------------------------------------------------------------------- workloads


@pytest.mark.parametrize(
    ("body", "reviewed"),
    [
        (controller("Deployment", "d", "team"), True),
        (controller("StatefulSet", "s", "team"), True),
        (controller("DaemonSet", "ds", "team"), True),
        (controller("ReplicaSet", "rs", "team"), True),
        (controller("ReplicaSet", "rs", "team", owners=[owner("Deployment", "d")]), False),
        (controller("Job", "j", "team"), True),
        (controller("Job", "j", "team", owners=[owner("CronJob", "cj")]), False),
        (controller("CronJob", "cj", "team"), True),
        (pod("p", "team", privileged=True, owners=[owner("ReplicaSet", "rs")]), True),
    ],
    ids=[
        "deployment",
        "statefulset",
        "daemonset",
        "replicaset",
        "replicaset-of-deployment",
        "job",
        "job-of-cronjob",
        "cronjob",
        "pod-of-replicaset",
    ],
)
def test_which_workloads_are_reviewed(body: dict[str, Any], reviewed: bool) -> None:
    plan = plan_of([policy("team", **PRIVILEGED_ONLY)], workloads=[body])
    found = [(w.kind, w.name) for w in plan.namespaces[0].workloads]
    expected = [(body["kind"], body["metadata"]["name"])] if reviewed else []
    assert found == expected
    assert plan.namespaces[0].checked == int(reviewed)


def test_violations_are_per_check_with_the_field_path() -> None:
    plan = plan_of(
        [policy("team", **PRIVILEGED_ONLY)],
        workloads=[
            controller("CronJob", "cj", "team"),
            pod("ok", "team"),
            pod("other-ns", "elsewhere", privileged=True),
        ],
    )
    (workload,) = plan.namespaces[0].workloads
    (violation,) = workload.violations
    assert (violation.policy, violation.check, violation.action, violation.container) == (
        "team",
        "privileged",
        "Enforce",
        "app",
    )
    assert violation.path.startswith("spec.jobTemplate.spec.template.spec.containers[0]")
    assert plan.namespaces[0].checked == 2
    assert plan.by_check() == {"privileged": 1}


EXEMPT = {
    "exemptions": [
        {
            "selector": {"matchLabels": {"app": "legacy"}},
            "checks": ["privileged"],
            "reason": "vendor image",
            "expires": "2027-01-31T00:00:00Z",
        }
    ]
}


@pytest.mark.parametrize(
    ("now", "violating", "expired"),
    [
        (NOW, False, False),
        (datetime.datetime(2027, 2, 1, tzinfo=datetime.UTC), True, True),
    ],
    ids=["before-expiry", "after-expiry"],
)
def test_exemptions_apply_until_they_expire(
    now: datetime.datetime, violating: bool, expired: bool
) -> None:
    spec = {"workloads": {**PRIVILEGED_ONLY["workloads"], **EXEMPT}}
    plan = plan_of(
        [policy("team", **spec)],
        workloads=[pod("legacy", "team", privileged=True, labels={"app": "legacy"})],
        now=now,
    )
    nsp = plan.namespaces[0]
    assert bool(nsp.workloads) is violating
    assert bool(nsp.expired_exemptions) is expired


# --------------------------------------------------------------------- evictions

ENFORCE = {"mode": "Enforce", **PRIVILEGED_ONLY}


@pytest.mark.parametrize(
    ("spec", "body", "expected"),
    [
        (ENFORCE, pod("p", "team", privileged=True), (True, False, 300, "")),
        (
            {
                **ENFORCE,
                "workloads": {
                    **ENFORCE["workloads"],
                    "enforcement": {"gracePeriodSeconds": 0, "dryRun": True},
                },
            },
            pod("p", "team", privileged=True),
            (True, True, 0, ""),
        ),
        (
            ENFORCE,
            pod(
                "p",
                "team",
                privileged=True,
                owners=[{**owner("DaemonSet", "ds"), "apiVersion": "apps/v1", "uid": "d1"}],
            ),
            (False, False, None, "DaemonSet Pod (spared if its DaemonSet exists)"),
        ),
        (
            ENFORCE,
            # As the kubelet writes one: the annotation and its Node as controller (plan
            # reads no Nodes; the operator looks the Node up before sparing the Pod).
            pod(
                "p",
                "team",
                privileged=True,
                annotations={"kubernetes.io/config.mirror": "x"},
                owners=[{**owner("Node", "n1"), "apiVersion": "v1", "uid": "n1-uid"}],
            ),
            (False, False, None, "mirror Pod (managed by the kubelet)"),
        ),
        (
            ENFORCE,
            # The annotation alone: any user who may create a Pod can set it.
            pod("p", "team", privileged=True, annotations={"kubernetes.io/config.mirror": "x"}),
            (True, False, 300, ""),
        ),
        (
            ENFORCE,
            # A Node owner without the kubelet's mirror annotation is no static Pod.
            pod("p", "team", privileged=True, owners=[owner("Node", "n1")]),
            (True, False, 300, ""),
        ),
        ({**PRIVILEGED_ONLY}, pod("p", "team", privileged=True), None),  # Audit mode
        (
            {  # Enforce mode, but the check's action is Audit
                "mode": "Enforce",
                "workloads": {"podSecurity": "none", "checks": {"privileged": {"action": "Audit"}}},
            },
            pod("p", "team", privileged=True),
            None,
        ),
        (ENFORCE, controller("Deployment", "d", "team"), None),  # only Pods are evicted
    ],
    ids=[
        "enforce",
        "dry-run-no-grace",
        "daemonset-pod",
        "mirror-pod",
        "mirror-annotation-alone",
        "node-owner-is-not-a-static-pod",
        "audit-mode",
        "audit-action",
        "deployment",
    ],
)
def test_evictions(
    spec: dict[str, Any],
    body: dict[str, Any],
    expected: tuple[bool, bool, int | None, str] | None,
) -> None:
    plan = plan_of([policy("team", **spec)], workloads=[body])
    got = [(e.evict, e.dry_run, e.after_seconds, e.reason) for e in plan.namespaces[0].evictions]
    assert got == ([expected] if expected else [])
    assert plan.namespaces[0].workloads  # violating either way


def test_operator_namespace_pods_are_never_planned() -> None:
    plan = plan_of(
        [policy("team", **ENFORCE)],
        namespaces=[ns(OP_NS)],
        workloads=[pod("op", OP_NS, privileged=True)],
    )
    assert plan.namespaces[0].workloads == [] and plan.namespaces[0].evictions == []


# --------------------------------------------------------------------- rendering


def test_json_schema_is_stable() -> None:
    plan = plan_of(
        [policy("team", **ENFORCE)],
        namespaces=[ns("team"), ns("kube-system")],
        workloads=[pod("p", "team", privileged=True)],
    )
    doc = json.loads(render.render_json(plan, context="ctx", sources={"team": "f.yaml"}))
    assert list(doc) == [
        "schema",
        "context",
        "now",
        "operatorNamespace",
        "policies",
        "ignoredClusterPolicies",
        "notes",
        "namespaces",
        "admission",
        "summary",
    ]
    assert doc["schema"] == "kube-guardrails.plan/v1"
    assert doc["policies"] == [
        {"name": "team", "source": "f.yaml", "mode": "Enforce", "priority": 0, "replaces": False}
    ]
    team = doc["namespaces"][1]
    assert list(team) == [
        "name",
        "selected",
        "selectedBy",
        "notSelected",
        "terminating",
        "hardening",
        "workloadsChecked",
        "workloads",
        "evictions",
        "expiredExemptions",
    ]
    assert team["evictions"] == [
        {
            "pod": "p",
            "policy": "team",
            "evict": True,
            "dryRun": False,
            "afterSeconds": 300,
            "checks": ["privileged"],
            "reason": "",
        }
    ]
    assert doc["namespaces"][0]["notSelected"] == {"team": "system namespace (always excluded)"}
    assert doc["admission"]["available"] is False
    assert doc["summary"] == {
        "namespaces": {"total": 2, "selected": 1},
        "hardening": {"create": 2, "update": 0, "delete": 0, "conflict": 0},
        "admission": {"create": 0, "update": 0, "delete": 0, "conflict": 0},
        "workloads": {"checked": 1, "violating": 1, "byCheck": {"privileged": 1}},
        "evictions": {"evict": 1, "dryRun": 0, "spared": 0},
    }


@pytest.mark.parametrize("namespaces", [[], [ns("team")], [ns("a"), ns("team"), ns("z")]])
def test_streamed_json_equals_the_whole_document(namespaces: list[core.Namespace]) -> None:
    plan = plan_of(
        [policy("team", **ENFORCE)],
        namespaces=namespaces,
        workloads=[pod("p", "team", privileged=True)],
    )
    text = render.render_json(plan, context="ctx", sources={})
    assert json.loads(text) == render.to_dict(plan, context="ctx", sources={})
    one_line_each = [ln for ln in text.splitlines() if ln.startswith('    {"name": ')]
    assert len(one_line_each) == len(namespaces)


def test_table_groups_by_namespace_and_ends_with_a_summary() -> None:
    plan = plan_of(
        [policy("team", **ENFORCE)],
        namespaces=[ns("team"), ns("kube-system"), ns("kube-public")],
        workloads=[pod("p", "team", privileged=True)],
    )
    text = render.render_table(plan, context="ctx", sources={"team": "f.yaml"})
    assert "Namespace team: selected by team" in text
    assert "  create    NetworkPolicy/kube-guardrails-default-deny" in text
    assert "    Pod/p: team/privileged(app)" in text
    assert "  evict     Pod/p: evicted after 300s by team (privileged)" in text
    assert "Not selected (system namespace (always excluded)): kube-public, kube-system" in text
    assert text.rstrip().splitlines()[-1].startswith("Summary: 1 of 3 namespaces selected")


def test_several_policies_in_one_file() -> None:
    audit = policy("a-audit", namespaceSelector={"matchLabels": {"tier": "web"}})
    enforce = policy("b-enforce", **ENFORCE)
    plan = plan_of(
        [audit, enforce],
        namespaces=[ns("web", tier="web"), ns("db")],
        workloads=[pod("p", "web", privileged=True), pod("q", "db", privileged=True)],
    )
    web, db = (next(n for n in plan.namespaces if n.name == x) for x in ("web", "db"))
    assert web.selected_by == ("a-audit", "b-enforce") and db.selected_by == ("b-enforce",)
    assert db.not_selected == {"a-audit": "namespaceSelector does not match its labels"}
    assert web.governing_after == "a-audit"  # same priority: name order
    assert {v.policy for w in web.workloads for v in w.violations} == {"a-audit", "b-enforce"}
    assert [(e.pod, e.policy) for e in web.evictions] == [("p", "b-enforce")]


# --------------------------------------------------------------------- projection


def _listed_pod() -> dict[str, Any]:
    body = pod(
        "p",
        "team",
        privileged=True,
        owners=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}],
        annotations={
            "kubernetes.io/config.mirror": "x",
            "kubectl.kubernetes.io/last-applied-configuration": "{...}" * 1000,
        },
    )
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    body["status"] = {"phase": "Running", "conditions": [{"type": "Ready"}] * 10}
    del body["kind"], body["apiVersion"]  # a LIST's items carry neither
    return body


def test_projection_keeps_only_what_the_plan_reads() -> None:
    projected = reader.project(_listed_pod(), api_version="v1", kind="Pod")
    assert projected["kind"] == "Pod" and projected["apiVersion"] == "v1"
    assert "managedFields" not in projected["metadata"]
    assert projected["metadata"]["annotations"] == {"kubernetes.io/config.mirror": "x"}
    assert projected["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "rs",
            "uid": "u",
            "controller": None,
        }
    ]
    assert projected["status"] == {"phase": "Running"}
    # Same verdict from the projection as from the full object.
    full = {**_listed_pod(), "kind": "Pod", "apiVersion": "v1"}
    plans = [plan_of([policy("team", **ENFORCE)], workloads=[b]) for b in (full, projected)]
    assert plans[0].namespaces == plans[1].namespaces


def test_projection_of_a_cronjob_keeps_only_its_pod_template() -> None:
    body = controller("CronJob", "cj", "team")
    body["spec"]["schedule"] = "* * * * *"
    body["spec"]["jobTemplate"]["spec"]["backoffLimit"] = 3
    projected = reader.project(body, api_version="batch/v1", kind="CronJob")
    assert projected["spec"] == {
        "jobTemplate": {"spec": {"template": body["spec"]["jobTemplate"]["spec"]["template"]}}
    }
