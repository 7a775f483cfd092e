"""Pure helpers of the end-to-end harness: no cluster, no kubernetes client.

They live apart from the cluster code so that the rules that protect a real cluster
(which kube contexts the suite agrees to touch) and the numbers the benchmark prints
(percentiles) are unit-tested on a machine without a cluster
(``tests/unit/test_e2e_harness.py``). Time is injected (``clock=``, ``sleep=``) so the
polling helper is tested without waiting.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Why every e2e test skips when there is no cluster; also printed by the benchmark.
NO_CLUSTER_REASON = (
    "no Kubernetes cluster configured: set KUBECONFIG or run hack/e2e.sh against kind/k3d"
)
ALLOW_ANY_CONTEXT_ENV = "KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT"

# Context names that kind, k3d, minikube and Docker Desktop give their clusters, and
# the words people put in the names of throw-away clusters. Anything else could be a
# shared or production cluster, which the suite would fill with namespaces, privileged
# pods and evictions.
TEST_CONTEXT_PREFIXES = ("kind-", "k3d-", "minikube", "docker-desktop")
TEST_CONTEXT_WORDS = ("test", "e2e")

#: Labels the suite puts on everything it creates, so leftovers can be found and deleted.
LABEL_RUN = "e2e.kube-guardrails.io/run"
LABEL_CASE = "e2e.kube-guardrails.io/case"
NAME_PREFIX = "e2e-gr-"
KOPF_PREFIX = "kopf.zalando.org"

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def looks_like_test_context(name: str) -> bool:
    """True for context names of local or throw-away clusters (kind-, k3d-, ...)."""
    lowered = name.lower()
    return lowered.startswith(TEST_CONTEXT_PREFIXES) or any(
        word in lowered for word in TEST_CONTEXT_WORDS
    )


def context_refusal(name: str | None, env: Mapping[str, str]) -> str | None:
    """Why the suite must not run against this context, or None when it may.

    ``KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1`` is the explicit, per-run opt-in for a
    cluster whose context name does not say it is disposable.
    """
    if env.get(ALLOW_ANY_CONTEXT_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    if not name:
        return (
            "the kube config has no current context: select a test cluster "
            "(kubectl config use-context kind-...) or run hack/e2e.sh"
        )
    if looks_like_test_context(name):
        return None
    return (
        f"kube context {name!r} does not look like a test cluster (expected a name starting "
        f"with {', '.join(TEST_CONTEXT_PREFIXES)} or containing {' or '.join(TEST_CONTEXT_WORDS)}"
        f"); the e2e suite creates namespaces, privileged pods and evictions, so it refuses "
        f"to run there unless {ALLOW_ANY_CONTEXT_ENV}=1"
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the smallest value with at least pct% at or below it).

    Nearest-rank never interpolates, so a p99 is always a latency that was actually
    observed; that is what a reader of "p99 = 180 ms" expects.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    ordered = sorted(values)
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclasses.dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=max(values),
        )

    def line(self, unit: float = 1000.0, suffix: str = "ms") -> str:
        return (
            f"n={self.count} p50={self.p50 * unit:.1f}{suffix} p90={self.p90 * unit:.1f}{suffix} "
            f"p99={self.p99 * unit:.1f}{suffix} max={self.max * unit:.1f}{suffix}"
        )


def new_run_id() -> str:
    """Six lowercase characters: short enough for names, unique enough per cluster."""
    return secrets.token_hex(3)


def dns_label(text: str, *, limit: int) -> str:
    """``text`` as a DNS-1123 label fragment of at most ``limit`` characters.

    A truncated fragment gets a short hash suffix so that two long test ids that share a
    prefix (parametrized cases) still give different names.
    """
    cleaned = _DNS_LABEL.sub("-", text.lower()).strip("-") or "x"
    if len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha1(text.encode()).hexdigest()[:4]
    return cleaned[: limit - 5].rstrip("-") + "-" + digest


def object_name(run: str, case: str, suffix: str) -> str:
    """``e2e-gr-<run>-<case>-<suffix>``, at most 63 characters (usable as a label value)."""
    name = f"{NAME_PREFIX}{run}-{dns_label(case, limit=24)}-{dns_label(suffix, limit=12)}"
    return name[:63].rstrip("-")


class WaitTimeout(AssertionError):
    """A condition did not hold in time; the message says what and the last value seen."""


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Polling (not a watch) keeps the tests independent of how the operator writes; the
    interval is short so the time a test waits is close to the operator's latency.
    """
    deadline = clock() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if clock() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for {what}; last seen: {last!r}"
            )
        sleep(interval)


