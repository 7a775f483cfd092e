"""The workload use case with a fake gateway and an injected clock.

What developers see (annotation, one Event per change), what the API sees (no write
for compliant workloads, none for repeats) and what Enforce does (grace period,
backoff on 429, rate limit, dry run).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import pytest
import workload_fakes as fakes

from kube_guardrails import violations
from kube_guardrails.services import enforcement, policies, workloads

ANN = violations.ANNOTATION_VIOLATIONS
SINCE = violations.ANNOTATION_SINCE


class World:
    """A service wired to fakes, with namespace team-a known."""

    def __init__(
        self, *policy_objs: Mapping[str, Any], gateway: fakes.FakeGateway | None = None
    ) -> None:
        self.clock = fakes.Clock()
        self.gateway = gateway or fakes.FakeGateway()
        self.status = fakes.FakeStatus()
        self.store = policies.PolicyStore()
        for obj in policy_objs:
            self.store.upsert(obj)
        self.service = workloads.WorkloadService(
            gateway=self.gateway,
            policies=self.store,
            status=self.status,
            operator_namespace="kube-guardrails-system",
            clock=self.clock,
        )
        self.store.subscribe(self.service.policy_changed)
        self.service.namespace_seen("team-a", {"team": "a"})
        self.gateway.clock = self.clock

    async def restart(self, after: float, *bodies: Mapping[str, Any]) -> workloads.WorkloadService:
        """A new process ``after`` seconds later: lists ``bodies`` as the API holds them
        now and runs its first full pass (in-memory state such as owed Events is gone)."""
        self.clock.advance(after)
        service = workloads.WorkloadService(
            gateway=self.gateway,
            policies=self.store,
            status=self.status,
            operator_namespace="kube-guardrails-system",
            clock=self.clock,
            wait_for=("listed",),
        )
        service.namespace_seen("team-a", {"team": "a"})
        for kind in sorted({b["kind"] for b in bodies}):
            service.listed(kind, [self.current(b) for b in bodies if b["kind"] == kind])
        service.source_ready("listed")
        await service.run_due()
        return service

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace the object and deliver the watch event; returns it as stored."""
        stored = self.gateway.put(body)
        await self.service.observe(stored)
        return self.current(body)

    async def redeliver(self, body: Mapping[str, Any]) -> None:
        """Deliver the object as the API holds it now (a resync or a restart)."""
        await self.service.observe(self.current(body))

    def current(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return copy.deepcopy(self.gateway.objects[(body["kind"], meta["namespace"], meta["name"])])

    async def tick(self, seconds: float = 0) -> None:
        self.clock.advance(seconds)
        await self.service.run_due()


def annotations(body: Mapping[str, Any]) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: fakes.privileged(fakes.compliant_pod()), id="pod"),
        pytest.param(lambda: fakes.privileged(fakes.deployment()), id="deployment"),
    ],
)
async def test_violating_gets_annotation_and_one_warning(make: Any) -> None:
    world = World(fakes.policy())
    body = make()
    stored = await world.apply(body)
    assert annotations(stored) == {
        ANN: "baseline/privileged(app)",
        SINCE: "2026-11-23T12:00:00Z",
    }
    assert world.gateway.writes == 1
    [event] = world.gateway.events
    assert (event.type, event.reason) == ("Warning", "GuardrailViolation")
    assert event.regarding.kind == body["kind"]
    assert "privileged" in event.message and "Fix:" in event.message

    # Resync, restart (a new service), and a stale event from before our patch: silence.
    await world.redeliver(body)
    await world.service.observe(body)
    world.clock.advance(3600)
    restarted = World(fakes.policy(), gateway=world.gateway)  # same API, fresh memory
    restarted.clock.now = world.clock.now
    await restarted.redeliver(body)
    assert world.gateway.writes == 1
    assert len(world.gateway.events) == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(fakes.compliant_pod, id="pod"),
        pytest.param(fakes.deployment, id="deployment"),
    ],
)
async def test_compliant_gets_no_write_at_all(make: Any) -> None:
    world = World(fakes.policy(level="restricted"))
    body = make()
    await world.apply(body)
    await world.redeliver(body)
    await world.tick(600)
    assert world.gateway.patches == []
    assert world.gateway.events == []
    assert world.gateway.evictions == []


