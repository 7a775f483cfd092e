"""Test support for the kmock Kubernetes API emulator (kmock 0.8).

What this adds to ``kmock.KubernetesEmulator``, and why:

- **Namespace paths.** kmock 0.8 reads ``/api/v1/namespaces`` and
  ``/api/v1/namespaces/NAME`` as a namespace prefix with no resource (and crashes on
  the bare collection path), so Namespace objects cannot be listed, watched, created or
  patched. :func:`parse_path` recognises the core ``namespaces`` resource itself; it is
  installed into kmock's parser (``install_namespace_path_fix``), keeping every other
  path to kmock's own parsing.
- **Server-side metadata** the operator relies on: ``uid``, numeric
  ``resourceVersion`` (bumped on every write), ``generation`` (bumped on spec changes),
  ``creationTimestamp``, ``metadata.namespace`` on namespaced objects,
  ``generateName`` (Events use it), ``status.phase`` and the
  ``kubernetes.io/metadata.name`` label on Namespaces (the real API server sets both).
- **Discovery** of the resources the operator and the tests use, with verbs, scope
  and subresources (kopf resolves resources through discovery).
- **Speed.** kmock decides which reaction serves a request by checking
  ``request in view``, which walks the whole request log through every filter: the
  cost of a request grows with the number of requests served so far. With thousands
  of requests (the benchmark) that dominates everything. :class:`FastDispatch`
  answers the same question for the one request by walking the chain of views
  (filter criteria, priorities, and/or groups), falling back to kmock's own walk for
  views that depend on other requests (slices, exclusions, streams). Single-object
  reads and writes look the object up by key instead of scanning the store.
- **Request accounting**: :meth:`GuardrailsEmulator.mark` and
  :meth:`GuardrailsEmulator.requests_since` / :meth:`GuardrailsEmulator.writes_since`,
  for the "no writes" assertions and the benchmark.

Everything else (merge patches, watch streams, 404/409) is kmock's own behaviour.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import secrets
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import kmock
import yaml
from kmock._internal import apps, dsl, enums, parsing, rendering

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ALL_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}

# (group/version/plural, kind, namespaced, subresources)
RESOURCES: tuple[tuple[str, str, bool, frozenset[str]], ...] = (
    (
        "kube-guardrails.io/v1alpha1/guardrailpolicies",
        "GuardrailPolicy",
        False,
        frozenset({"status"}),
    ),
    ("v1/namespaces", "Namespace", False, frozenset({"status", "finalize"})),
    ("v1/pods", "Pod", True, frozenset({"status", "eviction"})),
    ("v1/events", "Event", True, frozenset()),
    ("v1/limitranges", "LimitRange", True, frozenset()),
    ("v1/resourcequotas", "ResourceQuota", True, frozenset({"status"})),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, frozenset()),
    ("apps/v1/deployments", "Deployment", True, frozenset({"status", "scale"})),
    ("apps/v1/replicasets", "ReplicaSet", True, frozenset({"status", "scale"})),
    ("apps/v1/statefulsets", "StatefulSet", True, frozenset({"status", "scale"})),
    ("apps/v1/daemonsets", "DaemonSet", True, frozenset({"status"})),
    ("batch/v1/jobs", "Job", True, frozenset({"status"})),
    ("batch/v1/cronjobs", "CronJob", True, frozenset({"status"})),
    ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", True, frozenset({"status"})),
    (
        "admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        False,
        frozenset({"status"}),
    ),
    (
        "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        False,
        frozenset(),
    ),
)
CLUSTER_SCOPED = frozenset(path.rsplit("/", 1)[1] for path, _, ns, _ in RESOURCES if not ns)


# ----------------------------------------------------------------------- path parsing

_original_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """kmock's parser, plus the core ``namespaces`` resource's own paths.

    ``/api/v1/namespaces`` (list, create, watch), ``/api/v1/namespaces/NAME`` (get,
    patch, delete) and ``/api/v1/namespaces/NAME/status|finalize`` address Namespace
    objects; ``/api/v1/namespaces/NAME/pods`` still addresses pods in NAME.
    """
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[2] == "namespaces":
        version = parts[1]
        if len(parts) == 3:
            return parsing.ParsedPath(group="", version=version, plural="namespaces")
        if len(parts) == 4:
            return parsing.ParsedPath(group="", version=version, plural="namespaces", name=parts[3])
        if len(parts) == 5 and parts[4] in NAMESPACE_SUBRESOURCES:
            return parsing.ParsedPath(
                group="",
                version=version,
                plural="namespaces",
                name=parts[3],
                subresource=parts[4],
            )
    return _original_parse_path(path)


def install_namespace_path_fix() -> None:
    """Make kmock's request parsing use :func:`parse_path` (idempotent, process-wide)."""
    parsing.parse_path = parse_path


# ------------------------------------------------------------------------- emulator


def admits(view: dsl.View, request: rendering.Request) -> bool:
    """Is ``request`` among the requests of ``view``? (kmock's ``request in view``).

    Answered for this one request where the view's membership depends only on the
    request itself; otherwise kmock's own (exhaustive) check.
    """
    kind = type(view)
    if isinstance(view, dsl.Root):
        return True  # every request arrives at the root it is being handled by
    if kind is dsl.Filter:
        filt: Any = view
        return admits(filt._source, request) and bool(filt.criteria(request))
    if kind in (dsl.Priority, dsl.Chained):
        chained: Any = view
        return admits(chained._source, request)
    if kind is dsl.OrGroup:
        return any(admits(source, request) for source in view._sources)  # type: ignore[attr-defined]
    if kind is dsl.AndGroup:
        return all(admits(source, request) for source in view._sources)  # type: ignore[attr-defined]
    return request in view


