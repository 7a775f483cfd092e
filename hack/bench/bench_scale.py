#!/usr/bin/env python3
"""Scale benchmark on a real control plane: start-up, memory, restart and latency.

Issue #8 (DESIGN section 9) asks one operator replica to handle 10,000 Pods. This
script measures it against the cluster of the current kube context (the shared
control plane: ``../shared/kube/cluster up`` with your ``KUBE_TEST_DIR``/``PORT``):

1. installs the CRD, the operator's namespace, ServiceAccount and RBAC from
   ``manifests/`` and writes a kubeconfig with a token of that ServiceAccount, so the
   operator runs with exactly the permissions it has in a cluster;
2. for each size N (``--pods 1000,5000,10000,20000``), grows the population to N Pods
   in namespaces of 100 (a third of them privileged; created straight through the API,
   no kubelet needed; they stay Pending), and a fresh baseline Audit policy selects
   them (a new policy name per size, so every violating Pod needs its annotation and
   Event again: the cost of a first sight);
3. starts ``kube-guardrails run`` as a subprocess and measures the time until every
   violating Pod is annotated (counted in the API server's audit log, writes by the
   operator's user), its peak RSS (``VmHWM``) and CPU seconds;
4. restarts it with nothing to change: writes by the operator (audit log) and the time
   until its first full review pass is done (``workloads-reviewed`` in its log);
5. steady state: creates a few privileged Pods one at a time and measures the time until
   the operator's annotation is on each (watched).

Prints the machine (cores, CPU model, load) with the figures: the machine is shared,
so figures are noisy. Everything created carries the label ``bench.kube-guardrails.io/
scale`` and is deleted at the end unless ``--keep`` (then a rerun reuses the Pods).

    KUBE_TEST_DIR=/tmp/kt-x KUBE_TEST_PORT=16xxx ../shared/kube/cluster up
    eval "$(../shared/kube/cluster env)"
    .venv/bin/python hack/bench/bench_scale.py --pods 1000,5000,10000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import e2e_harness as harness  # noqa: E402
import e2e_kube as kube_api  # noqa: E402

from kube_guardrails import API_GROUP, API_VERSION, violations  # noqa: E402

LABEL = "bench.kube-guardrails.io/scale"
PODS_PER_NAMESPACE = 100
OPERATOR_NS = "kube-guardrails-system"
SERVICE_ACCOUNT = "kube-guardrails"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{SERVICE_ACCOUNT}"
TARGETS = {
    "annotated_10k_s": 60.0,
    "annotated_20k_factor": 2.2,
    "rss_10k_mib": 150.0,
    "rss_20k_mib": 250.0,
    "restart_synced_10k_s": 30.0,
    "single_change_s": 1.0,
}


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    python = platform.python_version()
    return f"{platform.node()}: {os.cpu_count()} cores, {model}, load {load}, Python {python}"


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", *args], check=True, capture_output=True, text=True, input=input
    ).stdout


# --------------------------------------------------------------------------- install


def install(workdir: pathlib.Path) -> pathlib.Path:
    """CRD, namespace, ServiceAccount, RBAC; a kubeconfig with the SA's token."""
    kubectl("apply", "-f", str(ROOT / "operator/kube_guardrails/data/guardrailpolicy-crd.yaml"))
    for name in (
        "namespace",
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "role",  # the leader Lease (leader election is on by default)
        "rolebinding",
    ):
        kubectl("apply", "-f", str(ROOT / "manifests" / f"{name}.yaml"))
    kubectl("wait", "--for=condition=Established", f"crd/guardrailpolicies.{API_GROUP}")
    token = kubectl("create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NS, "--duration=6h").strip()
    raw = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = raw["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "sa",
    }
    path = workdir / "operator.kubeconfig"
    path.write_text(json.dumps(config))
    return path


# --------------------------------------------------------------------------- population


def pod(namespace: str, index: int, *, distinct: bool = False) -> dict[str, Any]:
    """A bench Pod. ``distinct``: an image tag of its own, so that no two Pods' containers
    are equal and the operator's cache shares none of them (its worst case for memory;
    the Pods of one Deployment have equal containers)."""
    tag = f"1.0-{namespace}-{index}" if distinct else "1.0"
    container: dict[str, Any] = {
        "name": "app",
        "image": f"registry.example.com/app:{tag}",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
        "readinessProbe": {"tcpSocket": {"port": 8080}},
        "securityContext": {"readOnlyRootFilesystem": True},
    }
    if index % 3 == 0:  # the only finding: baseline's "privileged"
        container["securityContext"]["privileged"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{index:03d}",
            "namespace": namespace,
            "labels": {LABEL: "1", "app": f"a{index % 10}"},
        },
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
    }


