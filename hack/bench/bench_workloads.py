#!/usr/bin/env python3
"""Benchmark: workload check throughput, and API writes per workload.

1. Engine throughput: a realistic mix of Pods (compliant and violating, one to three
   containers, init containers, volumes, probes) reviewed with ``planning.review``,
   the function both the operator and the audit call, against compiled policies (as
   the operator's policy store and the audit hand them over)
   - one policy at ``restricted`` (every Pod Security check plus the best practices),
   - two policies, ``baseline`` and ``restricted`` (each finding attributed twice).
   Single-threaded, so the figure is per core. Target: >= 10,000 evaluations/s.
2. API writes: the same Pods (and Deployments) through ``WorkloadService.observe``
   with a counting in-memory gateway: first sight, then a resync of every object, then
   a restart (a fresh service over the annotated objects). Target: 0 writes for
   compliant workloads, and none for a resync or a restart.

Run: ``python hack/bench/bench_workloads.py [--pods N] [--seconds S] [--profile]
[--engine-only]`` (``--engine-only`` skips part 2, for repeated throughput runs).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import cProfile
import datetime
import os
import platform
import pstats
import random
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kube_guardrails import logs, planning
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.services import enforcement, policies, workloads

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


# --------------------------------------------------------------------------- corpus


def _container(rng: random.Random, name: str, *, good: bool) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": f"registry.example.com/team/{name}:1.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "ports": [{"containerPort": 8080 + rng.randint(0, 10)}],
        "env": [{"name": f"VAR{i}", "value": str(i)} for i in range(rng.randint(0, 6))],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    if good:
        return c
    sc = c["securityContext"]
    bad = rng.choice(
        [
            "privileged",
            "caps",
            "root",
            "escalation",
            "latest",
            "no-resources",
            "no-probes",
            "hostport",
            "writable",
        ]
    )
    if bad == "privileged":
        sc["privileged"] = True
    elif bad == "caps":
        sc["capabilities"] = {"add": ["NET_ADMIN", "SYS_TIME"]}
    elif bad == "root":
        sc["runAsUser"] = 0
    elif bad == "escalation":
        sc["allowPrivilegeEscalation"] = True
    elif bad == "latest":
        c["image"] = f"docker.io/library/{name}:latest"
    elif bad == "no-resources":
        del c["resources"]
    elif bad == "no-probes":
        del c["livenessProbe"], c["readinessProbe"]
    elif bad == "hostport":
        c["ports"] = [{"containerPort": 80, "hostPort": 80}]
    else:
        sc["readOnlyRootFilesystem"] = False
    return c


def make_pod(rng: random.Random, i: int) -> dict[str, Any]:
    """One Pod of the mix: about 60% compliant, the rest with one to three problems."""
    good = rng.random() < 0.6
    n = rng.choice([1, 1, 1, 2, 2, 3])
    containers = [_container(rng, f"c{j}", good=good or rng.random() < 0.5) for j in range(n)]
    if not good and all(
        "privileged" not in c["securityContext"] and c["image"].startswith("registry.")
        for c in containers
    ):
        containers[0] = _container(rng, "c0", good=False)
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "fsGroup": 2000,
        },
        "serviceAccountName": "app",
        "containers": containers,
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    if rng.random() < 0.3:
        init = _container(rng, "init", good=True)
        del init["livenessProbe"], init["readinessProbe"]
        spec["initContainers"] = [init]
    if not good and rng.random() < 0.15:
        spec["hostNetwork"] = True
    if not good and rng.random() < 0.1:
        spec["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i}",
            "namespace": f"team-{i % 20}",
            "uid": f"uid-{i}",
            "labels": {"app": f"app-{i % 50}", "tier": rng.choice(["web", "db", "batch"])},
        },
        "spec": spec,
        "status": {"phase": "Running"},
    }


def as_deployment(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": meta["name"].replace("pod", "deploy"),
            "namespace": meta["namespace"],
            "uid": "d-" + meta["uid"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": meta["labels"]["app"]}},
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod["spec"]},
        },
    }


def policy_obj(name: str, level: str) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "workloads": {
                "podSecurity": level,
                "checks": {"imageRegistry": {"allowed": ["registry.example.com/"]}},
            }
        },
    }


# --------------------------------------------------------------------------- 1. engine


def bench_engine(
    pods: Sequence[Mapping[str, Any]], pols: Sequence[planning.CompiledPolicy], seconds: float
) -> tuple[float, int, int]:
    """Evaluations per CPU second of planning.review over the mix; (rate, evals, findings).

    CPU time of this (single-threaded) process, not wall time: on a shared machine the
    wall clock also counts time the scheduler gave to other processes.
    """
    inputs = [(engine.pod_input(p), p["metadata"]) for p in pods]
    evals = findings = 0
    start = time.process_time()
    deadline = start + seconds
    while time.process_time() < deadline:
        for pod, meta in inputs:
            assert pod is not None
            verdict = planning.review(
                pod, pols, namespace=meta["namespace"], labels=meta["labels"], now=NOW
            )
            findings += len(verdict.findings)
        evals += len(inputs)
    elapsed = time.process_time() - start
    return evals / elapsed, evals, findings


# --------------------------------------------------------------------------- 2. writes


class CountingGateway:
    """In-memory API: applies merge patches, counts every call by kind of object."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.patches: dict[str, int] = {}
        self.events: dict[str, int] = {}  # by reason
        self.events_by_kind: dict[str, int] = {}  # by the kind of object they regard
        # (namespace, uid) -> when its last Event was posted (read back after a restart).
        self.posted: dict[tuple[str, str], datetime.datetime] = {}
        self.evictions = 0

    async def patch_annotations(
        self, ref: enforcement.ObjectRef, annotations: Mapping[str, str | None]
    ) -> Mapping[str, Any] | None:
        self.patches[ref.kind] = self.patches.get(ref.kind, 0) + 1
        obj = self.objects[(ref.kind, ref.namespace, ref.name)]
        current = obj["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        return copy.deepcopy(obj)

    async def post_event(
        self,
        *,
        regarding: enforcement.ObjectRef,
        type: enforcement.EventType,
        reason: str,
        message: str,
        action: str,
    ) -> bool:
        self.events[reason] = self.events.get(reason, 0) + 1
        self.events_by_kind[regarding.kind] = self.events_by_kind.get(regarding.kind, 0) + 1
        self.posted[(regarding.namespace or "", regarding.uid or "")] = NOW
        return True

    async def event_times(self, *, namespace: str, reason: str) -> dict[str, datetime.datetime]:
        return {uid: at for (ns, uid), at in self.posted.items() if ns == namespace}

    async def evict(self, ref: enforcement.ObjectRef) -> str:
        self.evictions += 1
        return enforcement.Eviction.EVICTED

    def writes(self) -> int:
        return sum(self.patches.values()) + sum(self.events.values()) + self.evictions


class Nothing:
    def set_violations(self, policy: str, *, total: int, by_check: Mapping[str, int]) -> None:
        pass


def new_service(gateway: CountingGateway, store: policies.PolicyStore) -> workloads.WorkloadService:
    service = workloads.WorkloadService(
        gateway=gateway,
        policies=store,
        status=Nothing(),
        operator_namespace="kube-guardrails-system",
        clock=lambda: NOW,
    )
    for i in range(20):
        service.namespace_seen(f"team-{i}", {})
    return service


async def bench_writes(objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, int, int]]:
    """Rows of (phase, compliant writes, violating writes, violating objects)."""
    store = policies.PolicyStore()
    store.upsert(policy_obj("baseline", "baseline"))
    store.upsert(policy_obj("restricted", "restricted"))
    gateway = CountingGateway()
    for obj in objects:
        meta = obj["metadata"]
        gateway.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(dict(obj))
    compliant_keys = set()
    for obj in objects:
        verdict = workloads.review(
            obj, store.compiled(), namespace=obj["metadata"]["namespace"], now=NOW
        )
        if verdict.compliant:
            compliant_keys.add(workloads.key_of(obj))

    rows = []

    async def phase(name: str, service: workloads.WorkloadService) -> None:
        per_key: dict[tuple[str, str, str], int] = {}
        for key, stored in list(gateway.objects.items()):
            before = gateway.writes()
            await service.observe(copy.deepcopy(stored))
            per_key[(key[0], key[1] or "", key[2])] = gateway.writes() - before
        compliant = sum(n for k, n in per_key.items() if k in compliant_keys)
        violating = sum(n for k, n in per_key.items() if k not in compliant_keys)
        rows.append((name, compliant, violating, len(per_key) - len(compliant_keys)))

    service = new_service(gateway, store)
    await phase("first sight", service)
    await phase("resync", service)
    await phase("restart", new_service(gateway, store))
    return rows


