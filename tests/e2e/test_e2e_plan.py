"""``kube-guardrails plan`` predicts what the operator then does (issue 11, item 3).

Runs ``plan`` for a policy, applies the same policy, and compares what the running
operator did with what the plan said: the managed objects created per namespace, the
workloads that got a violation annotation (and the checks in it), and the Pods that got
a ``GuardrailEviction`` Event (dry run, so nothing is really evicted). Needs the
operator: run through ``hack/e2e.sh`` (e.g. ``hack/e2e.sh -k plan``).

Every kind the operator reviews is compared for annotations: Pods, Deployments and the
other pod controllers (created without Pods: no replicas, suspended Job and CronJob, so
the eviction comparison stays about the one standalone Pod). DaemonSets, which always
run Pods, are left to ``test_e2e_controllers``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import e2e_kube as kube_api
import e2e_scenario
import pytest
import yaml

from kube_guardrails import builders, violations

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
COMPARED = ("Pod", "Deployment", "StatefulSet", "ReplicaSet", "Job", "CronJob")
# A controller of each kind beyond Deployment, violating, running no Pod.
CONTROLLERS = {"StatefulSet": "db", "ReplicaSet": "rs", "Job": "batch", "CronJob": "nightly"}
PATHS = {
    "StatefulSet": kube_api.statefulsets,
    "ReplicaSet": kube_api.replicasets,
    "Job": kube_api.jobs,
    "CronJob": kube_api.cronjobs,
}


def _plan(scenario: Scenario, policy_file: pathlib.Path) -> dict[str, Any]:
    args = [sys.executable, "-m", "kube_guardrails", "plan", "--policy", str(policy_file)]
    if scenario.kube.context:
        args += ["--context", scenario.kube.context]
    result = subprocess.run(
        [*args, "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_plan_matches_what_the_operator_does(scenario: Scenario, tmp_path: pathlib.Path) -> None:
    selected = scenario.namespace("sel")["metadata"]["name"]
    other = scenario.namespace("other", selected=False)["metadata"]["name"]
    image = scenario.env.settings.image
    workloads = {
        "priv": scenario.create(
            kube_api.pods(selected), e2e_scenario.pod(selected, "priv", image, privileged=True)
        ),
        "good": scenario.create(kube_api.pods(selected), e2e_scenario.pod(selected, "good", image)),
        "web": scenario.create(
            kube_api.deployments(selected),
            e2e_scenario.deployment(selected, "web", image, replicas=0, privileged=True),
        ),
        "elsewhere": scenario.create(
            kube_api.pods(other), e2e_scenario.pod(other, "elsewhere", image, privileged=True)
        ),
    }
    for kind, cname in CONTROLLERS.items():
        workloads[cname] = scenario.create(
            PATHS[kind](selected),
            e2e_scenario.controller(
                kind, selected, cname, image, privileged=True, replicas=0, suspend=True
            ),
        )
    spec = {
        "mode": "Enforce",
        "workloads": {
            "podSecurity": "baseline",
            "checks": {**e2e_scenario.QUIET_CHECKS, "privileged": {"action": "Enforce"}},
            "enforcement": {"gracePeriodSeconds": 0, "dryRun": True},
        },
    }
    body = scenario.policy_body("plan", spec)
    name = body["metadata"]["name"]
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(body))

    plan = _plan(scenario, policy_file)
    by_ns = {n["name"]: n for n in plan["namespaces"]}
    assert by_ns[selected]["selectedBy"] == [name]
    assert by_ns[other]["selected"] is False

    scenario.policy("plan", spec)  # the same body: apply what was planned

    # Hardening: exactly the objects the plan said it would create.
    for namespace in (selected, other):
        planned = {
            c["kind"] for c in by_ns[namespace]["hardening"]["changes"] if c["action"] == "create"
        }
        if planned:
            scenario.wait_hardened(namespace, name)
        done = {
            kind.kind
            for kind in builders.MANAGED_KINDS
            if any(
                o["metadata"]["labels"].get(builders.LABEL_POLICY) == name
                for o in scenario.managed(namespace, kind.kind)
            )
        }
        assert done == planned, namespace

    # Violations: the annotation of each workload carries exactly the planned checks.
    planned_checks = {
        (w["kind"], w["name"]): {v["check"] for v in w["violations"]}
        for w in by_ns[selected]["workloads"]
        if w["kind"] in COMPARED
    }
    assert set(planned_checks) == {
        ("Pod", "priv"),
        ("Deployment", "web"),
        *((kind, cname) for kind, cname in CONTROLLERS.items()),
    }
    for key in planned_checks:
        value = scenario.wait_annotated(workloads[key[1]])
        parsed = violations.parse(value)
        assert parsed is not None, value
        assert {i.check for i in parsed.items if i.policy == name} == planned_checks[key]
    for unplanned in ("good", "elsewhere"):
        assert scenario.annotation(workloads[unplanned]) is None

    # Enforce: the Pods the plan said would be evicted get the (dry-run) eviction Event.
    evictions = {e["pod"]: e for e in by_ns[selected]["evictions"]}
    assert set(evictions) == {"priv"} and evictions["priv"]["dryRun"] is True
    event = scenario.wait_event(workloads["priv"], "GuardrailEviction")
    assert "would evict" in event.get("message", "")
