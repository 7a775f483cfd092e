"""Cost of the observability paths: building Reports and serving /metrics at scale.

Prints figures; asserts nothing (the test suite never times anything).

* Report build: one namespace with N violating Pods (3 failing checks each, one policy),
  ``reports.build_report`` + ``reports.content`` (what the report service does on every
  debounced change), and the serialized size against etcd's 1.5 MiB object limit;
* /metrics: a Metrics registry holding violation series for P policies x C checks x N
  namespaces, rendered as one scrape would (``exposition()``), with its size.

    python hack/bench/bench_observe.py [--pods 1000] [--namespaces 1000] [--checks 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

from kube_guardrails import metrics, planning, reports
from kube_guardrails.checks import engine, registry

SINCE = datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)
CHECKS = ("privileged", "imageTag", "resources", "probes", "readOnlyRootFilesystem", "hostPorts")


def entries(pods: int) -> list[reports.Entry]:
    out = []
    for i in range(pods):
        findings = tuple(
            planning.AttributedFinding(
                policy="baseline",
                action="Enforce" if check == "privileged" else "Audit",
                finding=engine.Finding(
                    check=check,
                    severity=registry.Severity.HIGH,
                    message=f'container "app" fails {check}: a realistic sentence of some length',
                    path=f"spec.containers[0].{check}",
                    container="app",
                    hint="",
                ),
            )
            for check in CHECKS[:3]
        )
        subject = reports.Subject(kind="Pod", name=f"web-7d4b9-{i:05d}", uid=f"uid-{i:08d}")
        out.append(reports.Entry(subject=subject, findings=findings, since=SINCE))
    return out


def best_of(fn: object, rounds: int = 5) -> float:
    assert callable(fn)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--checks", type=int, default=5)
    parser.add_argument("--policies", type=int, default=2)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )

    items = entries(args.pods)
    report = reports.build_report("shop", items)
    assert report is not None
    size = len(json.dumps(report, separators=(",", ":")))
    seconds = best_of(lambda: reports.content(reports.build_report("shop", items)))
    print(
        f"report: {args.pods} violating pods x 3 checks -> {len(report['results'])} results "
        f"(summary counts {sum(report['summary'].values())}), {size / 1024:.0f} KiB JSON, "
        f"build+compare {seconds * 1000:.1f} ms (best of 5)"
    )

    m = metrics.Metrics(process_collectors=False)
    start = time.perf_counter()
    for n in range(args.namespaces):
        m.set_namespace_violations(
            f"team-{n:04d}",
            {
                (f"policy-{p}", CHECKS[c % len(CHECKS)] + str(c)): 3
                for p in range(args.policies)
                for c in range(args.checks)
            },
        )
    fill = time.perf_counter() - start
    series = args.namespaces * args.policies * args.checks
    text = m.exposition()
    seconds = best_of(m.exposition)
    print(
        f"metrics: {series} violation series ({args.namespaces} namespaces x {args.policies} "
        f"policies x {args.checks} checks): set in {fill * 1000:.0f} ms, one scrape "
        f"{seconds * 1000:.0f} ms, {len(text) / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
