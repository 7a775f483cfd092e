"""Every pod controller is checked, with one Event per top-level owner (issue 11, item 4).

On the real control plane (its controller manager runs the Deployment, ReplicaSet,
StatefulSet, DaemonSet, Job and CronJob controllers; ``fake-node`` runs the Pods):

* a violating StatefulSet, DaemonSet, standalone ReplicaSet, Job or CronJob gets the
  violations annotation and a ``GuardrailViolation`` Event, both shown by
  ``kubectl describe``; the Pods it creates carry the annotation but no Event of their
  own, and the namespace holds exactly one such Event;
* a Deployment with 3 violating replicas produces one Event (on the Deployment), not
  four, while its 3 Pods carry the annotation;
* a Pod changed after admission to violate more than its owner's template gets its
  own Event.

Policies as in ``test_e2e_workloads``: baseline, probes off, no hardening; one field
(``privileged``) decides whether a workload violates.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario
import pytest

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
VIOLATION = e2e_scenario.GUARDRAIL_VIOLATION
PATHS: dict[str, Callable[..., str]] = {
    "StatefulSet": kube_api.statefulsets,
    "DaemonSet": kube_api.daemonsets,
    "ReplicaSet": kube_api.replicasets,
    "Job": kube_api.jobs,
    "CronJob": kube_api.cronjobs,
    "Deployment": kube_api.deployments,
}
DESCRIBE = {
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "ReplicaSet": "replicaset",
    "Job": "job",
    "CronJob": "cronjob",
    "Deployment": "deployment",
}


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def job_from_cronjob(cronjob: Obj) -> Obj:
    """What ``kubectl create job --from=cronjob/NAME`` creates: the CronJob controls it."""
    meta = cronjob["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{meta['name']}-manual",
            "namespace": meta["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }


def describe(scenario: Scenario, obj: Obj) -> str:
    """``kubectl describe`` of the object, as a developer would run it."""
    args = ["kubectl"]
    if scenario.kube.context:
        args += ["--context", scenario.kube.context]
    args += ["describe", DESCRIBE[str(obj["kind"])], _name(obj), "-n", obj["metadata"]["namespace"]]
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


def violation_events(scenario: Scenario, namespace: str) -> list[Obj]:
    return scenario.kube.list(kube_api.core(namespace, "events"), fields=f"reason={VIOLATION}")


def regarding(events: list[Obj]) -> list[str]:
    return sorted(
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}"
        for e in events
        for _ in range(harness.event_total([e]))
    )


def annotated_pods(scenario: Scenario, namespace: str, app: str, count: int) -> list[Obj]:
    def found() -> list[Obj] | None:
        pods = scenario.pods(namespace, f"app={app}")
        if len(pods) == count and all(scenario.annotation(p) for p in pods):
            return pods
        return None

    return scenario.wait(found, f"{count} annotated pod(s) of {app}")


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"])
def test_controller_violation_shows_in_describe_once(
    scenario: Scenario, kind: str, resync_window: float
) -> None:
    policy = scenario.workload_policy()
    ns = _name(scenario.namespace())
    name = kind.lower()
    body = e2e_scenario.controller(kind, ns, name, scenario.env.settings.image, privileged=True)
    top = scenario.create(PATHS[kind](ns), body)
    job = None
    if kind == "CronJob":
        job = scenario.create(kube_api.jobs(ns), job_from_cronjob(top))

    annotation = scenario.wait_annotated(top)
    assert f"{_name(policy)}/privileged(main)" in annotation, annotation
    event = scenario.wait_event(top, VIOLATION, type_="Warning")
    assert "securityContext.privileged" in event["message"], event["message"]
    text = describe(scenario, top)
    assert "kube-guardrails.io/violations" in text, text
    assert VIOLATION in text and "privileged" in text, text

    # Its Pod (the Job's, for a CronJob) carries the annotation: enforcement works on Pods.
    [pod] = annotated_pods(scenario, ns, name, 1)
    assert scenario.annotation(pod) == annotation
    # One Event for the whole workload: on the top-level owner, none on the Pod (nor on a
    # CronJob's Job, which is reviewed through the CronJob and never written).
    expected = [f"{kind}/{name}"]
    harness.hold_for(
        lambda: regarding(violation_events(scenario, ns)) == expected,
        duration=resync_window,
        interval=1.0,
        what=f"exactly one {VIOLATION} event, on {kind}/{name}",
    )
    if job is not None:
        assert scenario.annotation(job) is None
        managers = {m.get("manager") for m in scenario.read(job)["metadata"]["managedFields"]}
        assert "kube-guardrails" not in managers, managers


def test_deployment_with_three_violating_replicas_gets_one_event(
    scenario: Scenario, resync_window: float
) -> None:
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    body = e2e_scenario.deployment(
        ns, "web", scenario.env.settings.image, replicas=3, privileged=True
    )
    deploy = scenario.create(kube_api.deployments(ns), body)
    annotation = scenario.wait_annotated(deploy)
    pods = annotated_pods(scenario, ns, "web", 3)
    assert {scenario.annotation(p) for p in pods} == {annotation}
    for pod in pods:
        scenario.wait_running(pod)
    [replicaset] = scenario.kube.list(kube_api.replicasets(ns), labels="app=web")
    harness.hold_for(
        lambda: regarding(violation_events(scenario, ns)) == ["Deployment/web"],
        duration=resync_window,
        interval=1.0,
        what=f"one {VIOLATION} event for the deployment and its 3 pods, not four",
    )
    # The ReplicaSet is never written by the operator (it may show the Deployment's
    # annotation: the Deployment controller copies a Deployment's annotations to it).
    managers = {m.get("manager") for m in scenario.read(replicaset)["metadata"]["managedFields"]}
    assert "kube-guardrails" not in managers, managers
    assert VIOLATION in describe(scenario, deploy)


def test_a_pod_changed_after_admission_gets_its_own_event(scenario: Scenario) -> None:
    """The Deployment's template is compliant; one of its Pods is edited to `:latest`."""
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    image = scenario.env.settings.image
    deploy = scenario.create(
        kube_api.deployments(ns), e2e_scenario.deployment(ns, "edited", image, replicas=1)
    )
    [pod] = scenario.wait(lambda: scenario.pods(ns, "app=edited"), "the deployment's pod")
    latest = image.rsplit(":", 1)[0] + ":latest"
    # A container image is one of the few mutable fields of a Pod's spec.
    scenario.kube.patch(
        e2e_scenario.self_path(pod),
        [{"op": "replace", "path": "/spec/containers/0/image", "value": latest}],
        content_type=kube_api.JSON_PATCH,
    )
    annotation = scenario.wait_annotated(pod)
    assert "/imageTag(main)" in annotation, annotation
    event = scenario.wait_event(pod, VIOLATION, type_="Warning")
    assert "imageTag" in event["message"]
    assert scenario.annotation(deploy) is None
    assert regarding(violation_events(scenario, ns)) == [f"Pod/{_name(pod)}"]


