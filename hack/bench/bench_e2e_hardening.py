#!/usr/bin/env python3
"""Hardening latency on a real cluster: the operator against a bare controller.

Issue #2 asks that "a burst of new namespaces is hardened with a p99 latency within 1.5x
of a bare watch-and-create controller measured in the same run". This script measures
exactly that, against the cluster of the current kube context, with the operator
already running (``hack/e2e.sh`` style: locally or in-cluster):

1. a GuardrailPolicy (default hardening) selects a first batch of N namespaces, created
   in a burst; the time from each namespace's create request to the moment both its
   NetworkPolicy and LimitRange are seen on a watch is its latency;
2. a minimal controller written here (watch namespaces, create the same NetworkPolicy
   and LimitRange, nothing else: no policy parsing, no status, no events) hardens a
   second batch of N namespaces, which the policy does not select; same measurement;
3. the p99 of both and their ratio are printed (target: operator <= 1.5x bare);
4. restoration: a managed NetworkPolicy is deleted (and a LimitRange edited) in K
   hardened namespaces, one at a time; the time until the operator's copy is back;
5. readiness (issue 9): from each operator-batch namespace's create request to the
   moment a watch shows its ``kube-guardrails.io/hardened`` label, which the admission
   readiness gate waits for before it admits Pods (p50/p99 printed).

Both batches see the same client, API server and watch path, so the ratio measures
what the operator adds over the least a controller must do. Everything the script
creates carries a run label and is deleted at the end. Without a cluster (or with a
context that does not look like a test cluster) it prints why and exits 0.

    hack/bench/bench_e2e_hardening.py --namespaces 200
    hack/e2e.sh bench --namespaces 200   # sets up the CRD, RBAC and the operator first
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import pathlib
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "e2e"))

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario

from kube_guardrails import (
    API_GROUP,
    API_VERSION,
    KIND,
    LABEL_MANAGED_BY,
    MANAGED_BY_VALUE,
    PLURAL,
)
from kube_guardrails.admission import policies as admission_policies

Obj = kube_api.Obj
LABEL_BATCH = "bench.kube-guardrails.io/batch"
BARE_MANAGER = "kube-guardrails-bench-bare"
KINDS = ("NetworkPolicy", "LimitRange")
TARGET_RATIO = 1.5
# Set by the operator once a namespace's managed objects exist (the readiness gate).
READY_LABEL = admission_policies.LABEL_HARDENED


# --------------------------------------------------------------------------- observer


@dataclasses.dataclass
class Seen:
    """One watch event about a NetworkPolicy or LimitRange, with its arrival time."""

    at: float
    type: str
    manager: str
    uid: str
    resource_version: str
    spec: Any


class Observer:
    """Watches NetworkPolicies and LimitRanges of both managers, cluster-wide.

    One watch per kind (not one poll per namespace) keeps the measurement from loading
    the API server, and the arrival time of the event is when a client could see the
    object, which is what "hardened" means to a user.
    """

    def __init__(self, kube: kube_api.Kube, *, prefix: str) -> None:
        self.kube = kube
        self.prefix = prefix
        self.events: dict[tuple[str, str], list[Seen]] = {}
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Barrier(len(KINDS) + 1)
        self._paths: dict[str, Callable[[str | None], str]] = {
            "NetworkPolicy": kube_api.network_policies,
            "LimitRange": kube_api.limit_ranges,
        }

    def start(self) -> None:
        for kind in KINDS:
            threading.Thread(target=self._run, args=(kind,), daemon=True).start()
        self._ready.wait(timeout=30)

    def stop(self) -> None:
        self._stop.set()

    def _run(self, kind: str) -> None:
        try:
            self._watch(kind)
        except BaseException as e:  # surfaced by check(): a dead watch must not look idle
            self.failure = e

    def check(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"the observer's watch failed: {self.failure!r}")

    def _watch(self, kind: str) -> None:
        path = self._paths[kind](None)
        selector = f"{LABEL_MANAGED_BY} in ({MANAGED_BY_VALUE},{BARE_MANAGER})"
        listing = self.kube.request("GET", path, query={"labelSelector": selector})
        version = str(listing["metadata"]["resourceVersion"])
        self._ready.wait(timeout=30)
        while not self._stop.is_set():
            try:
                for event in self.kube.watch(
                    path, resource_version=version, labels=selector, timeout_seconds=60
                ):
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    if event.get("type") == "ERROR":
                        raise kube_api.ApiError(
                            method="WATCH", path=path, status=int(obj.get("code") or 0), body=obj
                        )
                    version = str(meta.get("resourceVersion") or version)
                    if event.get("type") == "BOOKMARK":
                        continue
                    self._record(kind, event["type"], obj)
                    if self._stop.is_set():
                        return
            except kube_api.ApiError as e:
                if e.status != 410:
                    raise
                # Expired: relist and carry on from now (the benchmark only needs new events).
                listing = self.kube.request("GET", path, query={"labelSelector": selector})
                version = str(listing["metadata"]["resourceVersion"])

    def _record(self, kind: str, type_: str, obj: Obj) -> None:
        meta = obj["metadata"]
        namespace = str(meta.get("namespace", ""))
        if not namespace.startswith(self.prefix):
            return
        seen = Seen(
            at=time.monotonic(),
            type=type_,
            manager=str((meta.get("labels") or {}).get(LABEL_MANAGED_BY)),
            uid=str(meta.get("uid")),
            resource_version=str(meta.get("resourceVersion")),
            spec=obj.get("spec"),
        )
        with self._lock:
            self.events.setdefault((kind, namespace), []).append(seen)

    def first_added(self, kind: str, namespace: str, manager: str) -> float | None:
        with self._lock:
            for seen in self.events.get((kind, namespace), []):
                if seen.type == "ADDED" and seen.manager == manager:
                    return seen.at
        return None

    def after(self, kind: str, namespace: str, since: float) -> list[Seen]:
        with self._lock:
            return [s for s in self.events.get((kind, namespace), []) if s.at >= since]


class ReadyObserver:
    """Watches the operator batch's namespaces for the readiness label (issue 9).

    ``kube-guardrails.io/hardened`` is what the admission readiness gate waits for: until
    the operator sets it (once the managed objects exist), Pods are refused in the
    namespace. Creation -> label is the delay a user sees before the first Pod goes in.
    """

    def __init__(self, kube: kube_api.Kube, *, selector: str) -> None:
        self.kube = kube
        self.selector = f"{selector},{READY_LABEL}"
        self.ready: dict[str, float] = {}
        self.failure: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        self._started.wait(timeout=30)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            path = kube_api.namespaces()
            listing = self.kube.request("GET", path, query={"labelSelector": self.selector})
            version = str(listing["metadata"]["resourceVersion"])
            self._started.set()
            while not self._stop.is_set():
                for event in self.kube.watch(
                    path, resource_version=version, labels=self.selector, timeout_seconds=60
                ):
                    obj = event.get("object") or {}
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        with self._lock:
                            self.ready.setdefault(str(obj["metadata"]["name"]), time.monotonic())
                    if self._stop.is_set():
                        return
        except BaseException as e:  # surfaced by latencies(): a dead watch must not look idle
            self.failure = e
            self._started.set()

    def latencies(self, batch: Batch) -> tuple[list[float], list[str]]:
        if self.failure is not None:
            raise RuntimeError(f"the readiness watch failed: {self.failure!r}")
        with self._lock:
            ready = dict(self.ready)
        values = [ready[n] - t for n, t in batch.created.items() if n in ready]
        return values, [n for n in batch.created if n not in ready]


# --------------------------------------------------------------------------- bare controller


def bare_network_policy() -> Obj:
    """The default-deny NetworkPolicy of the default policy (DNS egress allowed)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bench-bare-default-deny", "labels": {LABEL_MANAGED_BY: BARE_MANAGER}},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
    }


