"""The report service: when it writes, what it skips, and that it never raises.

The fake gateway stores Reports as the API server would after a server-side apply (the
body replaces the object) and counts requests; the real API server runs the same
service in the integration tests. Time is a fake monotonic clock driven by the test.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from kube_guardrails import metrics, planning, reports
from kube_guardrails.checks import engine, registry
from kube_guardrails.services import reports as report_service

SINCE = datetime.datetime(2026, 11, 29, 1, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeGateway:
    def __init__(self, *, served: bool = True) -> None:
        self.is_served = served
        self.store: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail: list[str] = []  # operations that raise on their next call

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if op in self.fail:
            self.fail.remove(op)
            raise ConnectionError(f"{op}: connection refused")

    async def served(self) -> bool:
        self._maybe_fail("discover")
        return self.is_served

    async def list_ours(self) -> list[dict[str, Any]]:
        self._maybe_fail("list")
        return [copy.deepcopy(r) for r in self.store.values()]

    async def apply(self, report: Mapping[str, Any]) -> Mapping[str, Any]:
        self._maybe_fail("apply")
        stored = copy.deepcopy(dict(report))
        stored["metadata"]["resourceVersion"] = str(len(self.calls))
        self.store[report["metadata"]["namespace"]] = stored
        return copy.deepcopy(stored)

    async def delete(self, *, namespace: str, name: str) -> bool:
        self._maybe_fail("delete")
        return self.store.pop(namespace, None) is not None

    def writes(self) -> list[str]:
        return [c for c in self.calls if c in ("apply", "delete")]


class FakeSource:
    def __init__(self) -> None:
        self.is_ready = True
        self.by_namespace: dict[str, list[reports.Entry]] = {}

    def ready(self) -> bool:
        return self.is_ready

    def violating_namespaces(self) -> list[str]:
        return [ns for ns, entries in self.by_namespace.items() if entries]

    def entries(self, namespace: str) -> list[reports.Entry]:
        return list(self.by_namespace.get(namespace, []))


def entry(name: str, *checks: str, action: str = "Audit") -> reports.Entry:
    findings = tuple(
        planning.AttributedFinding(
            policy="base",
            action=action,
            finding=engine.Finding(
                check=check,
                severity=registry.Severity.MEDIUM,
                message=f"{check} fails",
                path="spec.containers[0]",
                container="app",
                hint="",
            ),
        )
        for check in checks
    )
    return reports.Entry(
        subject=reports.Subject(kind="Pod", name=name, uid=f"uid-{name}"),
        findings=findings,
        since=SINCE,
    )


class Harness:
    def __init__(self, *, served: bool = True) -> None:
        self.clock = Clock()
        self.gateway = FakeGateway(served=served)
        self.source = FakeSource()
        self.metrics = metrics.Metrics(process_collectors=False)
        self.service = report_service.ReportService(
            gateway=self.gateway,
            source=self.source,
            telemetry=self.metrics,
            clock=self.clock,
            debounce=2,
            discovery_interval=60,
            resync_interval=600,
            retry_after=10,
        )

    async def at(self, seconds: float) -> float:
        """Advance the clock to ``seconds`` after the start and run what is due."""
        self.clock.now = 1000.0 + seconds
        return await self.service.step()

    def summary(self, namespace: str) -> dict[str, int]:
        summary: dict[str, int] = self.gateway.store[namespace]["summary"]
        return summary

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def counted(self, operation: str) -> float | None:
        return self.sample("kube_guardrails_report_writes_total", operation=operation)


async def test_without_the_crd_nothing_but_discovery_happens() -> None:
    h = Harness(served=False)
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    h.service.changed("shop")
    for t in (0, 5, 30):
        await h.at(t)
    assert h.gateway.calls == ["discover"]
    assert h.service.served is False
    assert h.sample("kube_guardrails_reports_enabled") == 0


async def test_a_report_follows_the_namespaces_violations() -> None:
    h = Harness()
    await h.at(0)  # discovery + initial list (nothing yet)
    assert h.gateway.calls == ["discover", "list"]

    h.source.by_namespace["shop"] = [
        entry("web", "probes"),
        entry("api", "privileged", action="Enforce"),
    ]
    h.service.changed("shop")
    assert await h.at(1) == pytest.approx(1002)  # debounced: due 2 s after the change
    assert h.gateway.writes() == []
    await h.at(2)
    assert h.gateway.writes() == ["apply"]
    assert h.summary("shop") == {"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0}

    h.service.changed("shop")  # nothing really changed: compared, not written
    await h.at(5)
    assert h.gateway.writes() == ["apply"]

    h.source.by_namespace["shop"] = [entry("api", "privileged", action="Enforce")]
    h.service.changed("shop")
    await h.at(8)
    assert h.gateway.writes() == ["apply", "apply"]
    assert h.summary("shop")["warn"] == 0

    h.source.by_namespace["shop"] = []
    h.service.changed("shop")
    await h.at(11)
    assert h.gateway.writes() == ["apply", "apply", "delete"]
    assert h.gateway.store == {}
    assert (h.counted("create"), h.counted("update"), h.counted("delete")) == (1, 1, 1)


async def test_a_burst_of_changes_is_one_write() -> None:
    h = Harness()
    await h.at(0)
    for i in range(20):
        h.source.by_namespace["shop"] = [entry(f"p{j}", "probes") for j in range(i + 1)]
        h.service.changed("shop")
        await h.at(i * 0.05)
    await h.at(2)
    assert h.gateway.writes() == ["apply"]
    assert h.summary("shop")["warn"] == 20


async def test_nothing_is_written_before_every_workload_was_reviewed() -> None:
    h = Harness()
    h.gateway.store["shop"] = reports.build_report("shop", [entry("web", "probes")]) or {}
    h.source.is_ready = False  # a restart: "no violations" is not known yet
    assert await h.at(0) == pytest.approx(1001)  # polls for the end of the first pass
    await h.at(30)
    assert h.gateway.writes() == []
    h.source.is_ready = True
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    await h.at(31)
    assert h.gateway.writes() == []  # the stored Report is already right
    assert h.service.known().keys() == {"shop"}


async def test_a_restart_deletes_stale_reports_and_fixes_changed_ones() -> None:
    h = Harness()
    h.gateway.store["fixed"] = reports.build_report("fixed", [entry("web", "probes")]) or {}
    h.gateway.store["shop"] = reports.build_report("shop", [entry("web", "probes")]) or {}
    h.source.by_namespace["shop"] = [entry("web", "probes", "imageTag")]
    h.source.by_namespace["new"] = [entry("web", "probes")]
    await h.at(0)
    assert sorted(h.gateway.store) == ["new", "shop"]
    assert h.summary("shop")["warn"] == 2
    assert sorted(h.gateway.writes()) == ["apply", "apply", "delete"]


async def test_reports_of_others_are_left_alone() -> None:
    h = Harness()
    foreign = reports.build_report("shop", [entry("web", "probes")]) or {}
    foreign["metadata"]["name"] = "kyverno-pol-abc"
    h.gateway.store["shop"] = foreign
    await h.at(0)
    assert h.gateway.writes() == []  # not ours: never deleted, though "shop" has no violations


async def test_the_crd_appearing_later_turns_reports_on() -> None:
    h = Harness(served=False)
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    await h.at(0)
    h.gateway.is_served = True
    assert await h.at(59) == pytest.approx(1060)  # next discovery
    assert h.gateway.writes() == []
    await h.at(60)
    assert h.gateway.writes() == ["apply"]
    assert h.sample("kube_guardrails_reports_enabled") == 1


async def test_the_crd_going_away_stops_writes() -> None:
    h = Harness()
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    await h.at(0)
    assert h.gateway.writes() == ["apply"]
    h.gateway.is_served = False
    await h.at(60)
    h.source.by_namespace["shop"] = []
    h.service.changed("shop")
    await h.at(70)
    assert h.gateway.writes() == ["apply"]
    assert h.service.known() == {}


async def test_failures_are_retried_and_never_raised() -> None:
    h = Harness()
    h.gateway.fail = ["discover"]
    await h.at(0)
    assert h.service.served is None  # could not tell: nothing written, asked again later
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    h.gateway.fail = ["apply"]
    await h.at(60)  # discovery, list, apply fails
    assert h.gateway.store == {}
    await h.at(65)
    assert h.gateway.store == {}  # retried after 10 s, not before
    await h.at(70)
    assert h.summary("shop")["warn"] == 1


async def test_a_report_deleted_by_hand_comes_back_at_the_resync() -> None:
    h = Harness()
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    await h.at(0)
    del h.gateway.store["shop"]
    await h.at(300)
    assert "shop" not in h.gateway.store
    await h.at(600)
    assert h.summary("shop")["warn"] == 1


async def test_a_deleted_namespace_needs_no_delete() -> None:
    h = Harness()
    h.source.by_namespace["shop"] = [entry("web", "probes")]
    await h.at(0)
    h.gateway.store.clear()  # the namespace's deletion took the Report with it
    h.source.by_namespace.pop("shop")
    h.service.namespace_gone("shop")
    h.service.changed("shop")
    await h.at(5)
    assert h.gateway.writes() == ["apply"]
