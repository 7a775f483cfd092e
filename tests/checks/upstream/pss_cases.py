"""Pod Security Standards conformance cases, after upstream's fixture generators.

Upstream (``k8s.io/pod-security-admission/test/fixtures_*.go``, Apache-2.0, see NOTICE)
generates its conformance pods by taking the minimal valid pod of a level and applying
one tweak per case. This module re-expresses those generators, case by case, for the
latest policy version (v1.37), as plain-dict tweaks, plus a few local cases (marked
``upstream=False``) for things upstream's fixtures leave implicit: ephemeral containers,
explicit ``false`` values, edge values.

It is the single source of truth for two things:

- ``tests/checks/test_pss_upstream.py`` runs every case through *all* Pod Security
  checks of a level, as upstream's own conformance run does: a pass case must produce no
  finding, a fail case at least one (from the expected check);
- the per-check fixture files ``tests/checks/cases/<checkId>/{pass,fail,skip}-*.yaml``
  are generated from it (``python tests/checks/upstream/pss_cases.py``), and a test
  fails when the committed files drift from this table.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import yaml

Pod = dict[str, Any]
Tweak = Callable[[Pod], None]

BASELINE = "baseline"
RESTRICTED = "restricted"
IMAGE = "registry.k8s.io/pause"

# Upstream's minimal valid pods (test/fixtures.go): baseline is two bare containers;
# restricted adds runAsNonRoot (1.0), allowPrivilegeEscalation=false (1.8), a
# RuntimeDefault seccomp profile (1.19) and capabilities.drop=[ALL] (1.22).
_BASELINE_POD: Pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "test-pod"},
    "spec": {
        "initContainers": [{"name": "initcontainer1", "image": IMAGE}],
        "containers": [{"name": "container1", "image": IMAGE}],
    },
}
_RESTRICTED_CONTAINER_SC = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
_RESTRICTED_POD: Pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "test-pod"},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {"name": "initcontainer1", "image": IMAGE, "securityContext": _RESTRICTED_CONTAINER_SC}
        ],
        "containers": [
            {"name": "container1", "image": IMAGE, "securityContext": _RESTRICTED_CONTAINER_SC}
        ],
    },
}


def minimal_pod(level: str) -> Pod:
    # A JSON round trip, not deepcopy: the copy must share no dict between containers
    # (YAML would write anchors, and a tweak of one container would leak into another).
    pod: Pod = json.loads(json.dumps(_RESTRICTED_POD if level == RESTRICTED else _BASELINE_POD))
    return pod


def _kebab(name: str) -> str:
    return "".join("-" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("-")


@dataclasses.dataclass(frozen=True)
class Case:
    """One tweak of the minimal pod, with its expected outcome for one check.

    ``levels`` are the levels at which the whole level's check set must agree with
    upstream (a ``pass`` case: no finding at all; a ``fail`` case: a finding from
    ``check``). ``fixture_level`` is the level the per-check fixture file is written for.
    ``skip`` cases are upstream passes that our engine reports as skip (the rule does not
    apply to the pod).
    """

    check: str
    name: str
    outcome: str
    tweak: Tweak
    fixture_level: str
    levels: tuple[str, ...]
    upstream: bool = True

    @property
    def id(self) -> str:
        return f"{self.check}/{self.outcome}-{self.name}"

    def build(self, level: str) -> Pod:
        pod = minimal_pod(level)
        pod["metadata"]["name"] = f"{_kebab(self.check)}-{self.name}"[:63]
        self.tweak(pod)
        return pod


# --- tweak helpers ---------------------------------------------------------------------------


def _spec(p: Pod) -> dict[str, Any]:
    spec: dict[str, Any] = p["spec"]
    return spec


def _psc(p: Pod) -> dict[str, Any]:
    sc: dict[str, Any] = _spec(p).setdefault("securityContext", {})
    return sc


def _c(p: Pod) -> dict[str, Any]:
    c: dict[str, Any] = _spec(p)["containers"][0]
    return c


def _init(p: Pod) -> dict[str, Any]:
    c: dict[str, Any] = _spec(p)["initContainers"][0]
    return c


def _sc(container: dict[str, Any]) -> dict[str, Any]:
    # Copy-on-write: the minimal restricted pod shares one dict between containers.
    sc = dict(container.get("securityContext") or {})
    container["securityContext"] = sc
    return sc


def _caps(container: dict[str, Any]) -> dict[str, Any]:
    sc = _sc(container)
    caps = dict(sc.get("capabilities") or {})
    sc["capabilities"] = caps
    return caps


def _ephemeral(p: Pod, **security_context: Any) -> dict[str, Any]:
    """Add a ``kubectl debug``-style ephemeral container (valid: no ports or probes)."""
    c: dict[str, Any] = {"name": "debugger", "image": "registry.k8s.io/busybox"}
    if security_context:
        c["securityContext"] = security_context
    _spec(p).setdefault("ephemeralContainers", []).append(c)
    return c


def _restricted_ephemeral(p: Pod) -> dict[str, Any]:
    return _ephemeral(p, **copy.deepcopy(_RESTRICTED_CONTAINER_SC))


def _set(*steps: Tweak) -> Tweak:
    def apply(p: Pod) -> None:
        for step in steps:
            step(p)

    return apply


def _noop(p: Pod) -> None:
    """The minimal valid pod itself."""


def _windows(p: Pod) -> None:
    """Upstream's Windows variant: Linux-only fields removed, ``spec.os.name: windows``."""
    _spec(p)["os"] = {"name": "windows"}
    _psc(p).pop("seccompProfile", None)
    for c in (_c(p), _init(p)):
        c.pop("securityContext", None)


