#!/usr/bin/env python3
"""Namespace scale on a real control plane: start-up and restart with N namespaces.

``bench_scale.py`` grows Pods in namespaces of 100; a multi-tenant cluster instead has
thousands of small namespaces, each with the managed NetworkPolicy and LimitRange. This
measures the operator (run as its ServiceAccount, as ``bench_scale.py`` does) against
the cluster of the current kube context (the shared control plane, with its audit log):

1. N namespaces (``--namespaces``) carrying the bench label, no Pods; a baseline Audit
   policy with the default hardening selects them;
2. first start: seconds until every namespace has the policy's readiness label (set once
   its managed objects exist; polled with a label selector), peak RSS, CPU, and the
   operator's writes (the API server's audit log);
3. restarts (``--restarts``) with nothing to change: seconds until ``caches-synced`` in
   the operator's log (namespaces and managed objects listed, policy index complete),
   peak RSS, CPU and writes (target: none but the Lease).

Prints the machine with the figures (the machine is shared: figures are noisy).
Everything created carries ``bench.kube-guardrails.io/scale`` and is deleted at the end
unless ``--keep``.

    .venv/bin/python hack/bench/bench_namespaces.py --namespaces 1000,3000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import pathlib
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "tests" / "e2e")]

import bench_scale as scale  # noqa: E402
import e2e_kube as kube_api  # noqa: E402

LABEL_HARDENED = "kube-guardrails.io/hardened"


def create_namespaces(kube: Any, count: int, *, workers: int) -> float:
    started = time.monotonic()

    def create(i: int) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": f"bench-ns-{i:05d}", "labels": {scale.LABEL: "1"}},
        }
        try:
            kube.create(kube_api.namespaces(), body)
        except kube_api.ApiError as e:
            if e.status != 409:
                raise

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - started


def measure(
    kube: Any, *, count: int, kubeconfig: pathlib.Path, audit: Any, workdir: pathlib.Path, args: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {"namespaces": count}
    row["create_s"] = create_namespaces(kube, count, workers=args.workers)
    policy = f"bench-ns-{count}-{int(time.time()) % 100000}"
    scale.apply_policy(kube, policy)
    uid = kube.get(kube_api.policies(policy))["metadata"]["uid"]
    audit.mark()

    def labelled() -> int:
        """Namespaces with this policy's readiness label (set once their objects exist)."""
        selector = f"{scale.LABEL}=1,{LABEL_HARDENED}={uid}"
        return sum(1 for _ in kube.list(kube_api.namespaces(), labels=selector))

    op = scale.Operator(kubeconfig=kubeconfig, log=workdir / f"first-{count}.log", port=args.port)
    try:
        row["hardened_s"] = scale.wait(lambda: labelled() >= count, timeout=args.timeout, poll=1.0)
        row["synced_s"] = op.log_event("caches-synced")
        time.sleep(3)  # the status flush
        row["peak_rss_mib"] = round(op.peak_mib(), 1)
        row["cpu_s"] = op.cpu_seconds()
        row["writes"] = audit.writes()
    finally:
        op.stop()
    row["restarts"] = []
    for i in range(args.restarts):
        audit.mark()
        op = scale.Operator(
            kubeconfig=kubeconfig, log=workdir / f"restart-{count}-{i}.log", port=args.port
        )
        try:
            scale.wait(
                lambda op=op: op.log_event("caches-synced") is not None, timeout=args.timeout
            )
            time.sleep(5)  # the reconciles of every namespace, which find nothing to do
            row["restarts"].append(
                {
                    "synced_s": op.log_event("caches-synced"),
                    "peak_rss_mib": round(op.peak_mib(), 1),
                    "cpu_s": op.cpu_seconds(),
                    "writes": audit.writes(),
                }
            )
        finally:
            op.stop()
    return row


def report(rows: list[dict[str, Any]]) -> None:
    print(f"\nmachine: {scale.machine()}\n")
    print(
        "| namespaces | all hardened after start | peak RSS | CPU | restart synced | "
        "restart peak RSS | restart writes |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        restarts = r.get("restarts") or []
        synced = ", ".join(f"{x['synced_s']:.1f} s" for x in restarts if x["synced_s"])
        peaks = ", ".join(f"{x['peak_rss_mib']:.0f} MiB" for x in restarts)
        writes = "; ".join(json.dumps(x["writes"]) for x in restarts)
        hardened = f"{r['hardened_s']:.1f} s" if r.get("hardened_s") else "not in time"
        print(
            f"| {r['namespaces']:,} | {hardened} | {r.get('peak_rss_mib', 0):.0f} MiB "
            f"| {r.get('cpu_s', 0):.1f} s | {synced} | {peaks} | {writes} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", default="1000,3000", help="sizes, ascending")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--workers", type=int, default=24, help="concurrent creates")
    parser.add_argument("--port", type=int, default=18951, help="operator liveness port")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the namespaces")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.namespaces.split(",") if x]

    ready = scale.set_up("bench_namespaces")
    if ready is None:
        return 0
    kube, kubeconfig, audit, workdir = ready
    rows: list[dict[str, Any]] = []
    try:
        for count in sizes:
            row = measure(
                kube, count=count, kubeconfig=kubeconfig, audit=audit, workdir=workdir, args=args
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        report(rows)
        if not args.keep:
            for old in kube.list(kube_api.policies(), labels=f"{scale.LABEL}=1"):
                kube.delete(kube_api.policies(old["metadata"]["name"]))
            for n in kube.list(kube_api.namespaces(), labels=f"{scale.LABEL}=1"):
                kube.delete(kube_api.namespaces(n["metadata"]["name"]))
        (workdir / "operator.kubeconfig").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
