"""The real operator (KopfRunner) against the kmock emulator: namespace hardening.

Each test states a behaviour of DESIGN section 5 and waits for it (polling the emulator,
never sleeping for a fixed time); "nothing happened" is asserted only after the
operator reports itself caught up (queue idle, status recounted twice).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kmock
import kmock_support
from operator_support import Operator, OperatorFactory, eventually

from kube_guardrails import builders

NP = "networking.k8s.io/v1/networkpolicies"
LR = "v1/limitranges"
RQ = "v1/resourcequotas"
NS = "v1/namespaces"
EVENTS = "v1/events"
POLICIES = "kube-guardrails.io/v1alpha1/guardrailpolicies"
POLICY_PATH = "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies"
NP_NAME = builders.NETWORK_POLICY_NAME
LR_NAME = builders.LIMIT_RANGE_NAME

Api = Any  # the conftest ``api`` fixture: await api(method, path, json=...)


def policy(name: str = "baseline", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def np_path(ns: str, name: str = NP_NAME) -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"


def lr_path(ns: str, name: str = LR_NAME) -> str:
    return f"/api/v1/namespaces/{ns}/limitranges/{name}"


async def create(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, obj = await api("POST", path, json=body)
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


async def patch(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, obj = await api("PATCH", path, json=body)
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


def hardened(emulator: kmock_support.GuardrailsEmulator, ns: str) -> bool:
    return bool(emulator.read(NP, ns, NP_NAME) and emulator.read(LR, ns, LR_NAME))


def unhardened(emulator: kmock_support.GuardrailsEmulator, ns: str) -> bool:
    return emulator.read(NP, ns, NP_NAME) is None and emulator.read(LR, ns, LR_NAME) is None


def events(emulator: kmock_support.GuardrailsEmulator, reason: str, name: str) -> list[Any]:
    out = []
    for ns in ("default", name):
        for ev_name in emulator.names(EVENTS, ns):
            ev = emulator.read(EVENTS, ns, ev_name)
            if ev and ev["reason"] == reason and ev["involvedObject"]["name"] == name:
                out.append(ev)
    return out


def lr_cpu(emulator: kmock_support.GuardrailsEmulator, ns: str) -> str | None:
    lr = emulator.read(LR, ns, LR_NAME)
    return None if lr is None else str(lr["spec"]["limits"][0]["default"]["cpu"])


def ready(emulator: kmock_support.GuardrailsEmulator, name: str) -> dict[str, Any] | None:
    obj = emulator.read(POLICIES, None, name) or {}
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return dict(cond)
    return None


async def policy_and_hardened_namespace(
    *, emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator, ns: str
) -> None:
    """The common start: the default policy, one new namespace, hardened and settled."""
    await create(api, POLICY_PATH, policy())
    await create(api, "/api/v1/namespaces", namespace(ns))
    await eventually(lambda: hardened(emulator, ns), what=f"{ns} hardened")
    await operator.caught_up()


async def test_namespace_existing_at_startup_is_hardened(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator_factory: OperatorFactory
) -> None:
    await create(api, POLICY_PATH, policy())
    await create(api, "/api/v1/namespaces", namespace("team-a"))
    async with operator_factory() as op:
        await eventually(lambda: hardened(emulator, "team-a"), what="team-a hardened")
        await op.caught_up()
    np = emulator.read(NP, "team-a", NP_NAME)
    gp = emulator.read(POLICIES, None, "baseline")
    assert np is not None and gp is not None
    assert np["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kube-guardrails",
        "kube-guardrails.io/policy": "baseline",
    }
    assert np["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kube-guardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "name": "baseline",
            "uid": gp["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert len(events(emulator, "NamespaceHardened", "team-a")) == 1
    assert gp["status"]["namespaces"] == {"matched": 1, "hardened": 1}
    assert ready(emulator, "baseline") == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "Policy is valid and enforced",
        "lastTransitionTime": ready(emulator, "baseline")["lastTransitionTime"],  # type: ignore[index]
        "observedGeneration": 1,
    }
    assert gp["status"]["observedGeneration"] == 1


async def test_new_namespace_is_hardened_and_system_ones_are_not(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await create(api, POLICY_PATH, policy())
    await create(api, "/api/v1/namespaces", namespace("kube-system"))
    await create(api, "/api/v1/namespaces", namespace("team-b"))
    await eventually(lambda: hardened(emulator, "team-b"), what="team-b hardened")
    await operator.caught_up()
    assert unhardened(emulator, "kube-system")
    event = events(emulator, "NamespaceHardened", "team-b")[0]
    assert event["metadata"]["namespace"] == "default"
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "name": "team-b",
        "uid": emulator.read(NS, None, "team-b")["metadata"]["uid"],  # type: ignore[index]
    }
    assert event["type"] == "Normal"
    assert event["source"] == {"component": "kube-guardrails"}


async def test_deleted_network_policy_comes_back(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await policy_and_hardened_namespace(emulator=emulator, api=api, operator=operator, ns="team-c")
    status, _ = await api("DELETE", np_path("team-c"))
    assert status == 200
    await eventually(lambda: emulator.read(NP, "team-c", NP_NAME), what="NetworkPolicy restored")
    restored = await eventually(
        lambda: events(emulator, "HardeningRestored", "team-c"), what="HardeningRestored event"
    )
    assert restored[0]["type"] == "Warning"
    assert "NetworkPolicy" in restored[0]["message"]


async def test_edited_limit_range_is_restored(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await policy_and_hardened_namespace(emulator=emulator, api=api, operator=operator, ns="team-d")
    edited = {"spec": {"limits": [{"type": "Container", "default": {"cpu": "8"}}]}}
    await patch(api, lr_path("team-d"), edited)
    await eventually(lambda: lr_cpu(emulator, "team-d") == "500m", what="LimitRange restored")
    await eventually(
        lambda: events(emulator, "HardeningRestored", "team-d"), what="HardeningRestored event"
    )
    lr = emulator.read(LR, "team-d", LR_NAME)
    assert lr is not None
    assert lr["spec"] == {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "512Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            }
        ]
    }


async def test_policy_change_is_rolled_out(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await create(api, POLICY_PATH, policy())
    for ns in ("team-e1", "team-e2"):
        await create(api, "/api/v1/namespaces", namespace(ns))
    await eventually(
        lambda: hardened(emulator, "team-e1") and hardened(emulator, "team-e2"), what="hardened"
    )
    await operator.caught_up()
    change = {"spec": {"hardening": {"limitRange": {"default": {"cpu": "750m"}}}}}
    await patch(api, f"{POLICY_PATH}/baseline", change)
    await eventually(
        lambda: lr_cpu(emulator, "team-e1") == lr_cpu(emulator, "team-e2") == "750m",
        what="roll-out",
    )
    await operator.caught_up()
    assert not events(emulator, "HardeningRestored", "team-e1")  # a roll-out is not a restore
    assert (ready(emulator, "baseline") or {}).get("observedGeneration") == 2


async def test_namespace_that_stops_matching_is_unhardened(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    selective = policy(namespaceSelector={"matchLabels": {"guardrails": "on"}})
    await create(api, POLICY_PATH, selective)
    await create(api, "/api/v1/namespaces", namespace("team-f", guardrails="on"))
    await create(api, "/api/v1/namespaces", namespace("team-g"))
    await eventually(lambda: hardened(emulator, "team-f"), what="team-f hardened")
    await operator.caught_up()
    assert unhardened(emulator, "team-g")

    await patch(api, "/api/v1/namespaces/team-f", {"metadata": {"labels": {"guardrails": None}}})
    await patch(api, "/api/v1/namespaces/team-g", {"metadata": {"labels": {"guardrails": "on"}}})
    await eventually(lambda: unhardened(emulator, "team-f"), what="team-f un-hardened")
    await eventually(lambda: hardened(emulator, "team-g"), what="team-g hardened")


async def test_bad_policy_gets_status_and_event_and_changes_nothing(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await policy_and_hardened_namespace(emulator=emulator, api=api, operator=operator, ns="team-h")
    bad = policy(
        "broken",
        priority=100,
        hardening={"limitRange": {"defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}}},
    )
    await create(api, POLICY_PATH, bad)
    cond = await eventually(lambda: ready(emulator, "broken"), what="Ready condition")
    assert cond["status"] == "False"
    assert cond["reason"] == "PolicyInvalid"
    assert cond["message"].startswith("spec.hardening.limitRange.defaultRequest.cpu:")
    event = (await eventually(lambda: events(emulator, "PolicyInvalid", "broken")))[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "GuardrailPolicy"
    assert "spec.hardening.limitRange.defaultRequest.cpu" in event["message"]
    await operator.caught_up()
    # The valid policy still governs; the invalid one (higher priority) changed nothing.
    np = emulator.read(NP, "team-h", NP_NAME)
    assert np is not None and np["metadata"]["labels"]["kube-guardrails.io/policy"] == "baseline"
    assert lr_cpu(emulator, "team-h") == "500m"
    assert len(events(emulator, "PolicyInvalid", "broken")) == 1


async def test_no_kopf_state_on_namespaces_or_policies(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await policy_and_hardened_namespace(emulator=emulator, api=api, operator=operator, ns="team-i")
    for resource, ns, name in ((NS, None, "team-i"), (POLICIES, None, "baseline")):
        obj = emulator.read(resource, ns, name)
        assert obj is not None
        assert not obj["metadata"].get("finalizers")
        assert not [a for a in obj["metadata"].get("annotations") or {} if "kopf" in a]
    namespace_writes = [
        r for r in emulator.writes_since(0) if emulator.describe(r).endswith(" namespaces")
    ]
    # The test's create, then the operator's one write: the readiness label (a merge
    # patch of that label alone; kopf itself writes nothing on a namespace).
    assert [emulator.describe(r) for r in namespace_writes] == [
        "POST namespaces",
        "PATCH namespaces",
    ]
    labels = namespace_writes[-1].data["metadata"]["labels"]
    policy_uid = (emulator.read(POLICIES, None, "baseline") or {})["metadata"]["uid"]
    assert set(namespace_writes[-1].data) == {"metadata"}  # a patch of metadata.labels only
    assert labels == {"kube-guardrails.io/hardened": policy_uid}


async def test_foreign_object_with_our_name_is_left_alone(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await create(api, "/api/v1/namespaces", namespace("team-j"))
    foreign = {
        "metadata": {"name": NP_NAME, "labels": {"owner": "team-j"}},
        "spec": {"podSelector": {}},
    }
    await create(api, "/apis/networking.k8s.io/v1/namespaces/team-j/networkpolicies", foreign)
    await create(api, POLICY_PATH, policy())
    await eventually(lambda: emulator.read(LR, "team-j", LR_NAME), what="LimitRange created")
    await operator.caught_up()
    np = emulator.read(NP, "team-j", NP_NAME)
    assert np is not None and np["metadata"]["labels"] == {"owner": "team-j"}
    assert "policyTypes" not in np["spec"]


async def test_restart_with_everything_in_place_writes_nothing(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator_factory: OperatorFactory
) -> None:
    await create(api, POLICY_PATH, policy())
    for i in range(5):
        await create(api, "/api/v1/namespaces", namespace(f"team-k{i}"))
    async with operator_factory() as op:
        await eventually(
            lambda: all(hardened(emulator, f"team-k{i}") for i in range(5)), what="hardened"
        )
        await op.caught_up()
    mark = emulator.mark()
    async with operator_factory() as op:
        await op.caught_up()
        # A full resync too: re-list, then every namespace re-checked in memory.
        relist_mark = emulator.mark()
        assert await asyncio.to_thread(op.memo.runtime.hardening.relist) == []
        op.memo.runtime.queue.add_many(op.memo.runtime.inventory.namespace_names())
        await op.caught_up()
        assert emulator.count(emulator.requests_since(relist_mark)) == {
            "GET namespaces": 1,
            "GET networkpolicies": 1,
            "GET limitranges": 1,
            "GET resourcequotas": 1,
        }
        assert op.memo.runtime.queue.processed >= 5
    assert emulator.writes_since(mark) == []
    # ... and reads no object one by one: the inventory comes from the watches.
    assert [r for r in emulator.requests_since(mark) if r.action == kmock.action.FETCH] == []


async def test_deleted_policy_unhardens_and_the_next_policy_takes_over(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    await create(api, POLICY_PATH, policy("first", priority=10))
    await create(api, POLICY_PATH, policy("second", namespaceSelector={"matchLabels": {"x": "y"}}))
    await create(api, "/api/v1/namespaces", namespace("team-l"))
    await create(api, "/api/v1/namespaces", namespace("team-m", x="y"))
    await eventually(
        lambda: hardened(emulator, "team-l") and hardened(emulator, "team-m"), what="hardened"
    )
    await operator.caught_up()
    status, _ = await api("DELETE", f"{POLICY_PATH}/first")
    assert status == 200
    # No garbage collector in the emulator: the operator itself removes what no policy wants.
    await eventually(lambda: unhardened(emulator, "team-l"), what="team-l un-hardened")

    def governed_by_second() -> bool:
        np = emulator.read(NP, "team-m", NP_NAME) or {}
        return bool(np) and np["metadata"]["labels"]["kube-guardrails.io/policy"] == "second"

    await eventually(governed_by_second, what="second policy took over team-m")


async def test_with_no_policy_at_all_the_caches_sync_and_a_new_policy_applies(
    emulator: kmock_support.GuardrailsEmulator, api: Api, operator: Operator
) -> None:
    """No GuardrailPolicy, so kopf runs no event handler: the start-up LIST of policies
    finds that out and the queues start (the health endpoint says synced)."""
    await create(api, "/api/v1/namespaces", namespace("team-n"))
    await eventually(lambda: operator.memo.get("runtime") is not None, what="startup")
    await eventually(lambda: operator.memo.runtime.queue.started, what="caches synced")
    assert operator.memo.runtime.report()["hardening"]["synced"] is True
    await create(api, POLICY_PATH, policy())
    await eventually(lambda: hardened(emulator, "team-n"), what="team-n hardened")
