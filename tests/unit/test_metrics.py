"""The metric families, their labels and series lifecycle, the address and the server."""

from __future__ import annotations

import argparse
import pathlib
import re
import urllib.request
from typing import Any

import pytest
import yaml
from prometheus_client import parser

from kube_guardrails import __version__, metrics, settings


def samples(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every exported sample: (name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in parser.text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(m: metrics.Metrics) -> dict[str, str]:
    return {f.name: f.type for f in parser.text_string_to_metric_families(m.exposition().decode())}


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics(process_collectors=False)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("kube_guardrails_build_info", "gauge"),  # an Info: a gauge of 1 in text format
        ("kube_guardrails_leader_status", "gauge"),
        ("kube_guardrails_reconcile_duration_seconds", "histogram"),
        ("kube_guardrails_review_duration_seconds", "histogram"),
        ("kube_guardrails_namespaces_matched", "gauge"),
        ("kube_guardrails_namespaces_hardened", "gauge"),
        ("kube_guardrails_hardening_created", "counter"),
        ("kube_guardrails_hardening_restored", "counter"),
        ("kube_guardrails_violations", "gauge"),
        ("kube_guardrails_evictions", "counter"),
        ("kube_guardrails_queue_depth", "gauge"),
        ("kube_guardrails_api_errors", "counter"),
        ("kube_guardrails_watch_restarts", "counter"),
        ("kube_guardrails_report_writes", "counter"),
        ("kube_guardrails_reports_enabled", "gauge"),
    ],
)
def test_every_family_is_exported_with_its_type(m: metrics.Metrics, name: str, kind: str) -> None:
    assert families(m)[name] == kind


def test_only_kube_guardrails_families_without_process_collectors(m: metrics.Metrics) -> None:
    assert all(name.startswith("kube_guardrails_") for name in families(m))


def test_process_collectors_are_in_the_operators_registry() -> None:
    names = families(metrics.Metrics())
    assert "process_resident_memory_bytes" in names or "python_info" in names
    assert "python_gc_objects_collected" in names


def test_build_info_and_leader(m: metrics.Metrics) -> None:
    got = samples(m)
    (info,) = [labels for (name, labels) in got if name == "kube_guardrails_build_info"]
    assert dict(info)["version"] == __version__
    assert got[("kube_guardrails_leader_status", ())] == 1


@pytest.mark.parametrize("family", ["hardening_created_total", "hardening_restored_total"])
@pytest.mark.parametrize("kind", metrics.HARDENING_KINDS)
def test_hardening_counters_start_at_zero_per_kind(
    m: metrics.Metrics, family: str, kind: str
) -> None:
    assert samples(m)[(f"kube_guardrails_{family}", (("kind", kind),))] == 0


def test_registries_are_isolated() -> None:
    a, b = metrics.Metrics(process_collectors=False), metrics.Metrics(process_collectors=False)
    a.hardening_created.labels(kind="LimitRange").inc()
    key = ("kube_guardrails_hardening_created_total", (("kind", "LimitRange"),))
    assert samples(a)[key] == 1
    assert samples(b)[key] == 0


def _violations(m: metrics.Metrics) -> dict[tuple[str, str, str], float]:
    return {
        (d["policy"], d["check"], d["namespace"]): v
        for (name, labels), v in samples(m).items()
        if name == "kube_guardrails_violations"
        for d in [dict(labels)]
    }


def test_namespace_violations_are_replaced_and_zeros_removed(m: metrics.Metrics) -> None:
    m.set_namespace_violations("shop", {("base", "privileged"): 2, ("base", "probes"): 1})
    m.set_namespace_violations("web", {("base", "probes"): 3})
    assert _violations(m) == {
        ("base", "privileged", "shop"): 2,
        ("base", "probes", "shop"): 1,
        ("base", "probes", "web"): 3,
    }
    m.set_namespace_violations("shop", {("base", "privileged"): 1, ("base", "probes"): 0})
    assert _violations(m) == {("base", "privileged", "shop"): 1, ("base", "probes", "web"): 3}
    m.set_namespace_violations("shop", {})
    assert _violations(m) == {("base", "probes", "web"): 3}


def test_forgetting_a_policy_drops_its_series(m: metrics.Metrics) -> None:
    m.set_policy_namespaces("base", matched=3, hardened=2)
    m.set_policy_namespaces("team", matched=1, hardened=1)
    m.set_namespace_violations("shop", {("base", "privileged"): 2, ("team", "probes"): 1})
    m.forget_policy("base")
    m.forget_policy("never-seen")
    got = samples(m)
    assert ("kube_guardrails_namespaces_matched", (("policy", "base"),)) not in got
    assert got[("kube_guardrails_namespaces_hardened", (("policy", "team"),))] == 1
    assert _violations(m) == {("team", "probes", "shop"): 1}


@pytest.mark.parametrize(
    ("verb", "code", "label"),
    [
        pytest.param("PATCH", 409, ("patch", "409"), id="conflict"),
        pytest.param("get", 0, ("get", "0"), id="no-response"),
        pytest.param("watch", 410, ("watch", "410"), id="watch-expired"),
    ],
)
def test_api_errors_by_verb_and_code(
    m: metrics.Metrics, verb: str, code: int, label: tuple[str, str]
) -> None:
    m.api_error(verb=verb, code=code)
    m.api_error(verb=verb, code=code)
    key = ("kube_guardrails_api_errors_total", (("code", label[1]), ("verb", label[0])))
    assert samples(m)[key] == 2