def violating_in(namespaces: int) -> int:
    return namespaces * len(range(0, PODS_PER_NAMESPACE, 3))


def grow(kube: kube_api.Kube, *, namespaces: int, workers: int, distinct: bool = False) -> float:
    """Make sure namespaces bench-0000..N-1 exist with their Pods (PODS_PER_NAMESPACE
    each); seconds taken."""
    started = time.monotonic()
    existing = {
        n["metadata"]["name"]
        for n in kube.list(kube_api.namespaces(), labels=f"{LABEL}=1")
        if not n["metadata"].get("deletionTimestamp")
    }
    wanted = [f"bench-{i:04d}" for i in range(namespaces)]
    missing = [n for n in wanted if n not in existing]

    def create_ns(name: str) -> None:
        kube.create(
            kube_api.namespaces(),
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {LABEL: "1"}},
            },
        )

    def create_pod(args: tuple[str, int]) -> None:
        ns, i = args
        gated_until = time.monotonic() + 60
        attempt = 0
        while True:
            try:
                kube.create(kube_api.pods(ns), pod(ns, i, distinct=distinct))
                return
            except kube_api.ApiError as e:
                if e.status == 409:
                    return
                if e.status in (429, 500, 503, 504) and attempt < 4:
                    attempt += 1
                    time.sleep(0.5 * attempt)
                    continue
                # The API server unloads a deleted policy's readiness gate from its
                # admission cache a moment after the object is gone (clear_policies).
                gated = e.status == 403 and "namespaceReady" in e.message
                # A new namespace's default ServiceAccount comes from the controller
                # manager a moment after the namespace.
                no_sa = e.status == 403 and 'serviceaccount "default" not found' in e.message
                if (gated or no_sa) and time.monotonic() < gated_until:
                    time.sleep(0.5)
                    continue
                raise

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(create_ns, missing))
        jobs = [(ns, i) for ns in missing for i in range(PODS_PER_NAMESPACE)]
        list(pool.map(create_pod, jobs, chunksize=50))
    return time.monotonic() - started


def clear_policies(kube: kube_api.Kube) -> None:
    """Delete the earlier bench policies and wait until their admission policies are gone.

    A policy's readiness gate refuses Pods in a selected namespace the operator has not
    labelled yet, and the operator is stopped while the next size's Pods are created.
    """
    for old in kube.list(kube_api.policies(), labels=f"{LABEL}=1"):
        kube.delete(kube_api.policies(old["metadata"]["name"]))
    # Their admission objects go with them (ownerReference); do not wait for the collector.
    kubectl(
        "delete",
        "validatingadmissionpolicies,validatingadmissionpolicybindings",
        "-l",
        "app.kubernetes.io/managed-by=kube-guardrails",
        "--ignore-not-found",
    )
    wait(
        lambda: (
            "kube-guardrails.bench-scale"
            not in kubectl("get", "validatingadmissionpolicies", "-o", "name")
        ),
        timeout=120,
        poll=1.0,
    )