async def test_becoming_compliant_removes_annotation_and_posts_normal_event() -> None:
    world = World(fakes.policy())
    bad = fakes.privileged(fakes.compliant_pod())
    await world.apply(bad)
    fixed = world.current(bad)
    fixed["spec"] = fakes.compliant_pod()["spec"]
    stored = await world.apply(fixed)
    assert annotations(stored) == {}
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailCompliant"]
    normal = world.gateway.events[1]
    assert normal.type == "Normal"
    assert "baseline/privileged(app)" in normal.message
    await world.redeliver(fixed)
    assert world.gateway.writes == 2


async def test_changed_set_writes_again_and_resets_since() -> None:
    world = World(fakes.policy())
    bad = fakes.privileged(fakes.compliant_pod())
    await world.apply(bad)
    world.clock.advance(30)
    worse = world.current(bad)
    worse["spec"]["hostNetwork"] = True
    stored = await world.apply(worse)
    assert annotations(stored) == {
        ANN: "baseline/hostNamespaces,baseline/privileged(app)",
        SINCE: "2026-11-23T12:00:30Z",
    }
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailViolation"]


async def test_hand_edited_annotation_is_rewritten_in_canonical_form() -> None:
    world = World(fakes.policy())
    bad = fakes.privileged(fakes.compliant_pod())
    bad["metadata"]["annotations"] = {ANN: "something else"}
    stored = await world.apply(bad)
    assert annotations(stored)[ANN] == "baseline/privileged(app)"


@pytest.mark.parametrize(
    "copied",
    [
        pytest.param({ANN: "baseline/privileged(app)"}, id="violations-only"),
        pytest.param(
            {ANN: "baseline/privileged(app)", SINCE: "2026-11-23T11:00:00Z"}, id="with-since"
        ),
    ],
)
async def test_a_new_object_with_our_annotation_copied_still_gets_its_event(
    copied: dict[str, str],
) -> None:
    """Red team: a workload owner creates a violating Pod with the operator's own
    violations text, so that its set looks recorded and announced already: it got no
    GuardrailViolation Event. An object that arrives after the first pass with our
    annotation cannot carry one the operator wrote: it is rewritten and announced."""
    world = World(fakes.policy())
    service = await world.restart(0)  # a process past its first full pass
    bad = fakes.privileged(fakes.compliant_pod())
    bad["metadata"]["annotations"] = dict(copied)
    service.changed("Pod", "ADDED", world.gateway.put(bad))
    await service.run_due()
    assert world.gateway.reasons() == ["GuardrailViolation"]
    assert annotations(world.current(bad)) == {
        ANN: "baseline/privileged(app)",
        SINCE: "2026-11-23T12:00:00Z",
    }
    # Once: its own watch event (our write) and a resync say nothing more.
    service.changed("Pod", "MODIFIED", world.current(bad))
    await service.run_due()
    assert world.gateway.reasons() == ["GuardrailViolation"]


async def test_lost_since_is_restored_without_an_event() -> None:
    world = World(fakes.policy())
    bad = fakes.privileged(fakes.compliant_pod())
    bad["metadata"]["annotations"] = {ANN: "baseline/privileged(app)"}
    stored = await world.apply(bad)
    assert annotations(stored)[SINCE] == "2026-11-23T12:00:00Z"
    assert world.gateway.patches[0][1] == {SINCE: "2026-11-23T12:00:00Z"}
    assert world.gateway.events == []


