"""The install manifests: complete, least-privilege RBAC, and a Pod that meets the
restricted Pod Security Standard.

``kubectl apply -k manifests/`` must install everything, the ClusterRole must grant only
what the operator uses (no wildcards, each rule explained), and the operator's own Pod must
pass what it enforces on others.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import urllib.parse
from typing import Any

import pytest
import yaml

from kube_guardrails import OPERATOR_NAMESPACE, metrics, settings
from kube_guardrails.k8s import leader, watch

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
NAME = "kube-guardrails"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return loaded


def deployment() -> dict[str, Any]:
    return load("deployment.yaml")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    c: dict[str, Any] = only
    return c


# --------------------------------------------------------------------------- kustomize


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load("kustomization.yaml")
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(["../crds", *files])


def test_crd_directory_is_a_kustomization_that_kubectl_apply_f_skips() -> None:
    # kustomize loads files outside manifests/ only through another kustomization; its
    # file is named "Kustomization" so that `kubectl apply -f crds/` (*.yaml, *.yml,
    # *.json only) does not try to apply it.
    crds = REPO / "crds"
    kustomization = yaml.safe_load((crds / "Kustomization").read_text())
    assert kustomization["resources"] == sorted(p.name for p in crds.glob("*.yaml"))
    assert not list(crds.glob("kustomization.y*ml"))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_build_renders_the_install() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, check=True
    ).stdout
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d)
    assert kinds == [
        ("ClusterRole", NAME),
        ("ClusterRoleBinding", NAME),
        ("CustomResourceDefinition", "guardrailpolicies.kube-guardrails.io"),
        ("Deployment", NAME),
        ("Namespace", OPERATOR_NAMESPACE),
        ("PodDisruptionBudget", NAME),
        ("Role", "kube-guardrails-leader-election"),
        ("RoleBinding", "kube-guardrails-leader-election"),
        ("Service", "kube-guardrails-metrics"),
        ("ServiceAccount", NAME),
        ("ValidatingAdmissionPolicy", "kube-guardrails-protect-managed-objects"),
        ("ValidatingAdmissionPolicy", "kube-guardrails-protect-readiness-label"),
        ("ValidatingAdmissionPolicyBinding", "kube-guardrails-protect-managed-objects"),
        ("ValidatingAdmissionPolicyBinding", "kube-guardrails-protect-readiness-label"),
    ]


def test_namespace_enforces_restricted_pod_security() -> None:
    ns = load("namespace.yaml")
    assert ns["metadata"]["name"] == OPERATOR_NAMESPACE
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


# --------------------------------------------------------------------------- RBAC

# Every permission, and nothing else: a change here is a change of the operator's rights.
EXPECTED_RULES = {
    ("kube-guardrails.io", "guardrailpolicies"): {"list", "watch"},
    ("kube-guardrails.io", "guardrailpolicies/status"): {"patch"},
    ("", "namespaces"): {"list", "watch", "patch"},
    ("", "nodes"): {"get"},
    ("networking.k8s.io", "networkpolicies"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("", "limitranges"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "resourcequotas"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch", "patch"},
    ("", "pods/eviction"): {"create"},
    ("apps", "deployments"): {"list", "watch", "patch"},
    ("apps", "statefulsets"): {"list", "watch", "patch"},
    ("apps", "daemonsets"): {"get", "list", "watch", "patch"},
    ("apps", "replicasets"): {"list", "watch", "patch"},
    ("batch", "jobs"): {"list", "watch", "patch"},
    ("batch", "cronjobs"): {"list", "watch", "patch"},
    ("", "events"): {"create", "list"},
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    },
    ("openreports.io", "reports"): {"list", "create", "patch", "delete"},
}


def granted() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in load("clusterrole.yaml")["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_cluster_role_grants_exactly_what_the_operator_uses() -> None:
    assert granted() == EXPECTED_RULES


def test_cluster_role_has_no_wildcards_and_no_secrets() -> None:
    for rule in load("clusterrole.yaml")["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames tricks
        for key in ("apiGroups", "resources", "verbs"):
            assert not any("*" in value for value in rule[key]), rule
    resources = {resource for _, resource in granted()}
    assert not resources & {"secrets", "configmaps", "pods/exec", "serviceaccounts/token"}
    assert "delete" not in granted()[("", "pods")]  # Pods leave through the Eviction API


def test_every_watched_workload_kind_may_be_listed_watched_and_annotated() -> None:
    # The workload watches (k8s.watch.KINDS) list and watch each kind; the review patches
    # the violations annotation. A kind added there without RBAC would fail only at runtime.
    rules = granted()
    for kind in watch.KINDS:
        group = kind.api_version.rpartition("/")[0]
        assert {"list", "watch", "patch"} <= rules[(group, kind.plural)], kind.kind


def test_every_rule_is_explained_by_a_comment() -> None:
    lines = (MANIFESTS / "clusterrole.yaml").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(load("clusterrole.yaml")["rules"])
    uncommented = [lines[i].strip() for i in starts if not lines[i - 1].strip().startswith("#")]
    assert uncommented == []


# The leader Lease, in the operator's own namespace: (resource, resourceNames) -> verbs.
EXPECTED_NAMESPACED_RULES = {
    ("leases", ()): {"create"},  # RBAC cannot limit create by name
    ("leases", (leader.LEASE_NAME,)): {"get", "update"},
}


def test_role_grants_exactly_the_lease_verbs_in_the_operator_namespace() -> None:
    role = load("role.yaml")
    assert role["metadata"]["namespace"] == OPERATOR_NAMESPACE
    rules: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"]
        for resource in rule["resources"]:
            key = (resource, tuple(rule.get("resourceNames") or ()))
            rules.setdefault(key, set()).update(rule["verbs"])
    assert rules == EXPECTED_NAMESPACED_RULES
    # and no Lease rights cluster-wide
    assert not any(group == "coordination.k8s.io" for group, _ in granted())


def test_role_rules_are_explained_by_comments() -> None:
    lines = (MANIFESTS / "role.yaml").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(load("role.yaml")["rules"])
    assert [lines[i].strip() for i in starts if not lines[i - 1].strip().startswith("#")] == []


def test_role_binding_ties_the_lease_role_to_the_operator_service_account() -> None:
    binding = load("rolebinding.yaml")
    account = load("serviceaccount.yaml")
    assert binding["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": load("role.yaml")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_binding_ties_the_role_to_the_operator_service_account() -> None:
    binding = load("clusterrolebinding.yaml")
    account = load("serviceaccount.yaml")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": load("clusterrole.yaml")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == OPERATOR_NAMESPACE


# --------------------------------------------------------------------------- Deployment


def test_deployment_runs_two_replicas_with_leader_election() -> None:
    dep = deployment()
    assert dep["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert dep["spec"]["replicas"] == 2
    # Safe only with leader election: a new Pod starts as a standby, then an old one goes.
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": NAME}
    env = {e["name"]: e for e in container()["env"]}
    assert env["KUBE_GUARDRAILS_LEADER_ELECTION"]["value"] == "true"
    # The identity in the Lease names the Pod (downward API).
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_replicas_prefer_different_nodes() -> None:
    anti = pod_spec()["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti  # one node still works
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment()["spec"]["selector"]["matchLabels"]
    )


def test_disruption_budget_keeps_one_operator_running() -> None:
    pdb = load("poddisruptionbudget.yaml")
    assert pdb["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert pdb["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": deployment()["spec"]["selector"]["matchLabels"]},
    }
    # With fewer replicas than that, a drain could never evict the operator.
    assert deployment()["spec"]["replicas"] > pdb["spec"]["minAvailable"]


@pytest.mark.parametrize(
    ("where", "field", "expected"),
    [
        pytest.param("pod", "runAsNonRoot", True, id="pod-runAsNonRoot"),
        pytest.param("pod", "runAsUser", 65532, id="pod-runAsUser"),
        pytest.param("pod", "seccompProfile", {"type": "RuntimeDefault"}, id="pod-seccomp"),
        pytest.param("container", "runAsNonRoot", True, id="runAsNonRoot"),
        pytest.param("container", "runAsUser", 65532, id="runAsUser"),
        pytest.param("container", "allowPrivilegeEscalation", False, id="no-escalation"),
        pytest.param("container", "readOnlyRootFilesystem", True, id="read-only-root"),
        pytest.param("container", "privileged", False, id="unprivileged"),
        pytest.param("container", "capabilities", {"drop": ["ALL"]}, id="drop-all"),
        pytest.param("container", "seccompProfile", {"type": "RuntimeDefault"}, id="seccomp"),
    ],
)
def test_pod_meets_restricted_pod_security(where: str, field: str, expected: Any) -> None:
    context = pod_spec()["securityContext"] if where == "pod" else container()["securityContext"]
    assert context[field] == expected


def test_pod_uses_only_restricted_volume_types_and_no_host_access() -> None:
    spec = pod_spec()
    assert [set(v) - {"name"} for v in spec["volumes"]] == [{"emptyDir"}]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    assert "hostPort" not in str(container().get("ports"))


def test_writable_tmp_under_a_read_only_root() -> None:
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}


def test_operator_gets_its_token_and_logs_json() -> None:
    assert pod_spec()["automountServiceAccountToken"] is True
    env = {e["name"]: e for e in container()["env"]}
    assert env["KUBE_GUARDRAILS_LOG_FORMAT"]["value"] == "json"
    assert env["KUBE_GUARDRAILS_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_image_is_pinned() -> None:
    image = container()["image"]
    repository, _, tag = image.rpartition(":")
    assert repository == "ghcr.io/kube-guardrails/kube-guardrails"
    assert tag and tag != "latest"


def test_resources_are_requested_and_limited() -> None:
    resources = container()["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe"])
def test_probes_hit_kopfs_health_endpoint(probe: str) -> None:
    # The port and path the operator serves by default (settings.Settings.liveness).
    url = urllib.parse.urlsplit(settings.Settings().liveness)
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    get = container()[probe]["httpGet"]
    assert get["path"] == url.path
    assert ports.get(get["port"], get["port"]) == url.port


# --------------------------------------------------------------------------- metrics


def test_metrics_port_is_declared_and_matches_the_default_address() -> None:
    default = metrics.parse_address(metrics.DEFAULT_ADDRESS)
    assert default is not None
    ports = {p["name"]: p for p in container()["ports"]}
    assert ports["metrics"]["containerPort"] == default.port
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(default.port),
        "prometheus.io/path": "/metrics",
    }


def test_metrics_service_selects_the_operator_pod_by_port_name() -> None:
    service = load("service.yaml")
    assert service["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert service["spec"]["selector"] == deployment()["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert port["port"] == ports["metrics"]
