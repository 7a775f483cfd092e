"""OpenReports Reports on a real API server: the gateway and the report service.

What only the API server can say is tested here: that the built Report is accepted by a
Report CRD written from the OpenReports reference (strict field validation, enums,
required fields), that server-side apply of an unchanged Report stores nothing new, that
discovery tells "served" from "not installed", and that the service's decisions (write,
skip, delete, leave others' Reports alone) hold against the real store. The violations
come from the real check engine over real policies (the operator's source in a running
operator is its workload review; the e2e suite covers that path).
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import real_api
import yaml

from kube_guardrails import planning, reports
from kube_guardrails.checks import engine
from kube_guardrails.k8s import reports as k8s_reports
from kube_guardrails.model import policy as policy_model
from kube_guardrails.services import reports as report_service

REPORT_CRD = pathlib.Path(__file__).resolve().parents[1] / "data" / "openreports.io_reports.yaml"
CRD_PATH = (
    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{reports.PLURAL}.{reports.GROUP}"
)
NOW = datetime.datetime(2026, 11, 29, 1, 0, tzinfo=datetime.UTC)


def install_report_crd(api: real_api.RealApi) -> None:
    """Apply the test Report CRD and wait until the API server serves it."""
    doc = yaml.safe_load(REPORT_CRD.read_text())
    api.apply(doc, CRD_PATH)

    def served() -> bool:
        crd = api.get_or_none(CRD_PATH) or {}
        established = any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )
        return established and api.get_or_none(f"/apis/{reports.API_VERSION}") is not None

    real_api.wait_for(served, what="the OpenReports Report CRD served")


@pytest.fixture(scope="module")
def report_api(real_api_session: real_api.RealApi) -> real_api.RealApi:
    install_report_crd(real_api_session)
    return real_api_session


@pytest.fixture()
def namespace(report_api: real_api.RealApi, real_namespace: str) -> str:
    return real_namespace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Source:
    """The current violations of a namespace, from the real engine over real policies."""

    def __init__(self) -> None:
        self.by_namespace: dict[str, list[reports.Entry]] = {}

    def ready(self) -> bool:
        return True

    def violating_namespaces(self) -> list[str]:
        return [ns for ns, entries in self.by_namespace.items() if entries]

    def entries(self, namespace: str) -> list[reports.Entry]:
        return list(self.by_namespace.get(namespace, []))


def policy(name: str, mode: str) -> policy_model.Policy:
    return policy_model.parse(
        {
            "apiVersion": "kube-guardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"mode": mode, "workloads": {"podSecurity": "baseline"}},
        }
    )


def violating(namespace: str, name: str, **security: Any) -> reports.Entry:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": {
            "containers": [{"name": "app", "image": "nginx:1.27", "securityContext": security}]
        },
    }
    pod = engine.pod_input(body)
    assert pod is not None
    verdict = planning.review(
        pod, [policy("baseline", "Enforce")], namespace=namespace, labels={}, now=NOW
    )
    return reports.Entry(
        subject=reports.Subject(kind="Pod", name=name, uid=f"uid-{name}"),
        findings=verdict.findings,
        since=NOW,
    )


class Setup:
    def __init__(self, api: real_api.RealApi) -> None:
        self.api = api
        self.clock = Clock()
        self.source = Source()
        self.gateway = k8s_reports.Gateway(api.api_client)
        self.service = self.new_service()

    def new_service(self) -> report_service.ReportService:
        return report_service.ReportService(
            gateway=self.gateway, source=self.source, clock=self.clock, debounce=1
        )

    async def settle(self, service: report_service.ReportService | None = None) -> None:
        """Run what is due, then again after the debounce."""
        service = service or self.service
        await service.step()
        self.clock.now += 1
        await service.step()

    def stored(self, namespace: str) -> dict[str, Any] | None:
        return self.api.get_or_none(
            f"/apis/{reports.API_VERSION}/namespaces/{namespace}/{reports.PLURAL}/{reports.REPORT_NAME}"
        )


@pytest.fixture()
def setup(report_api: real_api.RealApi) -> Iterator[Setup]:
    yield Setup(report_api)


async def test_discovery_sees_the_report_crd(setup: Setup) -> None:
    assert await setup.gateway.served() is True


async def test_a_report_appears_changes_and_disappears_with_the_violations(
    setup: Setup, namespace: str
) -> None:
    setup.source.by_namespace[namespace] = [
        violating(namespace, "priv", privileged=True),
        violating(namespace, "caps", capabilities={"add": ["NET_ADMIN"]}),
    ]
    await setup.settle()
    stored = setup.stored(namespace)
    assert stored is not None
    assert stored["summary"]["fail"] == 2  # privileged, capabilities: Enforce-action checks
    assert {
        (r["rule"], r["resources"][0]["name"]) for r in stored["results"] if r["result"] == "fail"
    } == {
        ("privileged", "priv"),
        ("capabilities", "caps"),
    }
    assert reports.content(stored) == reports.content(
        reports.build_report(namespace, setup.source.entries(namespace))
    )
    owners = [m["manager"] for m in stored["metadata"]["managedFields"]]
    assert owners == ["kube-guardrails"]

    version = stored["metadata"]["resourceVersion"]
    setup.service.changed(namespace)  # same violations: compared, nothing sent
    await setup.settle()
    assert setup.stored(namespace)["metadata"]["resourceVersion"] == version  # type: ignore[index]

    setup.source.by_namespace[namespace] = [violating(namespace, "priv", privileged=True)]
    setup.service.changed(namespace)
    await setup.settle()
    stored = setup.stored(namespace)
    assert stored is not None and stored["summary"]["fail"] == 1
    assert {r["resources"][0]["name"] for r in stored["results"]} == {"priv"}

    setup.source.by_namespace[namespace] = []
    setup.service.changed(namespace)
    await setup.settle()
    assert setup.stored(namespace) is None
    assert setup.service.writes == 3


async def test_a_restart_with_nothing_changed_writes_nothing(setup: Setup, namespace: str) -> None:
    setup.source.by_namespace[namespace] = [violating(namespace, "priv", privileged=True)]
    await setup.settle()
    version = setup.stored(namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
    restarted = setup.new_service()
    await setup.settle(restarted)
    assert restarted.writes == 0
    assert restarted.known().get(namespace) is not None
    assert setup.stored(namespace)["metadata"]["resourceVersion"] == version  # type: ignore[index]


async def test_another_tools_report_is_never_touched(setup: Setup, namespace: str) -> None:
    other = {
        "apiVersion": reports.API_VERSION,
        "kind": reports.KIND,
        "metadata": {"name": "kyverno-pol-1", "namespace": namespace},
        "source": "kyverno",
        "summary": {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0},
    }
    path = f"/apis/{reports.API_VERSION}/namespaces/{namespace}/{reports.PLURAL}"
    created = setup.api.request("POST", path, body=other)
    await setup.settle()  # the namespace has no violations: only our Report would go
    again = setup.api.get_or_none(f"{path}/kyverno-pol-1")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert namespace not in setup.service.known()


async def test_many_violating_pods_fit_in_one_report(setup: Setup, namespace: str) -> None:
    setup.source.by_namespace[namespace] = [
        violating(namespace, f"p{i:04d}", privileged=True) for i in range(reports.MAX_RESULTS + 50)
    ]
    await setup.settle()
    stored = setup.stored(namespace)
    assert stored is not None
    assert len(stored["results"]) == reports.MAX_RESULTS
    assert stored["summary"]["fail"] == reports.MAX_RESULTS + 50


async def test_without_the_crd_nothing_is_written_and_its_arrival_turns_reports_on(
    setup: Setup, namespace: str
) -> None:
    """Last in this module: it uninstalls the Report CRD (and every Report) for a while."""
    setup.api.delete(CRD_PATH)
    real_api.wait_for(
        lambda: (
            setup.api.get_or_none(CRD_PATH) is None
            and setup.api.get_or_none(f"/apis/{reports.API_VERSION}") is None
        ),
        what="the Report CRD gone",
    )
    try:
        assert await setup.gateway.served() is False
        setup.source.by_namespace[namespace] = [violating(namespace, "priv", privileged=True)]
        setup.service.changed(namespace)
        await setup.settle()
        assert setup.service.served is False
        assert setup.service.writes == 0
    finally:
        install_report_crd(setup.api)
    setup.clock.now += setup.service.discovery_interval
    await setup.settle()
    assert setup.service.served is True
    stored = setup.stored(namespace)
    assert stored is not None and stored["summary"]["fail"] == 1
