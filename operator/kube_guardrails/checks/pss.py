"""Pod Security Standards checks, baseline and restricted, as upstream defines them.

The reference is the ``k8s.io/pod-security-admission`` library (the code behind the
``PodSecurity`` admission plugin), evaluated at its ``latest`` policy version, which is
v1.37 (the newest ``MinimumVersion`` registered by any upstream check: the v1.37
revision of ``sysctls``). Each check below mirrors one ``policy/check_*.go`` file of that
library; where the published documentation page and the library disagree (the page lagged
behind on image volumes, the newest sysctls and the user-namespace relaxations), the
library wins, because it is what a real API server enforces.

How upstream's check set maps onto ours:

- Upstream's restricted level *overrides* some baseline checks with stricter versions
  (``seccompProfile_restricted`` replaces ``seccompProfile_baseline``,
  ``capabilities_restricted`` replaces ``capabilities_baseline``, ``procMount_restricted``
  replaces ``procMount``). Here each pair is one check id (``seccomp``, ``capabilities``,
  ``procMount``): the baseline rule is the check's function and the restricted rule is
  registered as its override (``registry.override``), which a policy at ``restricted``
  runs instead. Their registry level stays ``baseline``: they are on from baseline
  upwards.
- ``restrictedVolumes`` also overrides ``hostPathVolumes`` upstream. Here both stay active
  at restricted (a hostPath volume is reported by both ``hostPathVolumes`` and
  ``volumeTypes``), so that turning one of them off in a policy never lets hostPath through.
- Containers are visited like upstream's ``visitContainers``: init containers (native
  sidecars included, without any special case), containers, then ephemeral containers.
- ``null`` in a manifest means unset, exactly like a nil pointer after decoding; an
  explicit ``false``/``0``/``""`` is a value and is judged as such.
- Pods that upstream admits without evaluating a rule (Windows pods for three restricted
  rules, user-namespaced pods for three others) get the outcome ``skip`` here, with no
  finding, which is what "allowed" means for a policy decision.

Every violation names one offending field with its full path and the container, so a
developer can go straight to the line to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from kube_guardrails.checks import registry

# Upstream policy version these checks implement ("latest" as of Kubernetes v1.37).
POLICY_VERSION = "v1.37"

_CONTAINER_LABEL = {
    "initContainers": "init container",
    "containers": "container",
    "ephemeralContainers": "ephemeral container",
}

# check_capabilities_baseline.go: the container runtime's default set (no NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_BASELINE_CAPABILITIES_LISTING = ", ".join(sorted(BASELINE_CAPABILITIES))
# check_capabilities_restricted.go
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
DROP_ALL = "ALL"

# check_sysctls.go, sysctlsAllowedV1Dot37 (grown at v1.27, v1.29, v1.32 and v1.37).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        # v1.27
        "net.ipv4.ip_local_reserved_ports",
        # v1.29
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        # v1.32
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        # v1.37
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    }
)

# check_seLinuxOptions.go, selinuxAllowedTypes1_31 ("" means unset).
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)

# check_seccompProfile_*.go: the only acceptable securityContext.seccompProfile.type values.
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")

_SECCOMP_ALLOWED = " or ".join(SECCOMP_TYPES)

# check_appArmorProfile.go
APPARMOR_TYPES = ("RuntimeDefault", "Localhost")
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
APPARMOR_ANNOTATION_RUNTIME_DEFAULT = "runtime/default"
APPARMOR_ANNOTATION_LOCALHOST_PREFIX = "localhost/"

# check_restrictedVolumes.go: inline volume sources allowed at restricted (image: v1.33+).
RESTRICTED_VOLUME_SOURCES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)

_RESTRICTED_VOLUME_SET = frozenset(RESTRICTED_VOLUME_SOURCES)
_RESTRICTED_VOLUME_LISTING = ", ".join(RESTRICTED_VOLUME_SOURCES)

# check_procMount*.go
PROC_MOUNT_DEFAULT = "Default"

# check_hostProbesAndhostLifecycle.go
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_LIFECYCLE_HANDLERS = ("postStart", "preStop")
_HANDLER_ACTIONS = ("httpGet", "tcpSocket")

_BASELINE = registry.Level.BASELINE
_RESTRICTED = registry.Level.RESTRICTED
_PSS = registry.Category.POD_SECURITY
_HIGH = registry.Severity.HIGH
_MEDIUM = registry.Severity.MEDIUM


# --- small readers over plain dicts --------------------------------------------------------


_EMPTY: Mapping[str, Any] = {}


def _map(value: object) -> Mapping[str, Any]:
    # ``type(...) is dict`` first: parsed YAML and JSON are plain dicts, and the ABC
    # isinstance check is the single most expensive step of a pod evaluation.
    if type(value) is dict:
        return value
    return value if isinstance(value, Mapping) else _EMPTY


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    """A string field as Go sees it after decoding: null is the empty string."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _is_zero(value: object) -> bool:
    # bool is an int subclass; ``false`` is not the UID 0.
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


