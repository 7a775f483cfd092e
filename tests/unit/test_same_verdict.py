"""The offline audit and the operator reach the same verdict on the same objects.

Every workload of the bundled examples, the violating Pods' specs wrapped in every pod
controller kind the operator watches (StatefulSet, DaemonSet, ReplicaSet, Job, CronJob:
``services.workloads.KINDS``), plus a few objects that exercise exemptions, expiry and
per-check overrides, goes through both paths:

* the audit path: ``audit.core.audit_documents`` over the parsed documents, as
  ``kube-guardrails audit`` runs it;
* the operator path: the watch's compact projection (``k8s.watch.KINDS``), then
  ``services.workloads.WorkloadService.observe`` with a fake gateway, as the watches
  run it.

Findings must be identical (policy, action, check, container, path, message,
severity, outcome), and the annotation the operator writes must be exactly what the
audit's findings render to.
"""

from __future__ import annotations

import copy
import datetime
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import workload_fakes as fakes

from kube_guardrails import planning, violations
from kube_guardrails.audit import core as audit_core
from kube_guardrails.audit import loader
from kube_guardrails.k8s import watch
from kube_guardrails.model import policy as policy_model
from kube_guardrails.services import policies, workloads

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


def policy_objects() -> dict[str, list[dict[str, Any]]]:
    examples_policy = next(
        d.obj
        for d in loader.load(str(EXAMPLES / "restricted-policy.yaml"))
        if isinstance(d, loader.Document)
    )
    overrides = fakes.policy("overrides", level="baseline")
    overrides["spec"]["workloads"]["checks"] = {
        "probes": {"action": "Off"},
        "resources": {"action": "Enforce", "severity": "critical"},
        "runAsNonRoot": {"action": "Audit"},
        "imageRegistry": {"allowed": ["docker.io/"]},
    }
    exemptions = fakes.policy(
        "exemptions",
        level="restricted",
        exemptions=[
            {
                "namespaces": ["team-*"],
                "checks": ["runAsNonRoot", "runAsUser"],
                "reason": "legacy images, SEC-1",
                "expires": "2027-01-01T00:00:00Z",
            },
            {
                "selector": {"matchLabels": {"app": "web"}},
                "checks": ["privileged"],
                "reason": "expired, SEC-2",
                "expires": "2026-01-01T00:00:00Z",
            },
        ],
    )
    return {
        "examples-restricted": [examples_policy],
        "overrides+exemptions": [overrides, exemptions],
        "baseline-enforce+restricted-audit": [
            fakes.policy("enforce-baseline", mode="Enforce"),
            fakes.policy("audit-restricted", level="restricted"),
        ],
    }


PROJECTIONS = {k.kind: k.project for k in watch.KINDS}
CONTROLLERS = {
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}


def as_controller(pod: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The Pod's spec and labels as the pod template of a controller of ``kind``."""
    meta = pod["metadata"]
    template = {
        "metadata": {"labels": dict(meta.get("labels") or {"app": meta["name"]})},
        "spec": copy.deepcopy(pod["spec"]),
    }
    if meta.get("annotations"):
        template["metadata"]["annotations"] = dict(meta["annotations"])
    if kind == "CronJob":
        spec: dict[str, Any] = {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": template}},
        }
    else:
        spec = {"template": template}
    return {
        "apiVersion": CONTROLLERS[kind],
        "kind": kind,
        "metadata": {"name": f"{meta['name']}-{kind.lower()}"},
        "spec": spec,
    }


def workload_objects() -> list[dict[str, Any]]:
    """Every workload of the examples, violating Pods as every controller kind, plus a
    few in a team namespace."""
    out: list[dict[str, Any]] = []
    files, errors = loader.expand([str(EXAMPLES / "workloads")])
    assert files and not errors
    for path in files:
        for item in loader.load(path):
            assert isinstance(item, loader.Document), item
            docs = item.obj.get("items", []) if item.obj.get("kind") == "List" else [item.obj]
            out.extend(d for d in docs if d.get("kind") in workloads.KINDS)
    pods = [o for o in out if o["kind"] == "Pod"]
    for i, pod in enumerate(pods):
        # Spread the violating Pods over the kinds, and give every kind a few.
        for n, kind in enumerate(sorted(CONTROLLERS)):
            if i < 3 or (i + n) % 3 == 0:
                out.append(as_controller(pod, kind))
    team = []
    for obj in out[:6]:
        moved = copy.deepcopy(obj)
        moved["metadata"]["namespace"] = "team-a"
        moved["metadata"].setdefault("labels", {})["app"] = "web"
        team.append(moved)
    for i, obj in enumerate(out + team):
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", audit_core.DEFAULT_NAMESPACE)
        meta["uid"] = f"uid-{i}"
    names = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in out + team]
    assert len(set(names)) == len(names), "example names must be unique per kind/namespace"
    return out + team


def comparable(findings: Sequence[planning.AttributedFinding]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            f.policy,
            f.action,
            f.finding.check,
            f.finding.container,
            f.finding.path,
            f.finding.message,
            f.finding.severity.label,
            str(f.finding.outcome),
        )
        for f in findings
    )


async def operator_verdicts(
    objects: Sequence[Mapping[str, Any]], policy_objs: Sequence[Mapping[str, Any]]
) -> tuple[dict[tuple[str, str, str], list[tuple[Any, ...]]], fakes.FakeGateway]:
    gateway = fakes.FakeGateway()
    store = policies.PolicyStore()
    for p in policy_objs:
        store.upsert(p)
    service = workloads.WorkloadService(
        gateway=gateway,
        policies=store,
        status=fakes.FakeStatus(),
        operator_namespace="kube-guardrails-system",
        clock=lambda: NOW,
    )
    out = {}
    for obj in objects:
        service.namespace_seen(obj["metadata"]["namespace"], {})
        # The operator sees what the watch keeps: the compact projection.
        await service.observe(PROJECTIONS[obj["kind"]](gateway.put(obj)))
        key = workloads.key_of(obj)
        verdict = service.verdict(key)
        out[key] = comparable(verdict.findings if verdict else ())
    return out, gateway


@pytest.mark.parametrize("policy_set", sorted(policy_objects()))
async def test_audit_and_operator_agree(policy_set: str) -> None:
    policy_objs = policy_objects()[policy_set]
    objects = workload_objects()
    parsed = [policy_model.parse(p) for p in policy_objs]
    documents = [
        loader.Document(source="<test>", index=i + 1, line=1, obj=obj)
        for i, obj in enumerate(objects)
    ]
    audited = audit_core.audit_documents(documents, policies=parsed, now=NOW)
    by_policy = {p.name: p for p in parsed}
    audit_findings = {}
    for report in audited.objects:
        key = (report.ref.kind, report.ref.namespace, report.ref.name)
        audit_findings[key] = report.findings
    operator, gateway = await operator_verdicts(objects, policy_objs)

    assert set(audit_findings) == set(operator)
    assert {k[0] for k, v in operator.items() if v} == set(workloads.KINDS), (
        "every reviewed kind must be covered, with violations"
    )
    assert any(operator.values()), "the corpus must contain violations"
    assert any(not v for v in operator.values()), "and compliant workloads"
    for key, findings in audit_findings.items():
        assert operator[key] == comparable(findings), key
        # What the developer sees on the object is what the audit predicts.
        stored = gateway.objects[key]
        expected = violations.render(violations.items_of(findings, policies=by_policy, kind=key[0]))
        annotations = stored["metadata"].get("annotations") or {}
        assert annotations.get(violations.ANNOTATION_VIOLATIONS, "") == expected, key
