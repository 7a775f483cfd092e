"""The OpenReports builder: results, summary, ordering, limits, and the Report schema.

The schema test validates every built Report against the test CRD written from the
OpenReports API reference (``tests/data/openreports.io_reports.yaml``), with unknown
fields refused; the real API server takes the same Reports in the integration tests.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import pathlib
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
import yaml

from kube_guardrails import planning, reports
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
CRD = DATA / "openreports.io_reports.yaml"
EXAMPLE = DATA / "openreports-report-example.yaml"
SINCE = datetime.datetime(2026, 11, 29, 1, 0, tzinfo=datetime.UTC)


def finding(
    check: str,
    *,
    container: str | None = "app",
    outcome: engine.Outcome = engine.Outcome.FAIL,
    severity: registry.Severity = registry.Severity.HIGH,
    path: str = "spec.containers[0].securityContext.privileged",
    message: str = "privileged is true",
) -> engine.Finding:
    return engine.Finding(
        check=check,
        severity=severity,
        message=message,
        path=path,
        container=container,
        hint="fix it",
        outcome=outcome,
    )


def attributed(policy: str, action: str, f: engine.Finding) -> planning.AttributedFinding:
    return planning.AttributedFinding(policy=policy, action=action, finding=f)


def pod(name: str, *findings: planning.AttributedFinding, kind: str = "Pod") -> reports.Entry:
    api_version = "v1" if kind == "Pod" else "apps/v1"
    return reports.Entry(
        subject=reports.Subject(kind=kind, name=name, api_version=api_version, uid=f"uid-{name}"),
        findings=findings,
        since=SINCE,
    )


def test_no_violations_no_report() -> None:
    assert reports.build_report("shop", []) is None
    assert reports.build_report("shop", [pod("web")]) is None


@pytest.mark.parametrize(
    ("action", "outcomes", "expected"),
    [
        pytest.param("Enforce", [engine.Outcome.FAIL], "fail", id="enforce-fail"),
        pytest.param("Audit", [engine.Outcome.FAIL], "warn", id="audit-warn"),
        pytest.param("Enforce", [engine.Outcome.ERROR], "error", id="crashed-check"),
        pytest.param("Audit", [engine.Outcome.ERROR, engine.Outcome.FAIL], "warn", id="mixed"),
    ],
)
def test_result_of(action: str, outcomes: list[engine.Outcome], expected: str) -> None:
    assert reports.result_of(action, outcomes) == expected


def test_one_result_per_workload_policy_and_check() -> None:
    entry = pod(
        "web",
        attributed("base", "Enforce", finding("privileged", container="app")),
        attributed("base", "Enforce", finding("privileged", container="sidecar")),
        attributed(
            "base", "Audit", finding("probes", container="app", severity=registry.Severity.LOW)
        ),
        attributed("team", "Audit", finding("privileged", container="app")),
    )
    report = reports.build_report("shop", [entry])
    assert report is not None
    got = [(r["policy"], r["rule"], r["result"], r["severity"]) for r in report["results"]]
    assert got == [
        ("base", "privileged", "fail", "high"),
        ("base", "probes", "warn", "low"),
        ("team", "privileged", "warn", "high"),
    ]
    first = report["results"][0]
    assert first["properties"] == {"action": "Enforce", "containers": "app,sidecar"}
    assert first["message"] == "spec.containers[0].securityContext.privileged: privileged is true"
    assert first["resources"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "shop", "uid": "uid-web"}
    ]
    assert first["scored"] is True
    assert "scored" not in report["results"][1]  # warn: "not met, not scored"
    assert first["timestamp"] == {"seconds": int(SINCE.timestamp()), "nanos": 0}
    assert report["summary"] == {"pass": 0, "fail": 1, "warn": 2, "error": 0, "skip": 0}


@pytest.mark.parametrize(
    ("check", "category"),
    [
        ("privileged", "Pod Security Standards (Baseline)"),
        ("runAsNonRoot", "Pod Security Standards (Restricted)"),
        ("probes", "Best Practices"),
        ("notACheck", ""),
    ],
)
def test_category_from_the_registry(check: str, category: str) -> None:
    assert reports.category(check) == category


def test_pod_level_findings_name_no_container_and_long_messages_are_cut() -> None:
    long = "x" * 2000
    entry = pod(
        "web", attributed("base", "Audit", finding("hostNamespaces", container=None, message=long))
    )
    report = reports.build_report("shop", [entry])
    assert report is not None
    (result,) = report["results"]
    assert result["properties"] == {"action": "Audit"}
    assert len(result["message"]) <= reports.MAX_MESSAGE
    assert result["message"].endswith(" ...")


def test_unknown_since_leaves_the_timestamp_out() -> None:
    entry = dataclasses.replace(pod("web", attributed("b", "Audit", finding("probes"))), since=None)
    report = reports.build_report("shop", [entry])
    assert report is not None
    assert "timestamp" not in report["results"][0]


def test_output_does_not_depend_on_input_order() -> None:
    entries = [
        pod(
            "b",
            attributed("p", "Audit", finding("probes")),
            attributed("p", "Enforce", finding("privileged")),
        ),
        pod("a", attributed("q", "Audit", finding("imageTag"))),
        pod("web", attributed("p", "Audit", finding("probes")), kind="Deployment"),
    ]
    outputs = set()
    for order in itertools.permutations(entries):
        shuffled = [
            reports.Entry(subject=e.subject, findings=tuple(reversed(e.findings)), since=e.since)
            for e in order
        ]
        outputs.add(yaml.safe_dump(reports.build_report("shop", shuffled)))
    assert len(outputs) == 1


def test_results_are_capped_but_the_summary_counts_everything() -> None:
    entries = [
        pod(f"p{i:04d}", attributed("base", "Audit", finding("probes")))
        for i in range(reports.MAX_RESULTS + 5)
    ]
    report = reports.build_report("shop", entries)
    assert report is not None
    assert len(report["results"]) == reports.MAX_RESULTS
    assert report["summary"]["warn"] == reports.MAX_RESULTS + 5
    assert report["configuration"]["limits"]["maxResults"] == reports.MAX_RESULTS


# --------------------------------------------------------------------------- content


def test_content_ignores_what_the_server_adds() -> None:
    built = reports.build_report("shop", [pod("web", attributed("b", "Audit", finding("probes")))])
    assert built is not None
    live = copy.deepcopy(built)
    live["metadata"].update(
        resourceVersion="42",
        uid="u",
        creationTimestamp="2026-11-29T01:00:00Z",
        managedFields=[{"manager": "kube-guardrails"}],
    )
    live["metadata"]["labels"]["someone/else"] = "x"
    assert reports.content(live) == reports.content(built)
    live["summary"] = {**live["summary"], "warn": 2}
    assert reports.content(live) != reports.content(built)


@pytest.mark.parametrize(
    ("metadata", "ours"),
    [
        (
            {
                "name": "kube-guardrails",
                "labels": {"app.kubernetes.io/managed-by": "kube-guardrails"},
            },
            True,
        ),
        ({"name": "kube-guardrails", "labels": {}}, False),
        (
            {
                "name": "kyverno-report",
                "labels": {"app.kubernetes.io/managed-by": "kube-guardrails"},
            },
            False,
        ),
    ],
)
def test_only_our_report_is_ours(metadata: Mapping[str, Any], ours: bool) -> None:
    assert reports.is_ours({"metadata": metadata}) is ours


# --------------------------------------------------------------------------- schema


def _json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD's structural schema as JSON Schema, refusing unknown fields like the server."""
    out: dict[str, Any] = {k: v for k, v in node.items() if not k.startswith("x-kubernetes")}
    if "properties" in node:
        out["properties"] = {k: _json_schema(v) for k, v in node["properties"].items()}
        if node.get("type") == "object" and "additionalProperties" not in node:
            out["additionalProperties"] = False
    if isinstance(node.get("items"), Mapping):
        out["items"] = _json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _json_schema(node["additionalProperties"])
    out.pop("format", None)
    return out


