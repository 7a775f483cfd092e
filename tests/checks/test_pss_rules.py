"""Pod Security Standards checks: exact findings (paths, containers, messages) and edges.

The fixture folders and the upstream-conformance test decide pass/fail per case; this
table pins down what a developer sees: which field path, which container, what words,
how many findings, and the corners the fixtures cannot show (level switching, ``null``
versus ``false``, malformed input, pod templates).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from kube_guardrails.checks import engine, pss, registry

B = registry.Level.BASELINE
R = registry.Level.RESTRICTED
N = registry.Level.NONE

BASE_SPEC: dict[str, Any] = {
    "initContainers": [{"name": "init", "image": "busybox"}],
    "containers": [{"name": "app", "image": "nginx"}, {"name": "sidecar", "image": "envoy"}],
}
RESTRICTED_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
RESTRICTED_SPEC: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "initContainers": [{"name": "init", "image": "busybox", "securityContext": RESTRICTED_SC}],
    "containers": [
        {"name": "app", "image": "nginx", "securityContext": RESTRICTED_SC},
        {"name": "sidecar", "image": "envoy", "securityContext": RESTRICTED_SC},
    ],
}


def pod(spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(spec)}


def tweak(base: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set ``a.b[0].c`` in a deep copy of ``base`` (creating mappings on the way)."""
    spec = copy.deepcopy(dict(base))
    node: Any = spec
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part, nxt in itertools.pairwise(parts):
        key: Any = int(part) if part.isdigit() else part
        if isinstance(node, list):
            node = node[key]
        else:
            if node.get(key) is None:
                node[key] = [] if nxt.isdigit() else {}
            node[key] = copy.copy(node[key])
            node = node[key]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


def run(check_id: str, obj: Mapping[str, Any], level: registry.Level) -> engine.Result:
    target = engine.pod_input(obj)
    assert target is not None
    (result,) = engine.run(target, [engine.Selected(check=registry.get(check_id))], level=level)
    return result


@dataclasses.dataclass(frozen=True)
class Expect:
    """One finding: its path, container, and words its message must contain."""

    path: str
    container: str | None
    words: tuple[str, ...] = ()


F = Expect

