"""The conformance suites' resources against the reference: the API server's PodSecurity.

``tests/checks/test_conformance.py`` asserts, per resource of Kyverno's and Gatekeeper's
Pod Security tests, which Pod Security checks fail at its level; where a suite deviates
from the Pod Security Standards, the fixture says so and takes the PSS verdict. This test
puts those expectations to the reference implementation: every resource, as a Pod (a
controller's pod template becomes the Pod), is created with a server-side dry run in a
namespace whose ``pod-security.kubernetes.io/enforce`` label is the level, at version
``latest``. The API server's PodSecurity admission must refuse exactly the resources whose
``fails`` annotation is not empty, naming exactly those controls.

A resource the API server refuses in validation (HTTP 400/422: an invalid Pod, such as a
hostProcess container without hostNetwork, or a liveness probe on an init container)
never reaches admission and cannot be compared; such refusals are counted and printed,
and anything else (an error, an unexpected status) fails the test.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import re
from collections.abc import Mapping
from typing import Any

import admission_kube as ak
import pytest
import test_conformance as tc
from conftest import RUN_LABEL

from kube_guardrails.checks import engine

# pod-security-admission's names for its controls (the text before each violation's
# parenthesised detail), by our check id.
PSA_NAMES = {
    "host namespaces": "hostNamespaces",
    "privileged": "privileged",
    "non-default capabilities": "capabilities",
    "unrestricted capabilities": "capabilities",
    "hostPath volumes": "hostPathVolumes",
    "hostPort": "hostPorts",
    "forbidden AppArmor profile": "appArmor",
    "forbidden AppArmor profiles": "appArmor",
    "seLinuxOptions": "seLinux",
    "procMount": "procMount",
    "seccompProfile": "seccomp",
    "forbidden sysctls": "sysctls",
    "probe or lifecycle host": "hostProbesAndHostLifecycle",
    "hostProcess": "windowsHostProcess",
    "restricted volume types": "volumeTypes",
    "allowPrivilegeEscalation != false": "allowPrivilegeEscalation",
    "runAsNonRoot != true": "runAsNonRoot",
    "runAsUser=0": "runAsUser",
}
_VIOLATES = re.compile(r'violates PodSecurity "(\w+):latest": (.*)$', re.S)
WORKERS = 4


def as_pod(case: tc.Case, namespace: str) -> dict[str, Any]:
    obj = case.obj
    if case.kind == "Pod":
        pod = copy.deepcopy(dict(obj))
        meta = dict(pod["metadata"])
    else:
        target = engine.pod_input(obj)
        assert target is not None
        meta = copy.deepcopy(dict(target.metadata))
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": copy.deepcopy(dict(target.spec))}
    meta["name"] = f"c{case.document}-{case.name}"[:63].rstrip("-")
    meta["namespace"] = namespace
    pod["metadata"] = meta
    return pod


def psa_controls(message: str) -> set[str]:
    """Our check ids for the controls a PodSecurity refusal names."""
    m = _VIOLATES.search(message)
    assert m, message
    names = set()
    # "name (detail), name (detail)": details hold no unbalanced parentheses.
    depth, start = 0, 0
    text = m.group(2)
    for i, ch in enumerate(text + ","):
        if ch == "(":
            if depth == 0:
                names.add(text[start:i].strip().lstrip(",").strip())
            depth += 1
        elif ch == ")":
            depth -= 1
            start = i + 1
    unknown = names - set(PSA_NAMES)
    assert not unknown, f"PodSecurity control names not mapped: {unknown} in {message}"
    return {PSA_NAMES[n] for n in names}


@pytest.fixture(scope="module")
def namespaces(kube: ak.Client, run_id: str) -> Mapping[str, str]:
    out = {}
    for level in tc.LEVELS:
        ns = f"conformance-{level}-{run_id}"
        kube.must(
            "POST",
            ak.NAMESPACES,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {
                        RUN_LABEL: run_id,
                        "pod-security.kubernetes.io/enforce": level,
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            },
        )
        out[level] = ns
    return out


def test_pod_security_admission_agrees(kube: ak.Client, namespaces: Mapping[str, str]) -> None:
    def judge(case: tc.Case) -> tuple[tc.Case, str, set[str]]:
        ns = namespaces[case.level]
        r = kube.call("POST", ak.collection("Pod", ns), as_pod(case, ns), query={"dryRun": "All"})
        if r.ok:
            return case, "allowed", set()
        if r.status == 403 and "violates PodSecurity" in r.message:
            return case, "denied", psa_controls(r.message)
        return case, f"HTTP {r.status}: {r.message}", set()

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(judge, tc.CASES))

    refused = [(c, how) for c, how, _ in outcomes if how not in ("allowed", "denied")]
    assert all(how.startswith(("HTTP 400", "HTTP 422")) for _, how in refused), [
        how for _, how in refused if not how.startswith(("HTTP 400", "HTTP 422"))
    ]
    compared = [(c, controls) for c, how, controls in outcomes if how in ("allowed", "denied")]
    print(
        f"\ncompared with PodSecurity admission: {len(compared)} of {len(tc.CASES)} resources "
        f"{dict(collections.Counter((c.suite, c.level) for c, _ in compared))}; "
        f"refused by validation (not comparable): {len(refused)}\n  "
        + "\n  ".join(f"{c.id}: {how.splitlines()[0][:160]}" for c, how in refused)
    )
    mismatches = [
        f"{c.id}: PodSecurity {sorted(controls)}, fixture {sorted(c.fails)}"
        for c, controls in compared
        if controls != set(c.fails)
    ]
    assert not mismatches, f"{len(mismatches)} disagreements:\n" + "\n".join(mismatches)
    # The comparison must have reached every control the suites test, denied and allowed,
    # but procMount: validation refuses Unmasked unless spec.hostUsers is false, which
    # exempts the pod at baseline, and neither suite has such a pod at restricted.
    reached = {c.control for c, controls in compared if c.control in controls}
    assert reached == tc.PSS_IDS - {"procMount"}, tc.PSS_IDS - reached
    assert any(not controls for _, controls in compared)