class _Container:
    """One container as upstream's ``visitContainers`` sees it, and how to name it.

    Built once per pod (see :func:`_containers`); the security context is resolved up
    front because nearly every check reads it.
    """

    __slots__ = ("kind", "position", "security_context", "spec")

    def __init__(self, kind: str, position: int, spec: Mapping[str, Any]) -> None:
        self.kind = kind  # initContainers | containers | ephemeralContainers
        self.position = position
        self.spec = spec
        self.security_context = _map(spec.get("securityContext"))

    @property
    def name(self) -> str:
        name = self.spec.get("name")
        return name if isinstance(name, str) and name else f"{self.kind}[{self.position}]"

    @property
    def who(self) -> str:
        """``init container "setup"``: how messages refer to it."""
        return f'{_CONTAINER_LABEL[self.kind]} "{self.name}"'

    def path(self, ctx: registry.Context, *parts: str | int) -> str:
        return ctx.path(self.kind, self.position, *parts)


def _containers(ctx: registry.Context) -> tuple[_Container, ...]:
    """Init containers, containers, then ephemeral containers, like upstream.

    Every check walks them, so the walk is done once per pod and shared through the
    Context (``Context.derive``): it used to dominate evaluation time.
    """
    walk: tuple[_Container, ...] | None = ctx.derived.get(_WALK)
    if walk is None:
        walk = ctx.derived[_WALK] = _walk_containers(ctx.spec)
    return walk


_WALK = "pss.containers"


def _walk_containers(spec: Mapping[str, Any]) -> tuple[_Container, ...]:
    out: list[_Container] = []
    for kind in _CONTAINER_LABEL:
        items = spec.get(kind)
        if type(items) is not list:
            continue
        for position, item in enumerate(items):
            if type(item) is dict or isinstance(item, Mapping):
                out.append(_Container(kind, position, item))
    return tuple(out)


def _pod_security_context(ctx: registry.Context) -> Mapping[str, Any]:
    return _map(ctx.spec.get("securityContext"))


def _is_windows(ctx: registry.Context) -> bool:
    os_ = ctx.spec.get("os")
    return os_ is not None and _map(os_).get("name") == "windows"


def _user_namespaced(ctx: registry.Context) -> bool:
    """``spec.hostUsers: false``: KEP-127 user namespaces (policy/helpers.go)."""
    return ctx.spec.get("hostUsers") is False


