"""A lean list+watch for high-cardinality kinds (Pods, Deployments, ...).

kopf's per-object machinery does not scale to tens of thousands of objects: with an
``@kopf.index`` on Pods every new object wakes every per-object worker already waiting
(quadratic start-up), and every object keeps a worker and its full body. So the kinds
with many objects are watched here instead, the way client-go's reflector does it:

* the initial LIST is paginated (``limit`` / ``continue``), so neither the API server
  nor this process ever holds one huge response;
* every object is reduced to a compact *projection* (:func:`project_pod`,
  :func:`project_template_owner`, :func:`project_cronjob`) the moment it is decoded:
  only the fields the checks, the annotation logic, the owner lookup and the eviction
  exclusions read; never ``managedFields``, never ``status`` beyond the Pod phase,
  never ``last-applied-configuration``;
* the WATCH starts at the list's ``resourceVersion`` with ``allowWatchBookmarks``, so a
  reconnect resumes where it left off; ``410 Gone`` (an expired resourceVersion) means a
  fresh LIST, delivered as a whole so that the consumer can drop what disappeared;
* errors back off exponentially (capped), and an idle stream is closed by the server
  (``timeoutSeconds``) and resumed, so a half-dead connection cannot hang forever.

The blocking kubernetes client runs in one daemon thread per kind (the only threads of
the workload side); everything it sees is handed to the asyncio loop with
``call_soon_threadsafe``, so the consumer (``services.workloads``) is single-threaded.

Every kind is one row in :data:`KINDS` with its projection: Pods, Deployments,
StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs. A Deployment's ReplicaSets
and a CronJob's Jobs are kept as bare references (name, uid, owner), only to find a
Pod's top-level owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kubernetes.client

from kube_guardrails import builders, logs, planning, violations
from kube_guardrails.checks import pss
from kube_guardrails.k8s import client

log = logs.get(__name__)

Body = dict[str, Any]
Projector = Callable[[Mapping[str, Any]], Body]

# Objects per page of the initial LIST: big enough for few round trips, small enough
# that one page (decoded, before projection) stays a few MiB. At 10,000 Pods, 250
# instead of 500 lowers the peak RSS by about 6 MiB (a decoded page is freed to the
# allocator, not to the system) for 20 more round trips of about 50 ms.
PAGE_SIZE = 250
# Ask the server to end each watch after this long; we resume from the last version.
WATCH_TIMEOUT_SECONDS = 300
# Read timeout on the watch socket: a bit longer than the server's own timeout.
WATCH_READ_TIMEOUT = WATCH_TIMEOUT_SECONDS + 30.0
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0

# The only annotations anything reads from a cached object: ours, the kubelet's mirror-Pod
# marker and the legacy AppArmor ones (a check reads them). Every other annotation is
# dropped: the workload owner may write up to 256 KiB of them on every Pod, Deployment...
# (a few thousand such objects, a namespace user's Deployments with zero replicas,
# would otherwise fill the operator's memory limit).
KEPT_ANNOTATIONS = frozenset(
    {violations.ANNOTATION_VIOLATIONS, violations.ANNOTATION_SINCE, violations.MIRROR_ANNOTATION}
)
KEPT_ANNOTATION_PREFIXES = (pss.APPARMOR_ANNOTATION_PREFIX,)
# A kept value is cut to this length: longer than any value the operator writes (so a
# longer one still reads as not ours, and is rewritten) and than any the checks compare
# with (an AppArmor value keeps its verdict).
MAX_KEPT_ANNOTATION = violations.MAX_ANNOTATION + 1


def _annotations(annotations: Any) -> Body | None:
    if not isinstance(annotations, Mapping):
        return None
    kept = {
        k: v[:MAX_KEPT_ANNOTATION] if isinstance(v, str) else v
        for k, v in annotations.items()
        if k in KEPT_ANNOTATIONS or k.startswith(KEPT_ANNOTATION_PREFIXES)
    }
    return kept or None


def _metadata(meta: Mapping[str, Any]) -> Body:
    """The metadata every consumer needs: identity, labels, our annotations, owners."""
    out: Body = {
        "name": meta.get("name"),
        "namespace": _shared(meta.get("namespace")),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    labels = meta.get("labels")
    if labels:
        out["labels"] = _shared(labels)
    annotations = _annotations(meta.get("annotations"))
    if annotations:
        out["annotations"] = annotations
    owners = _owner_references(meta)
    if owners:
        out["ownerReferences"] = owners
    return out


def _owner_references(meta: Mapping[str, Any]) -> list[Body]:
    """Owner references cut to what is read: kind and name (eviction exclusions of
    DaemonSet Pods; the top-level owner of a Pod), uid (is the cached owner the one
    referenced, not a namesake?) and the ``controller`` flag (only the managing
    controller's template decides where a Pod's Event goes). Interned: every Pod of a
    ReplicaSet repeats the same reference.
    """
    out: list[Body] = []
    for o in meta.get("ownerReferences") or ():
        if not isinstance(o, Mapping):
            continue
        ref: Body = {
            "apiVersion": o.get("apiVersion"),
            "kind": o.get("kind"),
            "name": o.get("name"),
            "uid": o.get("uid"),
        }
        if o.get("controller") is True:
            ref["controller"] = True
        out.append(_shared(ref))
    return out


# Pod spec and container fields no check reads: scheduling, DNS, service links, the
# defaults the API server fills in (tolerations, termination messages), the process
# (command, args, env) and mounts. Dropped by a deny-list rather than kept by an
# allow-list: a field a future check reads is kept until someone decides otherwise, and
# tests/unit/test_projection.py runs every check fixture on full and projected objects.
DROPPED_SPEC_FIELDS = frozenset(
    {
        "affinity",
        "automountServiceAccountToken",
        "dnsConfig",
        "dnsPolicy",
        "enableServiceLinks",
        "hostAliases",
        "hostname",
        "imagePullSecrets",
        "nodeName",
        "nodeSelector",
        "preemptionPolicy",
        "priority",
        "priorityClassName",
        "readinessGates",
        "resourceClaims",
        "schedulerName",
        "schedulingGates",
        "serviceAccount",
        "serviceAccountName",
        "setHostnameAsFQDN",
        "subdomain",
        "terminationGracePeriodSeconds",
        "tolerations",
        "topologySpreadConstraints",
    }
)
DROPPED_CONTAINER_FIELDS = frozenset(
    {
        "args",
        "command",
        "env",
        "envFrom",
        "imagePullPolicy",
        "resizePolicy",
        "stdin",
        "stdinOnce",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "tty",
        "volumeDevices",
        "volumeMounts",
        "workingDir",
    }
)
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
PROBES = frozenset({"livenessProbe", "readinessProbe", "startupProbe"})
# Probe timings: the checks ask whether a probe exists and where it points, not how often.
DROPPED_PROBE_FIELDS = frozenset(
    {
        "failureThreshold",
        "initialDelaySeconds",
        "periodSeconds",
        "successThreshold",
        "terminationGracePeriodSeconds",
        "timeoutSeconds",
    }
)
# Volume sources whose content no check reads (only which source a volume uses).
_KEPT_VOLUME_CONTENT = frozenset({"hostPath"})


def _volume(vol: Any) -> Any:
    if not isinstance(vol, Mapping):
        return vol
    return {
        k: v if k == "name" or k in _KEPT_VOLUME_CONTENT or v is None else {}
        for k, v in vol.items()
    }


def _shared(value: Any) -> Any:
    """The same value with its short strings interned, recursively.

    JSON decoding makes a new string for every value; across thousands of Pods of the
    same Deployments the images, names, label values and resource quantities repeat,
    and one shared copy of each is what makes the cache about linear with a small
    constant.
    """
    if type(value) is str:
        return sys.intern(value) if len(value) <= 128 else value
    if type(value) is dict:
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if type(value) is list:
        return [_shared(v) for v in value]
    return value


# Identical sub-structures shared across objects (hash-consing): the containers of the
# Pods of one Deployment are equal field by field, and so are most Pods' security
# contexts, volumes of one kind and statuses. One copy of each, looked up by its
# canonical JSON (the full text, not a hash: two different containers must never be
# mistaken for each other). The cached objects are never modified in place (a change
# arrives as a new projected object), which is what makes sharing safe. Bounded: when
# full the table is emptied; objects already sharing keep their copy, only the sharing
# of later ones starts over.
SHARED_MAX = 4096
_shared_values: dict[str, Any] = {}


def _one_copy(value: Any) -> Any:
    """The shared copy of a JSON value equal to ``value`` (``value`` itself if first)."""
    try:
        key = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):  # not JSON (never from the API server): keep it
        return value
    hit = _shared_values.get(key)
    if hit is not None:
        return hit
    if len(_shared_values) >= SHARED_MAX:
        _shared_values.clear()
    _shared_values[key] = value
    return value


def _container(c: Any) -> Any:
    if not isinstance(c, Mapping):
        return c
    out: Body = {}
    for k, v in c.items():
        if k in DROPPED_CONTAINER_FIELDS:
            continue
        if k in PROBES and isinstance(v, Mapping):
            v = {pk: pv for pk, pv in v.items() if pk not in DROPPED_PROBE_FIELDS}
        # resources, probes, securityContext, ports: equal across many containers that
        # differ in their image or name, so shared one by one too
        out[sys.intern(k)] = _one_copy(_shared(v)) if isinstance(v, (dict, list)) else _shared(v)
    return out


def project_pod_spec(spec: Mapping[str, Any]) -> Body:
    """A pod spec reduced to what the checks read (about a fifth of its memory)."""
    out: Body = {}
    for key, value in spec.items():
        if key in DROPPED_SPEC_FIELDS:
            continue
        if key in CONTAINER_LISTS and isinstance(value, list):
            value = [_one_copy(_container(c)) for c in value]
        elif key == "volumes" and isinstance(value, list):
            value = [_one_copy(_shared(_volume(v))) for v in value]
        elif isinstance(value, (dict, list)):
            value = _one_copy(_shared(value))
        else:
            value = _shared(value)
        out[sys.intern(key)] = value
    return out


def project_pod(obj: Mapping[str, Any]) -> Body:
    """A Pod as the checks see it: metadata, the compacted spec, only the phase of status."""
    out: Body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(obj.get("metadata") or {}),
        "spec": project_pod_spec(obj.get("spec") or {}),
    }
    phase = (obj.get("status") or {}).get("phase")
    if phase:
        out["status"] = _one_copy({"phase": _shared(phase)})
    return out


def _template(template: Mapping[str, Any]) -> Body:
    tmeta = template.get("metadata") or {}
    # labels select exemptions; annotations carry AppArmor (legacy)
    meta: Body = {"labels": tmeta["labels"]} if "labels" in tmeta else {}
    annotations = _annotations(tmeta.get("annotations"))
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": project_pod_spec(template.get("spec") or {})}


def _reference_only(obj: Mapping[str, Any], *, kind: str, api_version: str) -> Body:
    """A controller reviewed through its owner (a Deployment's ReplicaSet, a CronJob's
    Job): kept only to find a Pod's top-level owner, so no template, labels or
    annotations; it is never reviewed or written.
    """
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": meta.get("name"),
            "namespace": _shared(meta.get("namespace")),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "ownerReferences": _owner_references(meta),
        },
    }


def project_template_owner(kind: str, api_version: str) -> Projector:
    """A controller with ``spec.template`` (Deployment, StatefulSet, DaemonSet,
    ReplicaSet, Job): its pod template; no template when it is reviewed through its
    owner (``planning.reviewed_through_owner``).
    """

    def project(obj: Mapping[str, Any]) -> Body:
        if planning.reviewed_through_owner({"kind": kind, "metadata": obj.get("metadata")}):
            return _reference_only(obj, kind=kind, api_version=api_version)
        template = (obj.get("spec") or {}).get("template") or {}
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": _metadata(obj.get("metadata") or {}),
            "spec": {"template": _template(template)},
        }

    return project


def project_cronjob(obj: Mapping[str, Any]) -> Body:
    """A CronJob: its pod template, at ``spec.jobTemplate.spec.template``."""
    job_spec = ((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(obj.get("metadata") or {}),
        "spec": {"jobTemplate": {"spec": {"template": _template(job_spec.get("template") or {})}}},
    }


def project_namespace(obj: Mapping[str, Any]) -> Body:
    """A Namespace as hardening and the workload side read it: name, uid, version,
    labels (selectors), and whether it is terminating."""
    meta = obj.get("metadata") or {}
    out_meta: Body = {
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if meta.get("labels"):
        out_meta["labels"] = _shared(meta["labels"])
    if meta.get("deletionTimestamp"):
        out_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    out: Body = {"apiVersion": "v1", "kind": "Namespace", "metadata": out_meta}
    phase = (obj.get("status") or {}).get("phase")
    if phase:
        out["status"] = _one_copy({"phase": _shared(phase)})
    return out


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def project_managed(kind: str, api_version: str) -> Projector:
    """An object with one of our fixed names (NetworkPolicy, LimitRange, ResourceQuota):
    small, and compared field by field with what we want, so kept whole but for
    ``managedFields`` and kubectl's last-applied copy."""

    def project(obj: Mapping[str, Any]) -> Body:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
        annotations = meta.get("annotations")
        if annotations:
            kept = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
            if kept:
                meta["annotations"] = kept
            else:
                del meta["annotations"]
        return {**obj, "apiVersion": api_version, "kind": kind, "metadata": meta}

    return project


