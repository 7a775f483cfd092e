"""The real operator (KopfRunner) against the kmock emulator: namespace hardening."""

from __future__ import annotations

from typing import Any

import kmock_support
from operator_support import OperatorFactory, eventually

from kube_guardrails import builders

NP = "networking.k8s.io/v1/networkpolicies"
LR = "v1/limitranges"
RQ = "v1/resourcequotas"
NS = "v1/namespaces"
EVENTS = "v1/events"
POLICY_PATH = "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies"


def policy(name: str = "baseline", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


async def create(api: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, obj = await api("POST", path, json=body)
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


def hardened(emulator: kmock_support.GuardrailsEmulator, ns: str) -> bool:
    return bool(
        emulator.read(NP, ns, builders.NETWORK_POLICY_NAME)
        and emulator.read(LR, ns, builders.LIMIT_RANGE_NAME)
    )


def events(
    emulator: kmock_support.GuardrailsEmulator, reason: str, name: str
) -> list[dict[str, Any]]:
    out = []
    for ev_name in emulator.names(EVENTS):
        for ns in ("default", name):
            ev = emulator.read(EVENTS, ns, ev_name)
            if ev and ev["reason"] == reason and ev["involvedObject"]["name"] == name:
                out.append(ev)
    return out


async def test_namespace_existing_at_startup_is_hardened(
    emulator: kmock_support.GuardrailsEmulator, api: Any, operator_factory: OperatorFactory
) -> None:
    await create(api, POLICY_PATH, policy())
    await create(api, "/api/v1/namespaces", namespace("team-a"))
    async with operator_factory() as op:
        await eventually(lambda: hardened(emulator, "team-a"), what="team-a hardened")
        await op.caught_up()
    np = emulator.read(NP, "team-a", builders.NETWORK_POLICY_NAME)
    assert np is not None
    assert np["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kube-guardrails",
        "kube-guardrails.io/policy": "baseline",
    }
    assert np["metadata"]["ownerReferences"][0]["name"] == "baseline"
    assert events(emulator, "NamespaceHardened", "team-a")
