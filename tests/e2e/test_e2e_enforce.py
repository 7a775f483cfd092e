"""Enforce mode on a real cluster (issue #3, point 5): evictions, and when there are none.

Eviction is observable only over time ("not before the grace period", "not past the
budget"), so these tests watch a pod for a window and then for the eviction. Windows
are the policy's own numbers (grace period, one minute of rate limit) plus the
operator's resync interval; the timeout for the operator to act is the harness's.

An Enforce policy also refuses violating Pods at admission (issue 9, see
test_e2e_admission.py), so the violating Pods here exist before their policy does:
eviction is for what admission could not stop (workloads older than the policy).
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_manifests
import e2e_scenario
import pytest

from kube_guardrails import ANNOTATION_PREFIX, OPERATOR_NAMESPACE

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
ANNOTATION_SINCE = ANNOTATION_PREFIX + "violations-since"


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _image(scenario: Scenario) -> str:
    return scenario.env.settings.image


def enforce_spec(
    *,
    grace: int = 0,
    per_minute: int = 10,
    dry_run: bool = False,
    mode: str = "Enforce",
    action: str = "Enforce",
) -> dict[str, Any]:
    return {
        "mode": mode,
        "workloads": {
            "checks": {"privileged": {"action": action}},
            "enforcement": {
                "gracePeriodSeconds": grace,
                "maxEvictionsPerMinute": per_minute,
                "dryRun": dry_run,
            },
        },
    }


def _violating_pod(scenario: Scenario, ns: str, name: str, **labels: str) -> Obj:
    return scenario.create(
        kube_api.pods(ns),
        e2e_scenario.pod(ns, name, _image(scenario), privileged=True, labels=labels or None),
    )


def _since(scenario: Scenario, pod: Obj) -> float:
    """When the operator first saw the violation (its ``violations-since`` annotation)."""

    def read() -> str | None:
        current = scenario.read(pod)
        return ((current or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_SINCE)

    stamp = scenario.wait(read, f"{ANNOTATION_SINCE} on {e2e_scenario.describe(pod)}")
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def _eviction_events(scenario: Scenario, pod: Obj) -> list[Obj]:
    return scenario.events(pod["metadata"]["uid"], e2e_scenario.GUARDRAIL_EVICTION)


def _never_evicted(scenario: Scenario, pods: list[Obj], duration: float, what: str) -> None:
    harness.hold_for(
        lambda: not any(scenario.evicted(p) for p in pods), duration=duration, what=what
    )


def test_enforce_evicts_only_after_the_grace_period(scenario: Scenario) -> None:
    grace = 20
    ns = _name(scenario.namespace())
    pod = _violating_pod(scenario, ns, "late")
    scenario.workload_policy(spec=enforce_spec(grace=grace))
    annotation = scenario.wait_annotated(pod)
    assert annotation.endswith("!"), f"an evictable item is marked with '!': {annotation}"
    since = _since(scenario, pod)
    # Two seconds short of the deadline: the annotation has second precision.
    _never_evicted(
        scenario,
        [pod],
        max(0.0, since + grace - 2 - time.time()),
        "the pod kept during its grace period",
    )
    scenario.wait(lambda: scenario.evicted(pod), "the pod evicted after its grace period")
    event = scenario.wait_event(pod, e2e_scenario.GUARDRAIL_EVICTION, type_="Warning")
    assert "privileged" in event["message"], event


@pytest.mark.e2e_serial
def test_evictions_are_rate_limited(scenario: Scenario) -> None:
    ns = _name(scenario.namespace())
    pods = [_violating_pod(scenario, ns, f"burst-{i}") for i in range(3)]
    scenario.workload_policy(spec=enforce_spec(grace=0, per_minute=1))

    def evicted() -> list[Obj]:
        return [p for p in pods if scenario.evicted(p)]

    scenario.wait(evicted, "the first eviction")
    # The rest of the minute: still exactly one (a sliding one-minute window).
    harness.hold_for(lambda: len(evicted()) == 1, duration=50, what="one eviction per minute")
    scenario.wait(lambda: len(evicted()) >= 2, "a second eviction in the next minute", timeout=120)


def test_eviction_never_bypasses_a_pod_disruption_budget(scenario: Scenario) -> None:
    ns = _name(scenario.namespace())
    deploy = scenario.create(
        kube_api.deployments(ns),
        e2e_scenario.deployment(ns, "guarded", _image(scenario), replicas=2, privileged=True),
    )
    pdb = scenario.create(
        kube_api.pod_disruption_budgets(ns),
        e2e_scenario.pod_disruption_budget(ns, "guarded", app="guarded", min_available=2),
    )

    def both_replicas() -> list[Obj] | None:
        found = scenario.pods(ns, "app=guarded")
        return found if len(found) == 2 else None

    pods = scenario.wait(both_replicas, "both replicas created")

    def budget_holds() -> bool:
        # Pending or unready Pods may be evicted whatever the budget says: wait until
        # the budget protects both (the policy comes afterwards, grace 0).
        status = (scenario.read(pdb) or {}).get("status") or {}
        return status.get("currentHealthy") == 2 and status.get("disruptionsAllowed") == 0

    scenario.wait(budget_holds, "the budget guarding both healthy replicas")
    scenario.workload_policy(spec=enforce_spec(grace=0))

    def refused() -> Obj | None:
        for p in pods:
            for event in _eviction_events(scenario, p):
                text = event.get("message", "")
                if "429" in text or "PodDisruptionBudget" in text:
                    return event
        return None

    scenario.wait(refused, "a GuardrailEviction event saying the budget refused")
    _never_evicted(scenario, pods, 20, "pods kept while the budget forbids eviction")
    assert scenario.read(deploy) is not None
    # Retried, not given up: once the budget goes, the eviction goes through.
    scenario.kube.delete(e2e_scenario.self_path(pdb))
    scenario.wait(
        lambda: any(scenario.evicted(p) for p in pods),
        "an eviction once the budget is gone (retry with backoff)",
        timeout=max(scenario.timeout, 360),
    )


def test_dry_run_records_would_evict_and_keeps_the_pod(scenario: Scenario) -> None:
    ns = _name(scenario.namespace())
    pod = _violating_pod(scenario, ns, "dry")
    scenario.workload_policy(spec=enforce_spec(grace=0, dry_run=True))

    def would_evict() -> Obj | None:
        for event in _eviction_events(scenario, pod):
            if "would evict" in event.get("message", "").lower():
                return event
        return None

    scenario.wait(would_evict, "a 'would evict' GuardrailEviction event")
    _never_evicted(scenario, [pod], 15, "the pod kept in dry-run mode")


def test_daemonset_pods_are_never_evicted(scenario: Scenario, resync_window: float) -> None:
    ns = _name(scenario.namespace())
    scenario.create(
        kube_api.daemonsets(ns),
        e2e_scenario.daemonset(ns, "agent", _image(scenario), privileged=True),
    )
    pods = scenario.wait(lambda: scenario.pods(ns, "app=agent"), "the DaemonSet's pods")
    # Spared because the DaemonSet is verified to exist (its controller reference), not
    # because the Pod says so.
    scenario.workload_policy(spec=enforce_spec(grace=0))
    for p in pods:
        scenario.wait_annotated(p)
    _never_evicted(scenario, pods, resync_window, "DaemonSet pods kept")
    assert not any(_eviction_events(scenario, p) for p in pods)


def _stand_in_operator_pod(scenario: Scenario) -> Obj:
    """Local mode: a Pod of the operator's Deployment template, in the operator's namespace.

    The operator runs outside the cluster then, so the cluster holds no Pod of it; this
    one is what the Deployment from manifests/ would create (same labels, same spec),
    which is all the operator can go by.
    """
    if scenario.kube.get_or_none(kube_api.namespaces(OPERATOR_NAMESPACE)) is None:
        pytest.skip(
            f"namespace {OPERATOR_NAMESPACE} does not exist (the operator runs with your own "
            "credentials: E2E_SERVICE_ACCOUNT=0); hack/e2e.sh creates it"
        )
    [deployment] = [d for d in e2e_manifests.rendered_manifests() if d.get("kind") == "Deployment"]
    template = deployment["spec"]["template"]
    return scenario.create(
        kube_api.pods(OPERATOR_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": scenario.name("operator"),
                "namespace": OPERATOR_NAMESPACE,
                "labels": dict(template["metadata"]["labels"]),
            },
            "spec": template["spec"],
        },
    )


@pytest.mark.e2e_serial
def test_operator_pods_are_never_evicted(scenario: Scenario, resync_window: float) -> None:
    stand_in = None
    if scenario.env.settings.mode != "in-cluster":
        stand_in = _stand_in_operator_pod(scenario)
    try:
        _operator_pods_are_never_evicted(scenario, resync_window)
    finally:
        if stand_in is not None:
            scenario.kube.delete(e2e_scenario.self_path(stand_in))


def _operator_pods_are_never_evicted(scenario: Scenario, resync_window: float) -> None:
    before = {p["metadata"]["uid"] for p in scenario.env.operator_pods()}
    assert before, "no operator Pod found"
    control = _name(scenario.namespace())
    probe = _violating_pod(scenario, control, "probe")
    # A policy that tries its hardest: it names the operator's namespace, and its
    # registry allow-list is one the operator's own image cannot be from.
    scenario.workload_policy(
        namespace_selector={
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": [OPERATOR_NAMESPACE, control],
                }
            ]
        },
        spec=harness.deep_merge(
            enforce_spec(grace=0),
            {
                "workloads": {
                    "checks": {
                        "imageRegistry": {
                            "action": "Enforce",
                            "allowed": ["registry.invalid.example/"],
                        }
                    }
                },
            },
        ),
    )
    scenario.wait(lambda: scenario.evicted(probe), "the policy evicting in its other namespace")

    def operator_untouched() -> bool:
        pods = scenario.env.operator_pods()
        return {p["metadata"]["uid"] for p in pods} == before and not any(
            p["metadata"].get("deletionTimestamp") for p in pods
        )

    harness.hold_for(operator_untouched, duration=resync_window, what="operator Pods kept")
    for pod in scenario.env.operator_pods():
        assert not _eviction_events(scenario, pod)


def test_pods_in_excluded_namespaces_are_never_checked_or_evicted(scenario: Scenario) -> None:
    ns = _name(scenario.namespace())
    control = _name(scenario.namespace())
    excluded = _violating_pod(scenario, ns, "excluded")
    probe = _violating_pod(scenario, control, "probe")
    scenario.workload_policy(spec={**enforce_spec(grace=0), "excludeNamespaces": [ns]})
    scenario.wait(lambda: scenario.evicted(probe), "the pod in the selected namespace evicted")
    assert scenario.annotation(excluded) is None
    _never_evicted(scenario, [excluded], 10, "the pod in the excluded namespace kept")


@pytest.mark.parametrize(
    ("mode", "action"),
    [
        pytest.param("Audit", "Enforce", id="audit-mode-enforce-action"),
        pytest.param("Enforce", "Audit", id="enforce-mode-audit-action"),
    ],
)
def test_only_enforce_mode_with_enforce_action_evicts(
    scenario: Scenario, mode: str, action: str, resync_window: float
) -> None:
    scenario.workload_policy(spec=enforce_spec(grace=0, mode=mode, action=action))
    ns = _name(scenario.namespace())
    pod = _violating_pod(scenario, ns, "spared")
    annotation = scenario.wait_annotated(pod)
    assert not annotation.endswith("!"), annotation
    _never_evicted(scenario, [pod], resync_window, f"the pod kept ({mode} mode, {action} action)")


@pytest.mark.e2e_serial
def test_exemption_applies_until_it_expires(scenario: Scenario) -> None:
    lifetime = 25.0
    # The namespace first, ready for Pods: its set-up is not part of the window.
    ns = _name(scenario.namespace())
    scenario.wait_service_account(ns)
    # Whole seconds: the CRD's date-time has second precision here.
    expires = float(int(time.time() + lifetime))
    policy = scenario.workload_policy(
        spec={
            "workloads": {
                "exemptions": [
                    {
                        "selector": {"matchLabels": {"app": "legacy"}},
                        "checks": ["privileged"],
                        "reason": "e2e: vendor image, ticket SEC-123",
                        "expires": harness.iso_utc(expires),
                    }
                ]
            }
        }
    )
    legacy = _violating_pod(scenario, ns, "legacy", app="legacy")
    sentinel = _violating_pod(scenario, ns, "sentinel", app="sentinel")
    scenario.wait_annotated(sentinel)
    assert time.time() < expires, "the operator was too slow to test the exemption window"
    assert scenario.annotation(legacy) is None, "the exemption applies before it expires"

    scenario.wait(
        lambda: scenario.annotation(legacy),
        "the violation reported once the exemption expired",
        timeout=lifetime + scenario.timeout,
    )
    assert time.time() >= expires - 1, "reported before the exemption expired"
    scenario.wait_event(legacy, e2e_scenario.GUARDRAIL_VIOLATION, type_="Warning")

    event = scenario.wait_event(policy, e2e_scenario.EXEMPTION_EXPIRED, type_="Warning")
    assert "spec.workloads.exemptions[0]" in event.get("message", ""), event


def test_grace_period_after_an_operator_restart_is_never_shorter(
    scenario: Scenario, restartable: e2e_scenario.Env
) -> None:
    """The grace clock is the operator's memory (annotations are anyone's to edit), so a
    restart starts it again at the new process's first review: a full grace period
    after the restart at the earliest, never earlier than the original one, then evicted."""
    grace = 20
    ns = _name(scenario.namespace())
    pod = _violating_pod(scenario, ns, "patient")
    scenario.workload_policy(spec=enforce_spec(grace=grace))
    since = _since(scenario, pod)
    harness.hold_for(
        lambda: not scenario.evicted(pod),
        duration=max(0.0, since + 10 - time.time()),
        what="the pod kept before the restart",
    )
    restarting = time.time()
    restartable.restart_operator()
    _never_evicted(
        scenario,
        [pod],
        max(0.0, restarting + grace - 2 - time.time()),
        "kept for a full grace period after the restart",
    )
    scenario.wait(lambda: scenario.evicted(pod), "the eviction after the grace period")