@dataclasses.dataclass(frozen=True)
class Kind:
    """One watched kind: where it lives, how it is reduced, and (for the objects with
    our fixed names) the field selector that limits the LIST and WATCH to them."""

    kind: str
    api_version: str
    plural: str
    project: Projector
    field_selector: str | None = None

    @property
    def path(self) -> str:
        return client.object_path(api_version=self.api_version, plural=self.plural, namespace=None)


def _controller(kind: str, api_version: str, plural: str) -> Kind:
    return Kind(kind, api_version, plural, project_template_owner(kind, api_version))


POD = Kind("Pod", "v1", "pods", project_pod)
DEPLOYMENT = _controller("Deployment", "apps/v1", "deployments")
# The workload kinds the operator reviews: Pods and every built-in pod controller
# (``services.workloads.KINDS``; each needs list/watch/patch in the ClusterRole).
# ReplicationController is left out: deprecated in favour of Deployments.
KINDS: tuple[Kind, ...] = (
    POD,
    DEPLOYMENT,
    _controller("StatefulSet", "apps/v1", "statefulsets"),
    _controller("DaemonSet", "apps/v1", "daemonsets"),
    _controller("ReplicaSet", "apps/v1", "replicasets"),
    _controller("Job", "batch/v1", "jobs"),
    Kind("CronJob", "batch/v1", "cronjobs", project_cronjob),
)


