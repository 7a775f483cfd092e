"""``kube-guardrails plan`` against a real API server, as a read-only ServiceAccount.

Sets up namespaces, a competing higher-priority policy, an older version of the planned
policy, managed objects (matching, edited, stale, someone else's), workloads of every
kind, and admission policies applied from ``admission.build`` (plus someone else's under
one of our names), then runs the real command in a subprocess with a kube config holding the token
of a ServiceAccount that may only ``get`` and ``list``: any write would fail with 403
(and exit 2). When the cluster is the shared test control plane (``KUBE_TEST_DIR``),
its audit log is also searched for writes by that ServiceAccount: there must be none.

Runs against the current kube context when it looks like a test cluster (``kube-test``
from ``../shared/kube/cluster``, kind-, k3d-, minikube, docker-desktop, or a name with
"test"/"e2e"; or ``KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1``); skipped with the reason
otherwise. Nothing here needs the operator.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from kube_guardrails import API_GROUP, API_VERSION, LABEL_POLICY, PLURAL, admission, builders
from kube_guardrails.checks import registry
from kube_guardrails.k8s import client, reader
from kube_guardrails.model import policy as policy_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_CONTEXT_PREFIXES = ("kind-", "k3d-", "minikube", "docker-desktop")
GRACE = 120
# build() depends on the time only through exemptions (none in the admission case).
NOW_FOR_ADMISSION = datetime.datetime(2026, 11, 29, tzinfo=datetime.UTC)

# What `plan` needs, and nothing else: get and list (README, "plan" permissions).
READ_RULES = [
    {
        "apiGroups": [""],
        "resources": ["namespaces", "pods", "limitranges", "resourcequotas"],
        "verbs": ["get", "list"],
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": ["get", "list"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
        "verbs": ["get", "list"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list"]},
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list"]},
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
        "verbs": ["get", "list"],
    },
]
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
ADMISSION_PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}

Obj = dict[str, Any]


# --------------------------------------------------------------------------- cluster


class Cluster:
    def __init__(self, api: Any, context: str) -> None:
        self.api = api
        self.context = context

    def get(self, path: str) -> Obj | None:
        return client.get_or_none(self.api, path)

    def create(self, path: str, body: Mapping[str, Any]) -> Obj:
        return client.request(self.api, "POST", path, body=dict(body))

    def delete(self, path: str) -> None:
        client.delete_ignoring_missing(self.api, path)


def _skip_reason() -> tuple[Cluster | None, str]:
    try:
        context = reader.context_name(None)
        api = client.make_api_client(context=None)
    except client.ApiError as e:
        return None, f"no kube config for a test cluster ({e.message})"
    allowed = os.environ.get("KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT") == "1"
    if not allowed and not (
        context.startswith(TEST_CONTEXT_PREFIXES) or "test" in context or "e2e" in context
    ):
        return None, (
            f"kube context {context!r} does not look like a test cluster; set "
            "KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1 to run against it"
        )
    try:
        client.request(api, "GET", "/version", timeout=(3.0, 5.0))
    except client.ApiError as e:
        return None, f"the API server of context {context!r} does not answer ({e})"
    return Cluster(api, context), ""


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    found, reason = _skip_reason()
    if found is None:
        pytest.skip(reason)
    crd_name = f"{PLURAL}.{API_GROUP}"
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}"
    if found.get(crd_path) is None:
        crd = yaml.safe_load((ROOT / "crds" / f"{crd_name}.yaml").read_text())
        found.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    _wait(
        lambda: any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in ((found.get(crd_path) or {}).get("status") or {}).get("conditions") or []
        ),
        "the GuardrailPolicy CRD to be established",
    )
    return found


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- objects


def container(*, privileged: bool) -> Obj:
    security: Obj = {"privileged": True} if privileged else {"allowPrivilegeEscalation": False}
    return {"name": "app", "image": "registry.example.com/app:1.0", "securityContext": security}


def template(app: str, *, privileged: bool = True, job: bool = False) -> Obj:
    spec: Obj = {"containers": [container(privileged=privileged)]}
    if job:
        spec["restartPolicy"] = "Never"
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def policy_doc(name: str, spec: Mapping[str, Any]) -> Obj:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "GuardrailPolicy",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


BEST_PRACTICES_OFF = {
    c.id: {"action": "Off"}
    for c in registry.all_checks()
    if c.category is registry.Category.BEST_PRACTICE
}


class World:
    """Everything the test created, and the names the assertions use."""

    def __init__(self, cluster: Cluster, run: str, tmp: pathlib.Path) -> None:
        self.cluster = cluster
        self.run = run
        self.prefix = f"plan-{run}"
        self.tmp = tmp
        self.ns = {k: f"{self.prefix}-{k}" for k in ("a", "b", "c", "d", "sa")}
        self.team = f"{self.prefix}-team"
        self.strong = f"{self.prefix}-strong"
        # The admission case: policies that select none of the run's namespaces.
        self.adm = {k: f"{self.prefix}-adm-{k}" for k in ("same", "changed", "new", "taken")}
        self.cluster_scoped: list[str] = []

    def new_spec(self) -> Obj:
        return {
            "mode": "Enforce",
            "priority": 10,
            "namespaceSelector": {"matchLabels": {"plan-run": self.run, "tier": "web"}},
            "workloads": {
                "podSecurity": "baseline",
                "checks": {**BEST_PRACTICES_OFF, "privileged": {"action": "Enforce"}},
                "enforcement": {"gracePeriodSeconds": GRACE},
                "exemptions": [
                    {
                        "selector": {"matchLabels": {"app": "legacy"}},
                        "checks": ["privileged"],
                        "reason": "vendor image, ticket SEC-1",
                        "expires": "2030-01-01T00:00:00Z",
                    }
                ],
            },
        }


def _namespaced(api_version: str, plural: str, namespace: str) -> str:
    return client.object_path(api_version=api_version, plural=plural, namespace=namespace)


@pytest.fixture(scope="module")
def world(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(cluster, secrets.token_hex(3), tmp_path_factory.mktemp("plan"))
    try:
        _build(w)
        yield w
    finally:
        for name in (w.team, w.strong, *w.adm.values()):
            cluster.delete(f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}/{name}")
        for path in w.cluster_scoped:
            cluster.delete(path)
        for name in w.ns.values():
            cluster.delete(f"/api/v1/namespaces/{name}")


def _build(w: World) -> None:
    c = w.cluster
    labels = {
        "a": {"tier": "web"},
        "b": {"tier": "web", "strong": "yes"},
        "c": {"tier": "web"},
        "d": {},
        "sa": {},
    }
    for key, name in w.ns.items():
        c.create(
            "/api/v1/namespaces",
            {
                "metadata": {
                    "name": name,
                    "labels": {
                        "plan-run": w.run,
                        "pod-security.kubernetes.io/enforce": "privileged",
                        **labels[key],
                    },
                }
            },
        )
    policies = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
    strong = c.create(
        policies,
        policy_doc(
            w.strong,
            {
                "priority": 100,
                "namespaceSelector": {"matchLabels": {"plan-run": w.run, "strong": "yes"}},
                "workloads": {"podSecurity": "none", "checks": BEST_PRACTICES_OFF},
            },
        ),
    )
    # The planned policy's older version: it selected every namespace of the run.
    old = c.create(
        policies,
        policy_doc(
            w.team,
            {"priority": 10, "namespaceSelector": {"matchLabels": {"plan-run": w.run}}},
        ),
    )
    known = registry.ids()
    strong_p = policy_model.parse(strong, known_checks=known)
    old_p = policy_model.parse(old, known_checks=known)

    def put(kind: builders.Kind, obj: Obj) -> None:
        ns = obj["metadata"]["namespace"]
        c.create(_namespaced(kind.api_version, kind.plural, ns), obj)

    # a: the NetworkPolicy was edited (update); no LimitRange yet (create).
    np_a = builders.build_network_policy(w.ns["a"], old_p)
    np_a["spec"]["policyTypes"] = ["Ingress"]
    np_a["spec"].pop("egress", None)
    put(builders.NETWORK_POLICY, np_a)
    # b: the stronger policy governs and its objects are in place (no change).
    for kind, obj in builders.desired_objects(w.ns["b"], strong_p).items():
        if obj is not None:
            put(kind, obj)
    # c: someone else's LimitRange under our name (conflict).
    put(
        builders.LIMIT_RANGE,
        {
            "metadata": {"name": builders.LIMIT_RANGE_NAME, "namespace": w.ns["c"]},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}}]},
        },
    )
    # d: hardened by the old version, not selected by the new one (delete).
    for kind, obj in builders.desired_objects(w.ns["d"], old_p).items():
        if obj is not None:
            put(kind, obj)

    a = w.ns["a"]
    pods = _namespaced("v1", "pods", a)
    c.create(pods, {"metadata": {"name": "priv"}, "spec": template("priv")["spec"]})
    c.create(
        pods,
        {
            "metadata": {"name": "legacy", "labels": {"app": "legacy"}},
            "spec": template("legacy")["spec"],
        },
    )
    c.create(
        pods,
        {"metadata": {"name": "good"}, "spec": template("good", privileged=False)["spec"]},
    )
    ds = c.create(
        _namespaced("apps/v1", "daemonsets", a),
        {
            "metadata": {"name": "ds"},
            "spec": {"selector": {"matchLabels": {"app": "ds"}}, "template": template("ds")},
        },
    )
    ds_owner = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "name": "ds",
        "uid": ds["metadata"]["uid"],
        "controller": True,
    }
    c.create(
        pods,
        {
            # Labelled to match, or the DaemonSet controller releases it (drops the owner).
            "metadata": {"name": "ds-pod", "labels": {"app": "ds"}, "ownerReferences": [ds_owner]},
            "spec": template("ds")["spec"],
        },
    )
    c.create(
        _namespaced("apps/v1", "deployments", a),
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template("web"),
            },
        },
    )
    for kind, plural in (("ReplicaSet", "replicasets"), ("StatefulSet", "statefulsets")):
        name = kind.lower()
        spec: Obj = {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name),
        }
        if kind == "StatefulSet":
            spec["serviceName"] = name
        c.create(_namespaced("apps/v1", plural, a), {"metadata": {"name": name}, "spec": spec})
    cj = c.create(
        _namespaced("batch/v1", "cronjobs", a),
        {
            "metadata": {"name": "cj"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {"spec": {"template": template("cj", job=True)}},
            },
        },
    )
    cj_owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "cj",
        "uid": cj["metadata"]["uid"],
        "controller": True,
    }
    for name, owners in (("job", []), ("cj-job", [cj_owner])):
        c.create(
            _namespaced("batch/v1", "jobs", a),
            {
                "metadata": {"name": name, "ownerReferences": owners},
                "spec": {"suspend": True, "template": template(name, job=True)},
            },
        )
    # d is not selected: its violating Pod must not be checked.
    c.create(
        _namespaced("v1", "pods", w.ns["d"]),
        {"metadata": {"name": "priv"}, "spec": template("priv")["spec"]},
    )
    (w.tmp / "policy.yaml").write_text(yaml.safe_dump(policy_doc(w.team, w.new_spec())))
    _build_admission(w)


def adm_spec(w: World, mode: str) -> Obj:
    """A policy whose bindings select none of the run's namespaces (no label ``adm``)."""
    return {
        "mode": mode,
        "namespaceSelector": {"matchLabels": {"plan-run": w.run, "adm": "none"}},
        "workloads": {"podSecurity": "baseline"},
    }


