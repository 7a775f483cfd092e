"""Leader election decisions (``k8s.leader``): pure tables, no cluster.

The API side (create, conflicts, take-over, release) is tested against the real API
server in ``tests/integration/test_leader_real_api.py``.
"""

from __future__ import annotations

import datetime

import pytest

from kube_guardrails.k8s import leader

ME = "operator-a_1234"
OTHER = "operator-b_5678"


def record(holder: str = OTHER, *, renew: str = "t1", duration: int = 10) -> leader.Record:
    return leader.Record(
        holder=holder,
        duration_seconds=duration,
        acquire_time="t0",
        renew_time=renew,
        transitions=3,
        resource_version="42",
    )


@pytest.mark.parametrize(
    ("observed", "now", "expected"),
    [
        pytest.param(None, 0.0, leader.Decision.CREATE, id="no-lease-create"),
        pytest.param(
            leader.Observation(record(ME), at=0.0), 100.0, leader.Decision.RENEW, id="mine-renew"
        ),
        pytest.param(
            leader.Observation(record(""), at=0.0), 0.0, leader.Decision.ACQUIRE, id="released"
        ),
        pytest.param(
            leader.Observation(record(OTHER), at=0.0), 9.9, leader.Decision.WAIT, id="held-valid"
        ),
        pytest.param(
            leader.Observation(record(OTHER), at=0.0), 10.0, leader.Decision.ACQUIRE, id="expired"
        ),
        pytest.param(
            leader.Observation(record(OTHER, duration=15), at=0.0),
            12.0,
            leader.Decision.WAIT,
            id="the-lease-own-duration-counts",
        ),
        pytest.param(
            leader.Observation(record(OTHER, duration=0), at=0.0),
            0.0,
            leader.Decision.ACQUIRE,
            id="no-duration-expired",
        ),
    ],
)
def test_decide(observed: leader.Observation | None, now: float, expected: leader.Decision) -> None:
    assert leader.decide(observed, identity=ME, now=now) is expected


@pytest.mark.parametrize(
    ("previous", "seen", "expected_at"),
    [
        pytest.param(None, record(renew="t1"), 50.0, id="first-sight"),
        pytest.param(
            leader.Observation(record(renew="t1"), at=10.0),
            record(renew="t1"),
            10.0,
            id="unchanged-keeps-first-sight",
        ),
        pytest.param(
            leader.Observation(record(renew="t1"), at=10.0),
            record(renew="t2"),
            50.0,
            id="renewed-restarts-the-clock",
        ),
        pytest.param(
            leader.Observation(record(OTHER), at=10.0),
            record(ME),
            50.0,
            id="new-holder-restarts-the-clock",
        ),
        pytest.param(
            leader.Observation(record(), at=10.0),
            leader.Record(
                holder=OTHER,
                duration_seconds=10,
                acquire_time="t0",
                renew_time="t1",
                transitions=3,
                resource_version="43",
            ),
            10.0,
            id="resource-version-alone-is-no-renewal",
        ),
    ],
)
def test_observe(
    previous: leader.Observation | None, seen: leader.Record, expected_at: float
) -> None:
    # The candidate times the lease with its own clock from the first sight of a record,
    # never from the timestamps in it (the machines' clocks may differ).
    observed = leader.observe(previous, seen, now=50.0)
    assert observed.at == expected_at and observed.record == seen


@pytest.mark.parametrize(
    ("observed", "now", "expected"),
    [
        pytest.param(None, 0.0, 2.0, id="no-lease-retry"),
        pytest.param(leader.Observation(record(""), at=0.0), 0.0, 2.0, id="released-retry"),
        pytest.param(leader.Observation(record(OTHER), at=0.0), 1.0, 2.0, id="far-from-expiry"),
        pytest.param(
            leader.Observation(record(OTHER), at=0.0), 9.0, 1.05, id="expires-before-next-retry"
        ),
        pytest.param(leader.Observation(record(OTHER), at=0.0), 12.0, 0.05, id="already-expired"),
    ],
)
def test_next_attempt_in(observed: leader.Observation | None, now: float, expected: float) -> None:
    assert leader.next_attempt_in(observed, identity=ME, now=now, retry=2.0) == pytest.approx(
        expected
    )


