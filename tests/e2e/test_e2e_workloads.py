"""Workload checks on a real cluster, Audit side (issue #3, point 4).

Pods run ``registry.k8s.io/pause`` (override with ``KUBE_GUARDRAILS_E2E_IMAGE``): it
needs no shell and runs as non-root, so one field (``privileged``) decides whether a
pod violates the baseline level. Policies turn the probes check off (pause has nothing
to probe) and hardening off (covered by the hardening tests).
"""

from __future__ import annotations

from collections.abc import Callable

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario
import pytest

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
GUARDRAIL_COMPLIANT = "GuardrailCompliant"


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _image(scenario: Scenario) -> str:
    return scenario.env.settings.image


def _violations(scenario: Scenario, obj: Obj) -> int:
    return harness.event_total(
        scenario.events(obj["metadata"]["uid"], e2e_scenario.GUARDRAIL_VIOLATION)
    )


def test_violating_pod_gets_annotation_and_warning_event(
    scenario: Scenario, record_property: Callable[[str, object], None]
) -> None:
    policy = scenario.workload_policy()
    ns = _name(scenario.namespace())
    scenario.wait_policy_ready(_name(policy))
    pod = scenario.create(
        kube_api.pods(ns),
        e2e_scenario.pod(ns, "privileged", _image(scenario), privileged=True),
    )
    annotation, seconds = scenario.timed(
        lambda: scenario.annotation(pod), "violation annotation on the pod"
    )
    record_property("annotation_seconds", round(seconds, 3))
    assert f"{_name(policy)}/privileged" in annotation, annotation
    event = scenario.wait_event(pod, e2e_scenario.GUARDRAIL_VIOLATION, type_="Warning")
    message = event.get("message", "")
    assert "privileged" in message and _name(policy) in message, message
    assert "spec.containers[0].securityContext.privileged" in message, message
    scenario.wait_running(pod)


def test_violation_is_not_repeated_on_resync(scenario: Scenario, resync_window: float) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "repeat", _image(scenario), privileged=True)
    )
    annotation = scenario.wait_annotated(pod)
    scenario.wait_event(pod, e2e_scenario.GUARDRAIL_VIOLATION)
    scenario.wait_running(pod)
    harness.hold_for(
        lambda: _violations(scenario, pod) == 1 and scenario.annotation(pod) == annotation,
        duration=resync_window,
        interval=1.0,
        what="one GuardrailViolation event and an unchanged annotation",
    )


def test_compliant_workloads_get_no_writes(scenario: Scenario, resync_window: float) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    image = _image(scenario)
    good_pod = scenario.create(kube_api.pods(ns), e2e_scenario.pod(ns, "good", image))
    good_deploy = scenario.create(
        kube_api.deployments(ns), e2e_scenario.deployment(ns, "good", image, replicas=0)
    )
    # Violating siblings created afterwards: once they are annotated, the operator has
    # seen the compliant ones too (a watch delivers in resourceVersion order).
    bad_pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "bad", image, privileged=True)
    )
    bad_deploy = scenario.create(
        kube_api.deployments(ns),
        e2e_scenario.deployment(ns, "bad", image, replicas=0, privileged=True),
    )
    scenario.wait_annotated(bad_pod)
    scenario.wait_annotated(bad_deploy)
    # Let the kubelet and the deployment controller finish their own status writes.
    scenario.wait(lambda: _ready(scenario.read(good_pod)), "the compliant pod Running and Ready")
    scenario.wait(lambda: _observed(scenario.read(good_deploy)), "the deployment's status settled")
    versions = {
        e2e_scenario.describe(o): e2e_scenario.resource_version(
            scenario.kube.get(e2e_scenario.self_path(o))
        )
        for o in (good_pod, good_deploy)
    }

    def untouched() -> bool:
        for obj in (good_pod, good_deploy):
            current = scenario.read(obj)
            if (
                current is None
                or e2e_scenario.resource_version(current) != versions[e2e_scenario.describe(obj)]
            ):
                return False
        return True

    harness.hold_for(
        untouched, duration=resync_window, interval=1.0, what="no write to compliant workloads"
    )
    for obj in (good_pod, good_deploy):
        meta = scenario.kube.get(e2e_scenario.self_path(obj))["metadata"]
        assert not [k for k in meta.get("annotations") or {} if k.startswith("kube-guardrails.io/")]
        assert harness.kopf_state(meta) == []
        ours = [
            e
            for e in scenario.events(obj["metadata"]["uid"])
            if e.get("reason") in (e2e_scenario.GUARDRAIL_VIOLATION, GUARDRAIL_COMPLIANT)
        ]
        assert ours == [], ours


def _observed(deploy: Obj | None) -> Obj | None:
    if deploy is None:
        return None
    observed = (deploy.get("status") or {}).get("observedGeneration")
    return deploy if observed == deploy["metadata"].get("generation") else None


def _ready(pod: Obj | None) -> Obj | None:
    if pod is None:
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return pod
    return None


