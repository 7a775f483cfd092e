"""The engine: outcomes, isolation of a check's bug, severity overrides, pod extraction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from kube_guardrails.checks import engine, registry

POD = engine.PodInput(
    metadata={"name": "web"},
    spec={"containers": [{"name": "app", "image": "registry.example.com/web:1"}]},
)


def _make(check_id: str, fn: registry.CheckFn, **overrides: Any) -> registry.Check:
    """A check object that is never registered, so these tests leave the registry alone."""
    meta: dict[str, Any] = {
        "id": check_id,
        "title": f"{check_id} title",
        "category": registry.Category.BEST_PRACTICE,
        "severity": registry.Severity.MEDIUM,
        "hint": f"fix {check_id}",
        "fn": fn,
        "doc": "test check",
    }
    meta.update(overrides)
    return registry.Check(**meta)


def _clean(ctx: registry.Context) -> Iterator[registry.Violation]:
    yield from ()


def _dirty(ctx: registry.Context) -> Iterator[registry.Violation]:
    yield registry.Violation(
        message="container app is wrong", path=ctx.path("containers", 0, "image"), container="app"
    )


def _buggy(ctx: registry.Context) -> Iterator[registry.Violation]:
    raise KeyError("boom")


def _buggy_midway(ctx: registry.Context) -> Iterator[registry.Violation]:
    yield registry.Violation(message="first", path=ctx.path("containers"))
    raise RuntimeError("second failed")


def _skips(ctx: registry.Context) -> Iterator[registry.Violation]:
    raise registry.Skip("does not apply")


CLEAN = _make("clean", _clean)
DIRTY = _make("dirty", _dirty)
BUGGY = _make("buggy", _buggy)
BUGGY_MIDWAY = _make("buggyMidway", _buggy_midway)
SKIPS = _make("skips", _skips)


def _run(*checks: registry.Check) -> list[engine.Result]:
    return engine.run(
        POD, [engine.Selected(check=c) for c in checks], level=registry.Level.BASELINE
    )


@pytest.mark.parametrize(
    ("chk", "outcome", "n_findings"),
    [
        pytest.param(CLEAN, engine.Outcome.PASS, 0, id="pass"),
        pytest.param(DIRTY, engine.Outcome.FAIL, 1, id="fail"),
        pytest.param(BUGGY, engine.Outcome.ERROR, 1, id="error"),
        pytest.param(BUGGY_MIDWAY, engine.Outcome.ERROR, 1, id="error-after-a-violation"),
        pytest.param(SKIPS, engine.Outcome.SKIP, 0, id="skip"),
    ],
)
def test_outcomes(chk: registry.Check, outcome: engine.Outcome, n_findings: int) -> None:
    [result] = _run(chk)
    assert (result.check, result.outcome, len(result.findings)) == (chk.id, outcome, n_findings)


def test_a_buggy_check_is_an_error_for_itself_only() -> None:
    results = _run(DIRTY, BUGGY, CLEAN, SKIPS, DIRTY)
    assert [(r.check, r.outcome) for r in results] == [
        ("dirty", engine.Outcome.FAIL),
        ("buggy", engine.Outcome.ERROR),
        ("clean", engine.Outcome.PASS),
        ("skips", engine.Outcome.SKIP),
        ("dirty", engine.Outcome.FAIL),
    ]
    [error] = results[1].findings
    assert error.check == "buggy"
    assert error.outcome is engine.Outcome.ERROR
    assert error.severity is registry.Severity.MEDIUM
    assert "KeyError" in error.message and "boom" in error.message
    assert error.path == "spec"
    assert error.container is None


def test_failed_collects_fail_and_error_findings_in_order() -> None:
    findings = engine.failed(_run(DIRTY, CLEAN, BUGGY))
    assert [(f.check, f.outcome) for f in findings] == [
        ("dirty", engine.Outcome.FAIL),
        ("buggy", engine.Outcome.ERROR),
    ]


def test_finding_carries_check_metadata_and_violation_details() -> None:
    [result] = _run(DIRTY)
    assert result.findings == (
        engine.Finding(
            check="dirty",
            severity=registry.Severity.MEDIUM,
            message="container app is wrong",
            path="spec.containers[0].image",
            container="app",
            hint="fix dirty",
        ),
    )


@pytest.mark.parametrize(
    ("chk", "override", "expected"),
    [
        pytest.param(DIRTY, None, registry.Severity.MEDIUM, id="default"),
        pytest.param(DIRTY, registry.Severity.CRITICAL, registry.Severity.CRITICAL, id="raised"),
        pytest.param(DIRTY, registry.Severity.LOW, registry.Severity.LOW, id="lowered"),
        pytest.param(BUGGY, registry.Severity.HIGH, registry.Severity.HIGH, id="error-finding"),
    ],
)
def test_severity_override(
    chk: registry.Check, override: registry.Severity | None, expected: registry.Severity
) -> None:
    [result] = engine.run(
        POD, [engine.Selected(check=chk, severity=override)], level=registry.Level.BASELINE
    )
    assert [f.severity for f in result.findings] == [expected]


def test_context_gets_pod_level_params_and_paths() -> None:
    seen: list[registry.Context] = []

    def spy(ctx: registry.Context) -> Iterator[registry.Violation]:
        seen.append(ctx)
        yield from ()

    pod = engine.PodInput(
        metadata={"labels": {"app": "web"}},
        spec={"containers": []},
        spec_path="spec.template.spec",
        metadata_path="spec.template.metadata",
    )
    engine.run(
        pod,
        [engine.Selected(check=_make("spy", spy), params={"allowed": ["x/"]})],
        level=registry.Level.RESTRICTED,
    )
    [ctx] = seen
    assert ctx.params == {"allowed": ["x/"]}
    assert ctx.metadata == {"labels": {"app": "web"}}
    assert ctx.path("containers") == "spec.template.spec.containers"
    assert ctx.meta_path("annotations") == "spec.template.metadata.annotations"


_B, _R, _N = registry.Level.BASELINE, registry.Level.RESTRICTED, registry.Level.NONE


@pytest.mark.parametrize(
    ("overrides", "level", "expected"),
    [
        pytest.param({}, _N, "base", id="no-override-none"),
        pytest.param({}, _R, "base", id="no-override-restricted"),
        pytest.param({_R: "strict"}, _N, "base", id="restricted-override-at-none"),
        pytest.param({_R: "strict"}, _B, "base", id="restricted-override-at-baseline"),
        pytest.param({_R: "strict"}, _R, "strict", id="restricted-override-at-restricted"),
        pytest.param({_B: "mid"}, _R, "mid", id="lower-override-applies-above"),
        pytest.param({_B: "mid", _R: "strict"}, _R, "strict", id="highest-applicable-wins"),
        pytest.param({_B: "mid", _R: "strict"}, _B, "mid", id="higher-one-not-below"),
    ],
)
def test_a_check_is_bound_to_the_rule_of_its_level(
    overrides: dict[registry.Level, str], level: registry.Level, expected: str
) -> None:
    """What pod-security-admission's overrides do: the stricter rule replaces the base."""

    def named(name: str) -> registry.CheckFn:
        def rule(ctx: registry.Context) -> Iterator[registry.Violation]:
            yield registry.Violation(message=name, path="spec")

        return rule

    chk = _make(
        "layered",
        named("base"),
        category=registry.Category.POD_SECURITY,
        level=registry.Level.BASELINE,
        overrides={lvl: named(name) for lvl, name in overrides.items()},
    )
    [result] = engine.run(POD, [engine.Selected(check=chk)], level=level)
    assert [f.message for f in result.findings] == [expected]