def _build_admission(w: World) -> None:
    """In the cluster, as admin: ``same`` and ``changed`` with their admission objects
    applied from ``admission.build`` (what the operator applies); a foreign
    ValidatingAdmissionPolicy under one of ``taken``'s names. The file: ``same`` as is,
    ``changed`` turned to Enforce, ``new`` and ``taken`` not in the cluster yet."""
    c = w.cluster
    policies = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"
    for key in ("same", "changed"):
        stored = c.create(policies, policy_doc(w.adm[key], adm_spec(w, "Audit")))
        parsed = policy_model.parse(stored, known_checks=registry.ids())
        desired = admission.build(parsed, now=NOW_FOR_ADMISSION)
        for obj in desired.objects:
            plural = ADMISSION_PLURALS[obj["kind"]]
            c.create(f"{ADMISSION}/{plural}", obj)
            w.cluster_scoped.append(f"{ADMISSION}/{plural}/{obj['metadata']['name']}")
    taken = admission.object_name(w.adm["taken"], admission.WARN)
    c.create(
        f"{ADMISSION}/validatingadmissionpolicies",
        {
            "metadata": {"name": taken},
            "spec": {
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [{"expression": "true"}],
            },
        },
    )
    w.cluster_scoped.append(f"{ADMISSION}/validatingadmissionpolicies/{taken}")
    docs = [
        policy_doc(w.adm["same"], adm_spec(w, "Audit")),
        policy_doc(w.adm["changed"], adm_spec(w, "Enforce")),
        policy_doc(w.adm["new"], adm_spec(w, "Audit")),
        policy_doc(w.adm["taken"], adm_spec(w, "Audit")),
    ]
    (w.tmp / "admission.yaml").write_text(yaml.safe_dump_all(docs))


