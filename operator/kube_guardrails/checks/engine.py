"""Run checks over one pod (or pod template) and collect outcomes.

Pure: no I/O, no clock. An exception inside a check becomes an ``error`` result for
that check only, so one buggy check can never hide what the others found.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Hashable, Iterable, Mapping, Sequence
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
class Bound:
    """A selected check bound to a level: ready to run over any number of pods.

    Built once per policy when it is compiled (``planning.compile_policy``), like the
    check list pod-security-admission's ``NewEvaluator`` builds once per level: ``rule``
    is the function for that level (``registry.Check.rule``), ``severity`` is resolved,
    and ``reuse_key`` says what determines the violations over a pod (the rule, the
    check and its params, never the severity), or None when the params cannot be frozen
    into a hashable value and the result is never reused.
    """

    check: registry.Check
    rule: registry.CheckFn
    params: Mapping[str, Any]
    severity: registry.Severity
    reuse_key: Hashable | None


def bind(selected: Selected, level: registry.Level) -> Bound:
    """The check of ``selected`` as a policy at ``level`` runs it."""
    chk = selected.check
    rule = chk.rule(level)
    try:
        frozen = _freeze(selected.params)
        hash(frozen)
        key: Hashable | None = (rule, chk.id, frozen)
    except TypeError:
        key = None
    return Bound(
        check=chk,
        rule=rule,
        params=selected.params,
        severity=selected.severity or chk.severity,
        reuse_key=key,
    )


def _freeze(value: object) -> Hashable:
    """A hashable stand-in for a params value, equal only for values a check can't tell apart.

    Types are part of it: ``1``, ``1.0`` and ``True`` compare equal in Python but a check
    may treat them differently. Raises TypeError for anything it cannot freeze.
    """
    if isinstance(value, Mapping):
        return ("mapping", type(value), tuple((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("sequence", type(value), tuple(_freeze(v) for v in value))
    if value is None or isinstance(value, str | int | float | bool):
        return ("scalar", type(value), value)
    raise TypeError(f"cannot freeze {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class PodInput:
    """The pod-shaped part of an object: a Pod, or a workload's pod template."""

    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    spec_path: str = "spec"
    metadata_path: str = "metadata"


# What a failed check reported over one pod, before severity and hint are attached: the
# outcome and its violations, or for ERROR the message describing the check's exception.
_Raw = tuple[Outcome, tuple[registry.Violation, ...] | str]


class Memo:
    """What one review learned about one pod, to reuse across the policies of that review.

    ``derived`` is shared by every Context built for the pod (``Context.derive``);
    ``outcomes`` holds each check's violations by :attr:`Bound.reuse_key`, or is None
    when nothing can be reused (a single policy: keying every check would only cost).
    Valid for one pod, unchanged, during one review: make a new Memo for every evaluation.
    """

    __slots__ = ("derived", "outcomes")

    def __init__(self, *, reuse: bool = True) -> None:
        self.derived: dict[str, Any] = {}
        self.outcomes: dict[Hashable, Result | _Raw] | None = {} if reuse else None


def run(
    pod: PodInput,
    selected: Iterable[Selected],
    *,
    level: registry.Level,
    memo: Memo | None = None,
) -> list[Result]:
    """Run every selected check over the pod at ``level``, in order.

    For one-off runs (tests, tools): it binds the checks on every call. Reviews run the
    checks a compiled policy bound once, through :func:`run_bound`.
    """
    return run_bound(pod, [bind(sel, level) for sel in selected], memo=memo)


def run_bound(pod: PodInput, bound: Iterable[Bound], *, memo: Memo | None = None) -> list[Result]:
    """Run every bound check over the pod, in order; never raises for a check's bug.

    With a ``memo`` (one per pod and review), a check whose :attr:`Bound.reuse_key` was
    already evaluated is not run again: its violations are reused, with this check's
    severity.
    """
    results: list[Result] = []
    derived: dict[str, Any] = {} if memo is None else memo.derived
    outcomes = None if memo is None else memo.outcomes
    # Contexts are immutable, so the checks without parameters (most of them) share one;
    # building a Context per check was a measurable part of a review (hack/bench).
    shared: registry.Context | None = None
    for b in bound:
        chk = b.check
        key = None if outcomes is None else b.reuse_key
        done = None if key is None or outcomes is None else outcomes.get(key)
        if done is None:
            if b.params:
                ctx = registry.make_context(
                    metadata=pod.metadata,
                    spec=pod.spec,
                    params=b.params,
                    spec_path=pod.spec_path,
                    metadata_path=pod.metadata_path,
                    derived=derived,
                )
            else:
                if shared is None:
                    shared = registry.make_context(
                        metadata=pod.metadata,
                        spec=pod.spec,
                        params={},  # as Context's default factory gives
                        spec_path=pod.spec_path,
                        metadata_path=pod.metadata_path,
                        derived=derived,
                    )
                ctx = shared
            # Inlined rather than a helper call: this loop runs for every check of every
            # policy of every pod, and a call costs as much as a simple check.
            try:
                violations = tuple(b.rule(ctx))
            except registry.Skip:
                done = _SKIPPED.get(chk.id) or _outcome(chk.id, Outcome.SKIP)
            except Exception as exc:  # a check's bug is its own error, never the engine's
                done = (Outcome.ERROR, f"check failed with {type(exc).__name__}: {exc}")
            else:
                if violations:
                    done = (Outcome.FAIL, violations)
                else:
                    done = _PASSED.get(chk.id) or _outcome(chk.id, Outcome.PASS)
            if key is not None and outcomes is not None:
                outcomes[key] = done
        # A pass or skip is a finding-less Result, the same for every severity.
        results.append(done if isinstance(done, Result) else _failed(b, done, pod))
    return results


def _failed(b: Bound, raw: _Raw, pod: PodInput) -> Result:
    """The Result of a failed or errored check, with this binding's severity."""
    chk = b.check
    severity = b.severity
    detail = raw[1]
    if isinstance(detail, str):
        finding = Finding(
            check=chk.id,
            severity=severity,
            message=detail,
            path=pod.spec_path,
            container=None,
            hint="this is a bug in kube-guardrails; please report it with the manifest",
            outcome=Outcome.ERROR,
        )
        return Result(check=chk.id, outcome=Outcome.ERROR, findings=(finding,))
    findings = tuple(
        Finding(
            check=chk.id,
            severity=severity,
            message=v.message,
            path=v.path,
            container=v.container,
            hint=chk.hint,
        )
        for v in detail
    )
    return Result(check=chk.id, outcome=Outcome.FAIL, findings=findings)


_OUTCOMES: dict[tuple[str, Outcome], Result] = {}
# The same Results by check id, one lookup without building a key tuple (hot path).
_PASSED: dict[str, Result] = {}
_SKIPPED: dict[str, Result] = {}


def _outcome(check: str, outcome: Outcome) -> Result:
    """A finding-less Result; immutable, so one per (check, outcome) is reused."""
    result = _OUTCOMES.get((check, outcome))
    if result is None:
        result = _OUTCOMES[(check, outcome)] = Result(check=check, outcome=outcome)
        if outcome is Outcome.PASS:
            _PASSED[check] = result
        elif outcome is Outcome.SKIP:
            _SKIPPED[check] = result
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