def bare_limit_range() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "bench-bare-limits", "labels": {LABEL_MANAGED_BY: BARE_MANAGER}},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                    "default": {"cpu": "500m", "memory": "512Mi"},
                }
            ]
        },
    }


class BareController:
    """The least a hardening controller does: watch namespaces, create two objects.

    No policy, no status, no events, no restoration: the floor the operator is compared
    with. It runs ``workers`` creations at a time, like a controller with a worker pool.
    """

    def __init__(self, kube: kube_api.Kube, *, selector: str, workers: int) -> None:
        self.kube = kube
        self.selector = selector
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the bare controller's watch did not start")

    def stop(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        path = kube_api.namespaces()
        listing = self.kube.request("GET", path, query={"labelSelector": self.selector})
        version = str(listing["metadata"]["resourceVersion"])
        self._ready.set()
        while not self._stop.is_set():
            for event in self.kube.watch(
                path, resource_version=version, labels=self.selector, timeout_seconds=60
            ):
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":  # 410 Gone: relist, resume from now
                    listing = self.kube.request("GET", path, query={"labelSelector": self.selector})
                    version = str(listing["metadata"]["resourceVersion"])
                    break
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") == "ADDED":
                    self.pool.submit(self._harden, str(obj["metadata"]["name"]))
                if self._stop.is_set():
                    return

    def _harden(self, namespace: str) -> None:
        for path, body in (
            (kube_api.network_policies(namespace), bare_network_policy()),
            (kube_api.limit_ranges(namespace), bare_limit_range()),
        ):
            try:
                self.kube.create(path, body)
            except kube_api.ApiError as e:
                if e.status != 409:
                    self.errors.append(str(e))


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Batch:
    name: str
    manager: str
    created: dict[str, float] = dataclasses.field(default_factory=dict)

    def latencies(self, observer: Observer) -> tuple[list[float], list[str]]:
        """Per namespace: max(first NetworkPolicy, first LimitRange) - create request.

        Only objects of the batch's own manager count, so another policy in the
        cluster hardening the bare batch cannot make the floor look faster.
        """
        observer.check()
        values: list[float] = []
        missing: list[str] = []
        for namespace, start in self.created.items():
            seen = [observer.first_added(kind, namespace, self.manager) for kind in KINDS]
            if any(s is None for s in seen):
                missing.append(namespace)
                continue
            values.append(max(s for s in seen if s is not None) - start)
        return values, missing


def create_namespaces(
    kube: kube_api.Kube,
    *,
    names: Iterable[str],
    labels: Mapping[str, str],
    workers: int,
    batch: Batch,
) -> None:
    """Create the namespaces in a burst (``workers`` requests in flight)."""

    def create(name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)},
        }
        batch.created[name] = time.monotonic()
        kube.create(kube_api.namespaces(), body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(create, n) for n in names]:
            future.result()