def report_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema = _json_schema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def test_test_crd_is_the_openreports_report() -> None:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == f"{reports.PLURAL}.{reports.GROUP}"
    assert crd["spec"]["group"] == reports.GROUP
    assert crd["spec"]["names"]["kind"] == reports.KIND
    assert crd["spec"]["scope"] == "Namespaced"
    assert [v["name"] for v in crd["spec"]["versions"]] == [reports.VERSION]


def example_entries() -> list[reports.Entry]:
    """A namespace with a privileged Deployment and its Pod, reviewed by real policies."""
    baseline = policy_model.parse(
        {
            "apiVersion": "kube-guardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": "baseline", "uid": "u1"},
            "spec": {"mode": "Enforce", "workloads": {"podSecurity": "baseline"}},
        }
    )
    container = {
        "name": "app",
        "image": "nginx:latest",
        "securityContext": {"privileged": True, "readOnlyRootFilesystem": True},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "livenessProbe": {"tcpSocket": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}},
    }
    spec = {"containers": [container]}
    bodies = [
        ("Deployment", "apps/v1", "web", {"spec": {"template": {"spec": spec}}}),
        ("Pod", "v1", "web-7d4b9-x2x", {"spec": spec}),
    ]
    out = []
    for kind, api_version, name, extra in bodies:
        body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **extra}
        pod_in = engine.pod_input(body)
        assert pod_in is not None
        verdict = planning.review(pod_in, [baseline], namespace="shop", labels={}, now=SINCE)
        out.append(
            reports.Entry(
                subject=reports.Subject(
                    kind=kind, name=name, api_version=api_version, uid=f"uid-{name}"
                ),
                findings=verdict.findings,
                since=SINCE,
            )
        )
    return out


def test_example_report_matches_the_documented_one() -> None:
    """tests/data/openreports-report-example.yaml is the README's example; keep them true."""
    built = reports.build_report("shop", example_entries())
    assert built == yaml.safe_load(EXAMPLE.read_text())


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param(example_entries(), id="example"),
        pytest.param(
            [
                pod(
                    "web",
                    attributed("b", "Enforce", finding("privileged", outcome=engine.Outcome.ERROR)),
                )
            ],
            id="error-result",
        ),
        pytest.param(
            [
                dataclasses.replace(
                    pod("web", attributed("b", "Audit", finding("probes", container=None))),
                    since=None,
                )
            ],
            id="minimal",
        ),
    ],
)
def test_built_reports_satisfy_the_openreports_schema(entries: list[reports.Entry]) -> None:
    report = reports.build_report("shop", entries)
    assert report is not None
    jsonschema.validate(report, report_schema())


def test_schema_check_refuses_an_unknown_field() -> None:
    report = reports.build_report("shop", example_entries())
    assert report is not None
    report["results"][0]["resource"] = report["results"][0].pop("resources")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, report_schema())