# --------------------------------------------------------------------------- main


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} CPUs; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {platform.system()} {platform.release()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000, help="size of the Pod mix")
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU time per engine run")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine run")
    parser.add_argument(
        "--engine-only", action="store_true", help="measure throughput only (skip API writes)"
    )
    args = parser.parse_args(argv)

    logs.configure(fmt="console", level="warning")  # the service logs every change at info
    rng = random.Random(42)
    pods = [make_pod(rng, i) for i in range(args.pods)]
    registry.validate()
    restricted = planning.compile_policy(policy_model.parse(policy_obj("restricted", "restricted")))
    baseline = planning.compile_policy(policy_model.parse(policy_obj("baseline", "baseline")))

    print(f"machine: {machine()}")
    print(f"checks registered: {len(registry.all_checks())}; pod mix: {len(pods)} Pods")
    print()
    print("1. engine throughput (planning.review, one thread; per CPU second of one core)")
    target = 10_000
    for label, pols in (
        ("restricted + best practices (1 policy)", [restricted]),
        ("baseline + restricted + best practices (2 policies)", [baseline, restricted]),
    ):
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        rate, evals, findings = bench_engine(pods, pols, args.seconds)
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
        verdict = "OK" if rate >= target else "BELOW TARGET"
        print(
            f"   {label:<55} {rate:>10,.0f} evaluations/s  "
            f"({evals:,} evaluations, {findings / evals:.2f} findings each)  "
            f"target >= {target:,}: {verdict}"
        )

    if args.engine_only:
        return 0
    print()
    print("2. API writes per workload (WorkloadService with a counting gateway)")
    objects = pods[: min(len(pods), 1000)]
    objects = [*objects, *(as_deployment(p) for p in objects[:200])]
    rows = asyncio.run(bench_writes(objects))
    n_violating = rows[0][3]
    n_compliant = len(objects) - n_violating
    print(f"   {len(objects)} workloads: {n_compliant} compliant, {n_violating} violating")
    print(f"   {'phase':<12} {'compliant: writes/obj':>24} {'violating: writes/obj':>24}")
    for name, compliant, violating, _ in rows:
        print(
            f"   {name:<12} {compliant / max(n_compliant, 1):>24.3f} "
            f"{violating / max(n_violating, 1):>24.3f}"
        )
    print("   (a write is an annotation patch or an Event; first sight of a violating")
    print("    workload is 1 patch + 1 Warning Event = 2 writes)")
    zero = all(c == 0 for _, c, _, _ in rows) and all(v == 0 for _, _, v, _ in rows[1:])
    verdict = "OK" if zero else "FAILED"
    print(f"   target: 0 writes for compliant workloads and for resync/restart: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