async def test_multiple_policies_attribute_each_finding() -> None:
    world = World(fakes.policy("baseline"), fakes.policy("team-restricted", level="restricted"))
    body = fakes.privileged(fakes.compliant_pod())
    body["spec"]["securityContext"]["runAsNonRoot"] = False
    stored = await world.apply(body)
    assert annotations(stored)[ANN] == (
        "baseline/privileged(app); team-restricted/privileged(app),team-restricted/runAsNonRoot"
    )
    [event] = world.gateway.events
    assert "[baseline] privileged" in event.message
    assert "[team-restricted] runAsNonRoot" in event.message
    assert world.status.violations == {
        "baseline": (1, {"privileged": 1}),
        "team-restricted": (2, {"privileged": 1, "runAsNonRoot": 1}),
    }


async def test_status_counts_follow_workloads() -> None:
    world = World(fakes.policy())
    pods = [fakes.privileged(fakes.compliant_pod(f"p{i}")) for i in range(3)]
    for pod in pods:
        await world.apply(pod)
    await world.apply(fakes.privileged(fakes.deployment()))
    assert world.status.violations["baseline"] == (4, {"privileged": 4})
    await world.service.forget(pods[0])
    fixed = world.current(pods[1])
    fixed["spec"] = fakes.compliant_pod()["spec"]
    await world.apply(fixed)
    assert world.status.violations["baseline"] == (2, {"privileged": 2})
    assert world.service.counts("baseline") == (2, {"privileged": 2})


EXEMPTION = {
    "namespaces": ["team-a"],
    "selector": {"matchLabels": {"app": "web"}},
    "checks": ["privileged"],
    "reason": "vendor image, ticket SEC-123",
    "expires": "2026-11-23T13:00:00Z",
}


@pytest.mark.parametrize(
    ("exemption", "exempt"),
    [
        pytest.param(EXEMPTION, True, id="matching"),
        pytest.param({**EXEMPTION, "namespaces": ["team-b"]}, False, id="other-namespace"),
        pytest.param(
            {**EXEMPTION, "selector": {"matchLabels": {"app": "db"}}}, False, id="other-labels"
        ),
        pytest.param({**EXEMPTION, "checks": ["hostPorts"]}, False, id="other-check"),
        pytest.param({**EXEMPTION, "checks": []}, True, id="all-checks"),
        pytest.param({**EXEMPTION, "expires": "2026-11-23T11:00:00Z"}, False, id="expired"),
    ],
)
async def test_exemptions(exemption: dict[str, Any], exempt: bool) -> None:
    world = World(fakes.policy(exemptions=[exemption]))
    stored = await world.apply(fakes.privileged(fakes.compliant_pod()))
    assert (ANN not in annotations(stored)) is exempt


async def test_exemption_expiry_announced_once_and_reevaluated_at_expiry() -> None:
    world = World(fakes.policy(exemptions=[EXEMPTION]))
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    assert world.gateway.events == []
    next_at = await world.service.run_due()
    assert next_at == fakes.T0.replace(hour=13)  # the background task wakes exactly then

    world.clock.now = fakes.T0.replace(hour=13)
    await world.service.run_due()
    assert world.gateway.reasons() == ["ExemptionExpired", "GuardrailViolation"]
    expired = world.gateway.events[0]
    assert expired.regarding.kind == "GuardrailPolicy"
    assert expired.regarding.name == "baseline"
    assert "exemptions[0]" in expired.message and "SEC-123" in expired.message
    assert annotations(world.current(body))[ANN] == "baseline/privileged(app)"

    await world.tick(60)
    assert len(world.gateway.events) == 2


async def test_policy_change_reevaluates_cached_workloads_without_list() -> None:
    world = World()
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    assert world.gateway.writes == 0
    world.store.upsert(fakes.policy())
    await world.tick()
    assert annotations(world.current(body))[ANN] == "baseline/privileged(app)"
    world.store.remove("baseline")
    await world.tick()
    assert ANN not in annotations(world.current(body))
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailCompliant"]


async def test_policy_for_other_namespaces_touches_nothing() -> None:
    world = World(fakes.policy(selector={"matchLabels": {"team": "b"}}))
    await world.apply(fakes.privileged(fakes.compliant_pod()))
    assert world.gateway.writes == 0