def wait_batch(observer: Observer, batch: Batch, *, timeout: float) -> None:
    harness.wait_for(
        lambda: not batch.latencies(observer)[1],
        timeout=timeout,
        interval=0.5,
        what=f"every namespace of the {batch.name} batch hardened",
    )


def _restored_copy(
    observer: Observer, *, kind: str, namespace: str, since: float, old_uid: str
) -> Seen | None:
    """A new object (another uid) of ``kind`` seen in ``namespace`` since ``since``."""
    for seen in observer.after(kind, namespace, since):
        if seen.type == "ADDED" and seen.uid != old_uid:
            return seen
    return None


def _reverted(
    observer: Observer, *, kind: str, namespace: str, since: float, after: int, spec: object
) -> Seen | None:
    """A write newer than resourceVersion ``after`` that put ``spec`` back."""
    for seen in observer.after(kind, namespace, since):
        if int(seen.resource_version) > after and seen.spec == spec:
            return seen
    return None


def measure_restores(
    kube: kube_api.Kube,
    observer: Observer,
    *,
    namespaces: list[str],
    timeout: float,
) -> dict[str, list[float]]:
    """Delete the managed NetworkPolicy, then edit the LimitRange, one namespace at a time."""
    out: dict[str, list[float]] = {"deleted NetworkPolicy": [], "edited LimitRange": []}
    managed = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
    for namespace in namespaces:
        [np] = kube.list(kube_api.network_policies(namespace), labels=managed)
        start = time.monotonic()
        kube.delete(kube_api.network_policies(namespace, np["metadata"]["name"]))
        back = harness.wait_for(
            functools.partial(
                _restored_copy,
                observer,
                kind="NetworkPolicy",
                namespace=namespace,
                since=start,
                old_uid=np["metadata"]["uid"],
            ),
            timeout=timeout,
            interval=0.05,
            what=f"the NetworkPolicy of {namespace} restored",
        )
        out["deleted NetworkPolicy"].append(back.at - start)

        [lr] = kube.list(kube_api.limit_ranges(namespace), labels=managed)
        start = time.monotonic()
        edited = kube.patch(
            kube_api.limit_ranges(namespace, lr["metadata"]["name"]),
            {"spec": {"limits": [{"type": "Container", "default": {"cpu": "3", "memory": "3Gi"}}]}},
        )
        back = harness.wait_for(
            functools.partial(
                _reverted,
                observer,
                kind="LimitRange",
                namespace=namespace,
                since=start,
                after=int(edited["metadata"]["resourceVersion"]),
                spec=lr["spec"],
            ),
            timeout=timeout,
            interval=0.05,
            what=f"the LimitRange of {namespace} restored",
        )
        out["edited LimitRange"].append(back.at - start)
    return out