FINDINGS = [
    pytest.param(
        "capabilities",
        B,
        pod(
            tweak(
                BASE_SPEC, "containers[1].securityContext.capabilities.add", ["CHOWN", "SYS_ADMIN"]
            )
        ),
        [
            F(
                "spec.containers[1].securityContext.capabilities.add[1]",
                "sidecar",
                ('container "sidecar" adds capability SYS_ADMIN', "AUDIT_WRITE, CHOWN", "baseline"),
            )
        ],
        id="capabilities/baseline-second-entry-of-second-container",
    ),
    pytest.param(
        "capabilities",
        R,
        pod(
            tweak(
                RESTRICTED_SPEC,
                "initContainers[0].securityContext",
                {"allowPrivilegeEscalation": False, "capabilities": {"add": ["CHOWN"]}},
            )
        ),
        [
            F(
                "spec.initContainers[0].securityContext.capabilities.drop",
                "init",
                ('init container "init" must set securityContext.capabilities.drop: ["ALL"]',),
            ),
            F(
                "spec.initContainers[0].securityContext.capabilities.add[0]",
                "init",
                ("adds capability CHOWN", "only NET_BIND_SERVICE"),
            ),
        ],
        id="capabilities/restricted-init-container-no-drop-and-add",
    ),
    pytest.param(
        "privileged",
        B,
        pod(
            {
                **BASE_SPEC,
                "ephemeralContainers": [
                    {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}
                ],
            }
        ),
        [
            F(
                "spec.ephemeralContainers[0].securityContext.privileged",
                "debug",
                ('ephemeral container "debug" sets securityContext.privileged: true',),
            )
        ],
        id="privileged/ephemeral-container",
    ),
    pytest.param(
        "hostNamespaces",
        B,
        pod({**BASE_SPEC, "hostPID": True, "hostIPC": True}),
        [
            F("spec.hostPID", None, ("hostPID: true", "PID namespace")),
            F("spec.hostIPC", None, ("hostIPC: true", "IPC namespace")),
        ],
        id="hostNamespaces/two-at-once",
    ),
    pytest.param(
        "hostPorts",
        B,
        pod(
            tweak(
                BASE_SPEC,
                "containers[0].ports",
                [{"containerPort": 80}, {"containerPort": 443, "hostPort": 8443}],
            )
        ),
        [F("spec.containers[0].ports[1].hostPort", "app", ("binds host port 8443",))],
        id="hostPorts/second-port",
    ),
    pytest.param(
        "hostPathVolumes",
        B,
        pod(
            {
                **BASE_SPEC,
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}},
                ],
            }
        ),
        [F("spec.volumes[1].hostPath", None, ('volume "sock"', "/var/run/docker.sock"))],
        id="hostPathVolumes/second-volume",
    ),
    pytest.param(
        "appArmor",
        B,
        pod(
            tweak(BASE_SPEC, "securityContext.appArmorProfile", {"type": "Unconfined"}),
            annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"},
        ),
        [
            F("spec.securityContext.appArmorProfile.type", None, ("pod sets", "Unconfined")),
            F(
                "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]",
                "app",
                ('="unconfined"', 'container "app"'),
            ),
        ],
        id="appArmor/field-and-annotation",
    ),
    pytest.param(
        "seLinux",
        B,
        pod(
            tweak(
                BASE_SPEC,
                "containers[0].securityContext.seLinuxOptions",
                {"type": "spc_t", "user": "system_u", "role": "system_r", "level": "s0:c1"},
            )
        ),
        [
            F("spec.containers[0].securityContext.seLinuxOptions.type", "app", ("spc_t",)),
            F("spec.containers[0].securityContext.seLinuxOptions.user", "app", ("system_u",)),
            F("spec.containers[0].securityContext.seLinuxOptions.role", "app", ("system_r",)),
        ],
        id="seLinux/type-user-role-one-finding-each",
    ),
    pytest.param(
        "procMount",
        R,
        pod(
            {
                **tweak(RESTRICTED_SPEC, "containers[0].securityContext.procMount", "Unmasked"),
                "hostUsers": False,
            }
        ),
        [
            F(
                "spec.containers[0].securityContext.procMount",
                "app",
                ("Unmasked", "only Default is allowed at restricted"),
            )
        ],
        id="procMount/restricted-ignores-user-namespace",
    ),
    pytest.param(
        "seccomp",
        R,
        pod(
            tweak(
                {**RESTRICTED_SPEC, "securityContext": {"runAsNonRoot": True}},
                "containers[0].securityContext.seccompProfile",
                {"type": "RuntimeDefault"},
            )
        ),
        [
            F(
                "spec.initContainers[0].securityContext.seccompProfile.type",
                "init",
                ('init container "init" has no seccomp profile', "pod level"),
            ),
            F("spec.containers[1].securityContext.seccompProfile.type", "sidecar", ("sidecar",)),
        ],
        id="seccomp/restricted-unset-containers-without-pod-level",
    ),
    pytest.param(
        "seccomp",
        B,
        pod(tweak(BASE_SPEC, "securityContext.seccompProfile", {"type": "Unconfined"})),
        [
            F(
                "spec.securityContext.seccompProfile.type",
                None,
                ("pod sets", "Unconfined", "baseline"),
            )
        ],
        id="seccomp/baseline-pod-unconfined",
    ),
    pytest.param(
        "sysctls",
        B,
        pod(
            tweak(
                BASE_SPEC,
                "securityContext.sysctls",
                [
                    {"name": "kernel.msgmax", "value": "1"},
                    {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"},
                    {"name": "net.core.somaxconn", "value": "1024"},
                    {"name": "", "value": "1"},
                ],
            )
        ),
        [
            F("spec.securityContext.sysctls[0].name", None, ("kernel.msgmax",)),
            F("spec.securityContext.sysctls[2].name", None, ("net.core.somaxconn",)),
            F("spec.securityContext.sysctls[3].name", None, ("(unnamed)",)),
        ],
        id="sysctls/each-unsafe-entry",
    ),
    pytest.param(
        "hostProbesAndHostLifecycle",
        B,
        pod(
            tweak(
                tweak(
                    BASE_SPEC,
                    "containers[1].readinessProbe",
                    {"tcpSocket": {"port": 1, "host": "10.0.0.1"}},
                ),
                "containers[1].lifecycle",
                {"preStop": {"httpGet": {"port": 80, "host": "example.com"}}},
            )
        ),
        [
            F("spec.containers[1].readinessProbe.tcpSocket.host", "sidecar", ("10.0.0.1",)),
            F("spec.containers[1].lifecycle.preStop.httpGet.host", "sidecar", ("example.com",)),
        ],
        id="hostProbesAndHostLifecycle/probe-and-hook",
    ),
    pytest.param(
        "windowsHostProcess",
        B,
        pod(tweak(BASE_SPEC, "initContainers[0].securityContext.windowsOptions.hostProcess", True)),
        [F("spec.initContainers[0].securityContext.windowsOptions.hostProcess", "init", ())],
        id="windowsHostProcess/init-container",
    ),
    pytest.param(
        "volumeTypes",
        R,
        pod(
            {**RESTRICTED_SPEC, "volumes": [{"name": "data", "nfs": {"server": "s", "path": "/"}}]}
        ),
        [F("spec.volumes[0].nfs", None, ('volume "data" uses the nfs volume type', "image"))],
        id="volumeTypes/nfs",
    ),
    pytest.param(
        "allowPrivilegeEscalation",
        R,
        pod(
            tweak(
                RESTRICTED_SPEC, "containers[1].securityContext", {"allowPrivilegeEscalation": True}
            )
        ),
        [
            F(
                "spec.containers[1].securityContext.allowPrivilegeEscalation",
                "sidecar",
                ("but sets it to true",),
            )
        ],
        id="allowPrivilegeEscalation/explicit-true",
    ),
    pytest.param(
        "allowPrivilegeEscalation",
        R,
        pod(tweak(RESTRICTED_SPEC, "containers[1].securityContext", None)),
        [
            F(
                "spec.containers[1].securityContext.allowPrivilegeEscalation",
                "sidecar",
                ("does not set it",),
            )
        ],
        id="allowPrivilegeEscalation/null-security-context",
    ),
    pytest.param(
        "runAsNonRoot",
        R,
        pod(
            tweak(
                tweak(RESTRICTED_SPEC, "securityContext.runAsNonRoot", False),
                "containers[0].securityContext.runAsNonRoot",
                True,
            )
        ),
        [
            F(
                "spec.securityContext.runAsNonRoot",
                None,
                ("pod sets securityContext.runAsNonRoot: false",),
            )
        ],
        id="runAsNonRoot/pod-false-beats-container-true",
    ),
    pytest.param(
        "runAsNonRoot",
        R,
        pod(
            tweak(
                tweak(RESTRICTED_SPEC, "securityContext.runAsNonRoot", None),
                "containers[0].securityContext.runAsNonRoot",
                True,
            )
        ),
        [
            F("spec.initContainers[0].securityContext.runAsNonRoot", "init", ("may run as root",)),
            F("spec.containers[1].securityContext.runAsNonRoot", "sidecar", ("may run as root",)),
        ],
        id="runAsNonRoot/null-pod-level-some-containers-unset",
    ),
    pytest.param(
        "runAsUser",
        R,
        pod(
            tweak(
                tweak(RESTRICTED_SPEC, "securityContext.runAsUser", 0),
                "containers[1].securityContext.runAsUser",
                0,
            )
        ),
        [
            F("spec.securityContext.runAsUser", None, ("pod sets securityContext.runAsUser: 0",)),
            F("spec.containers[1].securityContext.runAsUser", "sidecar", ("(root)",)),
        ],
        id="runAsUser/pod-and-container",
    ),
]


