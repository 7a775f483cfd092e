#!/usr/bin/env python3
"""Benchmark of ``kube-guardrails audit`` against checkov on the same generated corpus.

What it does, in one run:

1. generates a deterministic corpus of workload manifests (default 10,000 files, one
   workload each, 100 per directory) into ``hack/bench/.corpus/``: Deployments, Pods,
   StatefulSets, DaemonSets, Jobs, CronJobs and ReplicaSets, 1-3 containers, some init
   containers, about 40% compliant with restricted Pod Security and every best practice,
   the rest with one to four typical violations;
2. runs the real CLI as a subprocess (``kube-guardrails audit CORPUS --level restricted
   --format json``: every check we have, the strictest level) and measures wall time and
   peak RSS (``wait4`` rusage of that child alone); then, in-process, splits the time
   into YAML parsing and evaluation (pod evaluations per second on one core);
3. runs checkov (``checkov -d CORPUS --framework kubernetes --quiet -o json``, restricted
   to the CKV_K8S checks that have a counterpart here, so checkov does less work than
   we do) from its own venv (``hack/bench/setup_checkov.sh``), measures it the same way,
   prints the time ratio, and compares the verdicts per workload and check on the
   checks both tools have.

``--checkov-sample N`` runs checkov on the first N files only and extrapolates its time
linearly to the whole corpus; the output says so when it does.

    hack/bench/setup_checkov.sh && .venv/bin/python hack/bench/bench_audit.py
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import pathlib
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / ".corpus"
CHECKOV = HERE / ".venv-checkov" / "bin" / "checkov"
PER_DIR = 100

# Our check id -> checkov's checks for the same thing (from checkov's own check classes,
# checkov/kubernetes/checks/resource/k8s/*.py, version pinned in setup_checkov.sh). Where
# several checkov ids map to one of ours, ours fails if any of them fails.
MAPPING: dict[str, tuple[str, ...]] = {
    "privileged": ("CKV_K8S_16",),
    "hostNamespaces": ("CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19"),
    "allowPrivilegeEscalation": ("CKV_K8S_20",),
    "readOnlyRootFilesystem": ("CKV_K8S_22",),
    "runAsNonRoot": ("CKV_K8S_23",),
    "capabilities": ("CKV_K8S_37",),
    "hostPorts": ("CKV_K8S_26",),
    "seccomp": ("CKV_K8S_31",),
    "imageTag": ("CKV_K8S_14",),
    "probes": ("CKV_K8S_8", "CKV_K8S_9"),
    "resources": ("CKV_K8S_10", "CKV_K8S_12", "CKV_K8S_13"),
}
CHECKOV_IDS = sorted({i for ids in MAPPING.values() for i in ids}, key=lambda s: int(s[8:]))

KINDS = (
    ("Deployment", 40),
    ("Pod", 15),
    ("StatefulSet", 12),
    ("CronJob", 10),
    ("DaemonSet", 8),
    ("Job", 8),
    ("ReplicaSet", 7),
)
VIOLATIONS = (
    "privileged",
    "hostNetwork",
    "hostPID",
    "latestTag",
    "untagged",
    "noProbes",
    "noResources",
    "runAsRoot",
    "addCapability",
    "writableRoot",
    "privilegeEscalation",
    "hostPort",
    "noSeccomp",
)


# --------------------------------------------------------------------------- corpus


def container(rng: random.Random, name: str, *, init: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": f"registry.example.com/team{rng.randint(1, 30)}/{name}:{rng.randint(1, 9)}."
        f"{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        "ports": [{"containerPort": 8080, "name": "http"}],
        "resources": {
            "requests": {"cpu": f"{rng.choice([50, 100, 250])}m", "memory": "128Mi"},
            "limits": {"memory": f"{rng.choice([256, 512])}Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if not init:
        c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}}
        c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    return c


def pod_spec(rng: random.Random, app: str, violations: list[str]) -> dict[str, Any]:
    containers = [container(rng, app)]
    for i in range(rng.choice([0, 0, 0, 1, 1, 2])):
        containers.append(container(rng, f"{app}-sidecar{i}"))
    spec: dict[str, Any] = {
        "serviceAccountName": app,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if rng.random() < 0.3:
        spec["initContainers"] = [container(rng, f"{app}-init", init=True)]
    target = rng.choice(containers)
    sc = target["securityContext"]
    for v in violations:
        if v == "privileged":
            sc["privileged"] = True
        elif v == "hostNetwork":
            spec["hostNetwork"] = True
        elif v == "hostPID":
            spec["hostPID"] = True
        elif v == "latestTag":
            target["image"] = target["image"].rsplit(":", 1)[0] + ":latest"
        elif v == "untagged":
            target["image"] = target["image"].rsplit(":", 1)[0]
        elif v == "noProbes":
            target.pop("livenessProbe", None)
            target.pop("readinessProbe", None)
        elif v == "noResources":
            del target["resources"]
        elif v == "runAsRoot":
            del spec["securityContext"]["runAsNonRoot"]
            spec["securityContext"]["runAsUser"] = 0
        elif v == "addCapability":
            sc["capabilities"] = {"add": ["NET_ADMIN"]}
        elif v == "writableRoot":
            sc["readOnlyRootFilesystem"] = False
        elif v == "privilegeEscalation":
            sc["allowPrivilegeEscalation"] = True
        elif v == "hostPort":
            target["ports"][0]["hostPort"] = 8080
        elif v == "noSeccomp":
            del spec["securityContext"]["seccompProfile"]
    return spec


def workload(rng: random.Random, n: int) -> dict[str, Any]:
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    app = f"app{n:05d}"
    ns = f"team-{n % 37:02d}"
    violations = [] if rng.random() < 0.4 else rng.sample(VIOLATIONS, rng.randint(1, 4))
    spec = pod_spec(rng, app, violations)
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": ns}
    meta = {"name": app, "namespace": ns, "labels": labels}
    template = {"metadata": {"labels": labels}, "spec": spec}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if kind == "CronJob":
        spec["restartPolicy"] = "OnFailure"
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {"schedule": "*/15 * * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    if kind == "Job":
        spec["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {"backoffLimit": 2, "template": template},
        }
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
        "template": template,
    }
    if kind != "DaemonSet":
        body["replicas"] = rng.randint(1, 5)
    if kind == "StatefulSet":
        body["serviceName"] = app
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": body}


def generate(count: int, seed: int, *, size_mb: int = 0) -> None:
    """``count`` manifests, or with ``size_mb`` as many as make that many MiB."""
    marker = CORPUS / ".params"
    params = f"{0 if size_mb else count} {seed} {size_mb}\n"
    if marker.exists() and marker.read_text() == params:
        return
    shutil.rmtree(CORPUS, ignore_errors=True)
    rng = random.Random(seed)
    total, n = 0, 0
    while (total < size_mb * 1024 * 1024) if size_mb else (n < count):
        d = CORPUS / f"d{n // PER_DIR:04d}"
        d.mkdir(parents=True, exist_ok=True)
        obj = workload(rng, n)
        text = yaml.safe_dump(obj, sort_keys=False)
        (d / f"{obj['metadata']['name']}.yaml").write_text(text)
        total += len(text.encode())
        n += 1
    marker.write_text(params)


def corpus_bytes() -> int:
    return sum(p.stat().st_size for p in corpus_files())


def corpus_files() -> list[pathlib.Path]:
    return sorted(CORPUS.glob("d*/*.yaml"))


# --------------------------------------------------------------------------- running


def measure(cmd: list[str], *, stdout: Any, cwd: pathlib.Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB of that child, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def run_ours(out: pathlib.Path, *, jobs: int) -> tuple[float, float]:
    cmd = [
        str(pathlib.Path(sys.executable).with_name("kube-guardrails")),
        "audit",
        str(CORPUS),
        "--level",
        "restricted",
        "--format",
        "json",
        "--fail-on",
        "none",
        "--output",
        str(out),
        "--jobs",
        str(jobs),
    ]
    wall, rss, code = measure(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
    if code != 0:
        raise SystemExit(f"kube-guardrails audit exited {code}")
    return wall, rss


def median_run(out: pathlib.Path, *, jobs: int, repeat: int) -> tuple[float, float]:
    runs = sorted(run_ours(out, jobs=jobs) for _ in range(max(1, repeat)))
    return runs[len(runs) // 2]


def in_process_breakdown() -> dict[str, float]:
    """YAML parsing vs evaluation, in this process, on one core."""
    sys.path.insert(0, str(ROOT / "operator"))
    import datetime

    from kube_guardrails import planning
    from kube_guardrails.audit import core, defaults, loader
    from kube_guardrails.checks import engine

    policy = core.with_level(defaults.policy(), "restricted")
    files = [str(p) for p in corpus_files()]
    t0 = time.perf_counter()
    docs = [d for f in files for d in loader.load(f)]
    t1 = time.perf_counter()
    # As the CLI does (command.run): the parsed corpus is permanent for the collector.
    gc.freeze()
    now = datetime.datetime.now(datetime.UTC)
    t2 = time.perf_counter()
    result = core.audit_documents(docs, policies=[policy], now=now)
    t3 = time.perf_counter()
    evaluations = sum(1 for o in result.objects if o.status is core.Status.CHECKED)
    # The engine alone (what the operator runs per Pod), same pods, same checks.
    pods = [p for p in (engine.pod_input(d.obj) for d in docs) if p is not None]
    selected = [
        engine.Selected(check=a.check, params=a.params, severity=a.severity)
        for a in planning.active_checks(policy)
    ]
    level = planning.level_of(policy)
    t4 = time.perf_counter()
    for p in pods:
        engine.run(p, selected, level=level)
    t5 = time.perf_counter()
    gc.unfreeze()
    return {
        "parse_s": t1 - t0,
        "eval_s": t3 - t2,
        "evaluations": evaluations,
        "evals_per_s": evaluations / (t3 - t2),
        "engine_per_s": len(pods) / (t5 - t4),
        "checks": len(selected),
    }


def run_checkov(files: list[pathlib.Path], out: pathlib.Path) -> tuple[float, float, int]:
    if not CHECKOV.exists():
        raise SystemExit(f"{CHECKOV} not found: run hack/bench/setup_checkov.sh first")
    target = CORPUS
    tmp = None
    if len(files) < len(corpus_files()):
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="checkov-sample-"))
        for f in files:
            dest = tmp / f.relative_to(CORPUS)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        target = tmp
    # "-d ." from inside the corpus: checkov skips every file whose absolute path has a
    # hidden component (".corpus"), and would silently scan nothing.
    cmd = [
        str(CHECKOV),
        "-d",
        ".",
        "--framework",
        "kubernetes",
        "--quiet",
        "--compact",
        "-o",
        "json",
        "--check",
        ",".join(CHECKOV_IDS),
        "--skip-download",
    ]
    try:
        with open(out, "wb") as f:
            wall, rss, code = measure(cmd, stdout=f, cwd=target)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return wall, rss, code


# --------------------------------------------------------------------------- comparing


def our_verdicts(report: pathlib.Path, names: set[str]) -> dict[tuple[str, str], bool]:
    """(workload name, our check) -> failed, for the mapped checks."""
    doc = json.loads(report.read_text())
    out: dict[tuple[str, str], bool] = {}
    for o in doc["objects"]:
        if o["name"] not in names:
            continue
        failed = {f["check"] for f in o["findings"]}
        for check in MAPPING:
            out[(o["name"], check)] = check in failed
    return out


def checkov_verdicts(report: pathlib.Path, names: set[str]) -> dict[tuple[str, str], bool]:
    text = report.read_text()
    data = json.loads(text) if text.strip() else {}
    runs = data if isinstance(data, list) else [data]
    failed_ids: dict[str, set[str]] = collections.defaultdict(set)
    for run in runs:
        for item in (run.get("results") or {}).get("failed_checks", []):
            name = str(item.get("resource", "")).split(".")[-1]
            failed_ids[name].add(item["check_id"])
    return {
        (name, check): bool(failed_ids[name] & set(ids))
        for name in names
        for check, ids in MAPPING.items()
    }


def checkov_summary(report: pathlib.Path) -> dict[str, Any]:
    text = report.read_text()
    data = json.loads(text) if text.strip() else {}
    runs = data if isinstance(data, list) else [data]
    total: dict[str, Any] = collections.Counter()
    for run in runs:
        for key, value in (run.get("summary") or {}).items():
            if isinstance(value, int):
                total[key] += value
    return dict(total)


def compare(ours: dict[tuple[str, str], bool], theirs: dict[tuple[str, str], bool]) -> None:
    print("\nVerdicts per workload on the checks both tools have (fail = at least one finding)")
    print(f"  {'our check':26} {'checkov':32} {'both':>6} {'ours':>6} {'theirs':>6} {'agree':>7}")
    for check, ids in MAPPING.items():
        keys = [k for k in theirs if k[1] == check and k in ours]
        both = sum(1 for k in keys if ours[k] and theirs[k])
        only_ours = sum(1 for k in keys if ours[k] and not theirs[k])
        only_theirs = sum(1 for k in keys if theirs[k] and not ours[k])
        agree = (len(keys) - only_ours - only_theirs) / max(len(keys), 1)
        print(
            f"  {check:26} {','.join(ids):32} {both:6} {only_ours:6} {only_theirs:6} {agree:7.1%}"
        )
    print("  both = both tools fail it; ours / theirs = only that tool fails it")


# --------------------------------------------------------------------------- main


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (the CLI and its workers)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{entry}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_sampled(out: pathlib.Path, *, jobs: int) -> tuple[float, float, float, float]:
    """(wall s, peak RSS MiB of one process (wait4), peak sum over the group MiB, CPU s).

    CPU seconds (user + system of the CLI and its reaped workers) are reported too: on
    a shared machine the wall time says more about the neighbours than about us.
    """
    import threading

    cmd = [
        str(pathlib.Path(sys.executable).with_name("kube-guardrails")),
        *("audit", str(CORPUS), "--level", "restricted", "--format", "json"),
        *("--fail-on", "none", "--output", str(out), "--jobs", str(jobs)),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _group_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"kube-guardrails audit exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, peak / 1024 / 1024, usage.ru_utime + usage.ru_stime


def memory_mode(files: list[pathlib.Path], *, repeat: int) -> int:
    """Peak memory of the CLI and its workers on the corpus, against the input size."""
    size = corpus_bytes() / 1024 / 1024
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-audit-"))
    report = work / "kube-guardrails.json"
    runs = sorted(run_sampled(report, jobs=2) for _ in range(max(1, repeat)))
    wall, one, group, cpu = runs[len(runs) // 2]
    print(
        f"\nkube-guardrails audit --jobs 2 on {size:.0f} MiB ({len(files)} manifests, "
        f"--level restricted --format json, median of {len(runs)}): {wall:.1f}s, "
        f"{len(files) / wall:,.0f} manifests/s; {cpu:.1f} CPU s, "
        f"{len(files) / cpu:,.0f} manifests per CPU second "
        f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n"
        f"  peak RSS: {one:.0f} MiB for the largest process ({one / size:.1f}x the input), "
        f"{group:.0f} MiB for the CLI and its workers together ({group / size:.1f}x); "
        f"report {report.stat().st_size / 1024 / 1024:.0f} MiB"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


def iter_machine() -> Iterator[str]:
    yield f"{platform.platform()}, Python {platform.python_version()}"
    yield f"{os.cpu_count()} CPUs: {platform.processor() or platform.machine()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="manifests in the corpus")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument(
        "--checkov-sample",
        type=int,
        default=0,
        metavar="N",
        help="run checkov on the first N files only and extrapolate (0: the whole corpus)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (median shown)")
    parser.add_argument("--skip-checkov", action="store_true")
    parser.add_argument(
        "--corpus-mb",
        type=int,
        default=0,
        metavar="MB",
        help="memory mode: a corpus of this many MiB (instead of --count), audited with "
        "--jobs 2; prints peak RSS against the input size and manifests/s (no checkov)",
    )
    args = parser.parse_args()

    print("machine:", "; ".join(iter_machine()))
    t = time.perf_counter()
    generate(args.count, args.seed, size_mb=args.corpus_mb)
    files = corpus_files()
    print(f"corpus: {len(files)} manifests in {CORPUS} ({time.perf_counter() - t:.1f}s to prepare)")
    if args.corpus_mb:
        return memory_mode(files, repeat=args.repeat)

    # Reports go outside the corpus (checkov would scan them) and outside the repo.
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-audit-"))
    ours_report = work / "kube-guardrails.json"
    # Median of --repeat runs: the machine may be shared, one run can be unlucky.
    wall1, rss1 = median_run(ours_report, jobs=1, repeat=args.repeat)
    print(
        f"\nkube-guardrails audit --jobs 1 (CLI subprocess, one core, --level restricted, all "
        f"checks, median of {args.repeat}): {wall1:.2f}s, {len(files) / wall1:,.0f} "
        f"manifests/s, peak RSS {rss1:.0f} MiB"
    )
    wall, rss = median_run(ours_report, jobs=0, repeat=args.repeat)
    print(
        f"kube-guardrails audit (default: one worker per CPU): {wall:.2f}s, "
        f"{len(files) / wall:,.0f} manifests/s, peak RSS {rss:.0f} MiB (main process)"
    )
    b = in_process_breakdown()
    print(
        f"  in-process split: YAML parsing {b['parse_s']:.2f}s, evaluation {b['eval_s']:.2f}s "
        f"({b['evaluations']:.0f} workloads, {b['evals_per_s']:,.0f}/s on one core)"
    )
    print(
        f"  check engine alone (engine.run, {b['checks']:.0f} checks at restricted): "
        f"{b['engine_per_s']:,.0f} pod evaluations/s on one core (target: 10,000)"
    )
    if args.skip_checkov:
        return 0

    sample = files[: args.checkov_sample] if args.checkov_sample else files
    checkov_report = work / "checkov.json"
    c_wall, c_rss, code = run_checkov(sample, checkov_report)
    version = subprocess.run(
        [str(CHECKOV), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    label = ""
    c_full = c_wall
    if len(sample) < len(files):
        c_full = c_wall * len(files) / len(sample)
        label = (
            f" [EXTRAPOLATED from {len(sample)} files: {c_wall:.1f}s measured, "
            f"x{len(files) / len(sample):.1f}]"
        )
    print(
        f"\ncheckov {version} (-d, --framework kubernetes, {len(CHECKOV_IDS)} mapped checks, "
        f"exit {code}): {c_full:.1f}s for {len(files)} manifests, "
        f"{len(files) / c_full:,.0f} manifests/s, peak RSS {c_rss:.0f} MiB{label}"
    )
    print(
        f"\nspeed-up: kube-guardrails is {c_full / wall:.1f}x faster than checkov "
        f"({c_full / wall1:.1f}x on one core; target: 20x)"
    )

    summary = checkov_summary(checkov_report)
    print(f"  checkov summary: {summary}")
    if not summary.get("resource_count"):
        raise SystemExit("checkov scanned no resource: its figures would be meaningless")
    names = {f.stem for f in sample}
    compare(our_verdicts(ours_report, names), checkov_verdicts(checkov_report, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
