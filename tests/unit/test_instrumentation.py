"""What the use cases count into the metrics and tell the report service.

The workload service with the fakes of ``workload_fakes`` (they apply patches like the
API server would), a real ``metrics.Metrics`` registry read back through its samples,
and a recording report sink. The real API server runs the same wiring in the e2e suite.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import workload_fakes as fakes

from kube_guardrails import builders, metrics, violations
from kube_guardrails.services import enforcement, hardening, policies, workloads
from kube_guardrails.services import reports as report_service


class Sink:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.gone: list[str] = []

    def changed(self, namespace: str) -> None:
        self.changes.append(namespace)

    def namespace_gone(self, namespace: str) -> None:
        self.gone.append(namespace)


class World:
    def __init__(self, *policy_objs: Mapping[str, Any]) -> None:
        self.clock = fakes.Clock()
        self.gateway = fakes.FakeGateway()
        self.metrics = metrics.Metrics(process_collectors=False)
        self.store = policies.PolicyStore()
        for obj in policy_objs:
            self.store.upsert(obj)
        self.service = workloads.WorkloadService(
            gateway=self.gateway,
            policies=self.store,
            status=fakes.FakeStatus(),
            operator_namespace="kube-guardrails-system",
            clock=self.clock,
            enforcer=enforcement.Enforcer(
                gateway=self.gateway,
                clock=self.clock,
                operator_namespace="kube-guardrails-system",
                telemetry=self.metrics,
            ),
            telemetry=self.metrics,
        )
        self.sink = Sink()
        self.service.attach_reports(self.sink)
        self.store.subscribe(self.service.policy_changed)
        self.service.namespace_seen("team-a", {"team": "a"})

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = self.gateway.put(body)
        await self.service.observe(stored)
        meta = body["metadata"]
        return copy.deepcopy(self.gateway.objects[(body["kind"], meta["namespace"], meta["name"])])

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def violations(self, check: str, namespace: str = "team-a") -> float | None:
        return self.sample(
            "kube_guardrails_violations", policy="baseline", check=check, namespace=namespace
        )


async def test_violations_per_namespace_follow_the_reviews() -> None:
    world = World(fakes.policy())
    await world.apply(fakes.privileged(fakes.compliant_pod("a")))
    await world.apply(fakes.privileged(fakes.compliant_pod("b")))
    await world.apply(fakes.privileged(fakes.deployment("web")))
    assert world.violations("privileged") == 3  # two Pods and a Deployment
    await world.apply(fakes.compliant_pod("a"))
    assert world.violations("privileged") == 2
    await world.service.forget(world.gateway.objects[("Pod", "team-a", "b")])
    await world.apply(fakes.deployment("web"))
    assert world.violations("privileged") is None  # zero: the series is gone
    assert world.sample("kube_guardrails_review_duration_seconds_count", kind="Pod") == 3
    assert world.sample("kube_guardrails_review_duration_seconds_count", kind="Deployment") == 2


async def test_the_report_service_hears_of_every_change_and_only_of_changes() -> None:
    world = World(fakes.policy())
    pod = await world.apply(fakes.privileged(fakes.compliant_pod("a")))
    assert world.sink.changes == ["team-a"]
    await world.service.observe(pod)  # a resync: same verdict, same since
    assert world.sink.changes == ["team-a"]
    assert world.service.violating_namespaces() == ["team-a"]
    (entry,) = world.service.report_entries("team-a")
    assert (entry.subject.kind, entry.subject.name, entry.subject.uid) == ("Pod", "a", "uid-a")
    assert entry.subject.api_version == "v1"
    assert entry.since == violations.parse_since(pod["metadata"]["annotations"])
    assert {f.finding.check for f in entry.findings} == {"privileged"}

    await world.apply(fakes.compliant_pod("a"))
    assert world.sink.changes == ["team-a", "team-a"]
    assert world.service.violating_namespaces() == []
    assert world.service.report_entries("team-a") == []
    world.service.namespace_gone("team-a")
    assert world.sink.gone == ["team-a"]


async def test_reports_wait_for_the_first_full_review() -> None:
    world = World(fakes.policy())
    world.service = workloads.WorkloadService(
        gateway=world.gateway,
        policies=world.store,
        status=fakes.FakeStatus(),
        operator_namespace="kube-guardrails-system",
        clock=world.clock,
        wait_for=("Pod",),
    )
    source = report_service.FromReviews(world.service)
    assert source.ready() is False
    world.service.listed("Pod", [])
    world.service.namespace_seen("team-a", {})
    await world.service.run_due()
    assert source.ready() is True


@pytest.mark.parametrize(
    ("dry_run", "outcome"),
    [(True, metrics.DRY_RUN), (False, metrics.EVICTED)],
)
async def test_evictions_are_counted_by_outcome(dry_run: bool, outcome: str) -> None:
    world = World(fakes.policy(mode="Enforce", grace=0, dry_run=dry_run))
    await world.apply(fakes.privileged(fakes.compliant_pod("a")))
    await world.service.run_due()
    assert world.sample("kube_guardrails_evictions_total", policy="baseline", outcome=outcome) == 1


async def test_refused_evictions_are_counted_as_refused_by_pdb() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    world.gateway.eviction_results = [enforcement.Eviction.BLOCKED]
    await world.apply(fakes.privileged(fakes.compliant_pod("a")))
    await world.service.run_due()
    refused = world.sample(
        "kube_guardrails_evictions_total", policy="baseline", outcome=metrics.REFUSED_BY_PDB
    )
    assert refused == 1


async def test_the_rate_limit_is_counted() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0, rate=1))
    for name in ("a", "b"):
        await world.apply(fakes.privileged(fakes.compliant_pod(name)))
    await world.service.run_due()
    counted = {
        outcome: world.sample("kube_guardrails_evictions_total", policy="baseline", outcome=outcome)
        for outcome in (metrics.EVICTED, metrics.RATE_LIMITED)
    }
    assert counted == {metrics.EVICTED: 1, metrics.RATE_LIMITED: 1}


# --------------------------------------------------------------------------- hardening


def hardening_world(telemetry: metrics.Metrics) -> Any:
    import test_hardening_service as hs  # its in-memory API gateway and helpers

    world = hs.make_world(hs.gp(uid="u1"), namespaces=("team-a", "team-b"))
    world.service = hardening.HardeningService(
        gateway=world.gateway,
        inventory=world.inventory,
        policies=world.store,
        status=None,
        operator_namespace="kube-guardrails-system",
        telemetry=telemetry,
    )
    return world


def test_creates_and_restores_are_counted_by_kind_and_namespaces_per_policy() -> None:
    telemetry = metrics.Metrics(process_collectors=False)
    world = hardening_world(telemetry)

    def sample(name: str, **labels: str) -> float | None:
        return telemetry.registry.get_sample_value(name, labels)

    for ns in ("team-a", "team-b"):
        world.service.reconcile(ns)
    world.watch_sync()
    assert sample("kube_guardrails_hardening_created_total", kind="NetworkPolicy") == 2
    assert sample("kube_guardrails_hardening_created_total", kind="LimitRange") == 2
    assert sample("kube_guardrails_hardening_restored_total", kind="NetworkPolicy") == 0

    del world.gateway.objects[builders.NETWORK_POLICY.plural, "team-a"]  # someone deletes it
    world.watch_sync()
    world.service.reconcile("team-a")
    assert sample("kube_guardrails_hardening_restored_total", kind="NetworkPolicy") == 1
    assert sample("kube_guardrails_hardening_created_total", kind="NetworkPolicy") == 2

    world.service.publish_status()
    assert sample("kube_guardrails_namespaces_matched", policy="baseline") == 2
    assert sample("kube_guardrails_namespaces_hardened", policy="baseline") == 2
    world.store.remove("baseline")
    world.service.publish_status()
    assert sample("kube_guardrails_namespaces_matched", policy="baseline") is None