def preflight(settings: harness.E2ESettings) -> tuple[kube_api.Kube | None, str]:
    """The cluster, or why the benchmark cannot run (then it is skipped, not failed)."""
    try:
        context = kube_api.context_name(settings.context)
    except Exception as e:
        return None, f"{harness.NO_CLUSTER_REASON} ({type(e).__name__})"
    refusal = harness.context_refusal(context, os.environ)
    if refusal:
        return None, refusal
    kube, reason = kube_api.probe_cluster(context)
    if kube is None:
        return None, reason or harness.NO_CLUSTER_REASON
    if kube.get_or_none(kube_api.crd(f"{PLURAL}.{API_GROUP}")) is None:
        return None, "the GuardrailPolicy CRD is not installed (kubectl apply -f crds/)"
    if not e2e_scenario.Env(kube=kube, settings=settings, run="").operator_alive():
        return None, (
            f"the operator is not running ({settings.mode} mode): start `kube-guardrails run` "
            "locally, or install it and set KUBE_GUARDRAILS_E2E_OPERATOR=in-cluster"
        )
    return kube, ""


def run(args: argparse.Namespace) -> int:
    settings = harness.E2ESettings.from_env(os.environ)
    kube, reason = preflight(settings)
    if kube is None:
        print(f"bench_e2e_hardening: skipped: {reason}")
        return 0
    run_id = harness.new_run_id()
    prefix = f"{harness.NAME_PREFIX}{run_id}-"
    base_labels = {harness.LABEL_RUN: run_id}
    policy_name = harness.object_name(run_id, "bench", "policy")
    foreign = [
        p["metadata"]["name"]
        for p in kube.list(kube_api.policies())
        if harness.LABEL_RUN not in (p["metadata"].get("labels") or {})
    ]
    observer = Observer(kube, prefix=prefix)
    ready_observer = ReadyObserver(
        kube, selector=kube_api.labels_selector({**base_labels, LABEL_BATCH: "operator"})
    )
    bare = BareController(
        kube,
        selector=kube_api.labels_selector({**base_labels, LABEL_BATCH: "bare"}),
        workers=args.bare_workers,
    )
    operator_batch = Batch("operator", manager=MANAGED_BY_VALUE)
    bare_batch = Batch("bare", manager=BARE_MANAGER)
    report: dict[str, Any] = {}
    try:
        kube.create(
            kube_api.policies(),
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": KIND,
                "metadata": {"name": policy_name, "labels": base_labels},
                "spec": {
                    "namespaceSelector": {"matchLabels": {**base_labels, LABEL_BATCH: "operator"}},
                    "workloads": {"podSecurity": "none"},
                },
            },
        )
        harness.wait_for(
            lambda: (
                (kube_api.condition(kube.get(kube_api.policies(policy_name)), "Ready") or {}).get(
                    "status"
                )
                == "True"
            ),
            timeout=60,
            what="the benchmark policy Ready",
        )
        observer.start()
        ready_observer.start()
        bare.start()
        for batch, suffix in ((operator_batch, "op"), (bare_batch, "bare")):
            names = [f"{prefix}{suffix}-{i:04d}" for i in range(args.namespaces)]
            create_namespaces(
                kube,
                names=names,
                labels={**base_labels, LABEL_BATCH: batch.name},
                workers=args.workers,
                batch=batch,
            )
            wait_batch(observer, batch, timeout=args.timeout)
        harness.wait_for(
            lambda: not ready_observer.latencies(operator_batch)[1],
            timeout=args.timeout,
            interval=0.5,
            what="every namespace of the operator batch labelled ready",
        )
        restores = measure_restores(
            kube,
            observer,
            namespaces=sorted(operator_batch.created)[: args.restore_samples],
            timeout=args.timeout,
        )
        op = harness.Summary.of(operator_batch.latencies(observer)[0])
        floor = harness.Summary.of(bare_batch.latencies(observer)[0])
        ready = harness.Summary.of(ready_observer.latencies(operator_batch)[0])
        version = kube.server_version()
        report = {
            "machine": {
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "cluster": {
                "context": kube.context,
                "server": version.get("gitVersion"),
                "operator": settings.mode,
                "other_policies": foreign,
            },
            "namespaces_per_batch": args.namespaces,
            "client_workers": args.workers,
            "bare_workers": args.bare_workers,
            "operator": dataclasses.asdict(op),
            "bare": dataclasses.asdict(floor),
            "ready": dataclasses.asdict(ready),
            "p50_ratio": op.p50 / floor.p50 if floor.p50 > 0 else None,
            "p99_ratio": op.p99 / floor.p99 if floor.p99 > 0 else None,
            "target_ratio": TARGET_RATIO,
            "restore": {
                k: dataclasses.asdict(harness.Summary.of(v)) for k, v in restores.items() if v
            },
            "bare_errors": bare.errors[:5],
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report, op=op, floor=floor, restores=restores, ready=ready)
    finally:
        observer.stop()
        ready_observer.stop()
        bare.stop()
        kube.delete(kube_api.policies(policy_name))
        for name in [*operator_batch.created, *bare_batch.created]:
            kube.delete(kube_api.namespaces(name))
    return 0


def print_report(
    report: Mapping[str, Any],
    *,
    op: harness.Summary,
    floor: harness.Summary,
    restores: Mapping[str, list[float]],
    ready: harness.Summary,
) -> None:
    machine, cluster = report["machine"], report["cluster"]
    print("kube-guardrails: hardening latency on a real cluster")
    print(
        f"machine: {machine['host']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}"
    )
    print(
        f"cluster: context {cluster['context']}, server {cluster['server']}, "
        f"operator {cluster['operator']}"
    )
    if cluster["other_policies"]:
        print(f"note: other GuardrailPolicies exist ({', '.join(cluster['other_policies'])})")
    print(
        f"burst: {report['namespaces_per_batch']} namespaces per batch, "
        f"{report['client_workers']} creating threads; bare controller "
        f"{report['bare_workers']} workers"
    )
    print(f"  operator  create -> NetworkPolicy+LimitRange  {op.line()}")
    print(f"  bare      create -> NetworkPolicy+LimitRange  {floor.line()}")
    print(f"  operator  create -> ready label (Pods admitted) {ready.line()}")
    if report["p50_ratio"] is not None:
        print(f"  p50 ratio operator/bare = {report['p50_ratio']:.2f}x")
    ratio = report["p99_ratio"]
    if ratio is not None:
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"  p99 ratio operator/bare = {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    for what, values in restores.items():
        if not values:
            continue
        print(f"  restore {what:<22} {harness.Summary.of(values).line()}")
    if report["bare_errors"]:
        print(f"bare controller errors: {report['bare_errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--namespaces", type=int, default=200, help="namespaces per batch")
    parser.add_argument("--workers", type=int, default=16, help="threads creating namespaces")
    parser.add_argument(
        "--bare-workers", type=int, default=8, help="worker pool of the bare controller"
    )
    parser.add_argument(
        "--restore-samples", type=int, default=20, help="namespaces used for restore timing"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per batch")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.namespaces < 1 or args.workers < 1 or args.bare_workers < 1:
        parser.error("--namespaces, --workers and --bare-workers must be at least 1")
    args.restore_samples = max(0, min(args.restore_samples, args.namespaces))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