def hold_for(
    predicate: Callable[[], bool],
    *,
    duration: float,
    what: str,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Assert that ``predicate`` stays true for ``duration`` seconds (checked by polling).

    Used for "never": the pod is not evicted before its grace period, nothing is
    written on a resync. Absence can only be observed over a window of time.
    """
    deadline = clock() + duration
    while True:
        if not predicate():
            raise AssertionError(f"expected {what} to hold for {duration:g}s, but it stopped")
        if clock() >= deadline:
            return
        sleep(interval)


def list_items(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of a list response, each with its ``kind`` and ``apiVersion``.

    A real API server leaves both out of list items (they are implied by the list's own
    ``kind``, e.g. ``PodList``); ``kubectl get -o json`` puts them back, and so does this,
    so an item read from a list can be addressed like one read by name.
    """
    list_kind = str(response.get("kind") or "")
    kind = list_kind.removesuffix("List") if list_kind.endswith("List") else None
    api_version = response.get("apiVersion")
    items: list[dict[str, Any]] = []
    for item in response.get("items") or []:
        filled = dict(item)
        if kind and not filled.get("kind"):
            filled["kind"] = kind
        if api_version and not filled.get("apiVersion"):
            filled["apiVersion"] = api_version
        items.append(filled)
    return items


def kopf_state(metadata: Mapping[str, Any]) -> list[str]:
    """kopf bookkeeping found on an object: annotation keys and finalizers under kopf's prefix."""
    found = [k for k in (metadata.get("annotations") or {}) if KOPF_PREFIX in k]
    found += [f for f in (metadata.get("finalizers") or []) if KOPF_PREFIX in f]
    return sorted(found)


def event_total(events: Iterable[Mapping[str, Any]]) -> int:
    """How many times events were emitted, counting aggregated repeats.

    core/v1 aggregates repeats in ``count``; events.k8s.io/v1 in ``series.count`` (shown
    by core/v1 as ``count`` as well). An event without either was emitted once.
    """
    total = 0
    for event in events:
        series = event.get("series") or {}
        total += max(int(event.get("count") or 0), int(series.get("count") or 0), 1)
    return total


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``; maps merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def iso_utc(epoch_seconds: float) -> str:
    """RFC 3339 in UTC with a ``Z``, as the CRD's date-time fields expect."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


MODES = ("local", "in-cluster")
ENV_PREFIX = "KUBE_GUARDRAILS_E2E_"


@dataclasses.dataclass(frozen=True)
class E2ESettings:
    """How the suite finds the cluster and the operator; from ``KUBE_GUARDRAILS_E2E_*``.

    ``hack/e2e.sh`` sets all of them to match the operator it starts, so a test that
    waits "longer than a resync" knows how long a resync is.
    """

    #: ``local``: the operator runs on this machine (``kube-guardrails run``) and answers on
    #: ``liveness_url``; ``in-cluster``: it runs as the Deployment from ``manifests/``.
    mode: str = "local"
    liveness_url: str = "http://127.0.0.1:8080/healthz"
    #: The operator's ``--resync-seconds``; None when unknown (resync tests then skip).
    resync_seconds: float | None = None
    #: The operator's ``--status-interval-seconds`` (policy status batching).
    status_interval_seconds: float = 5.0
    #: Shell command that restarts the operator and returns once it is live again.
    restart_command: str | None = None
    #: Default time allowed for the operator to react (generous: CI clusters are slow).
    timeout: float = 60.0
    #: A small image that runs as non-root and needs no shell.
    image: str = "registry.k8s.io/pause:3.10"
    #: kube config context (default: the current one).
    context: str | None = None
    #: The user the operator acts as (``system:serviceaccount:NS:NAME``) when it runs with
    #: its own ServiceAccount; None when it runs with your credentials (RBAC untested).
    operator_account: str | None = None
    #: Local mode with a ServiceAccount: the operator's own kube config (a token), so a
    #: test can ask the API server who the operator really is.
    operator_kubeconfig: str | None = None
    #: Local mode: the pid file of the operator hack/e2e.sh started (the HA tests kill it).
    operator_pidfile: str | None = None
    #: The API server's audit log (JSON lines), when the suite can read it (the shared
    #: control plane writes one): the HA tests count writes per replica in it.
    audit_log: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> E2ESettings:
        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        def number(name: str, default: float | None) -> float | None:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None
            if value <= 0:
                raise ValueError(f"{ENV_PREFIX}{name} must be positive, not {raw}")
            return value

        defaults = cls()
        mode = get("OPERATOR") or defaults.mode
        if mode not in MODES:
            raise ValueError(f"{ENV_PREFIX}OPERATOR must be local or in-cluster, not {mode!r}")
        return cls(
            mode=mode,
            liveness_url=get("LIVENESS_URL") or defaults.liveness_url,
            resync_seconds=number("RESYNC_SECONDS", None),
            status_interval_seconds=number(
                "STATUS_INTERVAL_SECONDS", defaults.status_interval_seconds
            )
            or defaults.status_interval_seconds,
            restart_command=get("RESTART_COMMAND"),
            timeout=number("TIMEOUT", defaults.timeout) or defaults.timeout,
            image=get("IMAGE") or defaults.image,
            context=get("CONTEXT"),
            operator_account=get("OPERATOR_ACCOUNT"),
            operator_kubeconfig=get("OPERATOR_KUBECONFIG"),
            operator_pidfile=get("OPERATOR_PIDFILE"),
            audit_log=get("AUDIT_LOG"),
        )