async def test_unknown_namespace_waits_for_its_labels() -> None:
    world = World(fakes.policy(selector={"matchLabels": {"team": "c"}}))
    body = fakes.privileged(fakes.compliant_pod(namespace="team-c"))
    body["metadata"]["annotations"] = {
        ANN: "baseline/privileged(app)",
        SINCE: "2026-11-23T11:00:00Z",
    }
    await world.apply(body)
    assert world.gateway.writes == 0  # neither cleared nor rewritten before labels are known
    world.service.namespace_seen("team-c", {"team": "c"})
    await world.tick()
    assert world.gateway.writes == 0  # still the same set: nothing to write
    world.service.namespace_seen("team-c", {"team": "other"})
    await world.tick()
    assert ANN not in annotations(world.current(body))


async def test_failed_write_posts_no_event_and_is_retried() -> None:
    world = World(fakes.policy())
    world.gateway.fail_patches = 1
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    assert world.gateway.events == []
    await world.tick(workloads.RETRY_AFTER.total_seconds())
    assert annotations(world.current(body))[ANN] == "baseline/privileged(app)"
    assert world.gateway.reasons() == ["GuardrailViolation"]


async def test_annotations_with_no_room_for_ours_neither_stop_eviction_nor_loop() -> None:
    """Red team: a workload owner fills the 256 KiB of annotations, so the API server
    refuses the violations annotation (422). The Pod is evicted after the grace period
    all the same, the developer gets the Event, and the write is not tried again while
    the annotations stay as they are (it was retried every 10 s, forever)."""
    world = World(fakes.policy(mode="Enforce", grace=60))
    world.gateway.annotation_limit = 1000
    body = fakes.privileged(fakes.compliant_pod())
    body["metadata"]["annotations"] = {"filler": "x" * 990}
    await world.apply(body)
    for _ in range(5):
        await world.tick(11)
        await world.redeliver(body)  # e.g. status updates of the Pod
    assert world.gateway.refused_patches == 1
    assert world.gateway.reasons() == ["GuardrailViolation"]
    assert ANN not in annotations(world.current(body))
    assert world.gateway.evictions == []
    await world.tick(5)
    assert [r.name for r in world.gateway.evictions] == ["web"]


async def test_a_refused_annotation_is_written_once_room_is_made() -> None:
    world = World(fakes.policy())
    world.gateway.annotation_limit = 1000
    body = fakes.privileged(fakes.deployment())
    body["metadata"]["annotations"] = {"filler": "x" * 990}
    await world.apply(body)
    roomy = world.current(body)
    roomy["metadata"]["annotations"] = {"filler": "x"}
    await world.apply(roomy)
    assert world.gateway.refused_patches == 1  # the cache does not see the room made
    await world.tick(workloads.REFUSED_RETRY.total_seconds())
    assert annotations(world.current(body))[ANN] == "baseline/privileged(app)"
    assert world.gateway.reasons() == ["GuardrailViolation"]  # not posted a second time


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("fail_events", id="event-post-throttled"),
        pytest.param("fail_patches_applied", id="patch-applied-but-answer-lost"),
    ],
)
async def test_violation_event_is_owed_until_posted(fault: str) -> None:
    """A transient failure never loses the violation's Event, nor posts it twice."""
    world = World(fakes.policy())
    setattr(world.gateway, fault, 1)
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    assert annotations(world.current(body))[ANN] == "baseline/privileged(app)"
    assert world.gateway.events == []
    await world.redeliver(body)  # the watch event of the write (annotation in place)
    await world.tick(workloads.RETRY_AFTER.total_seconds())
    assert world.gateway.reasons() == ["GuardrailViolation"]
    assert world.gateway.events[0].regarding.name == "web"
    await world.redeliver(body)
    await world.tick(workloads.RETRY_AFTER.total_seconds() * 2)
    assert world.gateway.reasons() == ["GuardrailViolation"]
    assert world.gateway.writes == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: fakes.privileged(fakes.compliant_pod()), id="pod"),
        pytest.param(lambda: fakes.privileged(fakes.deployment()), id="deployment"),
    ],
)
async def test_event_the_previous_process_never_posted_is_posted_after_a_restart(
    make: Any,
) -> None:
    """Stopped or killed between the annotation patch and the Event post: the next
    process (or the new leader) finds the recent annotation without its Event."""
    world = World(fakes.policy())
    world.gateway.fail_events = 1  # the post that the stop cut off
    body = make()
    await world.apply(body)
    assert ANN in annotations(world.current(body))
    assert world.gateway.events == []
    await world.restart(30, body)
    assert world.gateway.reasons() == ["GuardrailViolation"]
    assert world.gateway.event_lists == ["team-a"]
    assert world.gateway.writes == 1  # the annotation is not written again
    await world.restart(30, body)  # and the next restart finds it posted
    assert world.gateway.reasons() == ["GuardrailViolation"]


