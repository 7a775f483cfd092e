"""``admission.changed``: when a live admission object differs from the built one.

What the API server really adds on storing is proven against a real API server in
``tests/integration/test_plan_cluster.py`` (objects applied from ``admission.build``
are planned ``unchanged``); this table pins the rule itself.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from typing import Any

import pytest

from kube_guardrails import admission
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)

Obj = dict[str, Any]


def built() -> tuple[Obj, Obj]:
    """(VAP, binding) of the deny pair of an Enforce policy with an owner uid."""
    policy = policy_model.parse(
        {
            "metadata": {"name": "p", "uid": "u-1"},
            "spec": {
                "mode": "Enforce",
                "workloads": {"podSecurity": "baseline"},
                "excludeNamespaces": ["legacy-*"],
            },
        },
        known_checks=registry.ids(),
    )
    desired = admission.build(policy, now=NOW)
    name = admission.object_name("p", admission.DENY)
    return desired.policies[name], desired.bindings[name]


def stored(obj: Obj) -> Obj:
    """What the API server returns for an object it stored (metadata and defaults)."""
    out = copy.deepcopy(obj)
    out["metadata"].update(
        uid="0b0e",
        resourceVersion="4711",
        generation=3,
        creationTimestamp="2026-11-29T00:00:00Z",
        managedFields=[{"manager": "kube-guardrails", "operation": "Apply"}],
        annotations={"note": "someone's"},
    )
    out["metadata"]["labels"]["team"] = "platform"
    out["metadata"]["ownerReferences"].append(
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c-1"}
    )
    spec = out["spec"]
    if out["kind"] == "ValidatingAdmissionPolicy":
        spec.setdefault("failurePolicy", "Fail")
        mc = spec["matchConstraints"]
        mc.setdefault("namespaceSelector", {})
        mc.setdefault("objectSelector", {})
        for rule in mc["resourceRules"]:
            rule.setdefault("scope", "*")
        spec.setdefault("auditAnnotations", [])
        out["status"] = {"observedGeneration": 3, "typeChecking": {"expressionWarnings": []}}
    else:
        mr = spec["matchResources"]
        mr.setdefault("matchPolicy", "Equivalent")
        mr.setdefault("objectSelector", {})
    return out


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def edit(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(path: str) -> Callable[[Obj], None]:
    def edit(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[int(last) if isinstance(node, list) else last]

    return edit


def _append(path: str, value: Any) -> Callable[[Obj], None]:
    def edit(obj: Obj) -> None:
        node: Any = obj
        for key in path.split("."):
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.append(value)

    return edit


NO_EDIT: Callable[[Obj], None] = lambda obj: None  # noqa: E731


@pytest.mark.parametrize(
    ("which", "edit", "expected"),
    [
        # What the server adds, and what is someone else's: no difference.
        ("vap", NO_EDIT, False),
        ("binding", NO_EDIT, False),
        ("vap", _set("spec.matchConstraints.resourceRules.0.scope", "*"), False),
        ("binding", _set("spec.matchResources.matchPolicy", "Equivalent"), False),
        ("vap", _set("metadata.resourceVersion", "9999"), False),
        ("vap", _set("status.observedGeneration", 99), False),
        # Defaults with another value, and additions to the spec: differences.
        ("vap", _set("spec.failurePolicy", "Ignore"), True),
        ("vap", _set("spec.matchConstraints.matchPolicy", "Exact"), True),
        ("binding", _set("spec.matchResources.matchPolicy", "Exact"), True),
        ("vap", _set("spec.matchConstraints.resourceRules.0.scope", "Namespaced"), True),
        ("vap", _set("spec.auditAnnotations", [{"key": "k", "valueExpression": "'v'"}]), True),
        ("binding", _set("spec.matchResources.objectSelector", {"matchLabels": {"a": "b"}}), True),
        ("binding", _set("spec.paramRef", {"name": "x"}), True),
        # Edits of what we set.
        ("vap", _set("spec.validations.0.expression", "true"), True),
        ("vap", _drop("spec.validations.0"), True),
        ("vap", _append("spec.validations", {"expression": "true"}), True),
        ("vap", _drop("spec.matchConditions"), True),
        ("binding", _set("spec.validationActions", ["Warn", "Audit"]), True),
        ("binding", _set("spec.validationActions", ["Audit", "Warn"]), True),
        ("binding", _set("spec.matchResources.namespaceSelector", {}), True),
        # Our labels and our owner.
        ("vap", _drop("metadata.labels"), True),
        ("binding", _set("metadata.ownerReferences", []), True),
        ("binding", _set("metadata.ownerReferences.0.uid", "u-2"), True),
        ("binding", _set("metadata.ownerReferences.0.controller", False), True),
    ],
)
def test_changed(which: str, edit: Callable[[Obj], None], expected: bool) -> None:
    vap, binding = built()
    want = vap if which == "vap" else binding
    live = stored(want)
    edit(live)
    assert admission.changed(live, want) is expected


def test_label_value_of_ours_changed() -> None:
    # Keys with dots cannot go through the _set path notation: edited here directly.
    vap, _ = built()
    live = stored(vap)
    live["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone"
    assert admission.changed(live, vap)


def test_no_owner_wanted_accepts_any_owner() -> None:
    """A policy not applied yet has no uid: its objects want no ownerReference."""
    vap, _ = built()
    want = copy.deepcopy(vap)
    del want["metadata"]["ownerReferences"]
    assert not admission.changed(stored(vap), want)


def test_every_built_object_is_unchanged_against_itself_stored() -> None:
    vap, binding = built()
    for obj in (vap, binding):
        assert not admission.changed(stored(obj), obj)
        assert not admission.changed(obj, obj)
