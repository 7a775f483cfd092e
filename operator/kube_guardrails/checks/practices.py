"""Best-practice checks: resources, probes, image tags, image registries, read-only root.

These are not part of the Pod Security Standards; they catch what makes workloads
unreliable or hard to trust (no requests, no health checks, floating tags, images from
anywhere, writable root filesystems). They are on by default in every policy with the
action ``Audit``, whatever the Pod Security level, so they never block anything until a
policy turns them to ``Enforce``.

Decisions where the issue and the upstream tools are silent or disagree are written in
each check's docstring (the docstring is the check's documentation) and summarised here:

- ``resources`` follows the API server's defaulting: a request that is missing while the
  matching limit is set counts as set (``SetDefaults_Pod`` copies the limit into the
  request), and pod-level resources (``spec.resources``) satisfy the same field for
  every container. Without the first rule a Deployment manifest would fail while the
  Pods it creates pass, so the audit and the operator would disagree.
- ``probes`` treats restartable init containers (native sidecars, ``restartPolicy:
  Always``) as long-running, like regular containers; pods that run to completion
  (``restartPolicy`` ``Never``/``OnFailure``, i.e. Jobs and CronJobs) are skipped.
- ``imageRegistry`` compares allow-list prefixes with the *normalised* image reference
  (``nginx`` is ``docker.io/library/nginx``) and only at component boundaries, so
  ``registry.example.com`` never admits ``registry.example.com.evil.io/app``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from kube_guardrails.checks import registry
from kube_guardrails.model import quantity

_BP = registry.Category.BEST_PRACTICE
_CONTAINER_LABEL = {
    "initContainers": "init container",
    "containers": "container",
    "ephemeralContainers": "ephemeral container",
}
# Ephemeral containers cannot declare resources or probes (the API rejects them), so the
# checks for those fields look at these two lists only.
_RUNNING_KINDS = ("initContainers", "containers")


# --------------------------------------------------------------------------- resources

# (section, resource) pairs every container must have, in the order findings are listed.
REQUIRED_RESOURCES: tuple[tuple[str, str], ...] = (
    ("requests", "cpu"),
    ("requests", "memory"),
    ("limits", "memory"),
)
_RESOURCE_WHY = {
    ("requests", "cpu"): "the scheduler cannot reserve CPU for it and it is throttled first",
    ("requests", "memory"): (
        "the scheduler cannot reserve memory for it and it is evicted first under pressure"
    ),
    ("limits", "memory"): "one leak can exhaust the node's memory and take neighbours down",
}


@registry.check(
    id="resources",
    title="Containers set CPU and memory requests and a memory limit",
    category=_BP,
    severity=registry.Severity.MEDIUM,
    hint=(
        "set resources.requests.cpu, resources.requests.memory and resources.limits.memory "
        "on every container and init container (e.g. requests {cpu: 100m, memory: 128Mi}, "
        "limits {memory: 256Mi})"
    ),
)
def resources(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Every container and init container sets a CPU request, a memory request and a
    memory limit, each a positive quantity.

    Checked: ``spec.containers[*]`` and ``spec.initContainers[*]`` (native sidecars
    included); ephemeral containers cannot set resources and are ignored.
    A field counts as set when any of these holds, mirroring what the API server and
    the kubelet do with the pod:

    - the container sets it (``resources.requests.cpu`` ...);
    - for a request: the container sets the matching limit (the API server copies a
      limit into a missing request when it stores a Pod);
    - the pod sets it in pod-level resources (``spec.resources``; for a request, the
      pod-level limit also counts).

    A value of zero or a malformed quantity is reported as not set. No CPU limit is
    required: CPU limits throttle bursts without protecting neighbours, and many
    platforms deliberately leave them out.
    """
    pod_resources = _map(ctx.spec.get("resources"))
    for kind in _RUNNING_KINDS:
        for i, c in _containers(ctx, kind):
            res = _map(c.get("resources"))
            requests = _map(res.get("requests"))
            limits = _map(res.get("limits"))
            if _SHORTCUT and _all_positive(requests, limits):
                continue
            for section, name in REQUIRED_RESOURCES:
                # Fast path for the usual case, a positive quantity set on the container
                # itself; anything else goes through _resource_problem for its phrase.
                value = (requests if section == "requests" else limits).get(name)
                if value is None and section == "requests":
                    value = limits.get(name)
                if type(value) is str and _POSITIVE.get(value):
                    continue
                problem = _resource_problem(res, section=section, name=name)
                if problem is None:
                    continue
                if _resource_problem(pod_resources, section=section, name=name) is None:
                    continue  # pod-level resources cover this field for every container
                yield registry.Violation(
                    message=f"{_who(kind, i, c)} {problem}; {_RESOURCE_WHY[(section, name)]}",
                    path=ctx.path(kind, i, "resources", section, name),
                    container=_name(c),
                )


