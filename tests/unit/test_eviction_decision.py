"""The eviction decision: evict, wait until a time, or never (pure, injected clock)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from kube_guardrails import planning, violations
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

T0 = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
OPERATOR_LABEL = {"app.kubernetes.io/name": "kube-guardrails"}
OPERATOR_NS = "kube-guardrails-system"
LATER = T0 + datetime.timedelta(seconds=600)


def sec(n: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=n)


def policy(
    name: str = "strict",
    *,
    mode: str = "Enforce",
    grace: int = 300,
    rate: int = 2,
    dry_run: bool = False,
    exclude: tuple[str, ...] = (),
) -> policy_model.Policy:
    return policy_model.Policy(
        name=name,
        mode=mode,
        exclude_namespaces=exclude,
        workloads=policy_model.Workloads(
            enforcement=policy_model.Enforcement(
                grace_period_seconds=grace, max_evictions_per_minute=rate, dry_run=dry_run
            )
        ),
    )


def pod(
    *,
    namespace: str = "team-a",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    phase: str = "Running",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": namespace, "uid": "u1"}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owners:
        meta["ownerReferences"] = owners
    if deleting:
        meta["deletionTimestamp"] = "2026-11-23T11:00:00Z"
    return {"kind": "Pod", "metadata": meta, "spec": {}, "status": {"phase": phase}}


def finding(
    policy_name: str = "strict",
    *,
    action: str = "Enforce",
    outcome: engine.Outcome = engine.Outcome.FAIL,
) -> planning.AttributedFinding:
    return planning.AttributedFinding(
        policy=policy_name,
        action=action,
        finding=engine.Finding(
            check="privileged",
            severity=registry.Severity.HIGH,
            message="privileged is true",
            path="spec.containers[0].securityContext.privileged",
            container="app",
            hint="remove privileged",
            outcome=outcome,
        ),
    )


def decide(
    *,
    the_pod: dict[str, Any] | None = None,
    findings: list[planning.AttributedFinding] | None = None,
    the_policy: policy_model.Policy | None = None,
    since: datetime.datetime = T0,
    now: datetime.datetime = LATER,
    recent: tuple[datetime.datetime, ...] = (),
    node_verified: bool | None = None,
) -> violations.Decision:
    return violations.eviction_decision(
        the_pod if the_pod is not None else pod(),
        findings=findings if findings is not None else [finding()],
        policy=the_policy if the_policy is not None else policy(),
        since=since,
        now=now,
        recent_evictions=recent,
        operator_namespace=OPERATOR_NS,
        node_verified=node_verified,
    )


MIRROR = {"kubernetes.io/config.mirror": "abc"}
NODE_OWNER = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "n1-uid", "controller": True}

NEVER_CASES = [
    # As the kubelet writes a mirror Pod: the annotation and a controller reference to its
    # Node. Not looked up (plan) or looked up and found: spared.
    pytest.param(
        {"the_pod": pod(annotations=MIRROR, owners=[NODE_OWNER])},
        "mirror",
        id="mirror-pod-claim-not-looked-up",
    ),
    pytest.param(
        {"the_pod": pod(annotations=MIRROR, owners=[NODE_OWNER]), "node_verified": True},
        "mirror",
        id="mirror-pod-node-verified",
    ),
    pytest.param({"the_pod": pod(namespace=OPERATOR_NS)}, "operator", id="operator-namespace"),
    pytest.param({"the_pod": pod(deleting=True)}, "terminating", id="terminating"),
    pytest.param({"the_pod": pod(phase="Succeeded")}, "completed", id="succeeded"),
    pytest.param({"the_pod": pod(phase="Failed")}, "completed", id="failed"),
    pytest.param({"the_pod": pod(namespace="kube-system")}, "excluded", id="always-excluded"),
    pytest.param(
        {"the_policy": policy(exclude=("team-*",))}, "excluded", id="policy-exclusion-glob"
    ),
    pytest.param({"the_policy": policy(mode="Audit")}, "Audit mode", id="audit-mode"),
    pytest.param(
        {"findings": [finding(action="Audit")]}, "no Enforce-action", id="audit-action-only"
    ),
    pytest.param(
        {"findings": [finding(outcome=engine.Outcome.ERROR)]},
        "no Enforce-action",
        id="check-error-never-evicts",
    ),
    pytest.param({"findings": [finding("other")]}, "no Enforce-action", id="other-policy-finding"),
    pytest.param({"findings": []}, "no Enforce-action", id="compliant"),
]


@pytest.mark.parametrize(("kwargs", "reason"), NEVER_CASES)
def test_never(kwargs: dict[str, Any], reason: str) -> None:
    decision = decide(**kwargs)
    assert isinstance(decision, violations.Never)
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "until", "why"),
    [
        pytest.param({"now": T0}, T0 + sec(300), "grace period", id="just-observed"),
        pytest.param({"now": T0 + sec(299)}, T0 + sec(300), "grace period", id="1s-before-grace"),
        pytest.param(
            {"the_policy": policy(grace=60), "now": T0 + sec(30)},
            T0 + sec(60),
            "grace period",
            id="policy-grace",
        ),
        pytest.param(
            {"recent": (T0 + sec(550), T0 + sec(590))},
            T0 + sec(610),
            "rate limit",
            id="window-full",
        ),
        pytest.param(
            {"recent": (T0 + sec(500), T0 + sec(560), T0 + sec(599))},
            T0 + sec(620),
            "rate limit",
            id="window-full-oldest-that-matters",
        ),
    ],
)
def test_wait(kwargs: dict[str, Any], until: datetime.datetime, why: str) -> None:
    decision = decide(**kwargs)
    assert decision == violations.Wait(policy="strict", until=until, why=why)


@pytest.mark.parametrize(
    ("kwargs", "dry_run"),
    [
        pytest.param({"now": T0 + sec(300)}, False, id="grace-just-over"),
        pytest.param({"the_policy": policy(grace=0), "now": T0}, False, id="no-grace"),
        pytest.param({"recent": (T0 + sec(500), T0 + sec(590))}, False, id="window-slid"),
        pytest.param({"recent": (T0 + sec(590),)}, False, id="window-not-full"),
        pytest.param({"the_policy": policy(dry_run=True)}, True, id="dry-run"),
        pytest.param({"findings": [finding(action="Audit"), finding()]}, False, id="mixed-actions"),
        # The operator's label outside its namespace grants nothing: any developer could
        # set it on a Pod to escape Enforce.
        pytest.param({"the_pod": pod(labels=OPERATOR_LABEL)}, False, id="operator-label-elsewhere"),
        # Issue 9: owner references anyone can write do not protect; a DaemonSet is only
        # protected once the enforcer has looked it up (claimed_daemonset).
        pytest.param(
            {"the_pod": pod(owners=[{"apiVersion": "v1", "kind": "Node", "name": "n1"}])},
            False,
            id="node-owner-without-mirror-annotation",
        ),
        # The mirror annotation is accepted from any user who may create a Pod (with
        # spec.nodeName): alone, or with a Node owner the enforcer could not find, it
        # protects nothing.
        pytest.param({"the_pod": pod(annotations=MIRROR)}, False, id="mirror-annotation-alone"),
        pytest.param(
            {"the_pod": pod(annotations=MIRROR, owners=[{**NODE_OWNER, "controller": False}])},
            False,
            id="mirror-annotation-node-owner-not-controller",
        ),
        pytest.param(
            {"the_pod": pod(annotations=MIRROR, owners=[NODE_OWNER]), "node_verified": False},
            False,
            id="mirror-claim-with-a-node-that-does-not-exist",
        ),
        pytest.param(
            {"the_pod": pod(owners=[{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d"}])},
            False,
            id="daemonset-owner-is-verified-by-the-enforcer-not-here",
        ),
        # The annotations are output only: a copied violations text and a future
        # violations-since change nothing (since comes from the operator's memory).
        pytest.param(
            {
                "the_pod": pod(
                    annotations={
                        "kube-guardrails.io/violations": "strict/privileged(app)!",
                        "kube-guardrails.io/violations-since": "2999-01-01T00:00:00Z",
                    }
                )
            },
            False,
            id="future-violations-since-annotation-ignored",
        ),
    ],
)
def test_evict(kwargs: dict[str, Any], dry_run: bool) -> None:
    decision = decide(**kwargs)
    assert isinstance(decision, violations.Evict)
    assert decision.policy == "strict"
    assert decision.dry_run is dry_run
    assert ("would evict" in decision.message) is dry_run
    assert "privileged" in decision.message


@pytest.mark.parametrize(
    ("recent", "per_minute", "expected"),
    [
        pytest.param((), 1, None, id="empty"),
        pytest.param((T0 - sec(60),), 1, None, id="exactly-a-minute-ago-is-out"),
        pytest.param((T0 - sec(59),), 1, T0 + sec(1), id="59s-ago-is-in"),
        pytest.param((T0 - sec(10), T0 - sec(50)), 3, None, id="below-limit"),
        pytest.param(
            (T0 - sec(10), T0 - sec(50), T0 - sec(30)), 3, T0 + sec(10), id="at-limit-unsorted"
        ),
    ],
)
def test_rate_limit_until(
    recent: tuple[datetime.datetime, ...], per_minute: int, expected: datetime.datetime | None
) -> None:
    assert violations.rate_limit_until(recent, now=T0, per_minute=per_minute) == expected


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(0, 5), (1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (100, 300)],
    ids=lambda v: str(v),
)
def test_backoff_is_exponential_and_capped(attempt: int, seconds: float) -> None:
    assert violations.backoff(attempt) == sec(seconds)


WAIT_A = violations.Wait(policy="a", until=T0 + sec(20), why="grace period")
WAIT_B = violations.Wait(policy="b", until=T0 + sec(10), why="rate limit")
EVICT_REAL = violations.Evict(policy="z", dry_run=False, message="m")
EVICT_DRY = violations.Evict(policy="a", dry_run=True, message="m")
NEVER = violations.Never(reason="audit")


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        pytest.param([], violations.Never(reason="no policy enforces on this Pod"), id="none"),
        pytest.param([NEVER, WAIT_A, WAIT_B], WAIT_B, id="earliest-wait"),
        pytest.param([WAIT_A, EVICT_DRY], EVICT_DRY, id="evict-beats-wait"),
        pytest.param([EVICT_DRY, EVICT_REAL], EVICT_REAL, id="real-beats-dry-run"),
        pytest.param([NEVER], NEVER, id="never"),
    ],
)
def test_combine(decisions: list[violations.Decision], expected: violations.Decision) -> None:
    assert violations.combine(decisions) == expected


_DS = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "d1"}


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        pytest.param([{**_DS, "controller": True}], ("ds", "d1"), id="real-controller-ref"),
        pytest.param([{**_DS, "controller": False}], None, id="not-controller"),
        pytest.param([dict(_DS)], None, id="controller-unset"),
        pytest.param(
            [{**_DS, "apiVersion": "example.com/v1", "controller": True}], None, id="other-group"
        ),
        pytest.param([{**_DS, "apiVersion": "apps/v1beta2", "controller": True}], None, id="old"),
        pytest.param([{**_DS, "controller": True, "uid": ""}], None, id="no-uid"),
        pytest.param(
            [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "x", "controller": True}],
            None,
            id="node",
        ),
        pytest.param("junk", None, id="malformed"),
    ],
)
def test_claimed_daemonset(owners: Any, expected: tuple[str, str] | None) -> None:
    the_pod = pod()
    the_pod["metadata"]["ownerReferences"] = owners
    assert violations.claimed_daemonset(the_pod) == expected


def test_watch_projection_keeps_what_verifies_a_daemonset_owner() -> None:
    """The operator decides on the compact projection of a Pod (``k8s.watch``)."""
    from kube_guardrails.k8s import watch

    the_pod = pod()
    the_pod["apiVersion"] = "v1"
    the_pod["metadata"]["ownerReferences"] = [{**_DS, "controller": True}]
    assert violations.claimed_daemonset(watch.project_pod(the_pod)) == ("ds", "d1")