async def test_restart_finds_the_event_posted_and_posts_nothing() -> None:
    world = World(fakes.policy())
    pods = [fakes.privileged(fakes.compliant_pod(f"p{i}")) for i in range(3)]
    for pod in pods:
        await world.apply(pod)
    await world.restart(60, *pods)
    assert world.gateway.reasons() == ["GuardrailViolation"] * 3
    assert world.gateway.event_lists == ["team-a"]  # one LIST for the namespace
    assert world.gateway.writes == 3


async def test_an_event_of_an_earlier_violation_set_does_not_count() -> None:
    world = World(fakes.policy())
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    world.clock.advance(5)
    world.gateway.fail_events = 1  # the Event of the new set is cut off
    changed = world.current(body)
    changed["spec"]["hostNetwork"] = True
    await world.apply(changed)
    assert "hostNamespaces" in annotations(world.current(body))[ANN]
    assert world.gateway.reasons() == ["GuardrailViolation"]
    await world.restart(10, body)
    assert world.gateway.reasons() == ["GuardrailViolation"] * 2


async def test_a_pod_covered_by_its_owner_gets_no_event_after_a_restart() -> None:
    world = World(fakes.policy())
    deploy = fakes.privileged(fakes.deployment())
    pod = fakes.privileged(fakes.compliant_pod("web-1"))
    pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": deploy["metadata"]["uid"],
            "controller": True,
        }
    ]
    await world.apply(deploy)
    await world.apply(pod)
    assert ANN in annotations(world.current(pod))
    assert [e.regarding.kind for e in world.gateway.events] == ["Deployment"]
    await world.restart(30, deploy, pod)
    assert [e.regarding.kind for e in world.gateway.events] == ["Deployment"]


async def test_unreadable_events_post_nothing_and_do_not_stop_the_reviews() -> None:
    """An outage at start-up must not post every recent Event a second time."""
    world = World(fakes.policy())
    pods = [fakes.privileged(fakes.compliant_pod(f"p{i}")) for i in range(2)]
    for pod in pods:
        await world.apply(pod)
    world.gateway.fail_event_lists = 1
    fresh = fakes.privileged(fakes.compliant_pod("fresh"))
    world.gateway.put(fresh)
    await world.restart(30, *pods, fresh)
    assert world.gateway.event_lists == ["team-a"]  # tried once, not once per Pod
    assert world.gateway.reasons() == ["GuardrailViolation"] * 3  # the new one's only
    assert ANN in annotations(world.current(fresh))


async def test_annotations_older_than_the_window_are_not_looked_up() -> None:
    """Their Events were posted or lost long ago (and Events expire after an hour)."""
    world = World(fakes.policy())
    world.gateway.fail_events = 1
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    window = workloads.ANNOUNCE_CHECK_WINDOW.total_seconds()
    await world.restart(window + 1, body)
    assert world.gateway.events == []
    assert world.gateway.event_lists == []


