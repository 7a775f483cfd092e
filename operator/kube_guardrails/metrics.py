"""Prometheus metrics: every family the operator exports, and the ``/metrics`` server.

Why one object: the families live in a :class:`Metrics` instance with its own
``CollectorRegistry`` instead of prometheus_client's global registry, so the composition
root builds exactly one, hands it to the services that count, and a test gets a fresh,
isolated set of zeros for every operator it starts. Nothing is registered at import
time.

Cardinality is bounded by design: labels carry policy names, check ids, namespace names,
managed kinds, HTTP verbs and status codes, never a Pod or Deployment name. Series that
describe current state (violations, namespaces per policy) are removed when they drop
to zero or their policy goes, so a cluster that churns namespaces does not accumulate
dead series.

This module imports neither kopf nor kubernetes (import-linter holds that): services and
the ``k8s`` layer both count into it, through the methods below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import threading
import wsgiref.simple_server
from collections.abc import Callable, Mapping

import prometheus_client
from prometheus_client import registry as prometheus_registry

from kube_guardrails import __version__

PREFIX = "kube_guardrails_"
DEFAULT_ADDRESS = "0.0.0.0:9095"

# The managed kinds counted by the hardening families (pre-set to 0, so a rate() over them
# exists from the first scrape, before anything was ever created).
HARDENING_KINDS = ("NetworkPolicy", "LimitRange", "ResourceQuota")

# Eviction outcomes (the ``outcome`` label of kube_guardrails_evictions_total).
EVICTED = "evicted"
REFUSED_BY_PDB = "refused_by_pdb"
RATE_LIMITED = "rate_limited"
DRY_RUN = "dry_run"
EVICTION_FAILED = "failed"
EVICTION_OUTCOMES = (EVICTED, REFUSED_BY_PDB, RATE_LIMITED, DRY_RUN, EVICTION_FAILED)

# Report writes (the ``operation`` label of kube_guardrails_report_writes_total).
REPORT_OPERATIONS = ("create", "update", "delete")

# Namespace reconciles take one to three API writes; reviews are mostly pure CPU
# (tens of microseconds) plus, when the violation set changed, one patch and one Event.
RECONCILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REVIEW_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class MetricsError(ValueError):
    """A bad metrics address, or a port that cannot be bound; the message says which."""


class Metrics:
    """The operator's metric families, in a registry of their own."""

    def __init__(
        self,
        *,
        registry: prometheus_registry.CollectorRegistry | None = None,
        version: str = __version__,
        process_collectors: bool = True,
    ) -> None:
        """``process_collectors``: also export ``process_*`` and ``python_*`` (memory, CPU).

        They describe the whole process, so tests that start several operators in one
        process may turn them off; the operator keeps them on.
        """
        self.registry = registry or prometheus_registry.CollectorRegistry(auto_describe=True)
        reg = self.registry
        if process_collectors:
            prometheus_client.ProcessCollector(registry=reg)
            prometheus_client.PlatformCollector(registry=reg)
            prometheus_client.GCCollector(registry=reg)

        self.build_info = prometheus_client.Info(
            PREFIX + "build",
            "The operator's version and Python runtime (always 1).",
            registry=reg,
        )
        self.build_info.info({"version": version, "python_version": platform.python_version()})
        self.leader = prometheus_client.Gauge(
            PREFIX + "leader_status",
            "1 when this replica is the leader and acts on the cluster, else 0 (a single "
            "replica always leads).",
            registry=reg,
        )
        self.leader.set(1)

        self.reconcile_duration = prometheus_client.Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Time to reconcile one namespace's hardening (reads from memory, writes to the API).",
            buckets=RECONCILE_BUCKETS,
            registry=reg,
        )
        self.review_duration = prometheus_client.Histogram(
            PREFIX + "review_duration_seconds",
            "Time to review one workload against its policies, writes included.",
            ["kind"],
            buckets=REVIEW_BUCKETS,
            registry=reg,
        )
        self.namespaces_matched = prometheus_client.Gauge(
            PREFIX + "namespaces_matched",
            "Namespaces a policy selects.",
            ["policy"],
            registry=reg,
        )
        self.namespaces_hardened = prometheus_client.Gauge(
            PREFIX + "namespaces_hardened",
            "Namespaces whose managed objects come from this policy and are all in place.",
            ["policy"],
            registry=reg,
        )
        self.hardening_created = prometheus_client.Counter(
            PREFIX + "hardening_created",
            "Managed objects created because a namespace started to need them (new "
            "namespace, policy change); restores are counted apart.",
            ["kind"],
            registry=reg,
        )
        self.hardening_restored = prometheus_client.Counter(
            PREFIX + "hardening_restored",
            "Drift corrections: a managed object that was deleted or edited by someone "
            "else, put back.",
            ["kind"],
            registry=reg,
        )
        for kind in HARDENING_KINDS:
            self.hardening_created.labels(kind=kind)
            self.hardening_restored.labels(kind=kind)
        self.violations = prometheus_client.Gauge(
            PREFIX + "violations",
            "Workloads (a Pod and its controller counted apart) failing a check of a policy, per "
            "namespace. Only non-zero series are exported.",
            ["policy", "check", "namespace"],
            registry=reg,
        )
        self.evictions = prometheus_client.Counter(
            PREFIX + "evictions",
            "Eviction attempts by outcome: evicted, refused_by_pdb (429 from a "
            "PodDisruptionBudget, retried later), rate_limited (postponed by "
            "maxEvictionsPerMinute), dry_run (would have evicted), failed (other errors).",
            ["policy", "outcome"],
            registry=reg,
        )
        self.queue_depth = prometheus_client.Gauge(
            PREFIX + "queue_depth",
            "Items waiting to be processed, per work queue.",
            ["queue"],
            registry=reg,
        )
        self.api_errors = prometheus_client.Counter(
            PREFIX + "api_errors",
            "Failed requests to the Kubernetes API by verb and HTTP status code (code 0: no "
            "response, e.g. a connection error or timeout).",
            ["verb", "code"],
            registry=reg,
        )
        self.watch_restarts = prometheus_client.Counter(
            PREFIX + "watch_restarts",
            "Watch streams started again, by resource and reason (expired: 410 Gone, a "
            "relist follows; error: the stream failed; closed: the server ended it).",
            ["resource", "reason"],
            registry=reg,
        )
        self.report_writes = prometheus_client.Counter(
            PREFIX + "report_writes",
            "OpenReports Report writes by operation (create, update, delete).",
            ["operation"],
            registry=reg,
        )
        for operation in REPORT_OPERATIONS:
            self.report_writes.labels(operation=operation)
        self.reports_enabled = prometheus_client.Gauge(
            PREFIX + "reports_enabled",
            "1 when the OpenReports Report CRD (openreports.io/v1alpha1) is served and "
            "reports are written, else 0.",
            registry=reg,
        )

        self._lock = threading.Lock()
        self._violation_series: dict[str, set[tuple[str, str]]] = {}
        self._policies: set[str] = set()

    # ------------------------------------------------------------------ state gauges

    def set_policy_namespaces(self, policy: str, *, matched: int, hardened: int) -> None:
        with self._lock:
            self._policies.add(policy)
            self.namespaces_matched.labels(policy=policy).set(matched)
            self.namespaces_hardened.labels(policy=policy).set(hardened)

    def set_namespace_violations(
        self, namespace: str, counts: Mapping[tuple[str, str], int]
    ) -> None:
        """Replace a namespace's violation series: ``{(policy, check): workloads}``.

        Series not in ``counts`` (or zero) are removed, so a fixed namespace leaves no
        zero-valued series behind.
        """
        current = {key: n for key, n in counts.items() if n > 0}
        with self._lock:
            old = self._violation_series.get(namespace, set())
            for policy, check in old - set(current):
                self._remove(self.violations, policy, check, namespace)
            for (policy, check), n in current.items():
                self.violations.labels(policy=policy, check=check, namespace=namespace).set(n)
            if current:
                self._violation_series[namespace] = set(current)
            else:
                self._violation_series.pop(namespace, None)

    def forget_policy(self, policy: str) -> None:
        """A policy was deleted: drop every series that names it."""
        with self._lock:
            if policy in self._policies:
                self._policies.discard(policy)
                self._remove(self.namespaces_matched, policy)
                self._remove(self.namespaces_hardened, policy)
            for namespace, series in list(self._violation_series.items()):
                for key in [k for k in series if k[0] == policy]:
                    self._remove(self.violations, key[0], key[1], namespace)
                    series.discard(key)
                if not series:
                    del self._violation_series[namespace]

    @staticmethod
    def _remove(family: prometheus_client.Gauge, *labels: str) -> None:
        with contextlib.suppress(KeyError):  # never set: nothing to remove
            family.remove(*labels)

    # ------------------------------------------------------------------ events

    def api_error(self, *, verb: str, code: int) -> None:
        """A failed API request. ``verb`` is the HTTP method (lower case) or ``watch``."""
        self.api_errors.labels(verb=verb.lower(), code=str(int(code))).inc()

    def eviction(self, *, policy: str, outcome: str) -> None:
        if outcome not in EVICTION_OUTCOMES:
            raise ValueError(f"unknown eviction outcome {outcome!r}")
        self.evictions.labels(policy=policy, outcome=outcome).inc()

    def track_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Report ``depth()`` as the queue's depth at every scrape (read, not pushed)."""
        self.queue_depth.labels(queue=name).set_function(depth)

    # ------------------------------------------------------------------ output

    def exposition(self) -> bytes:
        """The text a scrape of ``/metrics`` returns (Prometheus text format)."""
        return prometheus_client.generate_latest(self.registry)


# ---------------------------------------------------------------------- HTTP server


@dataclasses.dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address | None:
    """``HOST:PORT`` (``[::]:9095`` for IPv6) -> Address; empty -> None (metrics off).

    Raises MetricsError naming what is wrong, so a typo stops the operator at start-up.
    """
    text = text.strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise MetricsError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9095, [::]:9095)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsError(f"{text!r}: put an IPv6 host in brackets, e.g. [::]:9095")
    if not host:
        raise MetricsError(f"{text!r}: the host is empty")
    try:
        port = int(port_text)
    except ValueError:
        raise MetricsError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise MetricsError(f"{text!r}: port {port} is out of range 0..65535")
    return Address(host=host, port=port)


class Server:
    """The ``/metrics`` endpoint in a daemon thread (prometheus_client's WSGI server)."""

    def __init__(self, metrics: Metrics, address: Address) -> None:
        self._metrics = metrics
        self._address = address
        self._server: wsgiref.simple_server.WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None:
            return self._address.port
        return int(self._server.server_address[1])

    def start(self) -> None:
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                self._address.port, addr=self._address.host, registry=self._metrics.registry
            )
        except OSError as e:
            raise MetricsError(f"cannot serve metrics on {self._address}: {e.strerror or e}") from e

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