def apply_policy(kube: kube_api.Kube, name: str) -> None:
    """Only this bench policy selects the bench namespaces (earlier ones are deleted)."""
    for old in kube.list(kube_api.policies(), labels=f"{LABEL}=1"):
        if old["metadata"]["name"] != name:
            kube.delete(kube_api.policies(old["metadata"]["name"]))
    if kube.get_or_none(kube_api.policies(name)) is None:
        kube.create(
            kube_api.policies(),
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "GuardrailPolicy",
                "metadata": {"name": name, "labels": {LABEL: "1"}},
                "spec": {
                    "mode": "Audit",
                    "namespaceSelector": {"matchLabels": {LABEL: "1"}},
                    "workloads": {"podSecurity": "baseline"},
                },
            },
        )


# --------------------------------------------------------------------------- observing


class AuditTail:
    """Writes by the operator's user, read from the API server's audit log."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def entries(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for line in f:
                if OPERATOR_USER.encode() not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if (entry.get("user") or {}).get("username") == OPERATOR_USER and entry.get(
                    "stage"
                ) in (None, "ResponseComplete"):
                    yield entry

    def writes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.entries():
            if e.get("verb") in ("create", "update", "patch", "delete"):
                ref = e.get("objectRef") or {}
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                key = f"{e['verb']} {ref.get('resource')}{sub}"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def annotated_pods(self, policy: str) -> set[tuple[str, str]]:
        del policy
        done: set[tuple[str, str]] = set()
        for e in self.entries():
            ref = e.get("objectRef") or {}
            code = (e.get("responseStatus") or {}).get("code")
            if e.get("verb") == "patch" and ref.get("resource") == "pods" and code == 200:
                done.add((ref.get("namespace", ""), ref.get("name", "")))
        return done


class Operator:
    """``kube-guardrails run`` as a subprocess, with its resource usage."""

    def __init__(self, *, kubeconfig: pathlib.Path, log: pathlib.Path, port: int) -> None:
        self.log_path = log
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        binary = pathlib.Path(sys.executable).parent / "kube-guardrails"
        self.log = log.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                str(binary),
                "run",
                "--log-format=json",
                f"--liveness=http://127.0.0.1:{port}/healthz",
                "--resync-seconds=3600",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.peak_rss_kib = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_rss_kib = max(self.peak_rss_kib, self._status("VmHWM"))

    def _status(self, field: str) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_seconds(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def rss_mib(self) -> float:
        return self._status("VmRSS") / 1024

    def peak_mib(self) -> float:
        self.peak_rss_kib = max(self.peak_rss_kib, self._status("VmHWM"))
        return self.peak_rss_kib / 1024

    def log_event(self, event: str) -> float | None:
        """Seconds after start at which the operator logged ``event`` (None: not yet)."""
        with self.log_path.open() as f:
            for line in f:
                if f'"{event}"' in line:
                    try:
                        ts = json.loads(line).get("timestamp")
                    except ValueError:
                        continue
                    if ts:
                        return _epoch(ts) - self.started_epoch
        return None

    @property
    def started_epoch(self) -> float:
        return time.time() - (time.monotonic() - self.started)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _epoch(ts: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def wait(predicate: Any, *, timeout: float, poll: float = 0.5) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(poll)
    return None


# --------------------------------------------------------------------------- steps


def single_changes(kube: kube_api.Kube, *, samples: int) -> list[float]:
    """Create privileged Pods one at a time; seconds until each carries our annotation."""
    latencies = []
    ns = "bench-0000"
    for i in range(samples):
        name = f"probe-{int(time.time() * 1000) % 10**9}-{i}"
        body = pod(ns, 0)
        body["metadata"]["name"] = name
        body["metadata"]["labels"]["bench-probe"] = name
        started = time.monotonic()
        created = kube.create(kube_api.pods(ns), body)
        deadline = started + 30
        got = None
        for event in kube.watch(
            kube_api.pods(ns),
            resource_version=created["metadata"]["resourceVersion"],
            labels=f"bench-probe={name}",
            timeout_seconds=30,
        ):
            annotations = ((event.get("object") or {}).get("metadata") or {}).get(
                "annotations"
            ) or {}
            if violations.ANNOTATION_VIOLATIONS in annotations:
                got = time.monotonic() - started
                break
            if time.monotonic() > deadline:
                break
        latencies.append(got if got is not None else float("inf"))
        kube.delete(kube_api.pods(ns, name))
        time.sleep(0.5)
    return latencies


def measure(
    kube: kube_api.Kube,
    *,
    size: int,
    kubeconfig: pathlib.Path,
    audit: AuditTail,
    workdir: pathlib.Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    namespaces = size // PODS_PER_NAMESPACE
    clear_policies(kube)
    grown = grow(kube, namespaces=namespaces, workers=args.workers, distinct=args.distinct)
    total_pods = sum(1 for _ in kube.list(kube_api.pods(None), labels=f"{LABEL}=1"))
    # A new policy name every run: every violating Pod needs its annotation and Event.
    policy = f"bench-scale-{size}-{int(time.time()) % 100000}"
    apply_policy(kube, policy)
    expected = violating_in(namespaces)
    time.sleep(2)  # the policy is in etcd; let the API server settle after the burst
    result: dict[str, Any] = {"pods": total_pods, "violating": expected, "create_s": grown}

    # First start: every violating Pod needs its annotation (new policy name) and Event.
    audit.mark()
    op = Operator(kubeconfig=kubeconfig, log=workdir / f"operator-{size}.log", port=args.port)
    try:
        took = wait(
            lambda: op.proc.poll() is not None or len(audit.annotated_pods(policy)) >= expected,
            timeout=args.timeout,
            poll=1.0,
        )
        if op.proc.poll() is not None:
            # It exited (e.g. leader-lost: no renewal within the renew deadline on a
            # starved machine); say so instead of waiting out the timeout.
            result["operator_exit"] = op.proc.returncode
            print(f"{size:,} Pods: the operator exited with {op.proc.returncode}:", flush=True)
            for line in op.log_path.read_text().splitlines():
                if '"level": "error"' in line or '"level": "critical"' in line:
                    print("   ", line[:300], flush=True)
            took = None
        result["annotated_s"] = took
        result["annotated"] = len(audit.annotated_pods(policy))
        wait(lambda: op.log_event("workloads-reviewed") is not None, timeout=60)
        time.sleep(3)
        result["first_writes"] = audit.writes()
        result["peak_rss_mib"] = op.peak_mib()
        result["rss_mib"] = op.rss_mib()
        result["cpu_s"] = op.cpu_seconds()
        result["synced_s"] = op.log_event("workloads-synced")
        result["reviewed_s"] = op.log_event("workloads-reviewed")
    finally:
        op.stop()

    # Restart with nothing to change: 0 writes expected.
    audit.mark()
    op = Operator(
        kubeconfig=kubeconfig, log=workdir / f"operator-{size}-restart.log", port=args.port
    )
    try:
        wait(lambda: op.log_event("workloads-reviewed") is not None, timeout=args.timeout)
        result["restart_synced_s"] = op.log_event("workloads-synced")
        result["restart_reviewed_s"] = op.log_event("workloads-reviewed")
        time.sleep(5)  # late writes would show up here
        result["restart_writes"] = audit.writes()
        result["restart_peak_rss_mib"] = op.peak_mib()
        result["restart_cpu_s"] = op.cpu_seconds()
        if size in args.latency_at:
            result["single_change_s"] = single_changes(kube, samples=args.samples)
    finally:
        op.stop()
    return result


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def report(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"machine: {machine()}")
    print("(2 cores shared with other work: figures are noisy; rerun to compare)")
    print()
    print(
        "| Pods | violating | all annotated after start | synced / reviewed | peak RSS | CPU | "
        "restart writes | restart synced / reviewed | single change |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        single = r.get("single_change_s")
        single_text = (
            f"median {statistics.median(single):.2f} s, max {max(single):.2f} s" if single else "-"
        )
        print(
            f"| {r['pods']:,} | {r['violating']:,} | {fmt(r.get('annotated_s'), ' s')} "
            f"({r.get('annotated')}) | {fmt(r.get('synced_s'), ' s')} / "
            f"{fmt(r.get('reviewed_s'), ' s')} "
            f"| {fmt(r.get('peak_rss_mib'), ' MiB', 0)} | {fmt(r.get('cpu_s'), ' s')} "
            f"| {sum(r.get('restart_writes', {}).values())} {r.get('restart_writes') or ''} "
            f"| {fmt(r.get('restart_synced_s'), ' s')} / {fmt(r.get('restart_reviewed_s'), ' s')} "
            f"| {single_text} |"
        )
    print()
    for r in rows:
        print(f"{r['pods']:,} Pods: first-start writes by the operator: {r.get('first_writes')}")
    print(f"targets: {TARGETS}")


def set_up(
    name: str,
) -> tuple[kube_api.Kube, pathlib.Path, AuditTail, pathlib.Path] | None:
    """The cluster, the operator's kubeconfig, the audit log and a work directory; None
    (after saying why) without a shared test control plane."""
    try:
        context = kube_api.context_name(None)
    except Exception as e:  # no kube config at all (kubernetes' ConfigException)
        print(f"{name}: skipped: no Kubernetes cluster configured ({e})")
        return None
    refusal = harness.context_refusal(context, os.environ)
    if refusal:
        print(f"{name}: skipped: {refusal}")
        return None
    kube, reason = kube_api.probe_cluster(context)
    if kube is None:
        print(f"{name}: skipped: {reason}")
        return None
    test_dir = os.environ.get("KUBE_TEST_DIR")
    audit_log = pathlib.Path(test_dir or "/nonexistent") / "audit.log"
    if not audit_log.exists():
        print(f"{name}: skipped: needs the shared control plane's audit log ($KUBE_TEST_DIR)")
        return None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"{name.replace('_', '-')}-"))
    kubeconfig = install(workdir)
    print(f"{name}: {machine()}; operator logs in {workdir}", flush=True)
    return kube, kubeconfig, AuditTail(audit_log), workdir


def main(argv: list[str] | None = None) -> int:
    global PODS_PER_NAMESPACE  # the population's shape, read by grow() and measure()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", default="1000,5000,10000,20000", help="sizes, ascending")
    parser.add_argument("--workers", type=int, default=24, help="concurrent creates")
    parser.add_argument("--port", type=int, default=18931, help="operator liveness port")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--samples", type=int, default=5, help="single-change samples")
    parser.add_argument("--latency-at", default="10000", help="sizes at which to measure it")
    parser.add_argument("--keep", action="store_true", help="keep the Pods (reuse next run)")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="every Pod its own image (nothing shared in the cache: memory's worst case); "
        "on a cluster without kept bench Pods",
    )
    parser.add_argument(
        "--per-namespace",
        type=int,
        default=PODS_PER_NAMESPACE,
        help="Pods per namespace (10: ten times the namespaces to harden); on a cluster "
        "without kept bench Pods",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    PODS_PER_NAMESPACE = args.per_namespace
    args.latency_at = {int(x) for x in args.latency_at.split(",") if x}
    sizes = [int(x) for x in args.pods.split(",")]

    ready = set_up("bench_scale")
    if ready is None:
        return 0
    kube, kubeconfig, audit, workdir = ready
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            row = measure(
                kube, size=size, kubeconfig=kubeconfig, audit=audit, workdir=workdir, args=args
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        report(rows)
        if args.json:
            print(json.dumps(rows, indent=2))
        if not args.keep:
            for old in kube.list(kube_api.policies(), labels=f"{LABEL}=1"):
                kube.delete(kube_api.policies(old["metadata"]["name"]))
            for n in kube.list(kube_api.namespaces(), labels=f"{LABEL}=1"):
                kube.delete(kube_api.namespaces(n["metadata"]["name"]))
        # The operator logs stay for a look at what took long; the token goes.
        (workdir / "operator.kubeconfig").unlink(missing_ok=True)
        print(f"operator logs kept in {workdir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
