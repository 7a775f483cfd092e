#!/usr/bin/env python3
"""``kube-guardrails plan`` on a large cluster: wall time, peak memory, requests.

Creates N namespaces with P Pods each (and one Deployment per namespace) in the cluster
of the current kube context, half of the Pods privileged, then runs the real command
(``python -m kube_guardrails plan --format json``) for an Enforce policy selecting
them, twice, and prints the wall time, the peak RSS of the command's process and what
the plan found. Pods need no kubelet (they stay Pending). Everything created carries a
run label and is deleted at the end (``--keep`` to leave it).

Refuses contexts that do not look like a test cluster (as the e2e suite does) unless
``KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1``; without a cluster it prints why and exits 0.

    hack/bench/bench_plan.py --namespaces 100 --pods 100     # 10,000 Pods
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

from kube_guardrails import API_GROUP, API_VERSION
from kube_guardrails.k8s import client, reader

LABEL = "bench.kube-guardrails.io/plan"
# The command, run in-process in a fresh interpreter that reports its own peak RSS
# (VmHWM belongs to the process image, so the benchmark's own memory, which a forked
# child's ru_maxrss would include, does not count).
MEASURED = (
    "import sys\n"
    "from kube_guardrails import cli\n"
    "code = cli.main(sys.argv[1:])\n"
    "sys.stdout.flush()\n"
    "status = open('/proc/self/status').read().splitlines()\n"
    "sys.stderr.write('\\n'.join(s for s in status if s.startswith('VmHWM')) + '\\n')\n"
    "sys.exit(code)\n"
)


def pod(name: str, *, privileged: bool) -> dict[str, Any]:
    security: dict[str, Any] = (
        {"privileged": True} if privileged else {"allowPrivilegeEscalation": False}
    )
    return {
        "metadata": {"name": name, "labels": {"app": name.rsplit("-", 1)[0]}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/app:1.0",
                    "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(10)],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "securityContext": security,
                }
            ]
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--pods", type=int, default=100, help="Pods per namespace")
    parser.add_argument("--workers", type=int, default=8, help="parallel create requests")
    parser.add_argument("--keep", action="store_true", help="leave the objects in place")
    parser.add_argument(
        "--reuse", metavar="RUN", help="plan over the objects a --keep run RUN left (no creates)"
    )
    args = parser.parse_args()
    try:
        context = reader.context_name(None)
        api = client.make_api_client(context=None)
        client.request(api, "GET", "/version", timeout=(3.0, 5.0))
    except client.ApiError as e:
        print(f"no cluster: {e}; nothing measured")
        return 0
    looks_like_test = context.startswith(("kind-", "k3d-", "minikube", "docker-desktop")) or any(
        w in context for w in ("test", "e2e")
    )
    if not looks_like_test and os.environ.get("KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT") != "1":
        print(f"context {context!r} does not look like a test cluster; nothing measured")
        return 0
    run = args.reuse or secrets.token_hex(3)
    names = [f"bench-plan-{run}-{i:04d}" for i in range(args.namespaces)]
    if args.reuse:
        pods = sum(1 for _ in reader.list_pages(api, "/api/v1/pods"))
        print(f"reusing run {run}: {pods} Pods in the cluster")
    else:
        create(api, run, names, pods=args.pods, workers=args.workers)
    print(f"run id {run}")
    _plan(api, run, names, context=context, keep=args.keep)
    return 0


def create(api: Any, run: str, names: list[str], *, pods: int, workers: int) -> None:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda ns: client.request(
                    api,
                    "POST",
                    "/api/v1/namespaces",
                    body={"metadata": {"name": ns, "labels": {LABEL: run}}},
                ),
                names,
            )
        )
        jobs = [(ns, pod(f"p-{i}", privileged=i % 2 == 0)) for ns in names for i in range(pods)]
        list(
            pool.map(
                lambda job: client.request(
                    api, "POST", f"/api/v1/namespaces/{job[0]}/pods", body=job[1]
                ),
                jobs,
            )
        )
    print(
        f"created {len(names)} namespaces and {len(jobs)} Pods in {time.monotonic() - started:.1f}s"
    )


def _plan(api: Any, run: str, names: list[str], *, context: str, keep: bool) -> None:
    policy = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "GuardrailPolicy",
        "metadata": {"name": f"bench-plan-{run}"},
        "spec": {
            "mode": "Enforce",
            "namespaceSelector": {"matchLabels": {LABEL: run}},
            "workloads": {
                "podSecurity": "baseline",
                "checks": {"privileged": {"action": "Enforce"}},
            },
        },
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "policy.yaml"
            path.write_text(yaml.safe_dump(policy))
            measured = [sys.executable, "-c", MEASURED, "plan"]
            for attempt in (1, 2):
                t0 = time.monotonic()
                result = subprocess.run(
                    [*measured, "--policy", str(path), "--format", "json"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                wall = time.monotonic() - t0
                hwm = [ln for ln in result.stderr.splitlines() if ln.startswith("VmHWM:")]
                rss_mib = int(hwm[-1].split()[1]) / 1024 if hwm else float("nan")
                if result.returncode != 0:
                    raise SystemExit(f"plan failed: {result.stderr}")
                summary = json.loads(result.stdout)["summary"]
                print(
                    f"run {attempt}: plan took {wall:.2f}s, peak RSS {rss_mib:.0f} MiB; "
                    f"namespaces {summary['namespaces']}, workloads {summary['workloads']}, "
                    f"evictions {summary['evictions']}, hardening {summary['hardening']}"
                )
    finally:
        if not keep:
            for ns in names:
                client.delete_ignoring_missing(api, f"/api/v1/namespaces/{ns}")
    version = client.request(api, "GET", "/version").get("gitVersion")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Kubernetes {version}, context {context}"
    )


if __name__ == "__main__":
    sys.exit(main())