# --------------------------------------------------------------------------- identities


def service_account_kubeconfig(w: World, name: str, rules: list[Obj]) -> pathlib.Path:
    """A kube config with the token of a new ServiceAccount bound to ``rules``."""
    c = w.cluster
    ns = w.ns["sa"]
    c.create(_namespaced("v1", "serviceaccounts", ns), {"metadata": {"name": name}})
    role = f"{w.prefix}-{name}"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    c.create(f"{rbac}/clusterroles", {"metadata": {"name": role}, "rules": rules})
    c.create(
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    )
    w.cluster_scoped += [f"{rbac}/clusterroles/{role}", f"{rbac}/clusterrolebindings/{role}"]
    user = f"system:serviceaccount:{ns}:{name}"

    def allowed() -> bool:
        review = c.create(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "spec": {
                    "user": user,
                    "groups": ["system:serviceaccounts"],
                    "resourceAttributes": {"verb": "list", "resource": "namespaces"},
                }
            },
        )
        return bool((review.get("status") or {}).get("allowed"))

    _wait(allowed, f"RBAC for {user}")
    token = c.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
        {"spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    cfg = c.api.configuration
    cluster_entry: Obj = {"server": cfg.host}
    if cfg.ssl_ca_cert:
        cluster_entry["certificate-authority"] = cfg.ssl_ca_cert
    if not cfg.verify_ssl:
        cluster_entry["insecure-skip-tls-verify"] = True
    path = w.tmp / f"{name}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "plan-test",
                "contexts": [{"name": "plan-test", "context": {"cluster": "c", "user": name}}],
                "clusters": [{"name": "c", "cluster": cluster_entry}],
                "users": [{"name": name, "user": {"token": token}}],
            }
        )
    )
    return path


