#!/usr/bin/env python3
"""Take-over time: the leader replica killed (SIGKILL) -> the first write by the new leader.

Two ``kube-guardrails run`` replicas against the cluster of the current kube context
(the shared control plane: ``../shared/kube/cluster up``), with the default lease
timing (10 s lease, 7 s renew deadline, 2 s retry period). A GuardrailPolicy selects the
benchmark's namespaces, a thread creates one namespace every 100 ms, and each round:

1. SIGKILLs the leader in the middle of that stream;
2. measures, from the kill: the standby's Lease write (it leads), its first write of a
   managed object (both from the API server's audit log, by the identity in each
   replica's User-Agent), and until every namespace created so far is hardened;
3. starts a new replica in place of the killed one, and waits until its caches are
   complete (the next round's standby).

A last round stops the leader gracefully (SIGTERM: it releases the Lease) instead.
Everything created carries a run label and is deleted at the end; both replicas are
stopped. Without a cluster, with a context that does not look like a test cluster, or
with another operator holding the Lease, it says why and exits 0.

    hack/bench/bench_failover.py --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "e2e"))

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_replicas as replicas

from kube_guardrails import API_GROUP, API_VERSION, KIND, LABEL_MANAGED_BY, MANAGED_BY_VALUE

LABEL = "bench.kube-guardrails.io/failover"
INTERVAL = 0.1  # seconds between namespace creates


def parse_time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Stream:
    """Creates a namespace every INTERVAL seconds until stopped."""

    def __init__(self, kube: kube_api.Kube, run: str, *, round_: int) -> None:
        self.kube = kube
        self.run = run
        self.round = round_
        self.names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            name = f"bench-fo-{self.run}-{self.round}-{len(self.names):04d}"
            self.kube.create(
                kube_api.namespaces(),
                {"metadata": {"name": name, "labels": {LABEL: self.run}}},
            )
            self.names.append(name)
            self._stop.wait(INTERVAL)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def hardened(kube: kube_api.Kube, names: list[str]) -> bool:
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
    have = {
        (o["metadata"]["namespace"], kind)
        for kind, path in (
            ("np", kube_api.network_policies(None)),
            ("lr", kube_api.limit_ranges(None)),
        )
        for o in kube.list(path, labels=selector)
    }
    return all((n, "np") in have and (n, "lr") in have for n in names)


def first_writes(
    audit: replicas.AuditLog, identity: str, since: float
) -> tuple[float | None, float | None]:
    """(first Lease write, first other write) by ``identity`` after ``since`` (epoch s)."""
    lease_at = object_at = None
    for entry in audit.writes():
        if not replicas.written_by(entry, identity):
            continue
        at = parse_time(str(entry["requestReceivedTimestamp"]))
        if at < since:
            continue
        resource = replicas.object_of(entry)[0]
        if resource == "leases":
            lease_at = at if lease_at is None else min(lease_at, at)
        else:
            object_at = at if object_at is None else min(object_at, at)
    return lease_at, object_at


def one_round(
    kube: kube_api.Kube,
    audit: replicas.AuditLog,
    leader: replicas.Replica,
    standby: replicas.Replica,
    *,
    run: str,
    round_: int,
    graceful: bool,
) -> dict[str, float]:
    identity = standby.identity()
    assert identity
    with Stream(kube, run, round_=round_) as stream:
        time.sleep(1.0)
        killed_wall, killed = time.time(), time.monotonic()
        leader.signal(signal.SIGTERM if graceful else signal.SIGKILL)
        replicas.wait_role(standby, "leader", timeout=60)
        elected = time.monotonic() - killed
        time.sleep(1.0)
    harness.wait_for(
        lambda: hardened(kube, stream.names), timeout=120, what="every namespace hardened"
    )
    all_hardened = time.monotonic() - killed
    harness.wait_for(leader.gone, timeout=60, what="the old leader to exit")
    time.sleep(0.5)  # let the audit log catch up
    lease_at, object_at = first_writes(audit, identity, killed_wall)
    return {
        "elected_s": elected,
        "lease_write_s": (lease_at - killed_wall) if lease_at else float("nan"),
        "first_write_s": (object_at - killed_wall) if object_at else float("nan"),
        "all_hardened_s": all_hardened,
        "namespaces": float(len(stream.names)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="SIGKILL rounds (default 3)")
    parser.add_argument(
        "--audit-log",
        default=os.path.join(os.environ.get("KUBE_TEST_DIR", ""), "audit.log"),
        help="the API server's audit log (default $KUBE_TEST_DIR/audit.log)",
    )
    args = parser.parse_args()

    context = kube_api.context_name(None)
    refusal = harness.context_refusal(context, os.environ)
    if refusal:
        print(f"skipped: {refusal}")
        return 0
    kube, reason = kube_api.probe_cluster(context)
    if kube is None:
        print(f"skipped: {reason or harness.NO_CLUSTER_REASON}")
        return 0
    if not os.path.exists(args.audit_log):
        print(f"skipped: no audit log at {args.audit_log!r} (the shared control plane has one)")
        return 0
    holder = replicas.lease_holder(kube)
    if holder:
        print(f"skipped: the Lease is held by {holder!r}: stop that operator first")
        return 0

    run = harness.new_run_id()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-failover-"))
    settings = harness.E2ESettings(context=context, resync_seconds=600.0)
    policy_name = f"bench-failover-{run}"
    policy: dict[str, Any] = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": policy_name, "labels": {LABEL: run}},
        "spec": {"mode": "Audit", "namespaceSelector": {"matchLabels": {LABEL: run}}},
    }
    kube.create(kube_api.policies(), policy)
    started: list[replicas.Replica] = []

    def start(n: int) -> replicas.Replica:
        replica = replicas.start_replica(settings, name=f"bench-{run}-{n}", workdir=workdir)
        started.append(replica)
        return replica

    results: list[dict[str, float]] = []
    graceful: dict[str, float] | None = None
    try:
        leader = start(0)
        replicas.wait_role(leader, "leader", timeout=60)
        standby = start(1)
        replicas.wait_warm_standby(standby, leader, timeout=120)
        for n in range(args.rounds + 1):
            last = n == args.rounds
            audit = replicas.AuditLog(args.audit_log)
            result = one_round(kube, audit, leader, standby, run=run, round_=n, graceful=last)
            if last:
                graceful = result
            else:
                results.append(result)
                print(
                    f"round {n + 1}: SIGKILL -> elected {result['elected_s']:.2f}s, "
                    f"lease written {result['lease_write_s']:.2f}s, first object write "
                    f"{result['first_write_s']:.2f}s, all {int(result['namespaces'])} "
                    f"namespaces hardened {result['all_hardened_s']:.2f}s",
                    flush=True,
                )
            if last:
                break
            leader, standby = standby, start(n + 2)
            replicas.wait_warm_standby(standby, leader, timeout=120)
    finally:
        for replica in started:
            replica.stop()
        kube.delete(kube_api.policies(policy_name))
        for ns in kube.list(kube_api.namespaces(), labels=f"{LABEL}={run}"):
            kube.delete(kube_api.namespaces(ns["metadata"]["name"]))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    print("lease 10 s, renew deadline 7 s, retry period 2 s (the defaults)")
    for key, label in (
        ("elected_s", "SIGKILL -> standby leads"),
        ("first_write_s", "SIGKILL -> first write by the new leader"),
        ("all_hardened_s", "SIGKILL -> every namespace hardened"),
    ):
        values = [r[key] for r in results]
        print(
            f"{label}: median {statistics.median(values):.2f}s, max {max(values):.2f}s "
            f"(n={len(values)})"
        )
    if graceful is not None:
        print(
            f"SIGTERM (lease released) -> first write by the new leader: "
            f"{graceful['first_write_s']:.2f}s (standby leads after {graceful['elected_s']:.2f}s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
