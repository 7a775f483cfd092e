#!/usr/bin/env python3
"""Benchmark: the cost of "one Event per top-level owner" on a first full review.

The workload service finds a violating Pod's top-level owner through its cache
(ownerReferences with ``controller: true``: Pod -> ReplicaSet -> Deployment) and
evaluates the owner's template once per pass to decide whether the Pod's violations are
the owner's. This measures that on the operator's own code path, in one process, with
an in-memory gateway (no API server: the figure is our CPU, not the network):

* ``standalone``: N Pods without owners (every violating Pod gets its own Event);
* ``owned``: the same N Pods spread over N/replicas Deployments, each with its
  ReplicaSet (so every violating Pod needs two owner look-ups and an owner verdict).

Both are delivered as the watches deliver them (``k8s.watch`` projections, one
``listed`` per kind) and reviewed by one ``run_due`` pass, as at start-up. Prints the
CPU seconds of the pass, the writes (annotation patches and Events by kind) and the peak
of the Python heap (tracemalloc) for the cache.

Run: ``python hack/bench/bench_owners.py [--pods 10000] [--replicas 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import os
import platform
import random
import sys
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from typing import Any

import bench_workloads

from kube_guardrails import logs
from kube_guardrails.k8s import watch
from kube_guardrails.services import policies, workloads

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
PROJECT = {k.kind: k.project for k in watch.KINDS}
NAMESPACES = 100
BEST_PRACTICES = ("resources", "probes", "imageTag", "imageRegistry", "readOnlyRootFilesystem")


class Gateway(bench_workloads.CountingGateway):
    """``bench_workloads``' in-memory API, holding these objects."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        for o in objects:
            meta = o["metadata"]
            self.objects[(o["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(dict(o))


class Nothing:
    def set_violations(self, policy: str, *, total: int, by_check: Mapping[str, int]) -> None:
        pass


def pod_spec(*, privileged: bool) -> dict[str, Any]:
    security: dict[str, Any] = {"allowPrivilegeEscalation": False}
    if privileged:
        security = {"privileged": True}
    return {
        "containers": [
            {
                "name": "app",
                "image": "registry.example.com/app:1.2.3",
                "securityContext": security,
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "A", "value": "x" * 40}],
            }
        ],
        "tolerations": [{"key": "k", "operator": "Exists"}],
    }


def ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def population(n: int, replicas: int, *, owned: bool) -> list[dict[str, Any]]:
    """N Pods (a third privileged), as Deployment -> ReplicaSet -> Pods when ``owned``."""
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    for d in range(n // replicas):
        ns = f"team-{d % NAMESPACES}"
        privileged = rng.random() < 1 / 3
        spec = pod_spec(privileged=privileged)
        labels = {"app": f"app-{d}"}
        template = {"metadata": {"labels": labels}, "spec": spec}
        deploy = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"app-{d}", "namespace": ns, "uid": f"d-{d}"},
            "spec": {"replicas": replicas, "template": template},
        }
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"app-{d}-5d8f",
                "namespace": ns,
                "uid": f"rs-{d}",
                "ownerReferences": [ref(deploy)],
            },
            "spec": {"replicas": replicas, "template": template},
        }
        if owned:
            out += [deploy, rs]
        for r in range(replicas):
            meta: dict[str, Any] = {
                "name": f"app-{d}-5d8f-{r}",
                "namespace": ns,
                "uid": f"p-{d}-{r}",
                "labels": {**labels, "pod-template-hash": "5d8f"},
            }
            if owned:
                meta["ownerReferences"] = [ref(rs)]
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": meta,
                    "spec": copy.deepcopy(spec),
                    "status": {"phase": "Running"},
                }
            )
    return out


def policy() -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "baseline", "uid": "u-baseline", "generation": 1},
        "spec": {
            "mode": "Audit",
            # Pod Security baseline only: the privileged third violates, the rest passes.
            "workloads": {
                "podSecurity": "baseline",
                "checks": {c: {"action": "Off"} for c in BEST_PRACTICES},
            },
        },
    }


async def first_pass(objects: Sequence[Mapping[str, Any]]) -> tuple[float, float, Gateway]:
    """(CPU seconds of the review pass, peak heap MiB of cache + pass, gateway)."""
    store = policies.PolicyStore()
    store.upsert(policy())
    gateway = Gateway(objects)
    tracemalloc.start()
    service = workloads.WorkloadService(
        gateway=gateway,
        policies=store,
        status=Nothing(),
        operator_namespace="kube-guardrails-system",
        clock=lambda: NOW,
        wait_for=(*workloads.KINDS, "namespaces"),
    )
    for i in range(NAMESPACES):
        service.namespace_seen(f"team-{i}", {})
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in workloads.KINDS}
    for obj in objects:
        by_kind[obj["kind"]].append(PROJECT[obj["kind"]](obj))
    for kind, bodies in by_kind.items():
        service.listed(kind, bodies)
    del by_kind
    service.source_ready("namespaces")
    start = time.process_time()
    await service.run_due()
    cpu = time.process_time() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return cpu, peak / 2**20, gateway


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}; {os.cpu_count()} CPUs; load {load}; Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=3, help="Pods per Deployment")
    args = parser.parse_args(argv)
    logs.configure(fmt="console", level="warning")  # the service logs every change at info
    print(f"machine: {machine()}")
    print(f"{args.pods:,} Pods, {args.replicas} per Deployment, a third violating (baseline)")
    print(f"{'population':<12} {'objects':>8} {'CPU s':>7} {'heap MiB':>9}  writes")
    for owned in (False, True):
        objects = population(args.pods, args.replicas, owned=owned)
        cpu, heap, gateway = asyncio.run(first_pass(objects))
        name = "owned" if owned else "standalone"
        print(
            f"{name:<12} {len(objects):>8,} {cpu:>7.2f} {heap:>9.1f}  "
            f"patches {dict(sorted(gateway.patches.items()))}, "
            f"events {dict(sorted(gateway.events_by_kind.items()))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