def test_violation_event_lost_to_a_restart_is_posted_by_the_next_process(
    scenario: Scenario, restartable: e2e_scenario.Env, resync_window: float
) -> None:
    """The operator stopped between the annotation patch and the Event post (a restart or
    a leader take-over in the middle of a review): the next process finds the recent
    annotation without its Event and posts it, once; the Job's Pod, covered by the Job,
    still gets none."""
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    image = scenario.env.settings.image
    job = scenario.create(
        kube_api.jobs(ns), e2e_scenario.controller("Job", ns, "lost", image, privileged=True)
    )
    annotation = scenario.wait_annotated(job)
    first = scenario.wait_event(job, VIOLATION, type_="Warning")
    annotated_pods(scenario, ns, "lost", 1)
    # What a stop right after the patch leaves behind: the annotation, no Event.
    scenario.kube.delete(kube_api.core(ns, "events", _name(first)))
    assert violation_events(scenario, ns) == []
    restartable.restart_operator()
    event = scenario.wait_event(job, VIOLATION, type_="Warning")
    assert event["metadata"]["uid"] != first["metadata"]["uid"]
    assert "securityContext.privileged" in event["message"], event["message"]
    assert scenario.annotation(job) == annotation
    harness.hold_for(
        lambda: regarding(violation_events(scenario, ns)) == ["Job/lost"],
        duration=resync_window,
        interval=1.0,
        what=f"exactly one {VIOLATION} event after the restart, on Job/lost",
    )
