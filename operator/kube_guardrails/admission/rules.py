"""Each check of the registry as CEL, for the generated ValidatingAdmissionPolicies.

For every check id, :data:`RULES` holds a function ``(level, params) -> CEL | None``. The
CEL evaluates, over the pod-shaped part of the admitted object (``variables.spec`` and
``variables.meta``, see :mod:`kube_guardrails.admission.policies`), to a list of strings:
one per violation, naming the container and the field, empty when the check passes or
does not apply (the engine's ``skip``). ``None`` means the check cannot fail with these
parameters (``imageRegistry`` without an allow-list) and no validation is generated.

Each function restates, in CEL, the rule of the engine's check of the same id
(:mod:`kube_guardrails.checks.pss`, :mod:`kube_guardrails.checks.practices`); the
constants (capability sets, sysctl allow-list, volume types...) are imported from those
modules, never copied. ``tests/admission`` runs every check fixture and every upstream
Pod Security case through both and through a real API server, and asserts the same
verdict.

A check that CEL cannot express exactly goes into :data:`RUNTIME_ONLY` with the reason
instead (a registry test fails for a check in neither table). Today every check has CEL.

How the API server hands the object to CEL matters for "same verdict": CEL sees the
object after decoding and defaulting, as unstructured data, so a field written as
``null`` is absent (the engine treats null as unset, the same thing), and ``has()`` /
optional chaining (``a.?b.orValue(x)``) reads exactly what the engine's ``.get()`` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kube_guardrails.admission import cel
from kube_guardrails.checks import pss, registry

Rule = Callable[[registry.Level, Mapping[str, Any]], str | None]

S = "variables.spec"
PSC = f"{S}.?securityContext"
META = "variables.meta"
_KINDS = pss._CONTAINER_LABEL  # initContainers/containers/ephemeralContainers -> label
_RUNNING = ("initContainers", "containers")  # resources/probes: no ephemeral containers


def _who(kind: str, var: str = "c") -> str:
    return f"'{_KINDS[kind]} \"' + {var}.name + '\"'"


def _each(kinds: tuple[str, ...], cond: Callable[[str], str], msg: Callable[[str], str]) -> str:
    """Concatenated ``filter(cond).map(msg)`` over the given container lists."""
    parts = [f"{S}.?{k}.orValue([]).filter(c, {cond(k)}).map(c, {msg(k)})" for k in kinds]
    return " + ".join(parts)


def _when(cond: str, message: str) -> str:
    return f"(({cond}) ? [{message}] : [])"


def _unless(cond: str, expr: str) -> str:
    """``[]`` when ``cond`` holds (the engine's Skip), else ``expr``."""
    return f"(({cond}) ? [] : ({expr}))"


_ALL = tuple(_KINDS)
WINDOWS = f"{S}.?os.?name.orValue('') == 'windows'"
USER_NAMESPACED = f"{S}.?hostUsers.orValue(true) == false"


def _level(level: registry.Level) -> str:
    return "restricted" if level is registry.Level.RESTRICTED else "baseline"


# ----------------------------------------------------------------------- baseline


def host_namespaces(level: registry.Level, params: Mapping[str, Any]) -> str:
    parts = [
        _when(f"{S}.?{f}.orValue(false) == true", cel.string(f"pod sets spec.{f}: true"))
        for f in ("hostNetwork", "hostPID", "hostIPC")
    ]
    return " + ".join(parts)


def privileged(level: registry.Level, params: Mapping[str, Any]) -> str:
    return _each(
        _ALL,
        lambda k: "c.?securityContext.?privileged.orValue(false) == true",
        lambda k: f"{_who(k)} + ' sets securityContext.privileged: true'",
    )


def capabilities(level: registry.Level, params: Mapping[str, Any]) -> str:
    if level is registry.Level.RESTRICTED:
        addable = cel.strings(sorted(pss.RESTRICTED_ADDABLE_CAPABILITIES))
        drop = _each(
            _ALL,
            lambda k: (
                f"!c.?securityContext.?capabilities.?drop.orValue([]).exists(d, d == "
                f"{cel.string(pss.DROP_ALL)})"
            ),
            lambda k: f"{_who(k)} + ' does not set securityContext.capabilities.drop: [\"ALL\"]'",
        )
        add = _each(
            _ALL,
            lambda k: (
                f"c.?securityContext.?capabilities.?add.orValue([]).exists(a, !(a in {addable}))"
            ),
            lambda k: (
                f"{_who(k)} + ' adds capabilities ' + c.securityContext.capabilities.add"
                f".filter(a, !(a in {addable})).join(', ') + ' in securityContext.capabilities.add"
                " (only NET_BIND_SERVICE may be added)'"
            ),
        )
        return _unless(WINDOWS, f"{drop} + {add}")
    allowed = cel.strings(sorted(pss.BASELINE_CAPABILITIES))
    return _each(
        _ALL,
        lambda k: f"c.?securityContext.?capabilities.?add.orValue([]).exists(a, !(a in {allowed}))",
        lambda k: (
            f"{_who(k)} + ' adds capabilities ' + c.securityContext.capabilities.add"
            f".filter(a, !(a in {allowed})).join(', ') + ' in securityContext.capabilities.add'"
        ),
    )


def host_path_volumes(level: registry.Level, params: Mapping[str, Any]) -> str:
    return (
        f"{S}.?volumes.orValue([]).filter(v, has(v.hostPath))"
        ".map(v, 'volume \"' + v.name + '\" mounts the host path ' + "
        "v.hostPath.?path.orValue('(unset)') + ' (spec.volumes[].hostPath)')"
    )


def host_ports(level: registry.Level, params: Mapping[str, Any]) -> str:
    return _each(
        _ALL,
        lambda k: "c.?ports.orValue([]).exists(p, p.?hostPort.orValue(0) != 0)",
        lambda k: (
            f"{_who(k)} + ' binds host ports ' + c.ports.filter(p, p.?hostPort.orValue(0)"
            " != 0).map(p, string(p.hostPort)).join(', ') + ' (ports[].hostPort)'"
        ),
    )


def _profile_bad(opt: str, allowed: tuple[str, ...]) -> str:
    return f"{opt}.hasValue() && !({opt}.?type.orValue('') in {cel.strings(allowed)})"


def app_armor(level: registry.Level, params: Mapping[str, Any]) -> str:
    allowed = pss.APPARMOR_TYPES
    pod = _when(
        _profile_bad(f"{PSC}.?appArmorProfile", allowed),
        f"'pod sets spec.securityContext.appArmorProfile.type to ' + "
        f"{PSC}.?appArmorProfile.?type.orValue('(unset)')",
    )
    containers = _each(
        _ALL,
        lambda k: _profile_bad("c.?securityContext.?appArmorProfile", allowed),
        lambda k: (
            f"{_who(k)} + ' sets securityContext.appArmorProfile.type to ' + "
            "c.?securityContext.?appArmorProfile.?type.orValue('(unset)')"
        ),
    )
    prefix = cel.string(pss.APPARMOR_ANNOTATION_PREFIX)
    ann = f"{META}.?annotations.orValue({{}})"
    bad_value = (
        f"!({ann}[k] == '' || {ann}[k] == {cel.string(pss.APPARMOR_ANNOTATION_RUNTIME_DEFAULT)}"
        f" || {ann}[k].startsWith({cel.string(pss.APPARMOR_ANNOTATION_LOCALHOST_PREFIX)}))"
    )
    annotations = (
        f"{ann}.filter(k, k.startsWith({prefix}) && {bad_value})"
        f".map(k, 'annotation ' + k + '=\"' + {ann}[k] + '\" sets an AppArmor profile')"
    )
    return f"{pod} + {containers} + {annotations}"


def _selinux_bad(opt: str) -> str:
    types = cel.strings(sorted(pss.SELINUX_TYPES))
    return (
        f"{opt}.hasValue() && (!({opt}.?type.orValue('') in {types}) || "
        f"{opt}.?user.orValue('') != '' || {opt}.?role.orValue('') != '')"
    )


def _selinux_what(opt: str) -> str:
    types = cel.strings(sorted(pss.SELINUX_TYPES))
    return (
        f"[({opt}.?type.orValue('') in {types}) ? '' : 'seLinuxOptions.type ' + {opt}.?type"
        f".orValue(''), {opt}.?user.orValue('') == '' ? '' : 'seLinuxOptions.user ' + "
        f"{opt}.?user.orValue(''), {opt}.?role.orValue('') == '' ? '' : 'seLinuxOptions.role ' "
        f"+ {opt}.?role.orValue('')].filter(x, x != '').join(', ')"
    )


def se_linux(level: registry.Level, params: Mapping[str, Any]) -> str:
    pod_opt = f"{PSC}.?seLinuxOptions"
    pod = _when(_selinux_bad(pod_opt), f"'pod sets ' + {_selinux_what(pod_opt)}")
    containers = _each(
        _ALL,
        lambda k: _selinux_bad("c.?securityContext.?seLinuxOptions"),
        lambda k: f"{_who(k)} + ' sets ' + {_selinux_what('c.?securityContext.?seLinuxOptions')}",
    )
    return f"{pod} + {containers}"


def proc_mount(level: registry.Level, params: Mapping[str, Any]) -> str:
    expr = _each(
        _ALL,
        lambda k: (
            "c.?securityContext.?procMount.orValue("
            f"{cel.string(pss.PROC_MOUNT_DEFAULT)}) != {cel.string(pss.PROC_MOUNT_DEFAULT)}"
        ),
        lambda k: (
            f"{_who(k)} + ' sets securityContext.procMount to ' + c.securityContext.procMount"
        ),
    )
    if level is registry.Level.RESTRICTED:
        return expr
    return _unless(USER_NAMESPACED, expr)


def seccomp(level: registry.Level, params: Mapping[str, Any]) -> str:
    allowed = cel.strings(pss.SECCOMP_TYPES)
    pod_opt = f"{PSC}.?seccompProfile"
    pod = _when(
        f"{pod_opt}.hasValue() && !({pod_opt}.?type.orValue('') in {allowed})",
        f"'pod sets spec.securityContext.seccompProfile.type to ' + "
        f"{pod_opt}.?type.orValue('(unset)')",
    )
    c_opt = "c.?securityContext.?seccompProfile"
    bad = _each(
        _ALL,
        lambda k: f"{c_opt}.hasValue() && !({c_opt}.?type.orValue('') in {allowed})",
        lambda k: (
            f"{_who(k)} + ' sets securityContext.seccompProfile.type to ' + "
            f"{c_opt}.?type.orValue('(unset)')"
        ),
    )
    if level is not registry.Level.RESTRICTED:
        return f"{pod} + {bad}"
    unset = _unless(
        f"{pod_opt}.hasValue()",
        _each(
            _ALL,
            lambda k: f"!{c_opt}.hasValue()",
            lambda k: (
                f"{_who(k)} + ' has no seccomp profile (set securityContext.seccompProfile"
                ".type on it or on the pod)'"
            ),
        ),
    )
    # The engine reports per container in walk order, unset and bad interleaved; only the
    # set of checks and containers matters for the verdict, so order is by kind here.
    return _unless(WINDOWS, f"{pod} + {unset} + {bad}")


def sysctls(level: registry.Level, params: Mapping[str, Any]) -> str:
    safe = cel.strings(sorted(pss.SAFE_SYSCTLS))
    return (
        f"{PSC}.?sysctls.orValue([]).filter(s, !(s.?name.orValue('') in {safe}))"
        ".map(s, 'pod sets the unsafe sysctl ' + s.?name.orValue('(unnamed)') + "
        "' (spec.securityContext.sysctls)')"
    )


_HANDLERS = tuple(
    (f"{probe}.{action}", f"c.?{probe}.?{action}.?host.orValue('')")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe")
    for action in ("httpGet", "tcpSocket")
) + tuple(
    (f"lifecycle.{hook}.{action}", f"c.?lifecycle.?{hook}.?{action}.?host.orValue('')")
    for hook in ("postStart", "preStop")
    for action in ("httpGet", "tcpSocket")
)


def host_probes_and_host_lifecycle(level: registry.Level, params: Mapping[str, Any]) -> str:
    cond = cel.any_of(f"{value} != ''" for _, value in _HANDLERS)
    listing = (
        "["
        + ", ".join(
            f"{value} == '' ? '' : {cel.string(field + '.host ')} + {value}"
            for field, value in _HANDLERS
        )
        + "].filter(x, x != '').join(', ')"
    )
    return _each(_ALL, lambda k: cond, lambda k: f"{_who(k)} + ' sets ' + {listing}")


def windows_host_process(level: registry.Level, params: Mapping[str, Any]) -> str:
    pod = _when(
        f"{PSC}.?windowsOptions.?hostProcess.orValue(false) == true",
        "'pod sets spec.securityContext.windowsOptions.hostProcess: true'",
    )
    containers = _each(
        _ALL,
        lambda k: "c.?securityContext.?windowsOptions.?hostProcess.orValue(false) == true",
        lambda k: f"{_who(k)} + ' sets securityContext.windowsOptions.hostProcess: true'",
    )
    return f"{pod} + {containers}"


# ----------------------------------------------------------------------- restricted


def volume_types(level: registry.Level, params: Mapping[str, Any]) -> str:
    allowed = cel.strings(pss.RESTRICTED_VOLUME_SOURCES)
    sources = "v.filter(k, k != 'name')"
    return (
        f"{S}.?volumes.orValue([]).filter(v, size({sources}) > 0 && "
        f"!{sources}.exists(k, k in {allowed}))"
        f".map(v, 'volume \"' + v.name + '\" uses the ' + {sources}.join(', ') + "
        "' volume type (spec.volumes[])')"
    )


def allow_privilege_escalation(level: registry.Level, params: Mapping[str, Any]) -> str:
    return _unless(
        WINDOWS,
        _each(
            _ALL,
            lambda k: "c.?securityContext.?allowPrivilegeEscalation.orValue(true) != false",
            lambda k: f"{_who(k)} + ' must set securityContext.allowPrivilegeEscalation: false'",
        ),
    )


def run_as_non_root(level: registry.Level, params: Mapping[str, Any]) -> str:
    pod_value = f"{PSC}.?runAsNonRoot"
    pod = _when(
        f"{pod_value}.orValue(true) == false",
        "'pod sets spec.securityContext.runAsNonRoot: false'",
    )
    explicit_false = _each(
        _ALL,
        lambda k: "c.?securityContext.?runAsNonRoot.orValue(true) == false",
        lambda k: f"{_who(k)} + ' sets securityContext.runAsNonRoot: false'",
    )
    unset = _unless(
        f"{pod_value}.hasValue()",
        _each(
            _ALL,
            lambda k: "!c.?securityContext.?runAsNonRoot.hasValue()",
            lambda k: (
                f"{_who(k)} + ' may run as root (set securityContext.runAsNonRoot: true on "
                "it or on the pod)'"
            ),
        ),
    )
    return _unless(USER_NAMESPACED, f"{pod} + {explicit_false} + {unset}")


def run_as_user(level: registry.Level, params: Mapping[str, Any]) -> str:
    pod = _when(
        f"{PSC}.?runAsUser.orValue(1) == 0",
        "'pod sets spec.securityContext.runAsUser: 0 (root)'",
    )
    containers = _each(
        _ALL,
        lambda k: "c.?securityContext.?runAsUser.orValue(1) == 0",
        lambda k: f"{_who(k)} + ' sets securityContext.runAsUser: 0 (root)'",
    )
    return _unless(USER_NAMESPACED, f"{pod} + {containers}")


# ----------------------------------------------------------------------- best practices


def _positive(value: str) -> str:
    return f"(isQuantity({value}) && quantity({value}).isGreaterThan(quantity('0')))"


def _provides(res: str, section: str, name: str) -> str:
    """CEL: does the optional resources block ``res`` provide ``section.name``?

    As the engine: a request that is present is judged itself; a missing request falls
    back to the limit of the same resource; absent (or not positive) does not provide.
    """
    value = f"{res}.?{section}.?{name}"
    if section == "requests":
        value = f"{value}.orValue({res}.?limits.?{name}.orValue('0'))"
    else:
        value = f"{value}.orValue('0')"
    return _positive(value)


def resources(level: registry.Level, params: Mapping[str, Any]) -> str:
    from kube_guardrails.checks import practices

    fields = practices.REQUIRED_RESOURCES

    def missing(section: str, name: str) -> str:
        return (
            f"!{_provides('c.?resources', section, name)} && "
            f"!{_provides(f'{S}.?resources', section, name)}"
        )

    cond = cel.any_of(missing(s, n) for s, n in fields)
    listing = (
        "["
        + ", ".join(
            f"({missing(s, n)}) ? {cel.string(f'resources.{s}.{n}')} : ''" for s, n in fields
        )
        + "].filter(x, x != '').join(', ')"
    )
    return _each(
        _RUNNING, lambda k: cond, lambda k: f"{_who(k)} + ' sets no (or a zero) ' + {listing}"
    )


def probes(level: registry.Level, params: Mapping[str, Any]) -> str:
    from kube_guardrails.checks import practices

    names = [p for p, _ in practices.REQUIRED_PROBES]
    cond = cel.any_of(f"!has(c.{p})" for p in names)
    listing = (
        "["
        + ", ".join(f"has(c.{p}) ? '' : {cel.string(p)}" for p in names)
        + "].filter(x, x != '').join(' and ')"
    )
    regular = (
        f"{S}.?containers.orValue([]).filter(c, {cond})"
        f".map(c, {_who('containers')} + ' has no ' + {listing})"
    )
    sidecars = (
        f"{S}.?initContainers.orValue([]).filter(c, c.?restartPolicy.orValue('') == 'Always' "
        f"&& ({cond})).map(c, 'sidecar ' + {_who('initContainers')} + ' has no ' + {listing})"
    )
    return _unless(
        f"{S}.?restartPolicy.orValue('Always') in ['Never', 'OnFailure']",
        f"{regular} + {sidecars}",
    )


# Image references, split as practices.parse_image does, with regular expressions (no
# let-bindings in the API server's CEL). Each takes the CEL expression of the image string.


def _digest_ok(i: str) -> str:
    return f"{i}.matches('^[^@]*@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{{32,}}$')"


def _no_digest(i: str) -> str:
    """No '@', or an empty digest after it (parse_image: ``digest or None``)."""
    return f"{i}.matches('^[^@]*@?$')"


def _tagged(i: str) -> str:
    """A ':' after the last '/' of the part before any '@'."""
    return f"{i}.matches('^[^@]*:[^:/@]*@?$')"


def _latest(i: str) -> str:
    return f"{i}.matches('^[^@]*:latest@?$')"


def _images() -> str:
    """[who, image] for every container with an image, in the engine's walk order."""
    return " + ".join(
        f"{S}.?{k}.orValue([]).filter(c, c.?image.orValue('') != '')"
        f".map(c, [{_who(k)}, string(c.image)])"
        for k in _ALL
    )


def image_tag(level: registry.Level, params: Mapping[str, Any]) -> str:
    i = "p[1]"
    ok = f"{_digest_ok(i)} || ({_no_digest(i)} && {_tagged(i)} && !{_latest(i)})"
    problem = (
        f"(!{_no_digest(i)} ? 'has a malformed digest' : "
        f"({_tagged(i)} ? 'uses :latest' : 'has no tag, so it pulls :latest'))"
    )
    return (
        f"({_images()}).filter(p, !({ok}))"
        f".map(p, p[0] + ' image \\\"' + p[1] + '\\\" ' + {problem})"
    )


def _normalized(i: str) -> str:
    """CEL: the normalised reference of image ``i`` (practices.ImageRef.normalized).

    Written as a chain of ``map`` steps over one-element lists, each step carrying the
    parts computed so far (CEL in the API server has no ``let``). ``i`` must be a plain
    identifier-free expression of type string.
    """
    # step 1: [image, rest, digest]
    s1 = (
        f"[{i}].map(x, [x, x.indexOf('@') >= 0 ? x.substring(0, x.indexOf('@')) : x, "
        "x.indexOf('@') >= 0 ? x.substring(x.indexOf('@') + 1) : ''])"
    )
    # step 2: [repo, tagsuffix, digestsuffix] where tag is after the last ':' past the last '/'
    s2 = (
        f"{s1}.map(x, x[1].lastIndexOf(':') > x[1].lastIndexOf('/') ? "
        "[x[1].substring(0, x[1].lastIndexOf(':')), x[1].substring(x[1].lastIndexOf(':')), "
        "x[2] == '' ? '' : '@' + x[2]] : [x[1], '', x[2] == '' ? '' : '@' + x[2]])"
    )
    # step 3: [domain, path, suffix]
    first = "x[0].substring(0, x[0].indexOf('/'))"
    hosted = (
        f"x[0].indexOf('/') >= 0 && ({first}.contains('.') || {first}.contains(':') || "
        f"{first} == 'localhost' || {first} != {first}.lowerAscii())"
    )
    s3 = (
        f"{s2}.map(x, {hosted} ? [{first} == 'index.docker.io' ? 'docker.io' : {first}, "
        "x[0].substring(x[0].indexOf('/') + 1), x[1] + x[2]] : ['docker.io', x[0], x[1] + x[2]])"
    )
    # step 4: the normalised string
    s4 = (
        f"{s3}.map(x, x[0] + '/' + (x[0] == 'docker.io' && !x[1].contains('/') ? "
        "'library/' + x[1] : x[1]) + x[2])[0]"
    )
    return s4


def image_registry(level: registry.Level, params: Mapping[str, Any]) -> str | None:
    allowed = params.get("allowed") or []
    if not allowed:
        return None
    prefixes = cel.strings(allowed)
    admitted = (
        f"{prefixes}.exists(a, n.startsWith(a) && (a.endsWith('/') || a.endsWith(':') || "
        "a.endsWith('@') || size(n) == size(a) || n.substring(size(a), size(a) + 1) in "
        "['/', ':', '@']))"
    )
    return (
        f"({_images()}).map(p, [p[0], p[1], {_normalized('p[1]')}])"
        f".filter(t, ![t[2]].exists(n, {admitted}))"
        f".map(t, t[0] + ' image \"' + t[1] + '\" (' + t[2] + ') is not from an allowed registry')"
    )


def read_only_root_filesystem(level: registry.Level, params: Mapping[str, Any]) -> str:
    return _unless(
        WINDOWS,
        _each(
            _ALL,
            lambda k: "c.?securityContext.?readOnlyRootFilesystem.orValue(false) != true",
            lambda k: f"{_who(k)} + ' does not set securityContext.readOnlyRootFilesystem: true'",
        ),
    )


RULES: dict[str, Rule] = {
    "hostNamespaces": host_namespaces,
    "privileged": privileged,
    "capabilities": capabilities,
    "hostPathVolumes": host_path_volumes,
    "hostPorts": host_ports,
    "appArmor": app_armor,
    "seLinux": se_linux,
    "procMount": proc_mount,
    "seccomp": seccomp,
    "sysctls": sysctls,
    "hostProbesAndHostLifecycle": host_probes_and_host_lifecycle,
    "windowsHostProcess": windows_host_process,
    "volumeTypes": volume_types,
    "allowPrivilegeEscalation": allow_privilege_escalation,
    "runAsNonRoot": run_as_non_root,
    "runAsUser": run_as_user,
    "resources": resources,
    "probes": probes,
    "imageTag": image_tag,
    "imageRegistry": image_registry,
    "readOnlyRootFilesystem": read_only_root_filesystem,
}

# Checks that stay runtime-only (evaluated by the operator after admission), with why.
RUNTIME_ONLY: dict[str, str] = {}