def test_deployment_is_checked_through_its_pod_template(scenario: Scenario) -> None:
    policy = scenario.workload_policy()
    ns = _name(scenario.namespace())
    deploy = scenario.create(
        kube_api.deployments(ns),
        e2e_scenario.deployment(ns, "web", _image(scenario), replicas=0, privileged=True),
    )
    annotation = scenario.wait_annotated(deploy)
    assert f"{_name(policy)}/privileged" in annotation, annotation
    event = scenario.wait_event(deploy, e2e_scenario.GUARDRAIL_VIOLATION, type_="Warning")
    assert "spec.template.spec.containers[0].securityContext.privileged" in event["message"]


def test_fixed_deployment_clears_its_annotation_with_a_normal_event(scenario: Scenario) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    deploy = scenario.create(
        kube_api.deployments(ns),
        e2e_scenario.deployment(ns, "fixme", _image(scenario), replicas=1, privileged=True),
    )
    scenario.wait_annotated(deploy)
    [old_pod] = scenario.wait(lambda: scenario.pods(ns, "app=fixme"), "the deployment's pod")
    scenario.wait_annotated(old_pod)

    # A merge patch replaces the containers list: the template becomes compliant.
    scenario.kube.patch(
        e2e_scenario.self_path(deploy),
        {"spec": {"template": {"spec": e2e_scenario.pod_spec(_image(scenario))}}},
    )
    scenario.wait(lambda: scenario.annotation(deploy) is None, "deployment annotation removed")
    event = scenario.wait_event(deploy, GUARDRAIL_COMPLIANT, type_="Normal")
    assert event.get("message"), event

    def new_pods_running() -> list[Obj]:
        pods = scenario.pods(ns, "app=fixme")
        fresh = [p for p in pods if p["metadata"]["uid"] != old_pod["metadata"]["uid"]]
        return [p for p in fresh if (p.get("status") or {}).get("phase") == "Running"]

    [new_pod] = scenario.wait(new_pods_running, "the fixed deployment's new pod Running")
    scenario.wait_annotated(
        scenario.create(
            kube_api.pods(ns), e2e_scenario.pod(ns, "marker", _image(scenario), privileged=True)
        )
    )
    assert scenario.annotation(new_pod) is None


def test_policy_change_reevaluates_workloads(scenario: Scenario) -> None:
    policy = scenario.workload_policy()
    ns = _name(scenario.namespace())
    pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "relaxed", _image(scenario), privileged=True)
    )
    scenario.wait_annotated(pod)
    scenario.patch_policy(
        _name(policy), {"workloads": {"checks": {"privileged": {"action": "Off"}}}}
    )
    scenario.wait(
        lambda: scenario.annotation(pod) is None, "annotation removed after policy change"
    )
    scenario.wait_event(pod, GUARDRAIL_COMPLIANT, type_="Normal")


def test_every_matching_policy_reports_its_own_findings(scenario: Scenario) -> None:
    first = scenario.workload_policy("a")
    second = scenario.workload_policy("b", {"priority": 5})
    ns = _name(scenario.namespace())
    pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "twice", _image(scenario), privileged=True)
    )

    def both() -> str | None:
        value = scenario.annotation(pod)
        wanted = (f"{_name(first)}/privileged", f"{_name(second)}/privileged")
        return value if value and all(w in value for w in wanted) else None

    scenario.wait(both, "findings of both policies in the annotation")


def test_policy_status_counts_violations(scenario: Scenario) -> None:
    policy = scenario.workload_policy()
    ns = _name(scenario.namespace())
    for name in ("bad-1", "bad-2"):
        scenario.create(
            kube_api.pods(ns), e2e_scenario.pod(ns, name, _image(scenario), privileged=True)
        )
    scenario.create(kube_api.pods(ns), e2e_scenario.pod(ns, "good", _image(scenario)))

    def counted() -> Obj | None:
        violations = (scenario.read_policy(_name(policy)).get("status") or {}).get("violations")
        if violations and (violations.get("byCheck") or {}).get("privileged") == 2:
            return dict(violations)
        return None

    violations = scenario.wait(counted, "status.violations.byCheck.privileged == 2")
    assert violations["total"] == 2, violations


def test_workloads_carry_no_kopf_annotations_or_finalizers(
    scenario: Scenario, resync_window: float
) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "watched", _image(scenario), privileged=True)
    )
    deploy = scenario.create(
        kube_api.deployments(ns),
        e2e_scenario.deployment(ns, "watched", _image(scenario), replicas=0, privileged=True),
    )
    scenario.wait_annotated(pod)
    scenario.wait_annotated(deploy)

    def clean() -> bool:
        return all(
            not harness.kopf_state(scenario.kube.get(e2e_scenario.self_path(o))["metadata"])
            for o in (pod, deploy)
        )

    harness.hold_for(clean, duration=resync_window, what="workloads free of kopf state")


def test_operator_restart_posts_nothing_new(
    scenario: Scenario, restartable: e2e_scenario.Env, resync_window: float
) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    pod = scenario.create(
        kube_api.pods(ns), e2e_scenario.pod(ns, "restart", _image(scenario), privileged=True)
    )
    annotation = scenario.wait_annotated(pod)
    scenario.wait_event(pod, e2e_scenario.GUARDRAIL_VIOLATION)
    restartable.restart_operator()
    harness.hold_for(
        lambda: _violations(scenario, pod) == 1 and scenario.annotation(pod) == annotation,
        duration=resync_window,
        interval=1.0,
        what="no new event or annotation after a restart",
    )