# Quantity strings known to be positive (the fast path of ``resources``): a handful of
# values ("100m", "128Mi") recur in every pod; bounded for pathological inputs.
_POSITIVE: dict[str, bool] = {}
_POSITIVE_MAX = 4096


# _all_positive knows exactly these fields; if REQUIRED_RESOURCES changes, it stays unused.
_SHORTCUT = REQUIRED_RESOURCES == (
    ("requests", "cpu"),
    ("requests", "memory"),
    ("limits", "memory"),
)


def _all_positive(requests: Mapping[str, Any], limits: Mapping[str, Any]) -> bool:
    """The usual container: all of REQUIRED_RESOURCES set to known-positive quantities.

    Only a shortcut: False sends the container through the field-by-field check.
    """
    cpu = requests.get("cpu")
    if cpu is None:
        cpu = limits.get("cpu")
    memory = requests.get("memory")
    if memory is None:
        memory = limits.get("memory")
    limit = limits.get("memory")
    return (
        type(cpu) is str
        and type(memory) is str
        and type(limit) is str
        and cpu in _POSITIVE
        and memory in _POSITIVE
        and limit in _POSITIVE
    )


def _resource_problem(res: Mapping[str, Any], *, section: str, name: str) -> str | None:
    """None when ``res`` provides the field (directly or via the limit), else a phrase."""
    value = _map(res.get(section)).get(name)
    if value is None and section == "requests":
        value = _map(res.get("limits")).get(name)
    if value is not None:
        try:
            amount = quantity.parse_quantity(value)
        except quantity.QuantityError:
            amount = None
        if amount is not None and amount > 0:
            if type(value) is str:
                if len(_POSITIVE) >= _POSITIVE_MAX:
                    _POSITIVE.clear()
                _POSITIVE[value] = True
            return None
    what = f"{name} {'request' if section == 'requests' else 'limit'}"
    if value is None:
        return f"sets no {what}"
    if amount is None:
        return f"sets {what} {_shown(value)}, which is not a Kubernetes quantity"
    return f"sets {what} {_shown(value)}, which reserves nothing"


def _shown(value: object) -> str:
    # A manifest may hold a 20,000-character "quantity": name it, don't repeat it.
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "a huge number"
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


# --------------------------------------------------------------------------- probes

_RUN_TO_COMPLETION = frozenset({"Never", "OnFailure"})
REQUIRED_PROBES: tuple[tuple[str, str], ...] = (
    ("livenessProbe", "a hung process is never restarted"),
    ("readinessProbe", "traffic is sent to it before it can serve and while it cannot"),
)


@registry.check(
    id="probes",
    title="Long-running containers have liveness and readiness probes",
    category=_BP,
    severity=registry.Severity.LOW,
    hint=(
        "add a livenessProbe and a readinessProbe (httpGet, tcpSocket, grpc or exec) to every "
        "long-running container; use a startupProbe for slow starters"
    ),
)
def probes(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Every long-running container has a ``livenessProbe`` and a ``readinessProbe``.

    Long-running means ``spec.containers[*]`` plus restartable init containers (native
    sidecars: ``spec.initContainers[*]`` with ``restartPolicy: Always``), which run for
    the pod's whole life and whose readiness counts towards the pod's. Ordinary init
    containers run to completion and cannot have these probes; ephemeral containers
    cannot have probes at all; both are ignored.

    Pods that run to completion are skipped (outcome ``skip``): a pod whose
    ``restartPolicy`` is ``Never`` or ``OnFailure``, which includes every Job and
    CronJob pod template (the API requires one of the two there). A missing
    ``restartPolicy`` means ``Always``.
    """
    if ctx.spec.get("restartPolicy") in _RUN_TO_COMPLETION:
        raise registry.Skip("the pod runs to completion (restartPolicy Never or OnFailure)")
    for kind in _RUNNING_KINDS:
        for i, c in _containers(ctx, kind):
            if kind == "initContainers" and c.get("restartPolicy") != "Always":
                continue
            for probe, why in REQUIRED_PROBES:
                if not _map(c.get(probe)):
                    who = _who(kind, i, c)
                    if kind != "containers":
                        who = f"sidecar {who}"
                    yield registry.Violation(
                        message=f"{who} has no {probe}, so {why}",
                        path=ctx.path(kind, i, probe),
                        container=_name(c),
                    )


# --------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """A container image reference split the way container runtimes read it.

    ``domain`` is the registry host (with port), defaulted to ``docker.io`` for Docker
    Hub short names; ``path`` the repository path (``library/`` added for official
    images); ``tag`` and ``digest`` are None when absent.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @functools.cached_property
    def normalized(self) -> str:
        """The fully-qualified reference (``docker.io/library/nginx:1.25``)."""
        out = self.repository
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
DOCKER_HUB = "docker.io"


# Parsed references: the same images recur across pods, and ImageRef is immutable.
_IMAGES: dict[str, ImageRef] = {}
_IMAGES_MAX = 4096


def _parsed_image(image: str) -> ImageRef:
    """:func:`parse_image`, remembered: imageTag and imageRegistry parse every image."""
    ref = _IMAGES.get(image)
    if ref is None:
        ref = parse_image(image)
        if len(_IMAGES) >= _IMAGES_MAX:
            _IMAGES.clear()
        _IMAGES[image] = ref
    return ref


def parse_image(image: str) -> ImageRef:
    """Split an image reference like the ``distribution/reference`` library does.

    The first path component is a registry host only if it contains ``.`` or ``:`` or
    is ``localhost`` (``localhost:5000/app`` is host ``localhost:5000``, untagged; a
    ``:`` before the last ``/`` is a port, never a tag). Anything else is a Docker Hub
    repository (``nginx`` -> ``docker.io/library/nginx``).
    """
    rest, _, digest = image.partition("@")
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, remainder
    else:
        domain, path = DOCKER_HUB, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest or None)