async def test_owed_event_is_dropped_when_the_object_becomes_compliant() -> None:
    world = World(fakes.policy())
    world.gateway.fail_events = 1
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    fixed = world.current(body)
    fixed["spec"]["containers"][0]["securityContext"]["privileged"] = False
    await world.apply(fixed)
    await world.tick(workloads.RETRY_AFTER.total_seconds())
    assert world.gateway.reasons() == ["GuardrailCompliant"]


# ------------------------------------------------------------------------- Enforce


async def test_enforce_evicts_only_after_the_grace_period() -> None:
    world = World(fakes.policy(mode="Enforce", grace=60))
    body = fakes.privileged(fakes.compliant_pod())
    stored = await world.apply(body)
    assert annotations(stored)[ANN] == "baseline/privileged(app)!"
    assert "evicted after 60s unless fixed" in world.gateway.events[0].message
    await world.tick()
    await world.tick(59)
    assert world.gateway.evictions == []
    await world.tick(1)
    assert [r.name for r in world.gateway.evictions] == ["web"]
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailEviction"]
    eviction_event = world.gateway.events[1]
    assert eviction_event.type == "Warning"
    assert "Evicting" in eviction_event.message
    assert world.gateway.evictions[0].uid == "uid-web"


async def test_after_a_restart_the_grace_period_counts_from_the_first_review() -> None:
    """Enforcement state is the operator's memory, seeded conservatively after a restart:
    never earlier than a full grace period after the new process first saw the Pod."""
    first = World(fakes.policy(mode="Enforce", grace=60))
    body = fakes.privileged(fakes.compliant_pod())
    await first.apply(body)
    first.clock.advance(45)
    second = World(fakes.policy(mode="Enforce", grace=60), gateway=first.gateway)
    second.clock.now = first.clock.now
    await second.redeliver(body)
    await second.tick()
    await second.tick(59)
    assert second.gateway.evictions == []
    await second.tick(1)
    assert len(second.gateway.evictions) == 1


@pytest.mark.parametrize(
    "since",
    [
        pytest.param("2999-01-01T00:00:00Z", id="future"),
        pytest.param("0001-01-01T00:00:00Z", id="far-past"),
        pytest.param("not a time", id="garbage"),
    ],
)
async def test_violation_annotations_are_output_only(since: str) -> None:
    """Issue 9: a Pod created with the operator's own violations text and a since in
    year 2999 (or edited to it later) is evicted after the grace period all the same."""
    world = World(fakes.policy(mode="Enforce", grace=60))
    body = fakes.privileged(fakes.compliant_pod())
    body["metadata"]["annotations"] = {ANN: "baseline/privileged(app)!", SINCE: since}
    await world.apply(body)
    await world.tick()
    await world.tick(30)
    edited = world.current(body)
    edited["metadata"]["annotations"][SINCE] = "2999-01-01T00:00:00Z"
    await world.apply(edited)
    await world.tick(29)
    assert world.gateway.evictions == []
    await world.tick(1)
    assert [r.name for r in world.gateway.evictions] == ["web"]


def _node_owner(**changes: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "n1",
        "uid": "n1-uid",
        "controller": True,
        **changes,
    }


def _ds_owner(**changes: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "d",
        "uid": "ds-uid",
        "controller": True,
        **changes,
    }


