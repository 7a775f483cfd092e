"""Leader election (``k8s.leader``) against a real API server: the Lease's truth.

Whether a create races, a stale ``resourceVersion`` is refused, a released or expired
Lease can be taken, and the Lease fields are valid is decided by the API server, so
it is tested there, with short timings (a lease of 2 s) in a fresh namespace. No
assertion is on time: the tests wait (bounded) for what must happen, and check what
must not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from real_api import RealApi

from kube_guardrails.k8s import leader

FAST = leader.Timing(lease_duration=2, renew_deadline=1.5, retry_period=0.5)
WAIT = 30.0  # generous bound for a take-over that needs ~2.5 s


def lease_path(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{leader.LEASE_NAME}"


class Candidate:
    """An elector running in a task, with what its callbacks saw."""

    def __init__(self, api: RealApi, namespace: str, name: str) -> None:
        self.elector = leader.Elector(
            api_client=api.api_client, namespace=namespace, identity=name, timing=FAST
        )
        self.started = asyncio.Event()
        self.lost = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(
            self.elector.run(on_started=self.started.set, on_lost=self.lost.set)
        )

    async def crash(self) -> None:
        """Stop campaigning without releasing: what SIGKILL does to a leader."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.elector.is_leader = False

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            await self.crash()
        self.elector.close()


@pytest.fixture()
async def candidates(
    real_api_session: RealApi, real_namespace: str
) -> AsyncIterator[Callable[[str], Candidate]]:
    made: list[Candidate] = []

    def make(name: str) -> Candidate:
        candidate = Candidate(real_api_session, real_namespace, name)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        await candidate.stop()


async def eventually(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=WAIT)
    except TimeoutError:
        raise AssertionError(f"timed out after {WAIT:g}s waiting for {what}") from None


async def test_one_leader_the_other_waits_and_takes_over_when_it_dies(
    real_api_session: RealApi, real_namespace: str, candidates: Callable[[str], Candidate]
) -> None:
    a, b = candidates("replica-a"), candidates("replica-b")
    a.start()
    await eventually(a.started, "replica-a to lead")
    b.start()
    # b reads the Lease several times while a renews it: it must not lead.
    for _ in range(6):
        await asyncio.sleep(FAST.retry_period)
        assert not b.started.is_set() and b.elector.holder == "replica-a"
    lease = real_api_session.request("GET", lease_path(real_namespace))
    assert lease["spec"]["holderIdentity"] == "replica-a"
    assert lease["spec"]["leaseDurationSeconds"] == 2
    transitions = lease["spec"].get("leaseTransitions", 0)

    await a.crash()
    await eventually(b.started, "replica-b to take over the expired lease")
    lease = real_api_session.request("GET", lease_path(real_namespace))
    assert lease["spec"]["holderIdentity"] == "replica-b"
    assert lease["spec"]["leaseTransitions"] == transitions + 1
    assert not b.lost.is_set()


async def test_release_hands_over_at_the_next_attempt(
    real_api_session: RealApi, real_namespace: str, candidates: Callable[[str], Candidate]
) -> None:
    a, b = candidates("replica-a"), candidates("replica-b")
    a.start()
    await eventually(a.started, "replica-a to lead")
    b.start()
    await asyncio.sleep(FAST.retry_period * 2)
    assert not b.started.is_set()
    assert a.task is not None
    a.task.cancel()  # stop renewing (a graceful stop), then give the lease up
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    assert a.elector.is_leader  # still within its renew deadline: it may release
    assert await a.elector.release()
    assert not a.elector.is_leader
    await eventually(b.started, "replica-b to take the released lease")
    lease = real_api_session.request("GET", lease_path(real_namespace))
    assert lease["spec"]["holderIdentity"] == "replica-b"
    # A standby has nothing to release, and a second release is a no-op.
    assert not await a.elector.release()


async def test_a_leader_that_sees_another_holder_stops_at_once(
    real_api_session: RealApi, real_namespace: str, candidates: Callable[[str], Candidate]
) -> None:
    a = candidates("replica-a")
    a.start()
    await eventually(a.started, "replica-a to lead")
    # Someone else writes the Lease (an operator with a clock gone wrong, a human):
    # a's next renewal is refused (stale resourceVersion), it reads, sees the intruder.
    lease = real_api_session.request("GET", lease_path(real_namespace))
    lease["spec"]["holderIdentity"] = "intruder"
    real_api_session.request("PUT", lease_path(real_namespace), body=lease)
    await eventually(a.lost, "replica-a to give up leading")
    assert not a.elector.is_leader and a.elector.holder == "intruder"


async def test_racing_candidates_never_both_win(
    real_api_session: RealApi, real_namespace: str, candidates: Callable[[str], Candidate]
) -> None:
    racers = [candidates(f"racer-{i}") for i in range(4)]
    # No Lease yet: all try to create it at once; then all try again (renew or wait).
    for _ in range(3):
        won = await asyncio.gather(*(r.elector.try_acquire_or_renew() for r in racers))
        assert sum(won) == 1, won
    lease = real_api_session.request("GET", lease_path(real_namespace))
    (winner,) = [r for r, w in zip(racers, won, strict=True) if w]
    assert lease["spec"]["holderIdentity"] == winner.elector.identity


async def test_release_after_a_renewal_it_did_not_see_land(
    real_api_session: RealApi, real_namespace: str, candidates: Callable[[str], Candidate]
) -> None:
    # A renewal cut off by the stop (its task cancelled mid-request) may still land on
    # the server: the leader's resourceVersion is then stale, and it must read again.
    a = candidates("replica-a")
    a.start()
    await eventually(a.started, "replica-a to lead")
    assert a.task is not None
    a.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    lease = real_api_session.request("GET", lease_path(real_namespace))
    real_api_session.request("PUT", lease_path(real_namespace), body=lease)  # a new version
    assert await a.elector.release()
    lease = real_api_session.request("GET", lease_path(real_namespace))
    assert not lease["spec"].get("holderIdentity")