@pytest.mark.parametrize(("check_id", "level", "obj", "expected"), FINDINGS)
def test_findings(
    check_id: str, level: registry.Level, obj: dict[str, Any], expected: list[Expect]
) -> None:
    result = run(check_id, obj, level)
    assert result.outcome is engine.Outcome.FAIL
    got = [(f.path, f.container) for f in result.findings]
    assert got == [(e.path, e.container) for e in expected]
    for f, e in zip(result.findings, expected, strict=True):
        for word in e.words:
            assert word in f.message, f"{word!r} not in {f.message!r}"
        assert f.check == check_id
        assert f.hint == registry.get(check_id).hint


OUTCOMES = [
    # Level switching: one id, the upstream override pair behind it.
    ("seccomp", B, pod(BASE_SPEC), "pass", "seccomp/baseline-unset-is-fine"),
    ("seccomp", N, pod(BASE_SPEC), "pass", "seccomp/level-none-uses-baseline-rule"),
    ("seccomp", R, pod(BASE_SPEC), "fail", "seccomp/restricted-requires-a-profile"),
    (
        "capabilities",
        B,
        pod(tweak(BASE_SPEC, "containers[0].securityContext.capabilities.add", ["CHOWN"])),
        "pass",
        "capabilities/baseline-default-cap",
    ),
    (
        "capabilities",
        N,
        pod(tweak(BASE_SPEC, "containers[0].securityContext.capabilities.add", ["NET_ADMIN"])),
        "fail",
        "capabilities/level-none-uses-baseline-rule",
    ),
    (
        "capabilities",
        R,
        pod(
            tweak(
                RESTRICTED_SPEC,
                "containers[0].securityContext.capabilities",
                {"drop": ["ALL"], "add": ["CHOWN"]},
            )
        ),
        "fail",
        "capabilities/restricted-default-cap",
    ),
    ("capabilities", R, pod(BASE_SPEC), "fail", "capabilities/restricted-no-drop"),
    (
        "procMount",
        B,
        pod(
            {
                **tweak(BASE_SPEC, "containers[0].securityContext.procMount", "Unmasked"),
                "hostUsers": False,
            }
        ),
        "skip",
        "procMount/baseline-user-namespace",
    ),
    # null is unset, false is a value.
    (
        "privileged",
        B,
        pod(tweak(BASE_SPEC, "containers[0].securityContext.privileged", None)),
        "pass",
        "privileged/null",
    ),
    (
        "privileged",
        B,
        pod(tweak(BASE_SPEC, "containers[0].securityContext", None)),
        "pass",
        "privileged/null-security-context",
    ),
    ("hostNamespaces", B, pod({**BASE_SPEC, "hostNetwork": None}), "pass", "hostNamespaces/null"),
    (
        "hostPathVolumes",
        B,
        pod({**BASE_SPEC, "volumes": [{"name": "v", "hostPath": None}]}),
        "pass",
        "hostPathVolumes/null",
    ),
    (
        "hostPorts",
        B,
        pod(tweak(BASE_SPEC, "containers[0].ports", [{"containerPort": 80, "hostPort": None}])),
        "pass",
        "hostPorts/null",
    ),
    (
        "seccomp",
        B,
        pod(tweak(BASE_SPEC, "securityContext.seccompProfile", None)),
        "pass",
        "seccomp/baseline-null-profile",
    ),
    (
        "seccomp",
        B,
        pod(tweak(BASE_SPEC, "securityContext.seccompProfile", {})),
        "fail",
        "seccomp/baseline-profile-without-type",
    ),
    (
        "seccomp",
        R,
        pod(tweak(RESTRICTED_SPEC, "securityContext.seccompProfile", None)),
        "fail",
        "seccomp/restricted-null-profile",
    ),
    (
        "appArmor",
        B,
        pod(tweak(BASE_SPEC, "containers[0].securityContext.appArmorProfile", None)),
        "pass",
        "appArmor/null-profile",
    ),
    (
        "appArmor",
        B,
        pod(tweak(BASE_SPEC, "securityContext.appArmorProfile", {})),
        "fail",
        "appArmor/profile-without-type",
    ),
    (
        "appArmor",
        B,
        pod(
            BASE_SPEC,
            {"container.apparmor.security.beta.kubernetes.io/app": "localhost/my-profile"},
        ),
        "pass",
        "appArmor/annotation-localhost",
    ),
    (
        "seLinux",
        B,
        pod(tweak(BASE_SPEC, "securityContext.seLinuxOptions", {"type": None, "user": ""})),
        "pass",
        "seLinux/null-and-empty",
    ),
    (
        "runAsUser",
        R,
        pod(tweak(RESTRICTED_SPEC, "securityContext.runAsUser", None)),
        "pass",
        "runAsUser/null",
    ),
    (
        "runAsUser",
        R,
        pod(tweak(RESTRICTED_SPEC, "securityContext.runAsUser", 65534)),
        "pass",
        "runAsUser/nobody",
    ),
    (
        "runAsNonRoot",
        R,
        pod({**RESTRICTED_SPEC, "hostUsers": True}),
        "pass",
        "runAsNonRoot/host-users-true-is-normal",
    ),
    (
        "allowPrivilegeEscalation",
        R,
        pod({**RESTRICTED_SPEC, "os": {"name": "linux"}}),
        "pass",
        "allowPrivilegeEscalation/linux-os",
    ),
    (
        "allowPrivilegeEscalation",
        R,
        pod({**BASE_SPEC, "os": {"name": "windows"}}),
        "skip",
        "allowPrivilegeEscalation/windows",
    ),
    # Upstream's switch: a volume with an allowed source is allowed, whatever else it has.
    (
        "volumeTypes",
        R,
        pod({**RESTRICTED_SPEC, "volumes": [{"name": "v"}]}),
        "pass",
        "volumeTypes/implicit-empty-dir",
    ),
    (
        "volumeTypes",
        R,
        pod({**RESTRICTED_SPEC, "volumes": [{"name": "v", "image": {"reference": "r/i:1"}}]}),
        "pass",
        "volumeTypes/image",
    ),
    # Sysctl allow-list of the latest version, including the v1.37 additions.
    (
        "sysctls",
        B,
        pod(
            tweak(
                BASE_SPEC,
                "securityContext.sysctls",
                [{"name": "net.ipv4.tcp_notsent_lowat", "value": "16384"}],
            )
        ),
        "pass",
        "sysctls/v1.37-addition",
    ),
    # Malformed input never crashes a check: it is judged as the API would decode it.
    ("privileged", B, pod({"containers": None}), "pass", "malformed/containers-null"),
    ("privileged", B, pod({"containers": "nginx"}), "pass", "malformed/containers-string"),
    (
        "capabilities",
        B,
        pod(tweak(BASE_SPEC, "containers[0].securityContext.capabilities", "ALL")),
        "pass",
        "malformed/capabilities-string",
    ),
    (
        "sysctls",
        B,
        pod(tweak(BASE_SPEC, "securityContext.sysctls", ["kernel.msgmax"])),
        "fail",
        "malformed/sysctl-entry-not-a-mapping",
    ),
    (
        "runAsUser",
        R,
        pod(tweak(RESTRICTED_SPEC, "securityContext.runAsUser", False)),
        "pass",
        "malformed/run-as-user-false-is-not-uid-0",
    ),
]