TIMING = leader.Timing(lease_duration=10, renew_deadline=7, retry_period=2)


@pytest.mark.parametrize(
    ("elapsed", "leading"),
    [
        pytest.param(0.0, True, id="just-renewed"),
        pytest.param(6.9, True, id="within-deadline"),
        pytest.param(7.0, False, id="at-deadline"),
        pytest.param(9.0, False, id="past-deadline"),
    ],
)
def test_still_leading(elapsed: float, leading: bool) -> None:
    assert leader.still_leading(last_renewed=100.0, now=100.0 + elapsed, timing=TIMING) is leading


def test_leader_stops_before_any_standby_may_take_over() -> None:
    # The standby's clock starts no earlier than the renewal the leader started at
    # last_renewed; it may take over after the lease duration, the leader stops at the
    # renew deadline: never both at once.
    last_renewed = 100.0
    stop = last_renewed + TIMING.renew_deadline
    earliest_takeover = last_renewed + TIMING.lease_duration
    assert not leader.still_leading(last_renewed=last_renewed, now=stop, timing=TIMING)
    standby = leader.Observation(record(OTHER, duration=int(TIMING.lease_duration)), at=100.0)
    assert leader.decide(standby, identity=ME, now=stop) is leader.Decision.WAIT
    assert leader.decide(standby, identity=ME, now=earliest_takeover) is leader.Decision.ACQUIRE


@pytest.mark.parametrize(
    ("timing", "problem"),
    [
        pytest.param(leader.Timing(10, 7, 2), None, id="defaults-ok"),
        pytest.param(leader.Timing(15, 10, 2), None, id="client-go-defaults-ok"),
        pytest.param(leader.Timing(7, 7, 2), "lease duration", id="lease-not-longer"),
        pytest.param(leader.Timing(10, 2.4, 2), "renew deadline", id="deadline-within-jitter"),
        pytest.param(leader.Timing(10.5, 7, 2), "whole number", id="fractional-lease"),
        pytest.param(leader.Timing(10, 7, 0), "retry period", id="no-retry-period"),
    ],
)
def test_validate_timing(timing: leader.Timing, problem: str | None) -> None:
    found = leader.validate_timing(timing)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        pytest.param({"POD_NAME": "kube-guardrails-7d9f-x2"}, "kube-guardrails-7d9f-x2_", id="pod"),
        pytest.param({"HOSTNAME": "laptop"}, "laptop_", id="host"),
    ],
)
def test_identity_is_the_pod_name_plus_a_random_suffix(env: dict[str, str], prefix: str) -> None:
    first, second = leader.default_identity(env), leader.default_identity(env)
    assert first.startswith(prefix) and second.startswith(prefix)
    assert first != second  # a restarted container never takes the old lease for its own


def test_lease_body_and_record_round_trip() -> None:
    when = datetime.datetime(2026, 11, 29, 1, 2, 3, 45, tzinfo=datetime.UTC)
    stamp = leader.micro_time(when)
    assert stamp == "2026-11-29T01:02:03.000045Z"
    body = leader.lease_body(
        name="kube-guardrails-leader",
        namespace="kube-guardrails-system",
        holder=ME,
        duration_seconds=10,
        acquire_time=stamp,
        renew_time=stamp,
        transitions=4,
        resource_version="7",
    )
    assert leader.Record.from_lease(body) == leader.Record(
        holder=ME,
        duration_seconds=10,
        acquire_time=stamp,
        renew_time=stamp,
        transitions=4,
        resource_version="7",
    )


def test_released_lease_has_no_holder() -> None:
    body = leader.lease_body(
        name="l",
        namespace="ns",
        holder="",
        duration_seconds=leader.RELEASED_DURATION,
        acquire_time=None,
        renew_time="t",
        transitions=1,
        resource_version=None,
    )
    assert "holderIdentity" not in body["spec"] and "resourceVersion" not in body["metadata"]
    assert leader.Record.from_lease(body).holder == ""
