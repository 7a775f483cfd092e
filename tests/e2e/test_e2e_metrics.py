"""``/metrics`` on a real cluster: the families exist and their values match the cluster.

``hack/e2e.sh`` starts the local operator with ``--metrics-address 127.0.0.1:PORT`` and
exports ``KUBE_GUARDRAILS_E2E_METRICS_URL``; without it (e.g. the in-cluster mode without
a port-forward) these tests skip with the reason. Counters are shared by every test that
runs at the same time, so they are compared as "grew by at least"; per-policy and
per-namespace gauges belong to this test alone and are compared exactly.

The tests are ``e2e_serial``: the metrics live in the operator's memory and on its port,
so an operator restart by another test (counters back to zero, the port closed for a few
seconds) must not fall between two scrapes.
"""

from __future__ import annotations

import os
import urllib.request

import e2e_kube as kube_api
import e2e_scenario
import pytest
from prometheus_client import parser

from kube_guardrails import __version__, reports

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_serial]

Scenario = e2e_scenario.Scenario
Obj = kube_api.Obj
METRICS_URL_ENV = "KUBE_GUARDRAILS_E2E_METRICS_URL"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


@pytest.fixture
def metrics_url(e2e_env: e2e_scenario.Env) -> str:
    url = os.environ.get(METRICS_URL_ENV, "").strip()
    if not url:
        pytest.skip(f"{METRICS_URL_ENV} is not set: hack/e2e.sh sets it to the operator's /metrics")
    return url


def scrape(url: str) -> tuple[Samples, dict[str, str]]:
    """(samples, family name -> type) of one scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers.get_content_type() == "text/plain"
        text = response.read().decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in parser.text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_every_family_is_served(metrics_url: str) -> None:
    samples, types = scrape(metrics_url)
    expected = {
        "kube_guardrails_build_info": "gauge",
        "kube_guardrails_leader_status": "gauge",
        "kube_guardrails_reconcile_duration_seconds": "histogram",
        "kube_guardrails_review_duration_seconds": "histogram",
        "kube_guardrails_namespaces_matched": "gauge",
        "kube_guardrails_namespaces_hardened": "gauge",
        "kube_guardrails_hardening_created": "counter",
        "kube_guardrails_hardening_restored": "counter",
        "kube_guardrails_violations": "gauge",
        "kube_guardrails_evictions": "counter",
        "kube_guardrails_queue_depth": "gauge",
        "kube_guardrails_api_errors": "counter",
        "kube_guardrails_watch_restarts": "counter",
        "kube_guardrails_report_writes": "counter",
        "kube_guardrails_reports_enabled": "gauge",
    }
    assert {name: types.get(name) for name in expected} == expected
    build = [labels for (name, labels) in samples if name == "kube_guardrails_build_info"]
    assert [dict(labels)["version"] for labels in build] == [__version__]
    assert value(samples, "kube_guardrails_leader_status") == 1
    assert "process_resident_memory_bytes" in types


def test_values_match_the_cluster(metrics_url: str, scenario: Scenario) -> None:
    before, _ = scrape(metrics_url)
    policy = scenario.policy("hardens", {"workloads": {"checks": e2e_scenario.QUIET_CHECKS}})
    name = _name(policy)
    namespaces = [_name(scenario.namespace(f"m{i}")) for i in range(2)]
    unselected = _name(scenario.namespace("off", selected=False))
    for ns in namespaces:
        scenario.wait_hardened(ns, name)
    image = scenario.env.settings.image
    ns = namespaces[0]
    for pod in ("priv-1", "priv-2"):
        scenario.create(kube_api.pods(ns), e2e_scenario.pod(ns, pod, image, privileged=True))

    def settled() -> Samples | None:
        samples, _ = scrape(metrics_url)
        matched = value(samples, "kube_guardrails_namespaces_matched", policy=name)
        hardened = value(samples, "kube_guardrails_namespaces_hardened", policy=name)
        privileged = value(
            samples, "kube_guardrails_violations", policy=name, check="privileged", namespace=ns
        )
        return samples if (matched, hardened, privileged) == (2, 2, 2) else None

    samples = scenario.wait(
        settled, f"matched=2, hardened=2 and 2 privileged violations in {ns} for policy {name}"
    )
    # Nothing is counted for a namespace the policy does not select, or one without violations.
    assert not any(
        dict(labels).get("namespace") in (unselected, namespaces[1])
        for (metric, labels) in samples
        if metric == "kube_guardrails_violations"
    )
    # The status the operator writes (batched) says the same.
    scenario.wait(
        lambda: (
            (scenario.read_policy(name).get("status") or {}).get("namespaces")
            == {"matched": 2, "hardened": 2}
        ),
        f"status.namespaces of {name} to say matched=2, hardened=2",
    )

    created = "kube_guardrails_hardening_created_total"
    for kind in ("NetworkPolicy", "LimitRange"):
        grew = (value(samples, created, kind=kind) or 0) - (value(before, created, kind=kind) or 0)
        assert grew >= 2, (kind, grew)  # one per namespace (other tests may add more)
    reviews = "kube_guardrails_review_duration_seconds_count"
    assert (value(samples, reviews, kind="Pod") or 0) >= (
        value(before, reviews, kind="Pod") or 0
    ) + 2
    reconciles = "kube_guardrails_reconcile_duration_seconds_count"
    assert (value(samples, reconciles) or 0) >= (value(before, reconciles) or 0) + 2

    # A drift correction: delete the managed NetworkPolicy, the operator restores it.
    restored = "kube_guardrails_hardening_restored_total"
    start = value(samples, restored, kind="NetworkPolicy") or 0
    (netpol,) = scenario.managed(namespaces[1], "NetworkPolicy")
    scenario.kube.delete(kube_api.network_policies(namespaces[1], _name(netpol)))
    scenario.wait_hardened(namespaces[1], name)
    scenario.wait(
        lambda: (value(scrape(metrics_url)[0], restored, kind="NetworkPolicy") or 0) >= start + 1,
        "kube_guardrails_hardening_restored_total{kind=NetworkPolicy} to count the restore",
    )

    # Fixed: the violation series goes; a deleted policy leaves no series behind.
    for pod in ("priv-1", "priv-2"):
        scenario.kube.delete(kube_api.pods(ns, pod))
    scenario.wait(
        lambda: (
            value(
                scrape(metrics_url)[0],
                "kube_guardrails_violations",
                policy=name,
                check="privileged",
                namespace=ns,
            )
            is None
        ),
        f"the privileged violations series of {ns} removed",
    )
    scenario.delete_policy(name)
    scenario.wait(
        lambda: (
            value(scrape(metrics_url)[0], "kube_guardrails_namespaces_matched", policy=name) is None
        ),
        f"the series of deleted policy {name} removed",
    )


def test_reports_enabled_reflects_the_report_crd(
    metrics_url: str, e2e_env: e2e_scenario.Env
) -> None:
    served = e2e_env.kube.get_or_none(f"/apis/{reports.API_VERSION}") is not None
    samples, _ = scrape(metrics_url)
    assert value(samples, "kube_guardrails_reports_enabled") == (1 if served else 0)
