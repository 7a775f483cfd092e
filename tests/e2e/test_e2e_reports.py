"""OpenReports policy reports on a real cluster (issue #11, point 2; DESIGN section 10).

``hack/e2e.sh`` installs the test Report CRD (``tests/data/openreports.io_reports.yaml``,
written from the OpenReports API reference) before it starts the operator, which runs as
its ServiceAccount: the RBAC rule for ``reports.openreports.io`` is under test too. Without
the CRD these tests skip with the reason.
"""

from __future__ import annotations

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario
import pytest

from kube_guardrails import LABEL_MANAGED_BY, MANAGED_BY_VALUE, reports

pytestmark = pytest.mark.e2e

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _report_path(namespace: str) -> str:
    return kube_api.grouped(reports.API_VERSION, namespace, reports.PLURAL, reports.REPORT_NAME)


@pytest.fixture
def reporting(scenario: Scenario) -> Scenario:
    if scenario.kube.get_or_none(f"/apis/{reports.API_VERSION}") is None:
        pytest.skip(
            f"the OpenReports Report CRD ({reports.PLURAL}.{reports.GROUP}) is not installed: "
            "hack/e2e.sh installs tests/data/openreports.io_reports.yaml"
        )
    return scenario


def _report(scenario: Scenario, namespace: str) -> Obj | None:
    return scenario.kube.get_or_none(_report_path(namespace))


def _fails(report: Obj | None) -> dict[str, int] | None:
    """Failing (workload name -> results) of a Report; None when there is no Report."""
    if report is None:
        return None
    out: dict[str, int] = {}
    for result in report.get("results") or []:
        if result["result"] == "fail":
            name = result["resources"][0]["name"]
            out[name] = out.get(name, 0) + 1
    return out


def test_reports_appear_per_namespace_with_the_right_counts_and_go_when_fixed(
    reporting: Scenario,
) -> None:
    scenario = reporting
    policy = scenario.workload_policy()
    ns_a = _name(scenario.namespace("a"))
    ns_b = _name(scenario.namespace("b"))
    ns_clean = _name(scenario.namespace("clean"))
    scenario.wait_policy_ready(_name(policy))
    image = scenario.env.settings.image
    pods = {
        name: scenario.create(
            kube_api.pods(ns), e2e_scenario.pod(ns, name, image, privileged=privileged)
        )
        for ns, name, privileged in [
            (ns_a, "priv-1", True),
            (ns_a, "priv-2", True),
            (ns_a, "fine", False),
            (ns_b, "priv-3", True),
            (ns_clean, "fine", False),
        ]
    }

    scenario.wait(
        lambda: _fails(_report(scenario, ns_a)) == {"priv-1": 1, "priv-2": 1},
        f"a Report in {ns_a} failing priv-1 and priv-2 once each",
    )
    scenario.wait(
        lambda: _fails(_report(scenario, ns_b)) == {"priv-3": 1},
        f"a Report in {ns_b} failing priv-3",
    )
    report = _report(scenario, ns_a)
    assert report is not None
    assert report["summary"] == {"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0}
    assert report["source"] == reports.SOURCE
    assert report["metadata"]["labels"][LABEL_MANAGED_BY] == MANAGED_BY_VALUE
    assert not report["metadata"].get("ownerReferences")  # no policy may garbage-collect it
    result = report["results"][0]
    assert (result["policy"], result["rule"]) == (_name(policy), "privileged")
    assert result["resources"][0]["uid"] == pods["priv-1"]["metadata"]["uid"]
    assert {m["manager"] for m in report["metadata"]["managedFields"]} == {"kube-guardrails"}
    assert _report(scenario, ns_clean) is None  # nothing fails there: no Report

    scenario.kube.delete(kube_api.pods(ns_a, "priv-1"))
    scenario.wait(
        lambda: _fails(_report(scenario, ns_a)) == {"priv-2": 1},
        f"the Report in {ns_a} to drop priv-1",
    )
    scenario.kube.delete(kube_api.pods(ns_a, "priv-2"))
    scenario.wait(lambda: _report(scenario, ns_a) is None, f"the Report in {ns_a} deleted")
    assert _fails(_report(scenario, ns_b)) == {"priv-3": 1}


def test_an_unchanged_report_is_not_rewritten(reporting: Scenario, resync_window: float) -> None:
    scenario = reporting
    scenario.workload_policy()
    ns = _name(scenario.namespace())
    image = scenario.env.settings.image
    scenario.create(kube_api.pods(ns), e2e_scenario.pod(ns, "priv", image, privileged=True))
    report = scenario.wait(
        lambda: _report(scenario, ns) if _fails(_report(scenario, ns)) == {"priv": 1} else None,
        f"a Report in {ns}",
    )
    version = e2e_scenario.resource_version(report)

    def unchanged() -> bool:
        current = _report(scenario, ns)
        return current is not None and e2e_scenario.resource_version(current) == version

    harness.hold_for(
        unchanged,
        duration=resync_window,
        interval=1.0,
        what="the Report's resourceVersion unchanged over two resyncs",
    )