@pytest.mark.parametrize(
    ("check_id", "level", "obj", "outcome"),
    [pytest.param(c, lv, o, out, id=i) for c, lv, o, out, i in OUTCOMES],
)
def test_outcomes(check_id: str, level: registry.Level, obj: dict[str, Any], outcome: str) -> None:
    result = run(check_id, obj, level)
    listing = [(f.path, f.message) for f in result.findings]
    assert result.outcome is engine.Outcome(outcome), listing


def test_pod_template_paths() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
                    }
                },
                "spec": tweak(BASE_SPEC, "containers[0].securityContext.privileged", True),
            }
        },
    }
    assert [f.path for f in run("privileged", deployment, B).findings] == [
        "spec.template.spec.containers[0].securityContext.privileged"
    ]
    assert [f.path for f in run("appArmor", deployment, B).findings] == [
        "spec.template.metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]"
    ]
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {**BASE_SPEC, "hostPID": True}}}}},
    }
    assert [f.path for f in run("hostNamespaces", cronjob, B).findings] == [
        "spec.jobTemplate.spec.template.spec.hostPID"
    ]


PSS_IDS = {
    registry.Level.BASELINE: {
        "hostNamespaces",
        "privileged",
        "capabilities",
        "hostPathVolumes",
        "hostPorts",
        "appArmor",
        "seLinux",
        "procMount",
        "seccomp",
        "sysctls",
        "hostProbesAndHostLifecycle",
        "windowsHostProcess",
    },
    registry.Level.RESTRICTED: {
        "volumeTypes",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "runAsUser",
    },
}


def test_registry_metadata() -> None:
    registry.validate()
    pss_checks = [c for c in registry.all_checks() if c.category is registry.Category.POD_SECURITY]
    by_level: dict[registry.Level | None, set[str]] = {}
    for c in pss_checks:
        by_level.setdefault(c.level, set()).add(c.id)
        assert c.default_action == "Enforce", c.id
        expected = registry.Severity.HIGH if c.level is B else registry.Severity.MEDIUM
        assert c.severity is expected, c.id
        assert "\n" not in c.hint and len(c.hint) <= 150, c.id
        assert "Upstream" in c.doc or "upstream" in c.doc, c.id
    assert by_level == PSS_IDS


def test_allowed_value_sets_are_upstreams_latest() -> None:
    assert pss.POLICY_VERSION == "v1.37"
    assert len(pss.SAFE_SYSCTLS) == 14
    assert {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"} <= pss.SAFE_SYSCTLS
    assert set(pss.BASELINE_CAPABILITIES) == {
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
    assert "NET_RAW" not in pss.BASELINE_CAPABILITIES
    assert set(pss.SELINUX_TYPES) == {
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    }
    assert set(pss.RESTRICTED_VOLUME_SOURCES) == {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
