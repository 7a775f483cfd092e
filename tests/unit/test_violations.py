"""The violation annotation, its fingerprint and the Event texts (pure, no cluster)."""

from __future__ import annotations

import datetime

import pytest

from kube_guardrails import planning, violations
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

AUDIT = policy_model.Policy(name="baseline")
ENFORCE = policy_model.Policy(name="strict", mode="Enforce")
POLICIES = {"baseline": AUDIT, "strict": ENFORCE}


def finding(
    policy: str,
    check: str,
    container: str | None = "app",
    *,
    action: str = "Audit",
    path: str = "spec.containers[0]",
    message: str = "is wrong",
    outcome: engine.Outcome = engine.Outcome.FAIL,
) -> planning.AttributedFinding:
    return planning.AttributedFinding(
        policy=policy,
        action=action,
        finding=engine.Finding(
            check=check,
            severity=registry.Severity.HIGH,
            message=message,
            path=path,
            container=container,
            hint=f"fix {check}",
            outcome=outcome,
        ),
    )


@pytest.mark.parametrize(
    ("findings", "kind", "expected"),
    [
        pytest.param([], "Pod", "", id="none"),
        pytest.param(
            [finding("baseline", "privileged")], "Pod", "baseline/privileged(app)", id="one"
        ),
        pytest.param(
            [finding("baseline", "runAsNonRoot", None)],
            "Pod",
            "baseline/runAsNonRoot",
            id="pod-level-no-parentheses",
        ),
        pytest.param(
            [
                finding("strict", "resources", "web"),
                finding("baseline", "runAsNonRoot", None),
                finding("baseline", "privileged", "sidecar"),
                finding("baseline", "privileged", "app"),
                finding("baseline", "privileged", "app", path="other"),
            ],
            "Pod",
            "baseline/privileged(app,sidecar),baseline/runAsNonRoot; strict/resources(web)",
            id="sorted-grouped-deduplicated",
        ),
        pytest.param(
            [finding("strict", "privileged", action="Enforce")],
            "Pod",
            "strict/privileged(app)!",
            id="enforced-pod-marked",
        ),
        pytest.param(
            [finding("strict", "privileged", action="Enforce")],
            "Deployment",
            "strict/privileged(app)",
            id="deployment-never-marked",
        ),
        pytest.param(
            [finding("baseline", "privileged", action="Enforce")],
            "Pod",
            "baseline/privileged(app)",
            id="audit-mode-policy-not-marked",
        ),
        pytest.param(
            [finding("strict", "privileged", action="Enforce", outcome=engine.Outcome.ERROR)],
            "Pod",
            "strict/privileged(app)",
            id="check-error-not-marked",
        ),
    ],
)
def test_render(findings: list[planning.AttributedFinding], kind: str, expected: str) -> None:
    items = violations.items_of(findings, policies=POLICIES, kind=kind)
    text = violations.render(items)
    assert text == expected
    parsed = violations.parse(text)
    assert parsed is not None
    assert parsed.items == items
    assert parsed.fingerprint == violations.fingerprint(items)


def many_items(n: int) -> tuple[violations.Item, ...]:
    return tuple(
        violations.Item(policy=f"policy-{i:03d}", check="privileged", containers=("app",))
        for i in range(n)
    )


@pytest.mark.parametrize("n", [40, 100, 500], ids=lambda n: f"{n}-items")
def test_long_sets_are_cut_at_an_item_boundary_and_keep_their_identity(n: int) -> None:
    items = many_items(n)
    text = violations.render(items)
    assert len(text) <= violations.MAX_ANNOTATION
    parsed = violations.parse(text)
    assert parsed is not None
    assert parsed.more > 0
    assert len(parsed.items) + parsed.more == n
    assert parsed.items == items[: len(parsed.items)]
    assert parsed.fingerprint == violations.fingerprint(items)
    # One item fewer: a different set, a different fingerprint, although the visible
    # prefix may be the same.
    assert violations.fingerprint(items[:-1]) != parsed.fingerprint


@pytest.mark.parametrize(
    ("value", "readable"),
    [
        pytest.param("baseline/privileged(app)", True, id="ours"),
        pytest.param(" baseline/privileged(app) ", True, id="whitespace"),
        pytest.param("a.b-c/x1(c-1,c.2)!; d/y", True, id="dots-dashes"),
        pytest.param("privileged", False, id="no-policy"),
        pytest.param("baseline/privileged(app", False, id="unclosed"),
        pytest.param("baseline/privileged(app) extra", False, id="trailing-text"),
        pytest.param("baseline/privileged,,", False, id="empty-item"),
        pytest.param("Baseline/privileged", False, id="uppercase-policy"),
    ],
)
def test_parse_rejects_what_we_never_write(value: str, readable: bool) -> None:
    assert (violations.parse(value) is not None) is readable


