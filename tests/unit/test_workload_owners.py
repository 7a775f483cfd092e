"""One GuardrailViolation Event per top-level owner and change (issue 11, item 4).

Every pod controller is reviewed through its pod template; the Pods it manages still
carry the violations annotation (enforcement works on Pods) but their Events are the
owner's, unless a Pod violates more than its owner's template or its owner is not
known. The service is fed compact projections (``k8s.watch``), as the watches do.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import workload_fakes as fakes

from kube_guardrails import planning, violations
from kube_guardrails.k8s import watch
from kube_guardrails.services import policies, workloads

ANN = violations.ANNOTATION_VIOLATIONS
SINCE = violations.ANNOTATION_SINCE
NS = "team-a"
PROJECT = {k.kind: k.project for k in watch.KINDS}
API_VERSIONS = {k.kind: k.api_version for k in watch.KINDS}


class World:
    """A service wired to fakes, fed projections; namespace team-a known."""

    def __init__(self, *policy_objs: Mapping[str, Any]) -> None:
        self.clock = fakes.Clock()
        self.gateway = fakes.FakeGateway()
        self.store = policies.PolicyStore()
        for obj in policy_objs:
            self.store.upsert(obj)
        self.service = workloads.WorkloadService(
            gateway=self.gateway,
            policies=self.store,
            status=fakes.FakeStatus(),
            operator_namespace="kube-guardrails-system",
            clock=self.clock,
        )
        self.store.subscribe(self.service.policy_changed)
        self.service.namespace_seen(NS, {})

    async def apply(self, *bodies: Mapping[str, Any]) -> None:
        """Create the objects and review each at once, in this order."""
        for body in bodies:
            await self.service.observe(PROJECT[body["kind"]](self.gateway.put(body)))

    def event(self, body: Mapping[str, Any]) -> None:
        """Deliver a watch event (ADDED/MODIFIED); reviewed by the next :meth:`tick`."""
        self.service.changed(
            body["kind"], "MODIFIED", PROJECT[body["kind"]](self.gateway.put(body))
        )

    async def tick(self, seconds: float = 0) -> None:
        self.clock.advance(seconds)
        await self.service.run_due()

    def annotation(self, body: Mapping[str, Any]) -> str | None:
        meta = self.gateway.objects[(body["kind"], NS, body["metadata"]["name"])]["metadata"]
        return (meta.get("annotations") or {}).get(ANN)

    def events(self, reason: str = workloads.REASON_VIOLATION) -> list[str]:
        return [
            f"{e.regarding.kind}/{e.regarding.name}"
            for e in self.gateway.events
            if e.reason == reason
        ]


def template_spec(*, privileged: bool = False) -> dict[str, Any]:
    spec = copy.deepcopy(fakes.compliant_pod()["spec"])
    if privileged:
        spec["containers"][0]["securityContext"]["privileged"] = True
    return spec


def owner_ref(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if controller:
        ref["controller"] = True
    return ref


def controller(
    kind: str,
    name: str,
    *,
    privileged: bool = False,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": template_spec(privileged=privileged)}
    spec: dict[str, Any] = (
        {"jobTemplate": {"spec": {"template": template}}}
        if kind == "CronJob"
        else {"template": template}
    )
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{kind}-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [owner_ref(owner)]
    return {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": meta, "spec": spec}


def pod(
    name: str,
    *,
    privileged: bool = False,
    owner: Mapping[str, Any] | None = None,
    refs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body = fakes.compliant_pod(name, namespace=NS)
    body["spec"] = template_spec(privileged=privileged)
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner_ref(owner)]
    if refs is not None:
        body["metadata"]["ownerReferences"] = refs
    return body


def chain(kind: str, *, privileged: bool = True) -> list[dict[str, Any]]:
    """The objects of one workload of ``kind``, top-level owner first, Pods last."""
    if kind == "Deployment":
        top = controller("Deployment", "web", privileged=privileged)
        mid = controller("ReplicaSet", "web-7d4b9", privileged=privileged, owner=top)
    elif kind == "CronJob":
        top = controller("CronJob", "nightly", privileged=privileged)
        mid = controller("Job", "nightly-29001", privileged=privileged, owner=top)
    else:
        top = controller(kind, "app", privileged=privileged)
        mid = top
    pods = [
        pod(f"{mid['metadata']['name']}-{i}", privileged=privileged, owner=mid) for i in range(3)
    ]
    return [top, *([mid] if mid is not top else []), *pods]


@pytest.mark.parametrize(
    "kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
)
async def test_one_event_on_the_top_level_owner_and_the_annotation_on_every_pod(kind: str) -> None:
    world = World(fakes.policy())
    objects = chain(kind)
    await world.apply(*objects)
    top = objects[0]
    assert world.events() == [f"{kind}/{top['metadata']['name']}"]
    assert world.annotation(top) == "baseline/privileged(app)"
    for obj in objects[1:]:
        if obj["kind"] == "Pod":
            assert world.annotation(obj) == "baseline/privileged(app)", obj["metadata"]["name"]
        else:  # a Deployment's ReplicaSet, a CronJob's Job: reviewed through the owner
            assert world.annotation(obj) is None
            assert world.service.verdict(workloads.key_of(obj)) is None


@pytest.mark.parametrize("order", ["pods-first", "owners-first"])
async def test_pods_before_their_owners_still_give_one_event(order: str) -> None:
    """Each kind has its own watch: a Pod's event may come before its ReplicaSet's."""
    world = World(fakes.policy())
    deploy, rs, *pods = chain("Deployment")
    sequence = [*pods, rs, deploy] if order == "pods-first" else [deploy, rs, *pods]
    for obj in sequence:
        world.event(obj)
        if order == "pods-first" and obj is pods[-1]:
            await world.tick()  # reviewed while the owners are unknown: they wait
            assert world.gateway.patches == [] and world.gateway.events == []
    await world.tick()
    assert world.events() == ["Deployment/web"]
    assert all(world.annotation(p) for p in pods)


async def test_an_owner_that_never_shows_up_lets_the_pod_speak_after_the_wait() -> None:
    world = World(fakes.policy())
    _, rs, first, *_ = chain("Deployment")
    world.event(first)
    await world.tick()
    assert world.gateway.events == []
    await world.tick(workloads.OWNER_WAIT.total_seconds())
    assert world.events() == [f"Pod/{first['metadata']['name']}"]
    assert world.annotation(first) == "baseline/privileged(app)"
    # Nothing left behind for the Pod once it no longer waits.
    assert rs["metadata"]["name"] not in str(world.service._waiting_for_owner)


@pytest.mark.parametrize(
    "refs",
    [
        pytest.param([], id="standalone"),
        pytest.param(
            [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": "r",
                    "uid": "u1",
                    "controller": True,
                }
            ],
            id="custom-controller",
        ),
        pytest.param(
            [
                {
                    "apiVersion": "batch.volcano.sh/v1alpha1",
                    "kind": "Job",
                    "name": "j",
                    "uid": "u2",
                    "controller": True,
                }
            ],
            id="job-of-another-group",
        ),
    ],
)
async def test_pods_without_a_reviewed_owner_get_their_own_event(
    refs: list[dict[str, Any]],
) -> None:
    world = World(fakes.policy())
    body = pod("lonely", privileged=True, refs=refs)
    await world.apply(body)
    assert world.events() == ["Pod/lonely"]


async def test_a_non_controller_owner_reference_does_not_take_the_event() -> None:
    world = World(fakes.policy())
    sts = controller("StatefulSet", "db", privileged=True)
    body = pod("db-0", privileged=True, refs=[owner_ref(sts, controller=False)])
    await world.apply(sts, body)
    assert sorted(world.events()) == ["Pod/db-0", "StatefulSet/db"]


async def test_a_namesake_owner_with_another_uid_is_not_the_owner() -> None:
    world = World(fakes.policy())
    sts = controller("StatefulSet", "db", privileged=True)
    ref = owner_ref(sts) | {"uid": "uid-of-a-deleted-statefulset"}
    body = pod("db-0", privileged=True, refs=[ref])
    await world.apply(sts)
    world.event(body)
    await world.tick()
    await world.tick(workloads.OWNER_WAIT.total_seconds())
    assert world.events() == ["StatefulSet/db", "Pod/db-0"]


async def test_a_pod_violating_more_than_its_owner_speaks_for_itself() -> None:
    """A compliant template, a mutated Pod: the owner has nothing to report."""
    world = World(fakes.policy())
    deploy, rs, *pods = chain("Deployment", privileged=False)
    pods[0] = pod(pods[0]["metadata"]["name"], privileged=True, owner=rs)
    await world.apply(deploy, rs, *pods)
    assert world.events() == [f"Pod/{pods[0]['metadata']['name']}"]
    assert world.annotation(deploy) is None


async def test_a_pod_failing_less_than_its_owner_is_covered() -> None:
    """A LimitRange filled in the Pod's resources: still the owner's Event only."""
    world = World(fakes.policy(level="restricted"))
    deploy = controller("Deployment", "web", privileged=True)
    del deploy["spec"]["template"]["spec"]["containers"][0]["resources"]
    rs = controller("ReplicaSet", "web-1", owner=deploy)
    rs["spec"] = copy.deepcopy(deploy["spec"])
    body = pod("web-1-a", privileged=True, owner=rs)  # resources set (admission defaulted)
    await world.apply(deploy, rs, body)
    assert "resources" in (world.annotation(deploy) or "")
    assert "resources" not in (world.annotation(body) or "x/resources")
    assert world.events() == ["Deployment/web"]


async def test_becoming_compliant_is_told_by_the_owner_only() -> None:
    world = World(fakes.policy())
    objects = chain("Deployment")
    await world.apply(*objects)
    world.store.remove("baseline")
    await world.tick()
    assert world.events(workloads.REASON_COMPLIANT) == ["Deployment/web"]
    assert all(world.annotation(o) is None for o in objects)


async def test_a_deployments_replicaset_is_never_written() -> None:
    """The Deployment controller copies the Deployment's annotations, ours included, to
    its ReplicaSets: the copy is left alone (removing it would fight that controller)."""
    world = World(fakes.policy())
    deploy, rs, *pods = chain("Deployment")
    copied = copy.deepcopy(rs)
    copied["metadata"]["annotations"] = {ANN: "baseline/privileged(app)", SINCE: "x"}
    await world.apply(deploy, copied, *pods)
    await world.tick(3600)
    assert [ref.kind for ref, _ in world.gateway.patches] == ["Deployment", "Pod", "Pod", "Pod"]
    assert world.events() == ["Deployment/web"]


@pytest.mark.parametrize(
    ("kind", "note"),
    [
        ("Deployment", "Enforce mode: its Pods evicted after 60s unless fixed"),
        ("StatefulSet", "Enforce mode: its Pods evicted after 60s unless fixed"),
        ("DaemonSet", None),  # DaemonSet Pods are never evicted
    ],
)
async def test_the_owner_event_tells_what_enforce_does_to_its_pods(
    kind: str, note: str | None
) -> None:
    world = World(fakes.policy(mode="Enforce", grace=60))
    objects = chain(kind)
    await world.apply(*objects)
    [event] = world.gateway.events
    assert event.regarding.kind == kind
    if note is None:
        assert "Enforce mode" not in event.message
    else:
        assert note in event.message


async def test_status_only_updates_are_not_reviewed_again() -> None:
    world = World(fakes.policy())
    deploy = controller("Deployment", "web", privileged=True)
    world.event(deploy)
    await world.tick()
    reviews = world.service.reviews
    status_update = copy.deepcopy(world.gateway.objects[("Deployment", NS, "web")])
    status_update["metadata"]["resourceVersion"] = "999"
    status_update["status"] = {"readyReplicas": 1}
    world.event(status_update)
    await world.tick()
    assert world.service.reviews == reviews
    template_change = copy.deepcopy(status_update)
    template_change["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    world.event(template_change)
    await world.tick()
    assert world.service.reviews == reviews + 1


# ------------------------------------------------------------------------- projections


def test_a_deployments_replicaset_is_kept_as_a_bare_reference() -> None:
    deploy = controller("Deployment", "web", privileged=True)
    rs = controller("ReplicaSet", "web-1", privileged=True, owner=deploy)
    rs["metadata"]["labels"] = {"app": "web", "pod-template-hash": "1"}
    rs["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "3", SINCE: "x"}
    rs["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    projected = PROJECT["ReplicaSet"](rs)
    assert projected == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-1",
            "namespace": NS,
            "uid": "uid-ReplicaSet-web-1",
            "resourceVersion": None,
            "ownerReferences": [owner_ref(deploy)],
        },
    }
    assert planning.reviewed_through_owner(projected)
    standalone = controller("ReplicaSet", "solo", privileged=True)
    assert PROJECT["ReplicaSet"](standalone)["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("body", "through"),
    [
        pytest.param(chain("Deployment")[1], True, id="replicaset-of-deployment"),
        pytest.param(chain("CronJob")[1], True, id="job-of-cronjob"),
        pytest.param(controller("ReplicaSet", "solo"), False, id="standalone-replicaset"),
        pytest.param(controller("Job", "solo"), False, id="standalone-job"),
        pytest.param(
            controller("Job", "x", owner=controller("Deployment", "d")),
            False,
            id="job-of-deployment",
        ),
        pytest.param(chain("StatefulSet")[1], False, id="pod"),
    ],
)
def test_reviewed_through_owner(body: dict[str, Any], through: bool) -> None:
    assert planning.reviewed_through_owner(body) is through


def test_the_watched_kinds_are_the_reviewed_kinds() -> None:
    assert tuple(k.kind for k in watch.KINDS) == workloads.KINDS
    for kind in watch.KINDS:
        group = kind.api_version.rpartition("/")[0]
        assert workloads.KIND_GROUPS[kind.kind] == group