@pytest.mark.parametrize(
    ("owners", "mirror", "evicted"),
    [
        pytest.param([_ds_owner()], False, False, id="real-daemonset"),
        pytest.param([_ds_owner(uid="other")], False, True, id="daemonset-uid-mismatch"),
        pytest.param([_ds_owner(name="missing")], False, True, id="daemonset-missing"),
        pytest.param([_ds_owner(apiVersion="example.com/v1")], False, True, id="fake-group"),
        pytest.param([_ds_owner(controller=False)], False, True, id="not-controller"),
        pytest.param(
            [_node_owner(uid="n")], False, True, id="node-owner-without-mirror-annotation"
        ),
        # A mirror-Pod claim (the annotation any Pod creator may set, plus a Node owner)
        # spares the Pod only when that Node exists with that uid.
        pytest.param([_node_owner()], True, False, id="mirror-real-node"),
        pytest.param([_node_owner(uid="forged")], True, True, id="mirror-uid-mismatch"),
        pytest.param([_node_owner(name="n2")], True, True, id="mirror-node-missing"),
        pytest.param([], True, True, id="mirror-annotation-alone"),
    ],
)
async def test_protected_owners_are_verified(
    owners: list[dict[str, Any]], mirror: bool, evicted: bool
) -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    world.gateway.daemonsets[("team-a", "d")] = "ds-uid"
    world.gateway.nodes["n1"] = "n1-uid"
    body = fakes.privileged(fakes.compliant_pod())
    body["metadata"]["ownerReferences"] = owners
    if mirror:
        body["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    await world.apply(body)
    await world.tick(3600)
    assert bool(world.gateway.evictions) is evicted


async def test_daemonset_lookup_is_remembered() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    world.gateway.daemonsets[("team-a", "d")] = "ds-uid"
    for n in range(5):
        body = fakes.privileged(fakes.compliant_pod(f"p{n}"))
        body["metadata"]["ownerReferences"] = [_ds_owner()]
        await world.apply(body)
    # Past the wait for the (unwatched here) DaemonSet to show up as the Pods' owner.
    await world.tick(workloads.OWNER_WAIT.total_seconds() + 1)
    assert world.gateway.evictions == []
    assert world.gateway.daemonset_lookups == 1


@pytest.mark.parametrize(
    ("mode", "action"),
    [
        pytest.param("Audit", "Enforce", id="audit-mode"),
        pytest.param("Enforce", "Audit", id="audit-action"),
    ],
)
async def test_only_enforce_mode_and_enforce_action_evict(mode: str, action: str) -> None:
    obj = fakes.policy(mode=mode, grace=0)
    obj["spec"]["workloads"]["checks"] = {"privileged": {"action": action}}
    world = World(obj)
    await world.apply(fakes.privileged(fakes.compliant_pod()))
    await world.tick(3600)
    assert world.gateway.evictions == []


@pytest.mark.parametrize(
    "tweak",
    [
        pytest.param(
            lambda b: b["metadata"].update(namespace="kube-guardrails-system"),
            id="operator-namespace",
        ),
    ],
)
async def test_never_evicted(tweak: Any) -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    body = fakes.privileged(fakes.compliant_pod())
    tweak(body)
    await world.apply(body)
    await world.tick(3600)
    assert world.gateway.evictions == []


async def test_deployments_are_never_evicted() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    stored = await world.apply(fakes.privileged(fakes.deployment()))
    assert annotations(stored)[ANN] == "baseline/privileged(app)"  # no "!" on a Deployment
    await world.tick(3600)
    assert world.gateway.evictions == []


async def test_429_is_retried_with_backoff_and_never_deleted() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    blocked = enforcement.Eviction.BLOCKED
    world.gateway.eviction_results = [blocked, blocked, blocked]
    await world.apply(fakes.privileged(fakes.compliant_pod()))
    attempts_at = []
    for _ in range(40):
        before = len(world.gateway.evictions)
        await world.tick(1)
        if len(world.gateway.evictions) > before:
            attempts_at.append(int((world.clock.now - fakes.T0).total_seconds()))
    # First try at 1s, then 5s, 10s and 20s later (exponential backoff).
    assert attempts_at == [1, 6, 16, 36]
    assert world.gateway.reasons() == [
        "GuardrailViolation",
        "GuardrailEviction",  # announced once before the first attempt
        "GuardrailEviction",  # refused by a PodDisruptionBudget, once
    ]
    assert "PodDisruptionBudget" in world.gateway.events[2].message
    assert not hasattr(world.gateway, "delete")  # nothing to bypass a PDB with


async def test_backoff_survives_pod_updates() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    world.gateway.eviction_results = [enforcement.Eviction.BLOCKED]
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    await world.tick()
    assert len(world.gateway.evictions) == 1
    world.clock.advance(1)
    await world.redeliver(body)  # e.g. a status update of the Pod
    await world.tick()
    assert len(world.gateway.evictions) == 1  # still backing off
    await world.tick(4)
    assert len(world.gateway.evictions) == 2


async def test_rate_limit_per_policy() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0, rate=2))
    for i in range(5):
        await world.apply(fakes.privileged(fakes.compliant_pod(f"p{i}")))
    await world.tick()
    assert len(world.gateway.evictions) == 2
    await world.tick(59)
    assert len(world.gateway.evictions) == 2
    await world.tick(1)
    assert len(world.gateway.evictions) == 4
    await world.tick(60)
    assert [r.name for r in world.gateway.evictions] == ["p0", "p1", "p2", "p3", "p4"]