@registry.check(
    id="imageTag",
    title="Images are pinned to a version tag or digest, never latest",
    category=_BP,
    severity=registry.Severity.MEDIUM,
    hint=(
        "use an immutable version tag such as app:1.4.2, or pin by digest "
        "(app@sha256:...), instead of :latest or no tag"
    ),
)
def image_tag(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Every image (containers, init containers, ephemeral containers) names a tag
    other than ``latest``, or is pinned by digest.

    An image with a well-formed digest (``@sha256:<hex>``) passes with or without a tag:
    the runtime pulls exactly that digest. An image without a tag resolves to
    ``:latest``, so it fails like ``:latest`` itself. Tags are case-sensitive, as in the
    registry API: only ``latest`` is the floating default. A registry port is not a tag
    (``localhost:5000/app`` is untagged). Containers without an image are left to the
    API server, which rejects them.
    """
    for kind, i, c in ctx.containers():
        image = c.get("image")
        if not isinstance(image, str) or not image:
            continue
        ref = _parsed_image(image)
        if ref.digest is not None:
            if _DIGEST.match(ref.digest):
                continue
            problem = f"has a malformed digest {_shown(ref.digest)}"
        elif ref.tag is None:
            problem = "has no tag, so it pulls whatever :latest points to at the time"
        elif ref.tag == "latest":
            problem = "uses :latest, which points to a different image after every push"
        else:
            continue
        yield registry.Violation(
            message=(
                f'{_who(kind, i, c)} image "{image}" {problem}; '
                "restarts and rollbacks can run unreviewed code"
            ),
            path=ctx.path(kind, i, "image"),
            container=_name(c),
        )


@registry.check(
    id="imageRegistry",
    title="Images come from an allowed registry",
    category=_BP,
    severity=registry.Severity.HIGH,
    hint=(
        "pull the image from an allowed registry (mirror it there first), or ask the "
        "platform team to add the registry to the policy's imageRegistry.allowed"
    ),
    params={
        "allowed": (
            "list of allowed image prefixes, compared with the normalised reference "
            '(Docker Hub short names expand: "nginx" is "docker.io/library/nginx"); a '
            "prefix matches only whole components: it ends in / or the image continues "
            'with /, : or @ after it. Example: ["registry.example.com/", '
            '"docker.io/library/"]. Missing or empty: the check is skipped.'
        ),
    },
)
def image_registry(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Every image (containers, init containers, ephemeral containers) starts with one
    of the prefixes in the policy's ``allowed`` list.

    Images are normalised first, as the container runtime resolves them: a name without
    a registry host is a Docker Hub image (``nginx:1.25`` is
    ``docker.io/library/nginx:1.25``, ``bitnami/redis`` is ``docker.io/bitnami/redis``,
    ``index.docker.io`` is ``docker.io``), so the prefix ``docker.io/library/`` allows
    ``nginx:1.25``. A prefix matches at component boundaries only: ``registry.example.com``
    allows ``registry.example.com/app`` and ``registry.example.com:5000/app`` but not
    ``registry.example.com.evil.io/app``; ``docker.io/library/nginx`` allows
    ``nginx:1.25`` but not ``nginx-unofficial``. Without ``allowed`` (or with an empty
    list) there is nothing to compare with and the check is skipped, so a half-written
    policy never blocks every image.
    """
    allowed = _allowed_prefixes(ctx.params.get("allowed"))
    if not allowed:
        raise registry.Skip("no allowed registries configured")
    for kind, i, c in ctx.containers():
        image = c.get("image")
        if not isinstance(image, str) or not image:
            continue
        if _admitted(image, allowed):
            continue
        normalized = _parsed_image(image).normalized
        shown = "" if normalized == image else f" ({normalized})"
        yield registry.Violation(
            message=(
                f'{_who(kind, i, c)} image "{image}"{shown} is not from an allowed registry '
                f"(allowed: {', '.join(allowed)})"
            ),
            path=ctx.path(kind, i, "image"),
            container=_name(c),
        )


# (allow-list, image) -> admitted: the same few images meet the same policy in every pod.
_ADMITTED: dict[tuple[tuple[str, ...], str], bool] = {}
_ADMITTED_MAX = 4096


def _admitted(image: str, allowed: tuple[str, ...]) -> bool:
    key = (allowed, image)
    admitted = _ADMITTED.get(key)
    if admitted is None:
        normalized = _parsed_image(image).normalized
        admitted = any(prefix_matches(normalized, p) for p in allowed)
        if len(_ADMITTED) >= _ADMITTED_MAX:
            _ADMITTED.clear()
        _ADMITTED[key] = admitted
    return admitted


def prefix_matches(normalized: str, prefix: str) -> bool:
    """Does the allow-list ``prefix`` admit the ``normalized`` image reference?"""
    if not normalized.startswith(prefix):
        return False
    if prefix.endswith(("/", ":", "@")) or len(normalized) == len(prefix):
        return True
    return normalized[len(prefix)] in "/:@"


def _allowed_prefixes(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    # The policy parser validates this already; a check may also be called from code
    # that bypasses it, and a wrong type must surface as this check's error, not pass.
    if not (type(value) is list or isinstance(value, Sequence)) or isinstance(value, str):
        raise ValueError(f"imageRegistry.allowed must be a list of prefixes, not {value!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise ValueError(f"imageRegistry.allowed has an invalid entry {item!r}")
    return tuple(value)


# --------------------------------------------------------------------------- root fs


@registry.check(
    id="readOnlyRootFilesystem",
    title="Containers have a read-only root filesystem",
    category=_BP,
    severity=registry.Severity.MEDIUM,
    hint=(
        "set securityContext.readOnlyRootFilesystem: true on every container and mount an "
        "emptyDir volume where the program must write (e.g. /tmp)"
    ),
)
def read_only_root_filesystem(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Every container, init container and ephemeral container sets
    ``securityContext.readOnlyRootFilesystem: true``.

    There is no pod-level equivalent, so each container must say it. Windows pods
    (``spec.os.name: windows``) are skipped: the API server forbids the field there.
    """
    if _map(ctx.spec.get("os")).get("name") == "windows":
        raise registry.Skip("readOnlyRootFilesystem is not supported on Windows pods")
    for kind, i, c in ctx.containers():
        value = _map(c.get("securityContext")).get("readOnlyRootFilesystem")
        if value is True:
            continue
        field = "securityContext.readOnlyRootFilesystem"
        state = f"does not set {field}" if value is None else f"sets {field}: {_yaml(value)}"
        yield registry.Violation(
            message=(
                f"{_who(kind, i, c)} {state}; a "
                "writable root filesystem lets an intruder change binaries and configuration"
            ),
            path=ctx.path(kind, i, "securityContext", "readOnlyRootFilesystem"),
            container=_name(c),
        )


# --------------------------------------------------------------------------- helpers


def _containers(ctx: registry.Context, kind: str) -> tuple[tuple[int, Mapping[str, Any]], ...]:
    by_kind: dict[str, tuple[tuple[int, Mapping[str, Any]], ...]] | None = ctx.derived.get(_BY_KIND)
    if by_kind is None:
        by_kind = ctx.derived[_BY_KIND] = _by_kind(ctx.container_tuple())
    return by_kind.get(kind, ())


_BY_KIND = "practices.by_kind"


def _by_kind(
    walk: Iterable[tuple[str, int, Mapping[str, Any]]],
) -> dict[str, tuple[tuple[int, Mapping[str, Any]], ...]]:
    """The container walk grouped by list, computed once per pod (``Context.derived``)."""
    out: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for kind, i, c in walk:
        out.setdefault(kind, []).append((i, c))
    return {kind: tuple(items) for kind, items in out.items()}


def _map(value: object) -> Mapping[str, Any]:
    # ``type(...) is dict`` first: decoded YAML/JSON is plain dicts, and the ABC
    # isinstance check costs several times more.
    if type(value) is dict:
        return value
    return value if isinstance(value, Mapping) else _EMPTY


_EMPTY: Mapping[str, Any] = {}


def _name(c: Mapping[str, Any]) -> str | None:
    name = c.get("name")
    return name if isinstance(name, str) and name else None


def _who(kind: str, index: int, c: Mapping[str, Any]) -> str:
    name = _name(c)
    label = _CONTAINER_LABEL[kind]
    return f'{label} "{name}"' if name else f"{label} #{index}"


def _yaml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