_ALL_DEFAULT_CAPS = [
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
]
_EVERY_CAP = [
    "SYS_TIME",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "NET_ADMIN",
    "SYSLOG",
    "CHOWN",
    "NET_RAW",
    "DAC_OVERRIDE",
    "FOWNER",
    "DAC_READ_SEARCH",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_BOOT",
    "LEASE",
    "SETFCAP",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
]
_SAFE_SYSCTLS = [
    ("kernel.shm_rmid_forced", "0"),
    ("net.ipv4.ip_local_port_range", "1024 65535"),
    ("net.ipv4.tcp_syncookies", "0"),
    ("net.ipv4.ping_group_range", "1 0"),
    ("net.ipv4.ip_unprivileged_port_start", "1024"),
    ("net.ipv4.ip_local_reserved_ports", "1024-4999"),
    ("net.ipv4.tcp_keepalive_time", "7200"),
    ("net.ipv4.tcp_fin_timeout", "60"),
    ("net.ipv4.tcp_keepalive_intvl", "75"),
    ("net.ipv4.tcp_keepalive_probes", "9"),
    ("net.ipv4.tcp_rmem", "4096 87380 16777216"),
    ("net.ipv4.tcp_wmem", "4096 65536 16777216"),
    ("net.ipv4.tcp_slow_start_after_idle", "0"),
    ("net.ipv4.tcp_notsent_lowat", "16384"),
]
# restrictedVolumes fail cases: every non-core inline source upstream lists.
_RESTRICTED_VOLUME_SOURCES: list[tuple[str, dict[str, Any]]] = [
    ("gcePersistentDisk", {"pdName": "test"}),
    ("awsElasticBlockStore", {"volumeID": "test"}),
    ("gitRepo", {"repository": "github.com/kubernetes/kubernetes"}),
    ("nfs", {"server": "test", "path": "/test"}),
    (
        "iscsi",
        {"targetPortal": "test", "iqn": "iqn.2001-04.com.example:storage.kube.sys1.xyz", "lun": 0},
    ),
    ("glusterfs", {"path": "test", "endpoints": "test"}),
    ("rbd", {"monitors": ["test"], "image": "test"}),
    ("flexVolume", {"driver": "test"}),
    ("cinder", {"volumeID": "test"}),
    ("cephfs", {"monitors": ["test"]}),
    ("flocker", {"datasetName": "test"}),
    ("fc", {"wwids": ["test"]}),
    ("azureFile", {"secretName": "test", "shareName": "test"}),
    ("vsphereVolume", {"volumePath": "test"}),
    ("quobyte", {"registry": "localhost:1234", "volume": "test"}),
    (
        "azureDisk",
        {"diskName": "test", "diskURI": "https://test.blob.core.windows.net/test/test.vhd"},
    ),
    ("portworxVolume", {"volumeID": "test", "fsType": "ext4"}),
    ("photonPersistentDisk", {"pdID": "test"}),
    ("scaleIO", {"volumeName": "test", "gateway": "localhost", "system": "test"}),
    ("storageos", {"volumeName": "test"}),
    ("hostPath", {"path": "/dev/null"}),
]
_ALLOWED_VOLUMES: list[dict[str, Any]] = [
    {"name": "volume0"},  # no source: the API server's implicit emptyDir
    {"name": "volume1", "emptyDir": {}},
    {"name": "volume2", "secret": {"secretName": "test"}},
    {"name": "volume3", "persistentVolumeClaim": {"claimName": "test"}},
    {
        "name": "volume4",
        "downwardAPI": {
            "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
        },
    },
    {"name": "volume5", "configMap": {"name": "test"}},
    {"name": "volume6", "projected": {"sources": []}},
    {
        "name": "volume7",
        "csi": {"driver": "inline.storage.kubernetes.io", "volumeAttributes": {"foo": "bar"}},
    },
    {
        "name": "volume8",
        "ephemeral": {
            "volumeClaimTemplate": {
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                }
            }
        },
    },
    {
        "name": "volume9",
        "image": {"reference": "registry.k8s.io/pause", "pullPolicy": "IfNotPresent"},
    },
]