NAMESPACE = Kind("Namespace", "v1", "namespaces", project_namespace)


def managed_kind(kind: builders.Kind) -> Kind:
    """The objects with our name of a managed kind, in every namespace (hardening's
    view; selected by name like ``reader.list_managed``)."""
    return Kind(
        kind.kind,
        kind.api_version,
        kind.plural,
        project_managed(kind.kind, kind.api_version),
        field_selector=f"metadata.name={kind.name}",
    )


class Expired(Exception):
    """410 Gone: the resourceVersion we resume from is too old; list again."""


class Watcher:
    """List+watch one kind forever in a daemon thread; deliver on the event loop."""

    def __init__(
        self,
        *,
        api_client: kubernetes.client.ApiClient,
        kind: Kind,
        loop: asyncio.AbstractEventLoop,
        listed: Callable[[str, list[Any], float], None],
        changed: Callable[[str, str, Body], None],
        page_size: int = PAGE_SIZE,
        restarted: Callable[[str, str], None] | None = None,
    ) -> None:
        """``listed(kind, bodies, started)``: every object of the kind, with the
        ``time.monotonic()`` at which their LIST began (what a consumer held from before
        that and is not in the list was deleted meanwhile).
        ``restarted(plural, reason)``: called (from the watch thread) each time the
        list+watch starts over: ``expired`` (410, a relist follows) or ``error``."""
        self._api = api_client
        self.kind = kind
        self._loop = loop
        self._listed = listed
        self._changed = changed
        self._page_size = page_size
        self._restarted = restarted
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        # Where the next watch starts (None: list first), and whether the current one
        # has received anything (a break after progress is retried at once).
        self._version: str | None = None
        self._progressed = False
        # Counters (probe, metrics, benchmarks).
        self.lists = 0
        self.restarts = 0
        self.events = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{self.kind.plural}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; closes the open watch stream so it wakes at once."""
        self._stop.set()
        response = self._response
        if response is not None:
            # shutdown(), not close(): it unblocks the reading thread without taking the
            # connection's lock that thread holds (urllib3 >= 2.3).
            with contextlib.suppress(Exception):  # already closed, or a dead socket
                response.shutdown()

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._stop.is_set() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        backoff = BACKOFF_START
        while not self._stop.is_set():
            self._progressed = False
            try:
                if self._version is None:
                    self._version = self._list()
                self._watch()
                backoff = BACKOFF_START
            except Expired:
                log.info("watch-expired-relisting", kind=self.kind.kind)
                self._version = None
                self.restarts += 1
                self._count_restart("expired")
            except Exception as e:  # outage, timeout, bad gateway: back off, resume
                if self._stop.is_set():
                    break
                if self._progressed:
                    # The stream worked before it broke (a load balancer's idle cut, an
                    # API server rollout): resume at once from the last version seen.
                    backoff = BACKOFF_START
                self.restarts += 1
                self._count_restart("error")
                if isinstance(e, client.ApiError) and e.method == "WATCH":
                    # LIST failures are reported by client.request itself.
                    client.report_error(self._api, verb="watch", status=e.status)
                elif isinstance(e, kubernetes.client.ApiException):
                    client.report_error(self._api, verb="watch", status=int(e.status or 0))
                log.warning(
                    "watch-failed", kind=self.kind.kind, error=str(e)[:300], retry_in=backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _count_restart(self, reason: str) -> None:
        if self._restarted is not None:
            with contextlib.suppress(Exception):  # counting must not stop the watch
                self._restarted(self.kind.plural, reason)

    def _list(self) -> str:
        """The paginated LIST; delivers all objects at once, returns the resourceVersion."""
        bodies: list[Body] = []
        token: str | None = None
        version = ""
        started = time.monotonic()
        while True:
            query = {"limit": str(self._page_size)}
            if self.kind.field_selector:
                query["fieldSelector"] = self.kind.field_selector
            if token:
                query["continue"] = token
            try:
                page = client.request(self._api, "GET", self.kind.path, query=query)
            except client.ApiError as e:
                if e.gone:  # the continue token expired mid-list: start over
                    bodies.clear()
                    token = None
                    started = time.monotonic()
                    continue
                raise
            bodies.extend(self.kind.project(item) for item in page.get("items") or ())
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            token = meta.get("continue") or None
            if not token:
                break
        self.lists += 1
        log.info("watch-listed", kind=self.kind.kind, objects=len(bodies))
        self._deliver(self._listed, self.kind.kind, bodies, started)
        return version

    def _watch(self) -> None:
        """One watch request from ``_version``, which follows every event (bookmarks
        included) as it arrives: a stream that breaks midway resumes where it stopped,
        without the events it delivered again."""
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": str(self._version),
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
        }
        if self.kind.field_selector:
            query["fieldSelector"] = self.kind.field_selector
        for event in self._stream(query):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Expired()
                raise client.ApiError(
                    status=int(obj.get("code") or 0),
                    reason=str(obj.get("reason") or "Error"),
                    message=str(obj.get("message") or ""),
                    method="WATCH",
                    path=self.kind.path,
                )
            self._progressed = True
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.events += 1
                self._deliver(self._changed, self.kind.kind, kind, self.kind.project(obj))
            new_version = (obj.get("metadata") or {}).get("resourceVersion")
            if new_version:
                self._version = str(new_version)

    def _stream(self, query: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        path = self.kind.path + "?" + urllib.parse.urlencode(dict(query))
        try:
            method, url, headers, _, _ = self._api.param_serialize(
                method="GET",
                resource_path=path,
                header_params={"Accept": client.JSON},
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(
                method,
                url,
                header_params=headers,
                _request_timeout=(client.DEFAULT_TIMEOUT[0], WATCH_READ_TIMEOUT),
            )
        except kubernetes.client.ApiException as e:
            if int(e.status or 0) == 410:
                raise Expired() from None
            raise
        if int(response.status) == 410:
            raise Expired()
        if not 200 <= int(response.status) < 300:
            raise client.ApiError(
                status=int(response.status),
                reason=str(response.reason),
                message="watch refused",
                method="WATCH",
                path=self.kind.path,
            )
        urllib3_response = response.response
        self._response = urllib3_response
        try:
            buffer = b""
            for chunk in urllib3_response.stream(amt=None, decode_content=True):
                if self._stop.is_set():
                    return
                buffer += chunk
                while True:
                    cut = buffer.find(b"\n")
                    if cut < 0:
                        break
                    line, buffer = buffer[:cut], buffer[cut + 1 :]
                    if line.strip():
                        yield json.loads(line)
        finally:
            self._response = None
            urllib3_response.release_conn()
