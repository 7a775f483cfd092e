"""The compact projection of watched objects keeps every check's verdict.

``k8s.watch`` keeps only part of each Pod and Deployment in memory. Every check fixture
(``tests/checks/cases``) that is a watched kind runs through every registered check at
the restricted level, once as written and once projected: the results (outcome, field
paths and messages) must be the same, so a field a check reads can never be dropped
unnoticed.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from kube_guardrails import builders, violations
from kube_guardrails.checks import engine, registry
from kube_guardrails.k8s import watch

CASES = pathlib.Path(__file__).parents[1] / "checks" / "cases"
PROJECTORS = {k.kind: k.project for k in watch.KINDS}


def _fixtures() -> list[Any]:
    out = []
    for path in sorted(CASES.glob("*/*.yaml")):
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(obj, dict) and obj.get("kind") in PROJECTORS:
            out.append(pytest.param(obj, id=f"{path.parent.name}/{path.stem}"))
    return out


def _results(obj: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    pod = engine.pod_input(obj)
    assert pod is not None
    selected = [engine.Selected(check=c, params={}) for c in registry.all_checks()]
    return [
        (r.check, r.outcome.value, sorted((f.path, f.message) for f in r.findings))
        for r in engine.run(pod, selected, level=registry.Level.RESTRICTED)
    ]


@pytest.mark.parametrize("obj", _fixtures())
def test_projection_keeps_the_verdict(obj: dict[str, Any]) -> None:
    projected = PROJECTORS[obj["kind"]](obj)
    assert _results(projected) == _results(obj)


def test_projection_drops_what_no_check_reads() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "n",
            "uid": "u",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {
            "tolerations": [{"key": "k"}],
            "containers": [{"name": "c", "image": "i", "env": [{"name": "A"}]}],
            "volumes": [{"name": "v", "projected": {"sources": [{"x": 1}]}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready"}]},
    }
    assert watch.project_pod(pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "resourceVersion": None},
        "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "volumes": [{"name": "v", "projected": {}}],
        },
        "status": {"phase": "Running"},
    }


BIG = "x" * 250_000
ANN = violations.ANNOTATION_VIOLATIONS
SINCE = violations.ANNOTATION_SINCE
MIRROR = "kubernetes.io/config.mirror"
APPARMOR = "container.apparmor.security.beta.kubernetes.io/app"


@pytest.mark.parametrize(
    ("annotations", "kept"),
    [
        pytest.param({"filler": BIG, "team": "a"}, None, id="others-dropped"),
        pytest.param({"kube-guardrails.io/other": BIG}, None, id="our-prefix-is-not-enough"),
        pytest.param(
            {ANN: "b/privileged(app)", SINCE: "2026-11-29T06:00:00Z", MIRROR: "m", "x": "y"},
            {ANN: "b/privileged(app)", SINCE: "2026-11-29T06:00:00Z", MIRROR: "m"},
            id="read-ones-kept",
        ),
        pytest.param(
            {APPARMOR: "localhost/" + BIG}, {APPARMOR: "localhost/" + BIG[:1015]}, id="cut"
        ),
        pytest.param({ANN: BIG}, {ANN: BIG[:1025]}, id="ours-cut-still-not-ours"),
    ],
)
def test_only_the_annotations_read_are_kept_and_bounded(
    annotations: dict[str, str], kept: dict[str, str] | None
) -> None:
    """Red team: a workload owner may write 256 KiB of annotations on every object
    (Deployments with zero replicas cost them nothing); the cache keeps only those read,
    each cut to a length longer than any the operator writes or a check compares."""
    pod = {"metadata": {"name": "p", "namespace": "n", "annotations": annotations}, "spec": {}}
    assert watch.project_pod(pod)["metadata"].get("annotations") == kept
    template = {"spec": {"template": pod}}
    projected = watch.project_template_owner("Deployment", "apps/v1")(template)
    assert projected["spec"]["template"]["metadata"].get("annotations") == kept


def _pod(name: str, **security: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "n", "uid": f"uid-{name}"},
        "spec": {
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/app:1.0",
                    "resources": {"limits": {"memory": "32Mi"}},
                    "securityContext": dict(security),
                }
            ],
        },
    }


def test_equal_containers_of_different_pods_are_one_copy() -> None:
    a, b = watch.project_pod(_pod("a")), watch.project_pod(_pod("b"))
    assert a["spec"]["containers"][0] is b["spec"]["containers"][0]
    assert a["spec"]["securityContext"] is b["spec"]["securityContext"]
    assert a["metadata"] is not b["metadata"]


def test_containers_that_differ_in_any_field_are_never_shared() -> None:
    plain = watch.project_pod(_pod("a"))
    privileged = watch.project_pod(_pod("b", privileged=True))
    stringly = watch.project_pod(_pod("c", privileged="true"))
    containers = [p["spec"]["containers"][0] for p in (plain, privileged, stringly)]
    assert len({id(c) for c in containers}) == 3
    assert containers[1]["securityContext"] == {"privileged": True}
    assert containers[2]["securityContext"] == {"privileged": "true"}


def test_the_shared_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "SHARED_MAX", 3)
    monkeypatch.setattr(watch, "_shared_values", {})
    pods = [watch.project_pod(_pod(str(i), runAsUser=i)) for i in range(10)]
    assert len(watch._shared_values) <= 3
    # Sharing starts over after the table is emptied, and every Pod keeps its own value.
    assert [p["spec"]["containers"][0]["securityContext"]["runAsUser"] for p in pods] == list(
        range(10)
    )


def test_equal_parts_of_containers_that_differ_are_one_copy() -> None:
    a = watch.project_pod(_pod("a"))["spec"]["containers"][0]
    b = watch.project_pod(_pod("b", privileged=True))["spec"]["containers"][0]
    assert a is not b
    assert a["resources"] is b["resources"]


def test_managed_objects_keep_all_but_managed_fields_and_the_last_applied_copy() -> None:
    project = watch.managed_kind(builders.Kind("v1", "LimitRange", "limitranges", "x")).project
    obj = {
        "metadata": {
            "name": "x",
            "namespace": "n",
            "labels": {"app.kubernetes.io/managed-by": "kube-guardrails"},
            "ownerReferences": [{"kind": "GuardrailPolicy", "uid": "u"}],
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "note": "kept",
            },
        },
        "spec": {"limits": [{"type": "Container"}]},
    }
    projected = project(obj)
    assert projected["kind"] == "LimitRange" and projected["apiVersion"] == "v1"
    assert projected["spec"] == obj["spec"]
    assert projected["metadata"] == {
        "name": "x",
        "namespace": "n",
        "labels": {"app.kubernetes.io/managed-by": "kube-guardrails"},
        "ownerReferences": [{"kind": "GuardrailPolicy", "uid": "u"}],
        "annotations": {"note": "kept"},
    }
    assert watch.NAMESPACE.project(
        {
            "metadata": {"name": "n", "uid": "u", "managedFields": [{}]},
            "status": {"phase": "Terminating"},
        }
    ) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "n", "uid": "u", "resourceVersion": None},
        "status": {"phase": "Terminating"},
    }
