"""Operator replicas on this machine, the leader Lease and the audit log: for the HA tests
(``test_e2e_ha.py``) and the fail-over benchmark (``hack/bench/bench_failover.py``).

``hack/e2e.sh`` starts one operator (its pid file and liveness URL are in the e2e
settings); :func:`start_replica` starts another ``kube-guardrails run`` with the same
kube config (the ServiceAccount's token) on a free liveness port, so the two campaign
for the same Lease exactly as two Pods of the Deployment do. Which replica did a write
is read from the API server's audit log: the operator's client names its leader-election
identity in its User-Agent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import e2e_harness as harness
import e2e_kube as kube_api

from kube_guardrails import OPERATOR_NAMESPACE
from kube_guardrails.k8s import leader

Obj = kube_api.Obj
LEASE_PATH = kube_api.grouped(
    "coordination.k8s.io/v1", OPERATOR_NAMESPACE, "leases", leader.LEASE_NAME
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie whose parent has not reaped it counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@dataclasses.dataclass
class Replica:
    """One operator process: how to reach its health endpoint and how to stop it."""

    name: str
    liveness_url: str
    pidfile: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: pathlib.Path | None = None

    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        if self.pidfile and os.path.exists(self.pidfile):
            text = pathlib.Path(self.pidfile).read_text().strip()
            return int(text) if text else None
        return None

    def report(self) -> dict[str, Any] | None:
        """The health endpoint's body, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                body: dict[str, Any] = json.loads(response.read())
                return body
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def leader_report(self) -> dict[str, Any]:
        report = self.report() or {}
        section: dict[str, Any] = report.get("leader") or {}
        return section

    def role(self) -> str | None:
        return self.leader_report().get("role")

    def identity(self) -> str | None:
        return self.leader_report().get("identity")

    def gone(self) -> bool:
        pid = self.pid
        if pid is None:
            return True
        if self.process is not None:
            return self.process.poll() is not None
        return process_gone(pid)

    def signal(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is not None and not self.gone():
            os.kill(pid, sig)

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM (graceful: the leader releases the Lease), SIGKILL if it hangs."""
        self.signal(signal.SIGTERM)
        try:
            harness.wait_for(self.gone, timeout=timeout, what=f"{self.name} to exit")
        except harness.WaitTimeout:
            self.signal(signal.SIGKILL)
            harness.wait_for(self.gone, timeout=10, what=f"{self.name} to die")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_replica(settings: harness.E2ESettings, *, name: str, workdir: pathlib.Path) -> Replica:
    """Another ``kube-guardrails run``, as the same identity as hack/e2e.sh's operator."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_GUARDRAILS_")}
    if settings.operator_kubeconfig:
        env["KUBECONFIG"] = settings.operator_kubeconfig  # its current context is the SA's
    elif settings.context:
        env["KUBE_GUARDRAILS_CONTEXT"] = settings.context
    env["POD_NAME"] = name
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    args = [
        sys.executable,
        "-m",
        "kube_guardrails",
        "run",
        "--liveness",
        url,
        # Its own free port: the default (9095) may be taken by another operator on the
        # machine, and a replica that cannot serve its metrics does not start.
        "--metrics-address",
        f"127.0.0.1:{free_port()}",
        "--status-interval-seconds",
        f"{settings.status_interval_seconds:g}",
        "--log-format",
        "console",
    ]
    if settings.resync_seconds is not None:
        args += ["--resync-seconds", f"{settings.resync_seconds:g}"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    replica = Replica(name=name, liveness_url=url, process=process, log_path=log_path)
    harness.wait_for(
        lambda: replica.report() is not None or replica.gone(),
        timeout=120,
        what=f"replica {name} to answer on {url}",
    )
    if replica.gone():
        raise AssertionError(f"replica {name} exited during start-up:\n{replica.log_tail()}")
    return replica


def lease(kube: kube_api.Kube) -> Obj | None:
    return kube.get_or_none(LEASE_PATH)


def lease_holder(kube: kube_api.Kube) -> str | None:
    """The Lease's holder ("" when released; None when there is no Lease)."""
    obj = lease(kube)
    if obj is None:
        return None
    return str((obj.get("spec") or {}).get("holderIdentity") or "")


class AuditLog:
    """The API server's audit log from the moment this object was made (JSON lines)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path)

    def entries(self) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a line still being written
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield entry

    def writes(self, *, user: str | None = None) -> list[dict[str, Any]]:
        """Completed writes (create, update, patch, delete), by ``user`` if given."""
        out = []
        for entry in self.entries():
            if entry.get("stage") != "ResponseComplete":
                continue
            if entry.get("verb") not in ("create", "update", "patch", "delete"):
                continue
            if user is not None and (entry.get("user") or {}).get("username") != user:
                continue
            out.append(entry)
        return out


def written_by(entry: Mapping[str, Any], identity: str) -> bool:
    """Was this audit entry a request of the replica with this leader-election identity?"""
    return f"({identity})" in str(entry.get("userAgent") or "")


def object_of(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    ref = entry.get("objectRef") or {}
    return (str(ref.get("resource")), str(ref.get("namespace") or ""), str(ref.get("name") or ""))


def wait_warm_standby(standby: Replica, leader: Replica, *, timeout: float) -> None:
    """Until the standby sees the leader hold the Lease and its caches are complete."""

    def warm() -> bool:
        report = standby.report() or {}
        return bool(
            (report.get("leader") or {}).get("holder") == leader.identity()
            and (report.get("hardening") or {}).get("synced")
        )

    harness.wait_for(
        warm,
        timeout=timeout,
        what=f"{standby.name} on standby behind {leader.name}, caches complete",
    )


def wait_role(replica: Replica, role: str, *, timeout: float) -> float:
    """Wait until the replica reports ``role``; returns the seconds it took."""
    start = time.monotonic()
    harness.wait_for(
        lambda: replica.role() == role,
        timeout=timeout,
        what=f"{replica.name} to report role {role} (last: {replica.leader_report()})",
        interval=0.1,
    )
    return time.monotonic() - start