def test_a_real_check_runs_through_the_engine() -> None:
    [result] = engine.run(
        POD,
        [engine.Selected(check=registry.get("imageTag"))],
        level=registry.Level.BASELINE,
    )
    assert result.outcome is engine.Outcome.PASS


# --------------------------------------------------------------------------- pod_input

SPEC = {"containers": [{"name": "app", "image": "registry.example.com/web:1"}]}
META = {"labels": {"app": "web"}}
TEMPLATE = {"metadata": META, "spec": SPEC}


def _obj(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize(
    ("obj", "metadata", "spec_path"),
    [
        pytest.param({"kind": "Pod", "metadata": META, "spec": SPEC}, META, "spec", id="Pod"),
        *(
            pytest.param(_obj(kind, {"template": TEMPLATE}), META, "spec.template.spec", id=kind)
            for kind in (
                "Deployment",
                "StatefulSet",
                "DaemonSet",
                "ReplicaSet",
                "Job",
                "ReplicationController",
            )
        ),
        pytest.param(
            _obj("CronJob", {"jobTemplate": {"spec": {"template": TEMPLATE}}}),
            META,
            "spec.jobTemplate.spec.template.spec",
            id="CronJob",
        ),
    ],
)
def test_pod_input_for_every_workload_kind(
    obj: Mapping[str, Any], metadata: Mapping[str, Any], spec_path: str
) -> None:
    pod = engine.pod_input(obj)
    assert pod is not None
    assert pod.spec == SPEC
    assert pod.metadata == metadata
    assert pod.spec_path == spec_path
    assert pod.metadata_path == spec_path.removesuffix("spec") + "metadata"


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(_obj("Service", {"ports": []}), id="Service"),
        pytest.param(_obj("ConfigMap", {}), id="ConfigMap"),
        pytest.param(_obj("PodTemplate", {}), id="PodTemplate"),
        pytest.param({"metadata": {"name": "x"}}, id="no-kind"),
        pytest.param({}, id="empty"),
    ],
)
def test_pod_input_is_none_for_other_kinds(obj: Mapping[str, Any]) -> None:
    assert engine.pod_input(obj) is None


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"kind": "Pod"}, id="pod-without-spec"),
        pytest.param({"kind": "Pod", "spec": "garbage"}, id="pod-with-scalar-spec"),
        pytest.param(_obj("Deployment", {}), id="deployment-without-template"),
        pytest.param(_obj("Deployment", {"template": []}), id="deployment-with-list-template"),
        pytest.param(_obj("CronJob", {"jobTemplate": None}), id="cronjob-without-job-template"),
    ],
)
def test_pod_input_tolerates_malformed_workloads(obj: Mapping[str, Any]) -> None:
    """A malformed workload still yields an (empty) pod, so the checks can run on it."""
    pod = engine.pod_input(obj)
    assert pod is not None
    assert pod.spec == {}
    assert pod.metadata == {}