@pytest.mark.parametrize(
    ("annotations", "same_as_items"),
    [
        pytest.param(None, None, id="no-annotations"),
        pytest.param({}, None, id="no-violation-annotation"),
        pytest.param(
            {violations.ANNOTATION_VIOLATIONS: "baseline/privileged(app)"}, True, id="same"
        ),
        pytest.param(
            {violations.ANNOTATION_VIOLATIONS: "baseline/privileged(app,other)"},
            False,
            id="other-container",
        ),
        pytest.param(
            {violations.ANNOTATION_VIOLATIONS: "baseline/privileged(app)!"},
            False,
            id="enforcement-differs",
        ),
        pytest.param({violations.ANNOTATION_VIOLATIONS: "garbage!!"}, False, id="hand-edited"),
    ],
)
def test_annotation_fingerprint(
    annotations: dict[str, str] | None, same_as_items: bool | None
) -> None:
    items = (violations.Item(policy="baseline", check="privileged", containers=("app",)),)
    got = violations.annotation_fingerprint(annotations)
    if same_as_items is None:
        assert got is None
    else:
        assert (got == violations.fingerprint(items)) is same_as_items


def test_fingerprint_ignores_order() -> None:
    a = violations.Item(policy="a", check="x")
    b = violations.Item(policy="b", check="y", containers=("c",))
    assert violations.fingerprint([a, b]) == violations.fingerprint([b, a])
    assert violations.fingerprint([a]) != violations.fingerprint([b])


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param(
            {violations.ANNOTATION_SINCE: "2026-11-23T10:00:00Z"},
            datetime.datetime(2026, 11, 23, 10, tzinfo=datetime.UTC),
            id="rfc3339",
        ),
        pytest.param({violations.ANNOTATION_SINCE: "yesterday"}, None, id="unreadable"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_parse_since(annotations: dict[str, str], expected: datetime.datetime | None) -> None:
    assert violations.parse_since(annotations) == expected


def test_format_time_round_trips() -> None:
    moment = datetime.datetime(2026, 11, 23, 10, 0, 5, 123, tzinfo=datetime.UTC)
    text = violations.format_time(moment)
    assert text == "2026-11-23T10:00:05Z"
    assert violations.parse_since({violations.ANNOTATION_SINCE: text}) == moment.replace(
        microsecond=0
    )


@pytest.mark.parametrize(
    ("findings", "note", "expected"),
    [
        pytest.param(
            [finding("baseline", "privileged")],
            None,
            "1 guardrail violation: [baseline] privileged: container app: "
            "spec.containers[0]: is wrong. Fix: fix privileged",
            id="one",
        ),
        pytest.param(
            [
                finding("baseline", "privileged", "b", path="spec.containers[1]"),
                finding("baseline", "privileged", "a", path="spec.containers[0]"),
                finding("baseline", "seccomp", None, path="spec.securityContext"),
            ],
            "evicted after 300s unless fixed",
            "3 guardrail violations (evicted after 300s unless fixed): [baseline] privileged: "
            "container a: spec.containers[0]: is wrong; container b: spec.containers[1]: is wrong."
            " Fix: fix privileged | [baseline] seccomp: spec.securityContext: is wrong."
            " Fix: fix seccomp",
            id="hint-once-per-check",
        ),
    ],
)
def test_violation_message(
    findings: list[planning.AttributedFinding], note: str | None, expected: str
) -> None:
    assert violations.violation_message(findings, eviction_note=note) == expected


def test_violation_message_is_bounded() -> None:
    findings = [finding("baseline", f"check{i}", f"c{i}", message="x" * 100) for i in range(50)]
    text = violations.violation_message(findings)
    assert len(text) == violations.MAX_EVENT_MESSAGE
    assert text.startswith("50 guardrail violations: ")
    assert text.endswith(f"(see annotation {violations.ANNOTATION_VIOLATIONS})")


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        pytest.param(None, "No guardrail violations any more", id="unknown-before"),
        pytest.param(
            "baseline/privileged(app)",
            "No guardrail violations any more (was: baseline/privileged(app))",
            id="with-previous",
        ),
    ],
)
def test_compliant_message(previous: str | None, expected: str) -> None:
    assert violations.compliant_message(previous) == expected
    assert len(violations.compliant_message("x" * 5000)) == violations.MAX_EVENT_MESSAGE


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a" + " " * 120_000 + "a", id="blank-run-120k"),
        pytest.param("p/c," * 100_000, id="many-tokens"),
        pytest.param("p/c ...+" + "9" * 100_000 + " more #0123456789abcdef", id="huge-count"),
        pytest.param("a" * 300_000 + "-", id="long-name"),
    ],
)
def test_parse_is_bounded(value: str) -> None:
    # Anyone can write the annotation (up to 256 KB): too long to be ours, unparsable,
    # and the fingerprint of its text is still defined (so the operator rewrites it).
    assert violations.parse(value) is None
    fp = violations.annotation_fingerprint({violations.ANNOTATION_VIOLATIONS: value})
    assert fp is not None and fp.startswith("unparsable:")