class FastDispatch(apps.RawHandler):
    """kmock's reaction lookup (``RawHandler._handle``) with :func:`admits`."""

    async def _handle(self, request: rendering.Request) -> Any:
        priorities = [payload.priorities for payload in self._payloads]
        width = max((len(p) for p in priorities), default=0)
        keys = [tuple(-x for x in p) + (0,) * (width - len(p)) for p in priorities]
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        for index in order:
            payload = self._payloads[index]
            if payload._disabled.is_set() or not admits(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:
                payload._disabled.set()
            except NotImplementedError:
                pass
        raise NotImplementedError("no reaction matches the request (add kmock.fallback << 404)")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class GuardrailsEmulator(kmock.KubernetesEmulator, FastDispatch):
    """kmock's emulator with the fixes and additions described in the module docs."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)

    def __attrs_post_init__(self) -> None:
        install_namespace_path_fix()
        super().__attrs_post_init__()
        for path, kind, namespaced, subresources in RESOURCES:
            self.resources[path] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=ALL_VERBS,
                subresources=subresources,
                shortnames={"gp"} if kind == "GuardrailPolicy" else set(),
            )

    def _next_version(self) -> str:
        return str(next(self._versions))

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == enums.action.CREATE:
                self._on_create(request)
            elif request.action == enums.action.UPDATE:
                self._on_update(request)
        return await super()._handle(request)

    def _on_create(self, request: rendering.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        plural = request.resource.plural if request.resource is not None else None
        if request.namespace and plural not in CLUSTER_SCOPED:
            meta.setdefault("namespace", request.namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self._next_version()
        meta.setdefault("generation", 1)
        if plural == "namespaces":
            labels = meta.setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = meta.get("name")
            data.setdefault("status", {"phase": "Active"})

    def _on_update(self, request: rendering.Request) -> None:
        data: dict[str, Any] = request.data
        meta = data.get("metadata")
        if meta is None:
            meta = data["metadata"] = {}
        if not isinstance(meta, dict):
            return
        meta["resourceVersion"] = self._next_version()
        if request.subresource is None and "spec" in data and request.resource is not None:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                current = self.objects[key].get("metadata", {}).get("generation") or 1
                meta["generation"] = int(current) + 1

    # ------------------------------------------------------------------ direct lookups

    def _key(self, request: rendering.Request) -> tuple[Any, str | None, str | None]:
        namespace, name = request.namespace, request.name
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            namespace = namespace or meta.get("namespace")
            name = name or meta.get("name")
        plural = request.resource.plural if request.resource is not None else None
        return (request.resource, None if plural in CLUSTER_SCOPED else namespace, name)

    def _lookup(self, request: rendering.Request) -> Any:
        key = self._key(request)
        return self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get)

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        obj = self._lookup(request)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: rendering.Request) -> Any:
        return self._lookup(request).raw

    async def _serve_update(self, request: rendering.Request) -> Any:
        return self._lookup(request).last.raw

    async def _serve_delete(self, request: rendering.Request) -> Any:
        return self._lookup(request).last.raw

    # ------------------------------------------------------------------ accounting

    def mark(self) -> int:
        """A position in the request log; pass it to ``requests_since``."""
        return len(list(self))

    def requests_since(self, mark: int = 0) -> list[rendering.Request]:
        return list(self)[mark:]

    def writes_since(self, mark: int = 0) -> list[rendering.Request]:
        return [
            r for r in self.requests_since(mark) if str(r.method.value).upper() in WRITE_METHODS
        ]

    @staticmethod
    def describe(request: rendering.Request) -> str:
        """``VERB plural[/subresource]`` e.g. ``POST networkpolicies``, ``WATCH namespaces``."""
        method = str(request.method.value).upper()
        if request.action == enums.action.WATCH:
            method = "WATCH"
        resource = request.resource
        plural = resource.plural if resource is not None and resource.plural else request.url.path
        sub = f"/{request.subresource}" if request.subresource else ""
        return f"{method} {plural}{sub}"

    def count(self, requests: Iterable[rendering.Request]) -> collections.Counter[str]:
        return collections.Counter(self.describe(r) for r in requests)

    # ------------------------------------------------------------------ objects

    def read(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The current object, or None if absent or deleted (``get`` is kmock's HTTP GET)."""
        for (res, ns, obj_name), obj in self.objects.items():
            if res == resource and ns == namespace and obj_name == name and not obj.deleted:
                return dict(obj.raw)
        return None

    def names(self, resource: str, namespace: str | None = None) -> list[str]:
        out = []
        for (res, ns, name), obj in self.objects.items():
            if res == resource and (namespace is None or ns == namespace) and not obj.deleted:
                out.append(name)
        return sorted(out)


def write_kubeconfig(path: Path, *, server: str, context: str = "kmock") -> Path:
    """A kube config pointing at the emulator (plain HTTP, a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {"token": "kmock-test-token"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config))
    return path