async def test_dry_run_posts_would_evict_once_and_never_evicts() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0, dry_run=True))
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    assert "dry run" in world.gateway.events[0].message
    for _ in range(3):
        await world.tick(120)
        await world.redeliver(body)
    assert world.gateway.evictions == []
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailEviction"]
    would = world.gateway.events[1]
    assert would.type == "Warning"
    assert would.message.startswith("dry run: would evict")


async def test_fixing_the_pod_during_the_grace_period_cancels_eviction() -> None:
    world = World(fakes.policy(mode="Enforce", grace=60))
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    await world.tick(30)
    fixed = world.current(body)
    fixed["spec"] = fakes.compliant_pod()["spec"]
    await world.apply(fixed)
    await world.tick(60)
    assert world.gateway.evictions == []
    assert world.service.enforcer.pending() == {}


async def test_startup_counts_everything_before_the_first_status_write() -> None:
    world = World(fakes.policy())
    service = workloads.WorkloadService(
        gateway=world.gateway,
        policies=world.store,
        status=world.status,
        operator_namespace="kube-guardrails-system",
        clock=world.clock,
        wait_for=("Pod", "namespaces"),
    )
    service.namespace_seen("team-a", {})
    pods = [world.gateway.put(fakes.privileged(fakes.compliant_pod(f"p{i}"))) for i in range(3)]
    service.listed("Pod", pods)
    await service.run_due()
    assert world.status.calls == 0  # nothing before every source is complete
    assert world.gateway.patches == []  # and no review either
    service.source_ready("namespaces")
    await service.run_due()
    assert world.status.calls == 1  # once, after the first full pass
    assert world.status.violations == {"baseline": (3, {"privileged": 3})}
    assert len(world.gateway.patches) == 3


async def test_background_task_wakes_for_new_eviction_candidates() -> None:
    world = World(fakes.policy(mode="Enforce", grace=0))
    task = asyncio.create_task(world.service.run())
    try:
        for _ in range(5):
            await asyncio.sleep(0)  # the task is now idle, waiting without a deadline
        await world.apply(fakes.privileged(fakes.compliant_pod()))
        for _ in range(50):
            if world.gateway.evictions:
                break
            await asyncio.sleep(0)
        assert [r.name for r in world.gateway.evictions] == ["web"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_switching_to_enforce_announces_and_restarts_the_grace_period() -> None:
    world = World(fakes.policy(mode="Audit", grace=60))
    body = fakes.privileged(fakes.compliant_pod())
    await world.apply(body)
    world.clock.advance(3600)  # an old violation, tolerated in Audit mode
    world.store.upsert(fakes.policy(mode="Enforce", grace=60))
    await world.tick()
    assert annotations(world.current(body)) == {
        ANN: "baseline/privileged(app)!",
        SINCE: "2026-11-23T13:00:00Z",
    }
    assert world.gateway.reasons() == ["GuardrailViolation", "GuardrailViolation"]
    assert "evicted after 60s unless fixed" in world.gateway.events[1].message
    await world.tick(59)
    assert world.gateway.evictions == []
    await world.tick(1)
    assert len(world.gateway.evictions) == 1