def run_plan(kubeconfig: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "kube_guardrails", "plan", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def audit_writes(user: str, *, mentioning: str) -> tuple[int, int] | None:
    """(writes by ``user``, entries mentioning ``mentioning``) in the shared control
    plane's audit log (it records every write); None when there is no such log."""
    directory = os.environ.get("KUBE_TEST_DIR")
    log = pathlib.Path(directory) / "audit.log" if directory else None
    if log is None or not log.exists():
        return None
    count = seen = 0
    writes = ("create", "update", "patch", "delete", "deletecollection")
    with log.open() as lines:
        for line in lines:
            if mentioning in line:
                seen += 1
            if user not in line:
                continue
            entry = json.loads(line)
            if (entry.get("user") or {}).get("username") == user and entry.get("verb") in writes:
                count += 1
    return count, seen


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def reader_config(world: World) -> pathlib.Path:
    return service_account_kubeconfig(world, "plan-reader", READ_RULES)


@pytest.fixture(scope="module")
def planned(world: World, reader_config: pathlib.Path) -> dict[str, Any]:
    result = run_plan(reader_config, "--policy", str(world.tmp / "policy.yaml"), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _ns(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next(n for n in doc["namespaces"] if n["name"] == name)


def _changes(doc: Mapping[str, Any], name: str) -> dict[str, str]:
    return {c["kind"]: c["action"] for c in _ns(doc, name)["hardening"]["changes"]}


def test_plan_reports_the_policy_and_its_selection(world: World, planned: Obj) -> None:
    assert planned["context"] == "plan-test"
    assert planned["policies"] == [
        {
            "name": world.team,
            "source": f"{world.tmp / 'policy.yaml'} document 1",
            "mode": "Enforce",
            "priority": 10,
            "replaces": True,
        }
    ]
    selected = {k: _ns(planned, n)["selected"] for k, n in world.ns.items()}
    assert selected == {"a": True, "b": True, "c": True, "d": False, "sa": False}
    assert _ns(planned, world.ns["d"])["notSelected"] == {
        world.team: "namespaceSelector does not match its labels"
    }
    assert _ns(planned, "kube-system")["notSelected"] == {
        world.team: "system namespace (always excluded)"
    }


def test_plan_reports_hardening_changes_per_namespace(world: World, planned: Obj) -> None:
    a, b, c, d = (world.ns[k] for k in "abcd")
    assert _changes(planned, a) == {
        "NetworkPolicy": "update",
        "LimitRange": "create",
        "ResourceQuota": "unchanged",
    }
    assert _ns(planned, b)["hardening"]["governingAfter"] == world.strong
    assert set(_changes(planned, b).values()) == {"unchanged"}
    assert _changes(planned, c) == {
        "NetworkPolicy": "create",
        "LimitRange": "conflict",
        "ResourceQuota": "unchanged",
    }
    assert _changes(planned, d) == {
        "NetworkPolicy": "delete",
        "LimitRange": "delete",
        "ResourceQuota": "unchanged",
    }


def test_plan_reports_violating_workloads_of_every_kind(world: World, planned: Obj) -> None:
    a = _ns(planned, world.ns["a"])
    found = {(w["kind"], w["name"]): {v["check"] for v in w["violations"]} for w in a["workloads"]}
    assert found == {
        ("Deployment", "web"): {"privileged"},
        ("StatefulSet", "statefulset"): {"privileged"},
        ("DaemonSet", "ds"): {"privileged"},
        ("ReplicaSet", "replicaset"): {"privileged"},  # the Deployment's own ReplicaSet: no
        ("CronJob", "cj"): {"privileged"},
        ("Job", "job"): {"privileged"},  # cj-job is reviewed through its CronJob
        ("Pod", "priv"): {"privileged"},
        ("Pod", "ds-pod"): {"privileged"},
    }
    assert _ns(planned, world.ns["d"])["workloads"] == []
    assert planned["summary"]["workloads"]["byCheck"]["privileged"] >= len(found)


def test_plan_reports_evictions_and_protected_pods(world: World, planned: Obj) -> None:
    evictions = {e["pod"]: e for e in _ns(planned, world.ns["a"])["evictions"]}
    assert evictions["priv"] == {
        "pod": "priv",
        "policy": world.team,
        "evict": True,
        "dryRun": False,
        "afterSeconds": GRACE,
        "checks": ["privileged"],
        "reason": "",
    }
    assert evictions["ds-pod"]["evict"] is False
    assert evictions["ds-pod"]["reason"] == "DaemonSet Pod (spared if its DaemonSet exists)"
    assert set(evictions) == {"priv", "ds-pod"}  # legacy is exempt, good complies


def test_plan_of_admission_policies(world: World, reader_config: pathlib.Path) -> None:
    """Against the live objects the API server stored (with its defaults and metadata):
    applied and unchanged -> unchanged; Audit -> Enforce -> the policies update, the
    bindings stay; a new policy -> create; a foreign object under our name -> conflict."""
    result = run_plan(
        reader_config, "--policy", str(world.tmp / "admission.yaml"), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["admission"]["available"] is True
    found = {(c["kind"], c["name"]): c for c in doc["admission"]["changes"]}
    vap, binding = "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"

    def names(key: str) -> tuple[str, str]:
        return admission.all_names(world.adm[key])

    expected: dict[tuple[str, str], str] = {}
    for key, deny_action, warn_vap, warn_binding in (
        ("same", "unchanged", "unchanged", "unchanged"),
        ("changed", "update", "update", "unchanged"),
        ("new", "create", "create", "create"),
        ("taken", "create", "conflict", "create"),
    ):
        deny, warn = names(key)
        expected[vap, deny] = deny_action
        expected[binding, deny] = "unchanged" if key == "changed" else deny_action
        expected[vap, warn] = warn_vap
        expected[binding, warn] = warn_binding
    assert {k: c["action"] for k, c in found.items()} == expected
    deny_changed = found[vap, names("changed")[0]]
    assert deny_changed["validationActions"] == ["Deny"]
    assert deny_changed["checks"][0] == admission.GATE_CHECK
    assert "privileged" in deny_changed["checks"]
    assert "privileged" not in found[vap, names("changed")[1]]["checks"]
    assert found[vap, names("new")[1]]["validationActions"] == ["Warn", "Audit"]
    assert doc["summary"]["admission"] == {"create": 7, "update": 2, "delete": 0, "conflict": 1}


def test_plan_is_read_only(world: World, planned: Obj) -> None:
    """The ServiceAccount may only get and list, and the audit log shows no write by it
    (after the runs above, the admission case's included)."""
    found = audit_writes(
        f"system:serviceaccount:{world.ns['sa']}:plan-reader", mentioning=world.prefix
    )
    if found is not None:
        writes, setup_entries = found
        assert setup_entries > 0, "the audit log does not record this run's writes at all"
        assert writes == 0
    # And nothing changed: the stale objects the plan would delete are still there.
    np = world.cluster.get(
        client.object_path(
            api_version="networking.k8s.io/v1",
            plural="networkpolicies",
            namespace=world.ns["d"],
            name=builders.NETWORK_POLICY_NAME,
        )
    )
    assert np is not None and np["metadata"]["labels"][LABEL_POLICY] == world.team


def test_now_after_an_exemption_expires(world: World, reader_config: pathlib.Path) -> None:
    result = run_plan(
        reader_config,
        "--policy",
        str(world.tmp / "policy.yaml"),
        "--format",
        "json",
        "--now",
        "2030-01-02T00:00:00Z",
    )
    assert result.returncode == 0, result.stderr
    a = _ns(json.loads(result.stdout), world.ns["a"])
    assert ("Pod", "legacy") in {(w["kind"], w["name"]) for w in a["workloads"]}
    assert a["expiredExemptions"] == [{"policy": world.team, "index": 0}]


def test_table_output(world: World, reader_config: pathlib.Path) -> None:
    result = run_plan(reader_config, "--policy", str(world.tmp / "policy.yaml"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Namespace {world.ns['a']}: selected by {world.team}" in out
    assert "  update    NetworkPolicy/kube-guardrails-default-deny" in out
    assert "  conflict  LimitRange/kube-guardrails-limits" in out
    assert f"  evict     Pod/priv: evicted after {GRACE}s by {world.team} (privileged)" in out
    assert out.splitlines()[-1].startswith("Summary: ")


def test_forbidden_list_exits_2_naming_the_request(world: World) -> None:
    rules = [r for r in READ_RULES if r["apiGroups"] != ["batch"]]
    rules.append({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]})
    config = service_account_kubeconfig(world, "no-cronjobs", rules)
    result = run_plan(config, "--policy", str(world.tmp / "policy.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kube-guardrails plan: error: GET /apis/batch/v1/cronjobs: 403")


def test_lists_are_paginated(world: World) -> None:
    api = world.cluster.api
    path = client.object_path(api_version="v1", plural="pods", namespace=world.ns["a"])
    first = client.request(api, "GET", path, query={"limit": "1"})
    assert first["metadata"].get("continue"), "the server did not paginate"
    paged = [p["metadata"]["name"] for p in reader.list_pages(api, path, page_size=1)]
    whole = [p["metadata"]["name"] for p in client.request(api, "GET", path)["items"]]
    assert paged == whole and len(paged) >= 4
