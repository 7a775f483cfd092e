"""Where the generated policies apply, on a real API server, compared with the engine:
namespace selector, excluded namespaces (globs), exemptions (namespace globs, workload
labels, checks) and their expiry, updates, and a Pod large enough to test the CEL cost
budget.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import admission_kube as ak
import pytest
from conftest import RUN_LABEL

from kube_guardrails import admission, planning
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

NOW = datetime.datetime.now(datetime.UTC)
FUTURE = (NOW + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
PAST = (NOW - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def eventually(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    privileged: bool = False,
    host_port: bool = False,
    containers: int = 1,
) -> dict[str, Any]:
    cs = []
    for i in range(containers):
        c: dict[str, Any] = {"name": f"c{i}", "image": "registry.k8s.io/pause:3.10"}
        if privileged:
            c["securityContext"] = {"privileged": True}
        if host_port:
            c["ports"] = [{"containerPort": 8000 + i, "hostPort": 8000 + i}]
        cs.append(c)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": cs},
    }


@pytest.fixture(scope="module")
def scoped(kube: ak.Client, run_id: str) -> tuple[policy_model.Policy, set[str], dict[str, str]]:
    raw = {
        "metadata": {"name": f"scope-{run_id}"},
        "spec": {
            "mode": "Enforce",
            "namespaceSelector": {"matchLabels": {"kube-guardrails.io/scope": run_id}},
            "excludeNamespaces": [f"scope-{run_id}-skip*"],
            "hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
            "workloads": {
                "podSecurity": "baseline",
                "exemptions": [
                    {
                        "namespaces": [f"scope-{run_id}-ex?"],
                        "selector": {"matchLabels": {"app": "legacy"}},
                        "checks": ["privileged"],
                        "reason": "vendor image",
                        "expires": FUTURE,
                    },
                    {"checks": ["hostPorts"], "reason": "over", "expires": PAST},
                ],
            },
        },
    }
    pol = policy_model.parse(raw, known_checks=registry.ids())
    desired = admission.build(pol, now=NOW)
    names = set()
    for manifest in desired.objects:
        manifest["metadata"]["labels"][RUN_LABEL] = run_id
        path = ak.VAP if manifest["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
        kube.apply(path, manifest["metadata"]["name"], manifest)
        names.add(manifest["metadata"]["name"])
    namespaces = {
        "main": f"scope-{run_id}-main",
        "excluded": f"scope-{run_id}-skip1",
        "unselected": f"scope-{run_id}-other",
        "exempt": f"scope-{run_id}-ex1",
    }
    for role, ns in namespaces.items():
        labels = {RUN_LABEL: run_id, "pod-security.kubernetes.io/enforce": "privileged"}
        if role != "unselected":
            labels["kube-guardrails.io/scope"] = run_id
        kube.must("POST", ak.NAMESPACES, {"metadata": {"name": ns, "labels": labels}})
    probe = pod("probe", privileged=True)
    eventually(
        "the policy to take effect",
        lambda: (
            kube.call(
                "POST", ak.collection("Pod", namespaces["main"]), probe, query={"dryRun": "All"}
            ).status
            == 403
        ),
    )
    return pol, names, namespaces


def engine_denies(
    pol: policy_model.Policy, obj: dict[str, Any], ns: str, ns_labels: dict[str, str]
) -> set[str]:
    if not policy_model.selects_namespace(
        pol, name=ns, labels=ns_labels, operator_namespace="kube-guardrails-system"
    ):
        return set()
    target = engine.pod_input(obj)
    assert target is not None
    verdict = planning.review(
        target, [pol], namespace=ns, labels=obj["metadata"]["labels"], now=NOW
    )
    return {f.finding.check for f in verdict.enforced()}


CASES = [
    ("main", {}, {"privileged": True}, {"privileged"}),
    ("excluded", {}, {"privileged": True}, set()),
    ("unselected", {}, {"privileged": True}, set()),
    ("exempt", {"app": "legacy"}, {"privileged": True}, set()),
    ("exempt", {"app": "other"}, {"privileged": True}, {"privileged"}),
    ("main", {"app": "legacy"}, {"privileged": True}, {"privileged"}),  # wrong namespace
    ("main", {}, {"host_port": True}, {"hostPorts"}),  # its exemption has expired
    ("exempt", {"app": "legacy"}, {"host_port": True}, {"hostPorts"}),  # not exempted check
    ("main", {}, {}, set()),
]


@pytest.mark.parametrize(("where", "labels", "tweak", "denied"), CASES)
def test_scope_matches_the_engine(
    kube: ak.Client,
    scoped: Any,
    where: str,
    labels: dict[str, str],
    tweak: dict[str, bool],
    denied: set[str],
    run_id: str,
) -> None:
    pol, _, namespaces = scoped
    ns = namespaces[where]
    obj = pod("p", labels=labels, **tweak)
    ns_labels = {} if where == "unselected" else {"kube-guardrails.io/scope": run_id}
    assert engine_denies(pol, obj, ns, ns_labels) == denied
    r = kube.call("POST", ak.collection("Pod", ns), obj, query={"dryRun": "All"})
    if denied:
        assert r.status == 403, r.message
        (check,) = denied
        assert (
            f"denied request: kube-guardrails policy {pol.name} denies this: {check}. " in r.message
        )
    else:
        assert r.ok, r.message


def test_updates_are_judged_only_when_the_pod_spec_changes(
    kube: ak.Client, scoped: Any, run_id: str
) -> None:
    """A violating Pod that predates the policy (here: its namespace joins later) can still
    get metadata writes (the operator's annotations, labels); a spec change is judged."""
    ns = f"scope-{run_id}-late"
    kube.must("POST", ak.NAMESPACES, {"metadata": {"name": ns, "labels": {RUN_LABEL: run_id}}})
    path = f"{ak.collection('Pod', ns)}/old"
    kube.must("POST", ak.collection("Pod", ns), pod("old", privileged=True))
    merge = "application/merge-patch+json"
    kube.must(
        "PATCH",
        f"{ak.NAMESPACES}/{ns}",
        {"metadata": {"labels": {"kube-guardrails.io/scope": run_id}}},
        content_type=merge,
    )
    new_image = {"spec": {"containers": [{"name": "c0", "image": "registry.k8s.io/pause:3.9"}]}}
    eventually(
        "the namespace to be selected",
        lambda: (
            kube.call(
                "PATCH",
                path,
                new_image,
                content_type="application/strategic-merge-patch+json",
                query={"dryRun": "All"},
            ).status
            == 403
        ),
    )
    r = kube.call(
        "PATCH",
        path,
        {"metadata": {"annotations": {"kube-guardrails.io/violations": "x"}}},
        content_type=merge,
    )
    assert r.ok, r.message


def test_cel_cost_stays_within_budget_for_a_huge_pod(kube: ak.Client, run_id: str) -> None:
    """Every check at restricted, all Enforce, with an allow-list, over a Pod with 100
    sidecars and 100 containers that violate everything: the API server must evaluate it
    all and deny naming every failing check (a CEL cost-budget error would be a denial
    naming no check, or an HTTP 500)."""
    label = f"cost-{run_id}"
    checks: dict[str, Any] = {c: {"action": "Enforce"} for c in registry.ids()}
    checks["imageRegistry"]["allowed"] = ["registry.example.com/", "quay.io/"]
    raw = {
        "metadata": {"name": label},
        "spec": {
            "mode": "Enforce",
            "namespaceSelector": {"matchLabels": {"kube-guardrails.io/cost": run_id}},
            "hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
            "workloads": {"podSecurity": "restricted", "checks": checks},
        },
    }
    pol = policy_model.parse(raw, known_checks=registry.ids())
    for manifest in admission.build(pol, now=NOW).objects:
        manifest["metadata"]["labels"][RUN_LABEL] = run_id
        path = ak.VAP if manifest["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
        kube.apply(path, manifest["metadata"]["name"], manifest)
    ns = label
    labels = {
        RUN_LABEL: run_id,
        "kube-guardrails.io/cost": run_id,
        "pod-security.kubernetes.io/enforce": "privileged",
    }
    kube.must("POST", ak.NAMESPACES, {"metadata": {"name": ns, "labels": labels}})
    big = huge_pod(100)
    target = engine.pod_input(big)
    assert target is not None
    verdict = planning.review(target, [pol], namespace=ns, labels={}, now=NOW)
    expected = {f.finding.check for f in verdict.enforced()}
    assert len(expected) >= 19

    def response() -> ak.Response:
        return kube.call("POST", ak.collection("Pod", ns), big, query={"dryRun": "All"})

    eventually("the policy to take effect", lambda: response().status == 403)
    r = response()
    assert r.status == 403, r.message
    lead = f"denied request: kube-guardrails policy {pol.name} denies this: "
    assert lead in r.message, r.message
    named = r.message.split(lead, 1)[1].split(". ", 1)[0].split(", ")
    assert set(named) == expected


def huge_pod(n: int) -> dict[str, Any]:
    """A Pod that breaks every rule in every one of its 2n containers."""

    def container(prefix: str, i: int) -> dict[str, Any]:
        port = (1000 if prefix == "i" else 3000) + i
        return {
            "name": f"{prefix}{i}",
            "image": f"docker.io/evil/app{i}:latest",
            "ports": [{"containerPort": port, "hostPort": port}],
            "securityContext": {
                "privileged": True,
                "allowPrivilegeEscalation": True,
                "runAsNonRoot": False,
                "runAsUser": 0,
                "capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]},
                "seLinuxOptions": {"type": "spc_t", "user": "root", "role": "sysadm_r"},
                "seccompProfile": {"type": "Unconfined"},
                "appArmorProfile": {"type": "Unconfined"},
                "readOnlyRootFilesystem": False,
            },
            "livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}},
        }

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "huge"},
        "spec": {
            "hostNetwork": True,
            "hostPID": True,
            "securityContext": {
                "sysctls": [{"name": "kernel.msgmax", "value": "1"}],
                "windowsOptions": {"hostProcess": False},
            },
            "volumes": [{"name": f"v{i}", "hostPath": {"path": f"/v{i}"}} for i in range(20)],
            # Native sidecars, so that they may carry probes too.
            "initContainers": [{**container("i", i), "restartPolicy": "Always"} for i in range(n)],
            "containers": [container("c", i) for i in range(n)],
        },
    }