def _probe(kind: str, host: str | None) -> dict[str, Any]:
    action: dict[str, Any] = {"port": 8080}
    if host is not None:
        action["host"] = host
    return {kind: action}


# --- the table -------------------------------------------------------------------------------

BOTH = (BASELINE, RESTRICTED)
B = (BASELINE,)
R = (RESTRICTED,)

CASES: list[Case] = []


def _add(
    check: str,
    cases: list[tuple[str, str, Tweak]],
    *,
    fixture_level: str,
    levels: tuple[str, ...] | dict[str, tuple[str, ...]],
    upstream: bool = True,
) -> None:
    """Register cases; ``levels`` per outcome when a dict (e.g. pass only at baseline)."""
    for outcome, name, tweak in cases:
        lv = levels.get(outcome, ()) if isinstance(levels, dict) else levels
        CASES.append(Case(check, name, outcome, tweak, fixture_level, lv, upstream))


def _local(
    check: str,
    cases: list[tuple[str, str, Tweak]],
    *,
    fixture_level: str,
    levels: tuple[str, ...] | dict[str, tuple[str, ...]],
) -> None:
    _add(check, cases, fixture_level=fixture_level, levels=levels, upstream=False)


# hostNamespaces (fixtures_hostNamespaces.go; the minimal pod is the pass case)
_add(
    "hostNamespaces",
    [
        ("fail", "host-ipc", lambda p: _spec(p).update(hostIPC=True)),
        ("fail", "host-network", lambda p: _spec(p).update(hostNetwork=True)),
        ("fail", "host-pid", lambda p: _spec(p).update(hostPID=True)),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "hostNamespaces",
    [
        ("pass", "minimal", _noop),
        (
            "pass",
            "explicit-false",
            lambda p: _spec(p).update(hostIPC=False, hostNetwork=False, hostPID=False),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# privileged (fixtures_privileged.go)
_add(
    "privileged",
    [
        (
            "pass",
            "explicit-false",
            _set(
                lambda p: _sc(_c(p)).update(privileged=False),
                lambda p: _sc(_init(p)).update(privileged=False),
            ),
        ),
        (
            "fail",
            "container",
            _set(
                lambda p: _sc(_c(p)).update(privileged=True),
                lambda p: _sc(_c(p)).pop("allowPrivilegeEscalation", None),
            ),
        ),
        (
            "fail",
            "init-container",
            _set(
                lambda p: _sc(_init(p)).update(privileged=True),
                lambda p: _sc(_init(p)).pop("allowPrivilegeEscalation", None),
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "privileged",
    [
        ("pass", "minimal", _noop),
        ("fail", "ephemeral-container", lambda p: _ephemeral(p, privileged=True)),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# capabilities, baseline rule (fixtures_capabilities_baseline.go; upstream generates no
# pass case at restricted because the restricted minimal pod drops ALL)
_add(
    "capabilities",
    [
        (
            "pass",
            "all-default-capabilities",
            _set(
                lambda p: _caps(_c(p)).update(add=list(_ALL_DEFAULT_CAPS)),
                lambda p: _caps(_init(p)).update(add=list(_ALL_DEFAULT_CAPS)),
            ),
        ),
        ("fail", "net-raw", lambda p: _caps(_c(p)).update(add=["NET_RAW"])),
        ("fail", "net-raw-init-container", lambda p: _caps(_init(p)).update(add=["NET_RAW"])),
        ("fail", "lowercase-chown", lambda p: _caps(_c(p)).update(add=["chown"])),
        ("fail", "cap-prefix", lambda p: _caps(_c(p)).update(add=["CAP_CHOWN"])),
    ],
    fixture_level=BASELINE,
    levels={"pass": B, "fail": BOTH},
)
_local(
    "capabilities",
    [
        ("pass", "minimal", _noop),
        (
            "fail",
            "ephemeral-sys-admin",
            lambda p: _ephemeral(p, capabilities={"add": ["SYS_ADMIN"]}),
        ),
    ],
    fixture_level=BASELINE,
    levels={"pass": B, "fail": BOTH},
)
# capabilities, restricted rule (fixtures_capabilities_restricted.go, 1.22 and 1.25)
_add(
    "capabilities",
    [
        (
            "pass",
            "restricted-drop-all-add-net-bind-service",
            _set(
                lambda p: _caps(_c(p)).update(drop=["ALL"], add=["NET_BIND_SERVICE"]),
                lambda p: _caps(_init(p)).update(drop=["ALL"], add=["NET_BIND_SERVICE"]),
            ),
        ),
        ("fail", "restricted-drop-empty", lambda p: _caps(_c(p)).update(drop=[])),
        ("fail", "restricted-drop-empty-init-container", lambda p: _caps(_init(p)).update(drop=[])),
        (
            "fail",
            "restricted-drop-each-capability",
            _set(
                lambda p: _caps(_c(p)).update(drop=list(_EVERY_CAP)),
                lambda p: _caps(_init(p)).update(drop=list(_EVERY_CAP)),
            ),
        ),
        (
            "fail",
            "restricted-add-default-set",
            _set(
                lambda p: _caps(_c(p)).update(drop=["ALL"], add=list(_ALL_DEFAULT_CAPS)),
                lambda p: _caps(_init(p)).update(drop=["ALL"], add=list(_ALL_DEFAULT_CAPS)),
            ),
        ),
        ("skip", "restricted-windows", _windows),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "capabilities",
    [
        ("fail", "restricted-no-capabilities", lambda p: _sc(_c(p)).pop("capabilities")),
        ("fail", "restricted-drop-lowercase-all", lambda p: _caps(_c(p)).update(drop=["all"])),
        (
            "fail",
            "restricted-ephemeral-no-drop",
            lambda p: _ephemeral(p, allowPrivilegeEscalation=False),
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)

# hostPathVolumes (fixtures_hostPathVolumes.go; overridden by restrictedVolumes upstream)
_add(
    "hostPathVolumes",
    [
        (
            "pass",
            "empty-dir",
            lambda p: _spec(p).update(volumes=[{"name": "volume1", "emptyDir": {}}]),
        ),
        (
            "fail",
            "host-path",
            lambda p: _spec(p).update(
                volumes=[
                    {"name": "volume1", "emptyDir": {}},
                    {"name": "volume2", "hostPath": {"path": "/a/b"}},
                ]
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels={"pass": B, "fail": BOTH},
)
_local(
    "hostPathVolumes",
    [
        ("pass", "minimal", _noop),
        (
            "pass",
            "host-path-null",
            lambda p: _spec(p).update(volumes=[{"name": "v", "hostPath": None, "emptyDir": {}}]),
        ),
    ],
    fixture_level=BASELINE,
    levels={"pass": B},
)

# hostPorts (fixtures_hostPorts.go)
_add(
    "hostPorts",
    [
        (
            "pass",
            "container-ports-only",
            _set(
                lambda p: _c(p).update(ports=[{"containerPort": 12345}]),
                lambda p: _init(p).update(ports=[{"containerPort": 12346}]),
            ),
        ),
        (
            "fail",
            "container",
            lambda p: _c(p).update(ports=[{"containerPort": 12345, "hostPort": 12345}]),
        ),
        (
            "fail",
            "init-container",
            lambda p: _init(p).update(ports=[{"containerPort": 12346, "hostPort": 12346}]),
        ),
        (
            "fail",
            "mixed",
            _set(
                lambda p: _c(p).update(
                    ports=[{"containerPort": 12345, "hostPort": 12345}, {"containerPort": 12347}]
                ),
                lambda p: _init(p).update(
                    ports=[{"containerPort": 12346, "hostPort": 12346}, {"containerPort": 12348}]
                ),
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "hostPorts",
    [
        (
            "pass",
            "host-port-zero",
            lambda p: _c(p).update(ports=[{"containerPort": 80, "hostPort": 0}]),
        )
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# appArmor (fixtures_appArmorProfile.go: annotations since 1.0, fields since 1.30)
_APPARMOR = "container.apparmor.security.beta.kubernetes.io/"
_add(
    "appArmor",
    [
        (
            "pass",
            "annotations-runtime-default-localhost",
            lambda p: p["metadata"].update(
                annotations={
                    _APPARMOR + "container1": "runtime/default",
                    _APPARMOR + "initcontainer1": "localhost/foo",
                }
            ),
        ),
        (
            "pass",
            "fields-runtime-default-localhost",
            _set(
                lambda p: _psc(p).update(appArmorProfile={"type": "RuntimeDefault"}),
                lambda p: _sc(_c(p)).update(
                    appArmorProfile={"type": "Localhost", "localhostProfile": "testing"}
                ),
            ),
        ),
        (
            "fail",
            "annotation-unconfined",
            lambda p: p["metadata"].update(annotations={_APPARMOR + "container1": "unconfined"}),
        ),
        (
            "fail",
            "annotation-unconfined-init-container",
            lambda p: p["metadata"].update(
                annotations={_APPARMOR + "initcontainer1": "unconfined"}
            ),
        ),
        (
            "fail",
            "pod-unconfined",
            lambda p: _psc(p).update(appArmorProfile={"type": "Unconfined"}),
        ),
        (
            "fail",
            "container-unconfined",
            lambda p: _sc(_c(p)).update(appArmorProfile={"type": "Unconfined"}),
        ),
        (
            "fail",
            "init-container-unconfined",
            lambda p: _sc(_init(p)).update(appArmorProfile={"type": "Unconfined"}),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "appArmor",
    [
        (
            "pass",
            "empty-annotation",
            lambda p: p["metadata"].update(annotations={_APPARMOR + "container1": ""}),
        ),
        (
            "fail",
            "ephemeral-unconfined",
            lambda p: _ephemeral(p, appArmorProfile={"type": "Unconfined"}),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# seLinux (fixtures_seLinuxOptions.go; container_engine_t since 1.31)
_add(
    "seLinux",
    [
        (
            "pass",
            "empty-options",
            _set(
                lambda p: _psc(p).pop("seLinuxOptions", None),
                lambda p: _sc(_init(p)).update(seLinuxOptions={}),
            ),
        ),
        (
            "pass",
            "allowed-types",
            _set(
                lambda p: _psc(p).update(seLinuxOptions={"type": "container_t", "level": ""}),
                lambda p: _sc(_c(p)).update(
                    seLinuxOptions={"type": "container_init_t", "level": "somevalue"}
                ),
                lambda p: _sc(_init(p)).update(seLinuxOptions={"type": "container_kvm_t"}),
            ),
        ),
        (
            "pass",
            "container-engine-type",
            lambda p: _sc(_c(p)).update(seLinuxOptions={"type": "container_engine_t"}),
        ),
        ("fail", "pod-type", lambda p: _psc(p).update(seLinuxOptions={"type": "somevalue"})),
        (
            "fail",
            "container-type",
            lambda p: _sc(_c(p)).update(seLinuxOptions={"type": "somevalue"}),
        ),
        (
            "fail",
            "init-container-type",
            lambda p: _sc(_init(p)).update(seLinuxOptions={"type": "somevalue"}),
        ),
        ("fail", "pod-user", lambda p: _psc(p).update(seLinuxOptions={"user": "somevalue"})),
        ("fail", "pod-role", lambda p: _psc(p).update(seLinuxOptions={"role": "somevalue"})),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "seLinux",
    [("fail", "ephemeral-user", lambda p: _ephemeral(p, seLinuxOptions={"user": "system_u"}))],
    fixture_level=BASELINE,
    levels=BOTH,
)

# procMount, baseline rule (fixtures_procMount.go, 1.35: user namespaces are exempt)
_add(
    "procMount",
    [
        (
            "skip",
            "default-user-namespace",
            _set(
                lambda p: _sc(_c(p)).update(procMount="Default"),
                lambda p: _sc(_init(p)).update(procMount="Default"),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
        (
            "skip",
            "unmasked-user-namespace",
            _set(
                lambda p: _sc(_c(p)).update(procMount="Unmasked"),
                lambda p: _sc(_init(p)).update(procMount="Unmasked"),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
        (
            "fail",
            "unmasked-host-users",
            _set(
                lambda p: _sc(_c(p)).update(procMount="Unmasked"),
                lambda p: _spec(p).update(hostUsers=True),
            ),
        ),
        (
            "fail",
            "unmasked-host-users-init-container",
            _set(
                lambda p: _sc(_init(p)).update(procMount="Unmasked"),
                lambda p: _spec(p).update(hostUsers=True),
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels={"skip": B, "fail": BOTH},
)
_local(
    "procMount",
    [
        ("pass", "minimal", _noop),
        ("pass", "default", lambda p: _sc(_c(p)).update(procMount="Default")),
        ("fail", "unmasked", lambda p: _sc(_c(p)).update(procMount="Unmasked")),
    ],
    fixture_level=BASELINE,
    levels={"pass": BOTH, "fail": BOTH},
)
# procMount, restricted rule (procMount_restricted, 1.35: no user-namespace exemption)
_add(
    "procMount",
    [
        (
            "pass",
            "restricted-default-user-namespace",
            _set(
                lambda p: _sc(_c(p)).update(procMount="Default"),
                lambda p: _sc(_init(p)).update(procMount="Default"),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
        (
            "fail",
            "restricted-unmasked-user-namespace",
            _set(
                lambda p: _sc(_c(p)).update(procMount="Unmasked"),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
        (
            "fail",
            "restricted-unmasked-user-namespace-init-container",
            _set(
                lambda p: _sc(_init(p)).update(procMount="Unmasked"),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)

# seccomp, baseline rule (fixtures_seccompProfile_baseline.go, 1.19: fields only)
_add(
    "seccomp",
    [
        (
            "pass",
            "runtime-default",
            _set(
                lambda p: _psc(p).update(seccompProfile={"type": "RuntimeDefault"}),
                lambda p: _sc(_c(p)).update(seccompProfile={"type": "RuntimeDefault"}),
            ),
        ),
        ("fail", "pod-unconfined", lambda p: _psc(p).update(seccompProfile={"type": "Unconfined"})),
        (
            "fail",
            "container-unconfined",
            lambda p: _sc(_c(p)).update(seccompProfile={"type": "Unconfined"}),
        ),
        (
            "fail",
            "init-container-unconfined",
            lambda p: _sc(_init(p)).update(seccompProfile={"type": "Unconfined"}),
        ),
    ],
    fixture_level=BASELINE,
    levels={"pass": B, "fail": BOTH},
)
_local(
    "seccomp",
    [
        ("pass", "minimal", _noop),
        (
            "pass",
            "localhost",
            lambda p: _sc(_c(p)).update(
                seccompProfile={"type": "Localhost", "localhostProfile": "profiles/audit.json"}
            ),
        ),
        (
            "pass",
            "legacy-annotation-ignored",
            lambda p: p["metadata"].update(
                annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}
            ),
        ),
        (
            "fail",
            "ephemeral-unconfined",
            lambda p: _ephemeral(p, seccompProfile={"type": "Unconfined"}),
        ),
    ],
    fixture_level=BASELINE,
    levels={"pass": B, "fail": BOTH},
)
# seccomp, restricted rule (fixtures_seccompProfile_restricted.go, 1.19 and 1.25)
_add(
    "seccomp",
    [
        (
            "pass",
            "restricted-pod-runtime-default",
            lambda p: _psc(p).update(seccompProfile={"type": "RuntimeDefault"}),
        ),
        (
            "pass",
            "restricted-pod-localhost",
            lambda p: _psc(p).update(
                seccompProfile={"type": "Localhost", "localhostProfile": "testing"}
            ),
        ),
        (
            "pass",
            "restricted-containers-only",
            _set(
                lambda p: _psc(p).pop("seccompProfile"),
                lambda p: _sc(_c(p)).update(seccompProfile={"type": "RuntimeDefault"}),
                lambda p: _sc(_init(p)).update(
                    seccompProfile={"type": "Localhost", "localhostProfile": "testing"}
                ),
            ),
        ),
        ("fail", "restricted-unset-everywhere", lambda p: _psc(p).pop("seccompProfile")),
        (
            "fail",
            "restricted-pod-unconfined",
            lambda p: _psc(p).update(seccompProfile={"type": "Unconfined"}),
        ),
        (
            "fail",
            "restricted-unset-init-container",
            _set(
                lambda p: _psc(p).pop("seccompProfile"),
                lambda p: _sc(_c(p)).update(seccompProfile={"type": "RuntimeDefault"}),
            ),
        ),
        (
            "fail",
            "restricted-unset-container",
            _set(
                lambda p: _psc(p).pop("seccompProfile"),
                lambda p: _sc(_init(p)).update(seccompProfile={"type": "RuntimeDefault"}),
            ),
        ),
        (
            "fail",
            "restricted-init-container-unconfined",
            _set(
                lambda p: _psc(p).pop("seccompProfile"),
                lambda p: _sc(_c(p)).update(seccompProfile={"type": "RuntimeDefault"}),
                lambda p: _sc(_init(p)).update(seccompProfile={"type": "Unconfined"}),
            ),
        ),
        ("skip", "restricted-windows", _windows),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "seccomp",
    [
        (
            "fail",
            "restricted-ephemeral-unset",
            _set(
                lambda p: _psc(p).pop("seccompProfile"),
                lambda p: _sc(_c(p)).update(seccompProfile={"type": "RuntimeDefault"}),
                lambda p: _sc(_init(p)).update(seccompProfile={"type": "RuntimeDefault"}),
                _restricted_ephemeral,
            ),
        ),
        (
            "pass",
            "restricted-ephemeral-inherits-pod",
            _restricted_ephemeral,
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)

# sysctls (fixtures_sysctls.go; the v1.37 allow-list)
_add(
    "sysctls",
    [
        ("pass", "no-sysctls", lambda p: _psc(p).pop("sysctls", None)),
        (
            "pass",
            "all-safe",
            lambda p: _psc(p).update(sysctls=[{"name": n, "value": v} for n, v in _SAFE_SYSCTLS]),
        ),
        (
            "fail",
            "other-sysctl",
            lambda p: _psc(p).update(sysctls=[{"name": "othersysctl", "value": "other"}]),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "sysctls",
    [
        (
            "fail",
            "kernel-msgmax",
            lambda p: _psc(p).update(
                sysctls=[
                    {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                    {"name": "kernel.msgmax", "value": "65536"},
                ]
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# hostProbesAndHostLifecycle (fixtures_hostProbesAndHostLifecycle.go, 1.34)
_add(
    "hostProbesAndHostLifecycle",
    [
        ("pass", "no-probes", _noop),
        (
            "pass",
            "liveness-http-no-host",
            lambda p: _c(p).update(livenessProbe=_probe("httpGet", None)),
        ),
        (
            "pass",
            "readiness-tcp-no-host",
            lambda p: _c(p).update(readinessProbe=_probe("tcpSocket", None)),
        ),
        (
            "fail",
            "liveness-http-host",
            lambda p: _c(p).update(livenessProbe=_probe("httpGet", "bad.host")),
        ),
        (
            "fail",
            "sidecar-readiness-tcp-host",
            lambda p: _init(p).update(
                restartPolicy="Always", readinessProbe=_probe("tcpSocket", "8.8.8.8")
            ),
        ),
        (
            "fail",
            "post-start-http-host",
            lambda p: _c(p).update(lifecycle={"postStart": _probe("httpGet", "bad.host")}),
        ),
        (
            "fail",
            "liveness-http-loopback",
            lambda p: _c(p).update(livenessProbe=_probe("httpGet", "127.0.0.1")),
        ),
        (
            "fail",
            "readiness-tcp-loopback-ipv6",
            lambda p: _c(p).update(readinessProbe=_probe("tcpSocket", "::1")),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "hostProbesAndHostLifecycle",
    [
        ("pass", "empty-host", lambda p: _c(p).update(startupProbe=_probe("httpGet", ""))),
        (
            "fail",
            "pre-stop-tcp-host",
            lambda p: _c(p).update(lifecycle={"preStop": _probe("tcpSocket", "10.0.0.1")}),
        ),
        (
            "fail",
            "startup-http-localhost",
            lambda p: _c(p).update(startupProbe=_probe("httpGet", "localhost")),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)


def _host_process_pod(p: Pod) -> None:
    _spec(p)["hostNetwork"] = True  # API validation requires it for HostProcess pods
    _psc(p).update(windowsOptions={"hostProcess": True})


def _host_process_containers(p: Pod) -> None:
    _spec(p)["hostNetwork"] = True
    _sc(_c(p)).update(windowsOptions={"hostProcess": True})
    _sc(_init(p)).update(windowsOptions={"hostProcess": True})


# windowsHostProcess (fixtures_windowsHostProcess.go; the minimal pod is the pass case)
_add(
    "windowsHostProcess",
    [("fail", "pod", _host_process_pod), ("fail", "containers", _host_process_containers)],
    fixture_level=BASELINE,
    levels=BOTH,
)
_local(
    "windowsHostProcess",
    [
        ("pass", "minimal", _noop),
        (
            "pass",
            "explicit-false",
            _set(
                lambda p: _psc(p).update(windowsOptions={"hostProcess": False}),
                lambda p: _sc(_c(p)).update(windowsOptions={"hostProcess": False}),
            ),
        ),
    ],
    fixture_level=BASELINE,
    levels=BOTH,
)

# volumeTypes (fixtures_restrictedVolumes.go; csi and ephemeral are GA, image since 1.33)
_add(
    "volumeTypes",
    [
        (
            "pass",
            "all-allowed-types",
            lambda p: _spec(p).update(volumes=copy.deepcopy(_ALLOWED_VOLUMES)),
        )
    ]
    + [
        (
            "fail",
            _kebab(source),
            (lambda s, v: lambda p: _spec(p).update(volumes=[{"name": "volume1", s: v}]))(
                source, value
            ),
        )
        for source, value in _RESTRICTED_VOLUME_SOURCES
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "volumeTypes",
    [("pass", "minimal", _noop)],
    fixture_level=RESTRICTED,
    levels=R,
)

# allowPrivilegeEscalation (fixtures_allowPrivilegeEscalation.go, 1.8 and 1.25)
_add(
    "allowPrivilegeEscalation",
    [
        ("fail", "container-true", lambda p: _sc(_c(p)).update(allowPrivilegeEscalation=True)),
        (
            "fail",
            "init-container-true",
            lambda p: _sc(_init(p)).update(allowPrivilegeEscalation=True),
        ),
        ("fail", "container-unset", lambda p: _sc(_c(p)).pop("allowPrivilegeEscalation")),
        ("fail", "no-security-context", lambda p: _c(p).pop("securityContext")),
        ("skip", "windows", _windows),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "allowPrivilegeEscalation",
    [
        ("pass", "minimal", _noop),
        ("pass", "ephemeral-false", _restricted_ephemeral),
        ("fail", "ephemeral-unset", lambda p: _ephemeral(p, capabilities={"drop": ["ALL"]})),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)

# runAsNonRoot (fixtures_runAsNonRoot.go, 1.0 and 1.35)
_add(
    "runAsNonRoot",
    [
        (
            "pass",
            "pod-level",
            _set(
                lambda p: _psc(p).update(runAsNonRoot=True),
                lambda p: _sc(_c(p)).pop("runAsNonRoot", None),
                lambda p: _sc(_init(p)).pop("runAsNonRoot", None),
            ),
        ),
        (
            "pass",
            "all-containers",
            _set(
                lambda p: _psc(p).pop("runAsNonRoot"),
                lambda p: _sc(_c(p)).update(runAsNonRoot=True),
                lambda p: _sc(_init(p)).update(runAsNonRoot=True),
            ),
        ),
        ("fail", "unset-everywhere", lambda p: _psc(p).pop("runAsNonRoot")),
        ("fail", "pod-false", lambda p: _psc(p).update(runAsNonRoot=False)),
        ("fail", "container-false", lambda p: _sc(_c(p)).update(runAsNonRoot=False)),
        ("fail", "init-container-false", lambda p: _sc(_init(p)).update(runAsNonRoot=False)),
        (
            "skip",
            "user-namespace-unset",
            _set(lambda p: _psc(p).pop("runAsNonRoot"), lambda p: _spec(p).update(hostUsers=False)),
        ),
        (
            "skip",
            "user-namespace-false",
            _set(
                lambda p: _psc(p).update(runAsNonRoot=False),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "runAsNonRoot",
    [
        (
            "fail",
            "pod-false-containers-true",
            _set(
                lambda p: _psc(p).update(runAsNonRoot=False),
                lambda p: _sc(_c(p)).update(runAsNonRoot=True),
                lambda p: _sc(_init(p)).update(runAsNonRoot=True),
            ),
        ),
        (
            "fail",
            "ephemeral-unset",
            _set(
                lambda p: _psc(p).pop("runAsNonRoot"),
                lambda p: _sc(_c(p)).update(runAsNonRoot=True),
                lambda p: _sc(_init(p)).update(runAsNonRoot=True),
                _restricted_ephemeral,
            ),
        ),
        (
            "fail",
            "host-users-true",
            _set(lambda p: _psc(p).pop("runAsNonRoot"), lambda p: _spec(p).update(hostUsers=True)),
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)

# runAsUser (fixtures_runAsUser.go, 1.23 and 1.35)
_add(
    "runAsUser",
    [
        (
            "pass",
            "non-zero",
            _set(
                lambda p: _psc(p).update(runAsUser=1000),
                lambda p: _sc(_c(p)).update(runAsUser=1000),
                lambda p: _sc(_init(p)).update(runAsUser=1000),
            ),
        ),
        ("fail", "pod-zero", lambda p: _psc(p).update(runAsUser=0)),
        ("fail", "container-zero", lambda p: _sc(_c(p)).update(runAsUser=0)),
        ("fail", "init-container-zero", lambda p: _sc(_init(p)).update(runAsUser=0)),
        (
            "skip",
            "user-namespace-zero",
            _set(
                lambda p: _psc(p).update(runAsUser=0),
                lambda p: _sc(_c(p)).update(runAsUser=0),
                lambda p: _spec(p).update(hostUsers=False),
            ),
        ),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)
_local(
    "runAsUser",
    [
        ("pass", "minimal", _noop),
        ("fail", "ephemeral-zero", lambda p: _ephemeral(p, runAsUser=0)),
    ],
    fixture_level=RESTRICTED,
    levels=R,
)


# --- fixture files ---------------------------------------------------------------------------

CASES_DIR = pathlib.Path(__file__).resolve().parent.parent / "cases"
# The level each check runs at by default in the fixture runner (its registry level).
CHECK_LEVELS = {
    "volumeTypes": RESTRICTED,
    "allowPrivilegeEscalation": RESTRICTED,
    "runAsNonRoot": RESTRICTED,
    "runAsUser": RESTRICTED,
}


def fixture_files() -> dict[pathlib.Path, str]:
    """Every fixture file this table defines: relative path -> YAML text."""
    out: dict[pathlib.Path, str] = {}
    for case in CASES:
        lines = []
        if case.fixture_level != CHECK_LEVELS.get(case.check, BASELINE):
            lines.append(f"# level: {case.fixture_level}")
        origin = "upstream fixture" if case.upstream else "local case"
        lines.append(f"# {origin}; generated by tests/checks/upstream/pss_cases.py, do not edit")
        body = yaml.safe_dump(case.build(case.fixture_level), sort_keys=False)
        rel = pathlib.Path(case.check) / f"{case.outcome}-{case.name}.yaml"
        if rel in out:
            raise ValueError(f"duplicate fixture {rel}")
        out[rel] = "\n".join(lines) + "\n" + body
    return out


def write_fixtures(root: pathlib.Path = CASES_DIR) -> None:
    for rel, text in fixture_files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    write_fixtures(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else CASES_DIR)