@pytest.mark.parametrize("outcome", metrics.EVICTION_OUTCOMES)
def test_eviction_outcomes(m: metrics.Metrics, outcome: str) -> None:
    m.eviction(policy="p", outcome=outcome)
    key = ("kube_guardrails_evictions_total", (("outcome", outcome), ("policy", "p")))
    assert samples(m)[key] == 1


def test_unknown_eviction_outcome_is_a_programming_error(m: metrics.Metrics) -> None:
    with pytest.raises(ValueError, match="unknown eviction outcome"):
        m.eviction(policy="p", outcome="deleted")


def test_queue_depth_is_read_at_scrape_time(m: metrics.Metrics) -> None:
    items = [1, 2]
    m.track_queue("namespaces", lambda: len(items))
    assert samples(m)[("kube_guardrails_queue_depth", (("queue", "namespaces"),))] == 2
    items.append(3)
    assert samples(m)[("kube_guardrails_queue_depth", (("queue", "namespaces"),))] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0.0.0.0:9095", metrics.Address("0.0.0.0", 9095), id="default"),
        pytest.param(" 127.0.0.1:0 ", metrics.Address("127.0.0.1", 0), id="any-port"),
        pytest.param("[::]:9095", metrics.Address("::", 9095), id="ipv6"),
        pytest.param("localhost:80", metrics.Address("localhost", 80), id="name"),
        pytest.param("", None, id="empty-turns-off"),
        pytest.param("  ", None, id="blank-turns-off"),
    ],
)
def test_parse_address(text: str, expected: metrics.Address | None) -> None:
    assert metrics.parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("9095", "not HOST:PORT", id="port-only"),
        pytest.param(":9095", "not HOST:PORT", id="no-host"),
        pytest.param("0.0.0.0:http", "not a number", id="named-port"),
        pytest.param("0.0.0.0:70000", "out of range", id="port-range"),
        pytest.param("::1:9095", "brackets", id="ipv6-without-brackets"),
        pytest.param("[]:9095", "host is empty", id="empty-brackets"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(metrics.MetricsError, match=message):
        metrics.parse_address(text)


def test_address_renders_back() -> None:
    assert str(metrics.Address("::", 9095)) == "[::]:9095"
    assert str(metrics.Address("0.0.0.0", 9095)) == "0.0.0.0:9095"


def test_server_serves_the_registry_and_stops(m: metrics.Metrics) -> None:
    m.hardening_restored.labels(kind="NetworkPolicy").inc()
    server = metrics.Server(m, metrics.Address("127.0.0.1", 0))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        assert 'kube_guardrails_hardening_restored_total{kind="NetworkPolicy"} 1.0' in text
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error(m: metrics.Metrics) -> None:
    first = metrics.Server(m, metrics.Address("127.0.0.1", 0))
    first.start()
    try:
        second = metrics.Server(m, metrics.Address("127.0.0.1", first.port))
        with pytest.raises(metrics.MetricsError, match=r"cannot serve metrics on 127\.0\.0\.1"):
            second.start()
    finally:
        first.stop()


# --------------------------------------------------------------------------- alert rules

ALERTS = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "alerts.yaml"


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return rules


def exported_labels() -> dict[str, set[str]]:
    """Every sample name the operator can export -> its label names (all families in use)."""
    m = metrics.Metrics(process_collectors=False)
    m.set_policy_namespaces("p", matched=1, hardened=1)
    m.set_namespace_violations("ns", {("p", "c"): 1})
    m.eviction(policy="p", outcome=metrics.EVICTED)
    m.api_error(verb="get", code=500)
    m.watch_restarts.labels(resource="pods", reason="expired").inc()
    m.track_queue("namespaces", lambda: 0)
    m.review_duration.labels(kind="Pod").observe(0.01)
    out: dict[str, set[str]] = {}
    for family in parser.text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_rules_use_only_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    exported = exported_labels()
    expr = rule["expr"]
    names = set(re.findall(r"\bkube_guardrails_[a-z_]+", expr))
    assert names <= set(exported), names - set(exported)
    used_labels = {
        label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")
    } | set(re.findall(r"(\w+)\s*[!=]~?\s*\"", expr))
    available = set().union(*(exported[n] for n in names)) | {"job"}
    assert used_labels <= available, used_labels - available
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"]


# --------------------------------------------------------------------------- settings


def _settings(argv: list[str], env: dict[str, str]) -> settings.Settings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.from_args(parser.parse_args(argv), env)


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        pytest.param([], {}, "0.0.0.0:9095", id="default"),
        pytest.param(
            [], {"KUBE_GUARDRAILS_METRICS_ADDRESS": "127.0.0.1:19095"}, "127.0.0.1:19095", id="env"
        ),
        pytest.param(
            ["--metrics-address", "[::]:9100"],
            {"KUBE_GUARDRAILS_METRICS_ADDRESS": "x"},
            "[::]:9100",
            id="flag-wins",
        ),
        pytest.param([], {"KUBE_GUARDRAILS_METRICS_ADDRESS": ""}, "", id="empty-turns-off"),
    ],
)
def test_metrics_address_setting(argv: list[str], env: dict[str, str], expected: str) -> None:
    assert _settings(argv, env).metrics_address == expected


def test_a_bad_metrics_address_names_the_setting() -> None:
    with pytest.raises(
        settings.SettingsError, match=r"KUBE_GUARDRAILS_METRICS_ADDRESS.*not a number"
    ):
        _settings([], {"KUBE_GUARDRAILS_METRICS_ADDRESS": "0.0.0.0:metrics"})