def _listing(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def _violation(message: str, path: str, *, container: str | None = None) -> registry.Violation:
    return registry.Violation(message=message, path=path, container=container)


# --- baseline --------------------------------------------------------------------------------


@registry.check(
    id="hostNamespaces",
    title="Host namespaces are not shared",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove hostNetwork, hostPID and hostIPC from the pod spec (or set them to false)",
)
def host_namespaces(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Sharing the host's network, PID or IPC namespace must be disallowed.

    Upstream: ``check_hostNamespaces.go`` (baseline, v1.0).
    Restricted fields: ``spec.hostNetwork``, ``spec.hostPID``, ``spec.hostIPC``.
    Allowed values: undefined/null, ``false``.
    """
    for field, what in (("hostNetwork", "network"), ("hostPID", "PID"), ("hostIPC", "IPC")):
        if ctx.spec.get(field) is True:
            yield _violation(
                f"pod sets {field}: true, sharing the node's {what} namespace; "
                "host namespaces are forbidden at baseline",
                ctx.path(field),
            )


@registry.check(
    id="privileged",
    title="Containers are not privileged",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove securityContext.privileged (or set it to false) on every container",
)
def privileged(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Privileged containers disable most security mechanisms and must be disallowed.

    Upstream: ``check_privileged.go`` (baseline, v1.0).
    Restricted fields: ``spec.{initContainers,containers,ephemeralContainers}[*]
    .securityContext.privileged``.
    Allowed values: undefined/null, ``false``.
    """
    for c in _containers(ctx):
        if c.security_context.get("privileged") is True:
            yield _violation(
                f"{c.who} sets securityContext.privileged: true; "
                "privileged containers are forbidden at baseline",
                c.path(ctx, "securityContext", "privileged"),
                container=c.name,
            )


@registry.check(
    id="capabilities",
    title="Only default capabilities are added (restricted: drop ALL)",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint=(
        "baseline: add only default capabilities; restricted: set "
        'securityContext.capabilities.drop: ["ALL"] and add at most NET_BIND_SERVICE'
    ),
)
def capabilities(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Linux capabilities: a level-dependent rule, like upstream's override pair.

    At baseline (policy level ``baseline`` or ``none``), upstream
    ``check_capabilities_baseline.go`` (v1.0):
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .capabilities.add`` may be undefined/empty or contain only
    AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE,
    SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT. Names are compared exactly as written:
    ``chown`` or ``CAP_CHOWN`` are not in the set.

    At restricted, upstream ``check_capabilities_restricted.go`` (v1.22, overrides the
    baseline rule): every container must list ``ALL`` (exactly, upper case) in
    ``securityContext.capabilities.drop`` -- dropping every capability one by one is not
    enough -- and ``capabilities.add`` may contain only NET_BIND_SERVICE. Since v1.25 a
    pod with ``spec.os.name: windows`` is exempt from the restricted rule (outcome skip).
    """
    for c in _containers(ctx):
        caps = c.security_context.get("capabilities")
        if caps is None:
            continue
        for j, cap in enumerate(_list(_map(caps).get("add"))):
            if _text(cap) not in BASELINE_CAPABILITIES:
                yield _violation(
                    f"{c.who} adds capability {_text(cap)}; "
                    f"only {_BASELINE_CAPABILITIES_LISTING} are allowed at baseline",
                    c.path(ctx, "securityContext", "capabilities", "add", j),
                    container=c.name,
                )


@registry.override("capabilities", level=_RESTRICTED)
def capabilities_restricted(ctx: registry.Context) -> Iterator[registry.Violation]:
    """The restricted rule of ``capabilities`` (documented there)."""
    if _is_windows(ctx):
        raise registry.Skip("spec.os.name is windows: Linux capabilities do not apply")
    for c in _containers(ctx):
        caps = _map(c.security_context.get("capabilities"))
        if not _drops_all(caps.get("drop")):
            yield _violation(
                f'{c.who} must set securityContext.capabilities.drop: ["ALL"] at restricted',
                c.path(ctx, "securityContext", "capabilities", "drop"),
                container=c.name,
            )
        add = caps.get("add")
        if not add:
            continue
        for j, cap in enumerate(_list(add)):
            if _text(cap) not in RESTRICTED_ADDABLE_CAPABILITIES:
                yield _violation(
                    f"{c.who} adds capability {_text(cap)}; "
                    "only NET_BIND_SERVICE may be added at restricted",
                    c.path(ctx, "securityContext", "capabilities", "add", j),
                    container=c.name,
                )


def _drops_all(drop: object) -> bool:
    """Does ``capabilities.drop`` list ``ALL``, compared as upstream does (exact text)?"""
    items = _list(drop)
    # ``in`` first: decoded manifests hold strings, compared exactly as _text would.
    return DROP_ALL in items or DROP_ALL in map(_text, items)


@registry.check(
    id="hostPathVolumes",
    title="No hostPath volumes",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="replace hostPath volumes with emptyDir, configMap, secret or a PersistentVolumeClaim",
)
def host_path_volumes(ctx: registry.Context) -> Iterator[registry.Violation]:
    """HostPath volumes must be forbidden.

    Upstream: ``check_hostPathVolumes.go`` (baseline, v1.0).
    Restricted field: ``spec.volumes[*].hostPath``. Allowed values: undefined/null.
    """
    for i, vol in enumerate(_list(ctx.spec.get("volumes"))):
        vol = _map(vol)
        if vol.get("hostPath") is not None:
            path = _text(_map(vol.get("hostPath")).get("path"))
            yield _violation(
                f'volume "{_text(vol.get("name"))}" mounts the host path {path or "(unset)"}; '
                "hostPath volumes are forbidden at baseline",
                ctx.path("volumes", i, "hostPath"),
            )


@registry.check(
    id="hostPorts",
    title="No host ports",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove hostPort from container ports; expose the pod through a Service instead",
)
def host_ports(ctx: registry.Context) -> Iterator[registry.Violation]:
    """HostPorts must be disallowed entirely (no allow-list exists upstream).

    Upstream: ``check_hostPorts.go`` (baseline, v1.0).
    Restricted field: ``spec.{initContainers,containers,ephemeralContainers}[*].ports[*]
    .hostPort``. Allowed values: undefined/null, ``0``.
    """
    for c in _containers(ctx):
        ports = c.spec.get("ports")
        if not ports:
            continue
        for j, port in enumerate(_list(ports)):
            host_port = _map(port).get("hostPort")
            if host_port is not None and not _is_zero(host_port):
                yield _violation(
                    f"{c.who} binds host port {host_port}; hostPort is forbidden at baseline",
                    c.path(ctx, "ports", j, "hostPort"),
                    container=c.name,
                )


@registry.check(
    id="appArmor",
    title="AppArmor is not disabled",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="use appArmorProfile type RuntimeDefault or Localhost; never Unconfined",
)
def app_armor(ctx: registry.Context) -> Iterator[registry.Violation]:
    """The default AppArmor profile may not be disabled or overridden arbitrarily.

    Upstream: ``check_appArmorProfile.go`` (baseline, v1.0; the field checks were added
    in place in v1.30, so they apply at every policy version). Both channels are checked:

    - fields ``spec.securityContext.appArmorProfile.type`` and
      ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
      .appArmorProfile.type``: allowed undefined/null (no ``appArmorProfile``),
      ``RuntimeDefault``, ``Localhost``; anything else, ``Unconfined`` in particular (and an
      ``appArmorProfile`` without a type), is forbidden;
    - the deprecated annotations ``metadata.annotations['container.apparmor.security.beta.
      kubernetes.io/*']`` (any key with that prefix): allowed empty, ``runtime/default``,
      ``localhost/*``; anything else (``unconfined``) is forbidden.
    """
    raw_pod = _pod_security_context(ctx).get("appArmorProfile")
    if raw_pod is not None:
        type_ = _text(_map(raw_pod).get("type"))
        if type_ not in APPARMOR_TYPES:
            yield _violation(
                f"pod sets securityContext.appArmorProfile.type to {type_ or '(unset)'}; "
                "only RuntimeDefault or Localhost are allowed at baseline",
                ctx.path("securityContext", "appArmorProfile", "type"),
            )
    for c in _containers(ctx):
        raw = c.security_context.get("appArmorProfile")
        if raw is None:
            continue
        type_ = _text(_map(raw).get("type"))
        if type_ not in APPARMOR_TYPES:
            yield _violation(
                f"{c.who} sets securityContext.appArmorProfile.type to "
                f"{type_ or '(unset)'}; only RuntimeDefault or Localhost are allowed at baseline",
                c.path(ctx, "securityContext", "appArmorProfile", "type"),
                container=c.name,
            )
    annotations = _map(ctx.metadata.get("annotations"))
    if not annotations:
        return
    for key in sorted(k for k in annotations if isinstance(k, str)):
        if not key.startswith(APPARMOR_ANNOTATION_PREFIX):
            continue
        value = _text(annotations[key])
        if (
            value == ""
            or value == APPARMOR_ANNOTATION_RUNTIME_DEFAULT
            or value.startswith(APPARMOR_ANNOTATION_LOCALHOST_PREFIX)
        ):
            continue
        container = key[len(APPARMOR_ANNOTATION_PREFIX) :]
        yield registry.Violation(
            message=(
                f'annotation {key}="{value}" sets the AppArmor profile of container '
                f'"{container}"; only runtime/default or localhost/* are allowed at baseline'
            ),
            path=f"{ctx.meta_path('annotations')}[{key}]",
            container=container or None,
        )


@registry.check(
    id="seLinux",
    title="No custom SELinux user, role or type",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove seLinuxOptions.user and .role; use type container_t (or leave it unset)",
)
def se_linux(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Setting the SELinux type is restricted; custom SELinux users or roles are forbidden.

    Upstream: ``check_seLinuxOptions.go`` (baseline, v1.0; ``container_engine_t`` since
    v1.31). Fields: ``spec.securityContext.seLinuxOptions`` and
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .seLinuxOptions``:

    - ``.type``: undefined/empty, ``container_t``, ``container_init_t``,
      ``container_kvm_t``, ``container_engine_t``;
    - ``.user`` and ``.role``: undefined/empty only;
    - ``.level`` is not restricted.
    """
    sc = _pod_security_context(ctx)
    if sc.get("seLinuxOptions") is not None:
        yield from _selinux(
            ctx, who="pod", opts=_map(sc.get("seLinuxOptions")), prefix=("securityContext",)
        )
    for c in _containers(ctx):
        opts = c.security_context.get("seLinuxOptions")
        if opts is not None:
            prefix: tuple[str | int, ...] = (c.kind, c.position, "securityContext")
            for v in _selinux(ctx, who=c.who, opts=_map(opts), prefix=prefix):
                yield _violation(v.message, v.path, container=c.name)


def _selinux(
    ctx: registry.Context, *, who: str, opts: Mapping[str, Any], prefix: tuple[str | int, ...]
) -> Iterator[registry.Violation]:
    type_ = _text(opts.get("type"))
    if type_ not in SELINUX_TYPES:
        allowed = ", ".join(sorted(t for t in SELINUX_TYPES if t))
        yield _violation(
            f"{who} sets seLinuxOptions.type to {type_}; only {allowed} (or unset) "
            "are allowed at baseline",
            ctx.path(*prefix, "seLinuxOptions", "type"),
        )
    for field in ("user", "role"):
        value = _text(opts.get(field))
        if value:
            yield _violation(
                f"{who} sets seLinuxOptions.{field} to {value}; a custom SELinux {field} "
                "is forbidden at baseline",
                ctx.path(*prefix, "seLinuxOptions", field),
            )


@registry.check(
    id="procMount",
    title="The default /proc mount is kept",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove securityContext.procMount (or set it to Default) on every container",
)
def proc_mount(ctx: registry.Context) -> Iterator[registry.Violation]:
    """The default /proc masks reduce attack surface and must be kept.

    Field: ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .procMount``; allowed values: undefined/null, ``Default``.

    A level-dependent rule, like upstream's override pair:

    - baseline (level ``baseline`` or ``none``): upstream ``check_procMount_baseline.go``
      at v1.35+: a pod in a user namespace (``spec.hostUsers: false``) is exempt (outcome
      skip), since its /proc is not the node's;
    - restricted: upstream ``check_procMount_restricted.go`` (v1.35, overrides the baseline
      rule): ``Default`` or unset only, user namespace or not.
    """
    if _user_namespaced(ctx):
        raise registry.Skip("spec.hostUsers is false: the pod runs in a user namespace")
    return _proc_mount(ctx, level="baseline")


@registry.override("procMount", level=_RESTRICTED)
def proc_mount_restricted(ctx: registry.Context) -> Iterator[registry.Violation]:
    """The restricted rule of ``procMount`` (documented there)."""
    return _proc_mount(ctx, level="restricted")


def _proc_mount(ctx: registry.Context, *, level: str) -> Iterator[registry.Violation]:
    for c in _containers(ctx):
        value = c.security_context.get("procMount")
        if value is not None and value != PROC_MOUNT_DEFAULT:
            yield _violation(
                f"{c.who} sets securityContext.procMount to {_text(value)}; "
                f"only Default is allowed at {level}",
                c.path(ctx, "securityContext", "procMount"),
                container=c.name,
            )


@registry.check(
    id="seccomp",
    title="Seccomp is not disabled (restricted: required)",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="set spec.securityContext.seccompProfile.type: RuntimeDefault (or Localhost)",
)
def seccomp(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Seccomp: a level-dependent rule, like upstream's override pair.

    Fields: ``spec.securityContext.seccompProfile.type`` and
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .seccompProfile.type``.

    At baseline (level ``baseline`` or ``none``), upstream ``check_seccompProfile_baseline
    .go`` at v1.19+: allowed undefined/null (no ``seccompProfile``), ``RuntimeDefault``,
    ``Localhost``; ``Unconfined`` (or a ``seccompProfile`` without a type) is forbidden.
    The legacy annotations ``seccomp.security.alpha.kubernetes.io/pod`` and
    ``container.seccomp.security.alpha.kubernetes.io/*`` are only judged by upstream's
    policy versions before v1.19, so at the latest version they are ignored here too.

    At restricted, upstream ``check_seccompProfile_restricted.go`` (v1.19, overrides the
    baseline rule): the profile type must be set explicitly to ``RuntimeDefault`` or
    ``Localhost``, either at pod level (containers may then leave it unset) or on every
    container; ``Unconfined`` is forbidden everywhere. Since v1.25 a pod with
    ``spec.os.name: windows`` is exempt from the restricted rule (outcome skip).
    """
    return _seccomp(ctx, restricted=False)


@registry.override("seccomp", level=_RESTRICTED)
def seccomp_restricted(ctx: registry.Context) -> Iterator[registry.Violation]:
    """The restricted rule of ``seccomp`` (documented there)."""
    if _is_windows(ctx):
        raise registry.Skip("spec.os.name is windows: seccomp does not apply")
    return _seccomp(ctx, restricted=True)


def _seccomp(ctx: registry.Context, *, restricted: bool) -> Iterator[registry.Violation]:
    allowed = _SECCOMP_ALLOWED
    level = "restricted" if restricted else "baseline"
    raw_pod = _pod_security_context(ctx).get("seccompProfile")
    pod_set = raw_pod is not None
    if pod_set:
        type_ = _text(_map(raw_pod).get("type"))
        if type_ not in SECCOMP_TYPES:
            yield _violation(
                f"pod sets securityContext.seccompProfile.type to {type_ or '(unset)'}; "
                f"only {allowed} are allowed at {level}",
                ctx.path("securityContext", "seccompProfile", "type"),
            )
    for c in _containers(ctx):
        raw = c.security_context.get("seccompProfile")
        if raw is None:
            if restricted and not pod_set:
                yield _violation(
                    f"{c.who} has no seccomp profile; set securityContext."
                    f"seccompProfile.type to {allowed} on it or once at pod level "
                    "(spec.securityContext) at restricted",
                    c.path(ctx, "securityContext", "seccompProfile", "type"),
                    container=c.name,
                )
            continue
        type_ = _text(_map(raw).get("type"))
        if type_ not in SECCOMP_TYPES:
            yield _violation(
                f"{c.who} sets securityContext.seccompProfile.type to "
                f"{type_ or '(unset)'}; only {allowed} are allowed at {level}",
                c.path(ctx, "securityContext", "seccompProfile", "type"),
                container=c.name,
            )


@registry.check(
    id="sysctls",
    title="Only safe sysctls",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove unsafe sysctls from spec.securityContext.sysctls; set node-level ones on the node",
)
def sysctls(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Sysctls can disable security mechanisms or affect every pod on the node.

    Upstream: ``check_sysctls.go`` (baseline; allow-list grown at v1.27, v1.29, v1.32 and
    v1.37). Field: ``spec.securityContext.sysctls[*].name`` (the only place the API
    accepts sysctls). Allowed names (exact): kernel.shm_rmid_forced,
    net.ipv4.ip_local_port_range, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range,
    net.ipv4.ip_unprivileged_port_start, net.ipv4.ip_local_reserved_ports,
    net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl,
    net.ipv4.tcp_keepalive_probes, net.ipv4.tcp_rmem, net.ipv4.tcp_wmem,
    net.ipv4.tcp_slow_start_after_idle, net.ipv4.tcp_notsent_lowat. An empty or missing
    ``sysctls`` list is allowed; an item with an empty name is not.
    """
    for i, item in enumerate(_list(_pod_security_context(ctx).get("sysctls"))):
        name = _text(_map(item).get("name"))
        if name not in SAFE_SYSCTLS:
            yield _violation(
                f"pod sets sysctl {name or '(unnamed)'}; only namespaced safe sysctls "
                f"({_listing(SAFE_SYSCTLS)}) are allowed at baseline",
                ctx.path("securityContext", "sysctls", i, "name"),
            )


@registry.check(
    id="hostProbesAndHostLifecycle",
    title="Probes and lifecycle hooks do not target other hosts",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove .host from httpGet/tcpSocket probes and lifecycle hooks (the pod IP is used)",
)
def host_probes_and_host_lifecycle(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Probes and lifecycle handlers may not send the kubelet to another host.

    Upstream: ``check_hostProbesAndhostLifecycle.go`` (baseline, v1.34, KEP-4940).
    Fields, on every init, regular and ephemeral container:
    ``{livenessProbe,readinessProbe,startupProbe}.{httpGet,tcpSocket}.host`` and
    ``lifecycle.{postStart,preStop}.{httpGet,tcpSocket}.host``.
    Allowed values: undefined/null, ``""``. Every other value is forbidden, loopback
    addresses (``127.0.0.1``, ``::1``, ``localhost``) included: the kubelet would probe
    its own node, not the pod.
    """
    for c in _containers(ctx):
        spec = c.spec
        for probe in _PROBES:
            handler = spec.get(probe)
            if handler and _sets_host(handler):
                yield from _handler_hosts(ctx, c, (probe,))
        lifecycle = spec.get("lifecycle")
        if lifecycle:
            for hook in _LIFECYCLE_HANDLERS:
                handler = _map(lifecycle).get(hook)
                if handler and _sets_host(handler):
                    where = ("lifecycle", hook)
                    yield from _handler_hosts(ctx, c, where)


def _sets_host(handler: object) -> bool:
    """Would :func:`_handler_hosts` report anything? (Cheap test for the common case.)"""
    handler = _map(handler)
    for action in _HANDLER_ACTIONS:
        found = handler.get(action)
        if found is not None and _text(_map(found).get("host")):
            return True
    return False


def _handler_hosts(
    ctx: registry.Context, c: _Container, where: tuple[str, ...]
) -> Iterator[registry.Violation]:
    handler: Mapping[str, Any] = c.spec
    for part in where:
        handler = _map(handler.get(part))
    for action in _HANDLER_ACTIONS:
        host = _text(_map(handler.get(action)).get("host"))
        if host:
            yield _violation(
                f"{c.who} sets {'.'.join(where)}.{action}.host to {host}; "
                "probes and lifecycle hooks must target the pod itself (leave host "
                "unset) at baseline",
                c.path(ctx, *where, action, "host"),
                container=c.name,
            )


@registry.check(
    id="windowsHostProcess",
    title="No Windows HostProcess containers",
    category=_PSS,
    level=_BASELINE,
    severity=_HIGH,
    default_action="Enforce",
    hint="remove windowsOptions.hostProcess (or set it to false) at pod and container level",
)
def windows_host_process(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Windows HostProcess containers get privileged access to the host and are forbidden.

    Upstream: ``check_windowsHostProcess.go`` (baseline, v1.0).
    Fields: ``spec.securityContext.windowsOptions.hostProcess`` and
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .windowsOptions.hostProcess``. Allowed values: undefined/null, ``false``.
    """
    windows = _map(_pod_security_context(ctx).get("windowsOptions"))
    if windows.get("hostProcess") is True:
        yield _violation(
            "pod sets securityContext.windowsOptions.hostProcess: true; "
            "HostProcess containers are forbidden at baseline",
            ctx.path("securityContext", "windowsOptions", "hostProcess"),
        )
    for c in _containers(ctx):
        options = c.security_context.get("windowsOptions")
        if options is not None and _map(options).get("hostProcess") is True:
            yield _violation(
                f"{c.who} sets securityContext.windowsOptions.hostProcess: true; "
                "HostProcess containers are forbidden at baseline",
                c.path(ctx, "securityContext", "windowsOptions", "hostProcess"),
                container=c.name,
            )


# --- restricted ------------------------------------------------------------------------------


@registry.check(
    id="volumeTypes",
    title="Only core volume types",
    category=_PSS,
    level=_RESTRICTED,
    severity=_MEDIUM,
    default_action="Enforce",
    hint=(
        "use configMap, csi, downwardAPI, emptyDir, ephemeral, image, "
        "persistentVolumeClaim, projected or secret volumes"
    ),
)
def volume_types(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Only inline volume sources that cannot reach host or network storage directly.

    Upstream: ``check_restrictedVolumes.go`` (restricted, v1.0; ``image`` allowed since
    the v1.33 code, in place). Field: ``spec.volumes[*]``. Allowed sources: configMap,
    csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected,
    secret. Every other source (hostPath, nfs, iscsi, gitRepo, cephfs, rbd, ...) is
    forbidden: those belong in a PersistentVolume, under the cluster admin's control.
    A volume that names no source at all is the API server's implicit emptyDir and passes.
    """
    for i, raw in enumerate(_list(ctx.spec.get("volumes"))):
        vol = _map(raw)
        sources = [k for k, v in vol.items() if k != "name" and v is not None]
        if not sources or not _RESTRICTED_VOLUME_SET.isdisjoint(sources):
            continue
        for source in sources:
            yield _violation(
                f'volume "{_text(vol.get("name"))}" uses the {source} volume type; only '
                f"{_RESTRICTED_VOLUME_LISTING} are allowed at restricted",
                ctx.path("volumes", i, source),
            )


@registry.check(
    id="allowPrivilegeEscalation",
    title="Privilege escalation is disabled",
    category=_PSS,
    level=_RESTRICTED,
    severity=_MEDIUM,
    default_action="Enforce",
    hint="set securityContext.allowPrivilegeEscalation: false on every container",
)
def allow_privilege_escalation(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Privilege escalation (setuid binaries, file capabilities) must be disabled.

    Upstream: ``check_allowPrivilegeEscalation.go`` (restricted, v1.8; Windows exemption
    since v1.25). Field: ``spec.{initContainers,containers,ephemeralContainers}[*]
    .securityContext.allowPrivilegeEscalation``. Allowed value: ``false``, set explicitly
    on every container -- unset means "allowed" to the runtime, so it fails. A pod with
    ``spec.os.name: windows`` is exempt (outcome skip).
    """
    if _is_windows(ctx):
        raise registry.Skip("spec.os.name is windows: allowPrivilegeEscalation does not apply")
    for c in _containers(ctx):
        value = c.security_context.get("allowPrivilegeEscalation")
        if value is False:
            continue
        state = "sets it to true" if value is True else "does not set it"
        yield _violation(
            f"{c.who} must set securityContext.allowPrivilegeEscalation: false "
            f"at restricted, but {state}",
            c.path(ctx, "securityContext", "allowPrivilegeEscalation"),
            container=c.name,
        )


@registry.check(
    id="runAsNonRoot",
    title="Containers run as non-root",
    category=_PSS,
    level=_RESTRICTED,
    severity=_MEDIUM,
    default_action="Enforce",
    hint="set spec.securityContext.runAsNonRoot: true (and a non-zero runAsUser in the image)",
)
def run_as_non_root(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Containers must be required to run as non-root users.

    Upstream: ``check_runAsNonRoot.go`` (restricted, v1.0; user-namespace exemption at
    v1.35). Fields: ``spec.securityContext.runAsNonRoot`` and
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext
    .runAsNonRoot``. Allowed: ``true`` at pod level (containers may then leave it unset),
    or ``true`` on every container; an explicit ``false`` anywhere is forbidden, even when
    the other level says ``true``. A pod with ``spec.hostUsers: false`` runs in a user
    namespace, where UID 0 is not the node's root, and is exempt (outcome skip).
    """
    if _user_namespaced(ctx):
        raise registry.Skip("spec.hostUsers is false: the pod runs in a user namespace")
    pod_value = _pod_security_context(ctx).get("runAsNonRoot")
    if pod_value is False:
        yield _violation(
            "pod sets securityContext.runAsNonRoot: false; it must be true at restricted",
            ctx.path("securityContext", "runAsNonRoot"),
        )
    for c in _containers(ctx):
        value = c.security_context.get("runAsNonRoot")
        if value is False:
            yield _violation(
                f"{c.who} sets securityContext.runAsNonRoot: false; it must be true at restricted",
                c.path(ctx, "securityContext", "runAsNonRoot"),
                container=c.name,
            )
        elif value is not True and pod_value is not True and pod_value is not False:
            yield _violation(
                f"{c.who} may run as root: set securityContext.runAsNonRoot: true "
                "on it or once at pod level (spec.securityContext) at restricted",
                c.path(ctx, "securityContext", "runAsNonRoot"),
                container=c.name,
            )


@registry.check(
    id="runAsUser",
    title="Containers do not run as UID 0",
    category=_PSS,
    level=_RESTRICTED,
    severity=_MEDIUM,
    default_action="Enforce",
    hint="remove runAsUser: 0; use a non-zero UID (or leave it to the image)",
)
def run_as_user(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Containers must not set runAsUser to 0 (root).

    Upstream: ``check_runAsUser.go`` (restricted, v1.23; user-namespace exemption at
    v1.35). Fields: ``spec.securityContext.runAsUser`` and
    ``spec.{initContainers,containers,ephemeralContainers}[*].securityContext.runAsUser``.
    Allowed values: undefined/null, any non-zero UID. A pod with ``spec.hostUsers: false``
    is exempt (outcome skip).
    """
    if _user_namespaced(ctx):
        raise registry.Skip("spec.hostUsers is false: the pod runs in a user namespace")
    if _is_zero(_pod_security_context(ctx).get("runAsUser")):
        yield _violation(
            "pod sets securityContext.runAsUser: 0 (root); use a non-zero UID at restricted",
            ctx.path("securityContext", "runAsUser"),
        )
    for c in _containers(ctx):
        uid = c.security_context.get("runAsUser")
        if uid is not None and _is_zero(uid):
            yield _violation(
                f"{c.who} sets securityContext.runAsUser: 0 (root); "
                "use a non-zero UID at restricted",
                c.path(ctx, "securityContext", "runAsUser"),
                container=c.name,
            )
