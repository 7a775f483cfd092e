#!/usr/bin/env python3
"""Cost of the generated admission policies on a real API server.

What runs: the ValidatingAdmissionPolicies that ``kube_guardrails.admission.build``
generates for a restricted policy with every check on (Audit mode: one Warn+Audit policy,
so every check is evaluated and every failure formatted), bound to one fresh namespace,
on the cluster of the current kube context (``../shared/kube/cluster up`` and
``eval "$(../shared/kube/cluster env)"``). A second namespace has no policy.

What is measured: the latency of a server-side dry-run Pod create, sequential, for Pods of
N init + N regular containers, compliant and violating every check, with and without
the policies (median and p90 of ``--repeat`` requests). The difference is the admission
cost (CEL evaluation and messages); the API server enforces CEL's cost budget itself, and
a request over it would fail, so every request's success is checked too.

    hack/bench/bench_admission.py --sizes 1 10 50 100 --repeat 20

Everything created is deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import time
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "admission"), str(ROOT / "tests" / "checks")]

import admission_kube as ak  # noqa: E402

from kube_guardrails import admission  # noqa: E402
from kube_guardrails.checks import registry  # noqa: E402
from kube_guardrails.model import policy as policy_model  # noqa: E402


def container(prefix: str, i: int, *, bad: bool) -> dict[str, Any]:
    if not bad:
        return {
            "name": f"{prefix}{i}",
            "image": "registry.example.com/app:1.0",
            "restartPolicy": "Always" if prefix == "i" else None,
            "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"memory": "32Mi"},
            },
            "livenessProbe": {"tcpSocket": {"port": 80}},
            "readinessProbe": {"tcpSocket": {"port": 80}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    port = (1000 if prefix == "i" else 3000) + i
    return {
        "name": f"{prefix}{i}",
        "image": f"docker.io/evil/app{i}:latest",
        "restartPolicy": "Always" if prefix == "i" else None,
        "ports": [{"containerPort": port, "hostPort": port}],
        "securityContext": {
            "privileged": True,
            "runAsUser": 0,
            "capabilities": {"add": ["SYS_ADMIN"]},
            "seccompProfile": {"type": "Unconfined"},
        },
    }


def pod(n: int, *, bad: bool) -> dict[str, Any]:
    def clean(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if v is not None}

    spec: dict[str, Any] = {
        "initContainers": [clean(container("i", i, bad=bad)) for i in range(n)],
        "containers": [clean(container("c", i, bad=bad)) for i in range(n)],
    }
    if not bad:
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench"}, "spec": spec}


def timed(kube: ak.Client, ns: str, body: dict[str, Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = kube.call("POST", ak.collection("Pod", ns), body, query={"dryRun": "All"})
        out.append(time.perf_counter() - start)
        if not r.ok:
            raise SystemExit(f"dry-run create failed: HTTP {r.status}: {r.message[:500]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    kube, reason = ak.Client.connect()
    if kube is None:
        raise SystemExit(reason)
    run = uuid.uuid4().hex[:6]
    label = {"kube-guardrails.io/bench": run}
    raw = {
        "metadata": {"name": f"bench-{run}"},
        "spec": {
            "namespaceSelector": {"matchLabels": label},
            "hardening": {"networkPolicy": {"enabled": False}, "limitRange": {"enabled": False}},
            "workloads": {
                "podSecurity": "restricted",
                "checks": {"imageRegistry": {"allowed": ["registry.example.com/"]}},
            },
        },
    }
    pol = policy_model.parse(raw, known_checks=registry.ids())
    desired = admission.build(pol, now=datetime.datetime.now(datetime.UTC))
    with_policy, without = f"bench-{run}-on", f"bench-{run}-off"
    privileged = {"pod-security.kubernetes.io/enforce": "privileged"}
    try:
        for m in desired.objects:
            path = ak.VAP if m["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
            kube.apply(path, m["metadata"]["name"], m)
        kube.must(
            "POST",
            ak.NAMESPACES,
            {"metadata": {"name": with_policy, "labels": {**label, **privileged}}},
        )
        kube.must("POST", ak.NAMESPACES, {"metadata": {"name": without, "labels": privileged}})
        deadline = time.monotonic() + 60
        while not kube.call(
            "POST", ak.collection("Pod", with_policy), pod(1, bad=True), query={"dryRun": "All"}
        ).warnings:
            if time.monotonic() > deadline:
                raise SystemExit("the admission policies never took effect")
            time.sleep(0.2)
        print(
            f"# machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (shared), "
            f"python {platform.python_version()}"
        )
        print(
            f"# {len(desired.policies)} generated policy(ies), "
            f"{sum(len(p['spec']['validations']) for p in desired.policies.values())} validations; "
            f"dry-run Pod create, sequential, {args.repeat} requests each; ms median / p90"
        )
        print(
            f"{'containers':>10} {'pod':>10} {'no policy':>14} {'with policies':>14} {'added':>8}"
        )
        for n in args.sizes:
            for bad in (False, True):
                body = pod(n, bad=bad)
                base = timed(kube, without, body, args.repeat)
                on = timed(kube, with_policy, body, args.repeat)
                med = statistics.median
                p90 = lambda xs: sorted(xs)[int(0.9 * (len(xs) - 1))]  # noqa: E731
                print(
                    f"{2 * n:>10} {'violating' if bad else 'compliant':>10} "
                    f"{med(base) * 1000:>7.1f}/{p90(base) * 1000:<6.1f} "
                    f"{med(on) * 1000:>7.1f}/{p90(on) * 1000:<6.1f} "
                    f"{(med(on) - med(base)) * 1000:>8.1f}"
                )
    finally:
        for ns in (with_policy, without):
            kube.delete(f"{ak.NAMESPACES}/{ns}")
        for name in desired.policies:
            kube.delete(f"{ak.VAPB}/{name}")
            kube.delete(f"{ak.VAP}/{name}")


if __name__ == "__main__":
    main()
