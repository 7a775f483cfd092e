"""Run checks over one pod (or pod template) and collect outcomes.

Pure: no I/O, no clock. An exception inside a check becomes an ``error`` result for
that check only, so one buggy check can never hide what the others found.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube_guardrails.checks import registry


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"


@dataclasses.dataclass(frozen=True)
class Finding:
    """A violation as shown to people: which check, how bad, where, and what to do."""

    check: str
    severity: registry.Severity
    message: str
    path: str
    container: str | None
    hint: str
    outcome: Outcome = Outcome.FAIL


@dataclasses.dataclass(frozen=True)
class Result:
    check: str
    outcome: Outcome
    findings: tuple[Finding, ...] = ()


@dataclasses.dataclass(frozen=True)
class Selected:
    """A check to run, with the parameters and severity the policy gives it."""

    check: registry.Check
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    severity: registry.Severity | None = None


@dataclasses.dataclass(frozen=True)
class PodInput:
    """The pod-shaped part of an object: a Pod, or a workload's pod template."""

    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    spec_path: str = "spec"
    metadata_path: str = "metadata"


def run(
    pod: PodInput,
    selected: Iterable[Selected],
    *,
    level: registry.Level,
) -> list[Result]:
    """Run every selected check over the pod, in order; never raises for a check's bug."""
    results: list[Result] = []
    # Contexts are immutable, so the checks without parameters (most of them) share one;
    # building a Context per check was a measurable part of a review (hack/bench).
    shared: registry.Context | None = None
    for sel in selected:
        chk = sel.check
        severity = sel.severity or chk.severity
        if sel.params:
            ctx = registry.Context(
                metadata=pod.metadata,
                spec=pod.spec,
                level=level,
                params=sel.params,
                spec_path=pod.spec_path,
                metadata_path=pod.metadata_path,
            )
        else:
            if shared is None:
                shared = registry.Context(
                    metadata=pod.metadata,
                    spec=pod.spec,
                    level=level,
                    spec_path=pod.spec_path,
                    metadata_path=pod.metadata_path,
                )
            ctx = shared
        try:
            violations = list(chk.fn(ctx))
        except registry.Skip:
            results.append(_outcome(chk.id, Outcome.SKIP))
            continue
        except Exception as exc:  # a check's bug is its own error, never the engine's
            finding = Finding(
                check=chk.id,
                severity=severity,
                message=f"check failed with {type(exc).__name__}: {exc}",
                path=pod.spec_path,
                container=None,
                hint="this is a bug in kube-guardrails; please report it with the manifest",
                outcome=Outcome.ERROR,
            )
            results.append(Result(check=chk.id, outcome=Outcome.ERROR, findings=(finding,)))
            continue
        if not violations:
            results.append(_outcome(chk.id, Outcome.PASS))
            continue
        findings = tuple(
            Finding(
                check=chk.id,
                severity=severity,
                message=v.message,
                path=v.path,
                container=v.container,
                hint=chk.hint,
            )
            for v in violations
        )
        results.append(Result(check=chk.id, outcome=Outcome.FAIL, findings=findings))
    return results


_OUTCOMES: dict[tuple[str, Outcome], Result] = {}


def _outcome(check: str, outcome: Outcome) -> Result:
    """A finding-less Result; immutable, so one per (check, outcome) is reused."""
    result = _OUTCOMES.get((check, outcome))
    if result is None:
        result = _OUTCOMES[(check, outcome)] = Result(check=check, outcome=outcome)
    return result


def pod_input(obj: Mapping[str, Any]) -> PodInput | None:
    """The pod part of a Pod or a pod-template workload; None for other kinds.

    Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ReplicationController:
    ``spec.template``; CronJob: ``spec.jobTemplate.spec.template``.
    """
    kind = obj.get("kind")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        spec = {}
    if kind == "Pod":
        return PodInput(metadata=_mapping(obj.get("metadata")), spec=spec)
    if kind in TEMPLATE_KINDS:
        tpl = _mapping(spec.get("template"))
        return PodInput(
            metadata=_mapping(tpl.get("metadata")),
            spec=_mapping(tpl.get("spec")),
            spec_path="spec.template.spec",
            metadata_path="spec.template.metadata",
        )
    if kind == "CronJob":
        tpl = _mapping(_mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("template"))
        return PodInput(
            metadata=_mapping(tpl.get("metadata")),
            spec=_mapping(tpl.get("spec")),
            spec_path="spec.jobTemplate.spec.template.spec",
            metadata_path="spec.jobTemplate.spec.template.metadata",
        )
    return None


TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
)
WORKLOAD_KINDS = frozenset({"Pod", "CronJob", *TEMPLATE_KINDS})


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def failed(results: Sequence[Result]) -> list[Finding]:
    """All findings of failed or errored checks, in check order."""
    return [f for r in results for f in r.findings]
