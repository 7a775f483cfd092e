"""Same verdict, proven: the engine and the generated admission policies on a real server.

Every check fixture (``tests/checks/cases/<check>/*.yaml``) and every upstream Pod Security
case (``tests/checks/upstream/pss_cases.py``, at each level it is registered for) is
judged twice:

- by the engine, through ``planning.review`` with a GuardrailPolicy at the case's level
  (and the case's check parameters), exactly as the operator and the audit CLI do;
- by the API server, with a server-side dry-run create in a namespace selected by the
  ValidatingAdmissionPolicies that :func:`kube_guardrails.admission.build` generates for
  that same policy.

In an ``Audit``-mode namespace every failing check comes back as its own admission warning,
so the *set of checks named* must equal the engine's set of failing checks, and each
warning must name every container the engine's findings of that check name. In an
``Enforce``-mode namespace the request must be denied exactly when the engine reports an
Enforce-action finding, and the denial must name exactly the checks of those findings.

Each case is sent as every kind the policies cover: Pod, and the pod template of
Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job and CronJob (in
Enforce mode: Pod and Deployment). A case the API server rejects for its own validation
reasons as a given kind (``restartPolicy: Never`` in a Deployment, ...) cannot be compared
as that kind and is counted apart; every case must be comparable as a Pod. Ephemeral
containers cannot be set on create: those cases create the Pod without them (for real, in
the test namespace) and dry-run the ``pods/ephemeralcontainers`` update, as ``kubectl
debug`` does.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import datetime
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import admission_kube as ak
import pytest
import test_cases
import yaml
from conftest import RUN_LABEL
from upstream import pss_cases

from kube_guardrails import admission, planning
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

AUDIT_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
)
ENFORCE_KINDS = ("Pod", "Deployment")
WORKERS = 8
NOW = datetime.datetime.now(datetime.UTC)
_NAMED = re.compile(r"^([A-Za-z]+) \(kube-guardrails policy ([^)]+)\): ")
_DENIED = re.compile(r"^kube-guardrails policy \S+ denies this: ([A-Za-z, ]+)\. ")
_WARNED = re.compile(
    r"^Validation failed for ValidatingAdmissionPolicy '([^']+)' with binding '[^']+': (.*)$", re.S
)
_VAP_SAYS = re.compile(
    r"ValidatingAdmissionPolicy '([^']+)' with binding '[^']+' denied request: (.*)$", re.S
)


@dataclasses.dataclass(frozen=True)
class Combo:
    """One policy configuration: a Pod Security level and the imageRegistry params."""

    level: str
    params: str  # JSON of the imageRegistry params ("{}": none)

    def policy(self, name: str, mode: str, label: str) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        params = json.loads(self.params)
        if params:
            checks["imageRegistry"] = params
        return {
            "apiVersion": "kube-guardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": name},
            "spec": {
                "mode": mode,
                "namespaceSelector": {"matchLabels": {"kube-guardrails.io/verdict": label}},
                # No hardening: the namespaces are never labelled hardened here, so the
                # readiness gate (tested in test_admission_static) stays out of the way.
                "hardening": {
                    "networkPolicy": {"enabled": False},
                    "limitRange": {"enabled": False},
                },
                "workloads": {"podSecurity": self.level, "checks": checks},
            },
        }


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    combo: Combo
    pod: Mapping[str, Any]  # a Pod manifest (or, for fixtures written as workloads, a workload)


def _cases() -> list[Case]:
    out: list[Case] = []
    seen: set[tuple[str, Combo]] = set()

    def add(case_id: str, combo: Combo, obj: Mapping[str, Any]) -> None:
        key = (json.dumps(obj, sort_keys=True), combo)
        if key in seen:
            return
        seen.add(key)
        out.append(Case(case_id, combo, obj))

    for fx in test_cases.discover():
        text = fx.path.read_text(encoding="utf-8")
        header = test_cases.parse_header(text, source=fx.path)
        chk = registry.get(fx.check_id)
        level = header.level or chk.level or registry.Level.BASELINE
        params = dict(header.params) if fx.check_id == "imageRegistry" else {}
        add(
            f"fixture/{fx.id}",
            Combo(level.value, json.dumps(params, sort_keys=True)),
            yaml.safe_load(text),
        )
    for pc in pss_cases.CASES:
        for level in pc.levels:
            add(f"upstream/{level}/{pc.id}", Combo(level, "{}"), pc.build(level))
    # Image references and quantities: the parsing the CEL restates with string functions.
    for allowed in ALLOW_LISTS:
        combo = Combo("baseline", json.dumps({"allowed": allowed}, sort_keys=True))
        for image in IMAGES:
            add(f"image/{image}/{allowed}", combo, _pod_with(image=image))
    for requests, limits, pod_level in RESOURCES:
        add(
            f"resources/{requests}/{limits}/{pod_level}",
            Combo("baseline", "{}"),
            _pod_with(requests=requests, limits=limits, pod_level=pod_level),
        )
    return out


ALLOW_LISTS = (
    ["registry.example.com", "docker.io/library/", "localhost:5000/", "quay.io/org"],
    ["docker.io/library/nginx", "ghcr.io/", "index.docker.io/"],
)
_HEX = "0123456789abcdef" * 4
IMAGES = (
    "nginx",
    "nginx:1.25",
    "nginx:latest",
    "nginx:Latest",
    "nginx-unofficial:1",
    "library/nginx:1",
    "docker.io/nginx:1",
    "index.docker.io/library/nginx:1",
    "index.docker.io/nginx",
    "bitnami/redis:7",
    "registry.example.com/app:1",
    "registry.example.com:5000/app:1",
    "registry.example.com.evil.io/app:1",
    "registry.example.comx/app:1",
    "localhost/app:1",
    "localhost:5000/app",
    "localhost:5000/app:2",
    "Upper/app:1",
    "quay.io/org/app:1",
    "quay.io/orgx/app:1",
    "quay.io/org",
    f"app@sha256:{_HEX}",
    f"app:latest@sha256:{_HEX}",
    "app:1@sha256:abc",
    f"registry.example.com/app@sha256:{_HEX}",
    "a/b/c:d",
    "ghcr.io/x/y:latest",
    "app:",
    "app@",
)
RESOURCES = (
    ({"cpu": "100m", "memory": "128Mi"}, {"memory": "256Mi"}, None),
    ({"cpu": "0.1", "memory": "1e6"}, {"memory": "1Gi"}, None),
    ({"cpu": "0m", "memory": "128Mi"}, {"memory": "256Mi"}, None),
    ({}, {"cpu": "1", "memory": "1Gi"}, None),
    ({"memory": "128Mi"}, {"memory": "0"}, None),
    ({}, {}, {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}),
    ({}, {}, {"limits": {"cpu": "1", "memory": "1Gi"}}),
    ({"cpu": "100m"}, {}, {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}),
    ({"cpu": "0"}, {}, {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}),
)


def _pod_with(
    *,
    image: str = "registry.k8s.io/pause:3.10",
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    pod_level: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if requests or limits:
        container["resources"] = {
            k: v for k, v in (("requests", requests), ("limits", limits)) if v
        }
    spec: dict[str, Any] = {"containers": [container]}
    if pod_level:
        spec["resources"] = pod_level
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra"}, "spec": spec}


CASES = _cases()


def as_kind(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The case as ``kind``: a Pod, or a controller whose pod template is the case's pod."""
    obj = copy.deepcopy(dict(obj))
    if obj.get("kind") != "Pod":
        return obj if obj.get("kind") == kind else None
    name = obj["metadata"]["name"]
    if kind == "Pod":
        return obj
    meta = {k: v for k, v in obj["metadata"].items() if k != "name"}
    labels = {**(meta.get("labels") or {}), "app": "verdict"}
    template = {"metadata": {**meta, "labels": labels}, "spec": obj["spec"]}
    if kind in ("Job", "CronJob") and template["spec"].get("restartPolicy") in (None, "Always"):
        template["spec"]["restartPolicy"] = "Never"
    api = {
        "Deployment": "apps/v1",
        "StatefulSet": "apps/v1",
        "DaemonSet": "apps/v1",
        "ReplicaSet": "apps/v1",
        "ReplicationController": "v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1",
    }[kind]
    spec: dict[str, Any]
    if kind == "Job":
        spec = {"template": template}
    elif kind == "CronJob":
        spec = {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "ReplicationController":
        spec = {"selector": {"app": "verdict"}, "template": template}
    else:
        spec = {"selector": {"matchLabels": {"app": "verdict"}}, "template": template}
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


@dataclasses.dataclass
class Outcome:
    case: str
    kind: str
    mode: str
    engine: frozenset[str]
    engine_enforced: frozenset[str]
    containers: Mapping[str, frozenset[str]]  # engine: check -> containers its findings name
    api: Mapping[str, str] | None = None  # checks named by warnings -> the warning's text
    denied_by: frozenset[str] | None = None  # checks named by a denial
    not_comparable: str | None = None  # the API server refused the object itself

    def mismatch(self) -> str | None:
        if self.not_comparable is not None:
            return None
        if self.mode == "Audit":
            if set(self.api or ()) != self.engine:
                return f"engine {sorted(self.engine)} != admission {sorted(self.api or ())}"
            return self._containers_named()
        if self.engine_enforced:
            if self.denied_by is None:
                return f"engine enforces {sorted(self.engine_enforced)}, admission allowed it"
            if self.denied_by != self.engine_enforced:
                return (
                    f"denied for {sorted(self.denied_by)}, "
                    f"engine enforces {sorted(self.engine_enforced)}"
                )
            return None
        if self.denied_by is not None:
            return f"admission denied it for {sorted(self.denied_by)}, the engine enforces nothing"
        if set(self.api or ()) != self.engine:
            return f"engine {sorted(self.engine)} != admission warnings {sorted(self.api or ())}"
        return None

    def _containers_named(self) -> str | None:
        """Each warning names every container the engine's findings of that check name
        (quoted as in the Events; an AppArmor annotation names it inside the key). A
        warning the API server or our limit cut short is not checked."""
        for check, names in self.containers.items():
            text = (self.api or {})[check]
            if text.endswith("..."):
                continue
            for name in names:
                if (f'"{name}"' if check != "appArmor" else name) not in text:
                    return f"the {check} warning does not name container {name!r}: {text}"
        return None


def _engine(
    policy: policy_model.Policy, obj: Mapping[str, Any], ns: str
) -> tuple[frozenset[str], frozenset[str], dict[str, frozenset[str]]]:
    pod = engine.pod_input(obj)
    assert pod is not None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    verdict = planning.review(pod, [policy], namespace=ns, labels=labels, now=NOW)
    errors = [f for f in verdict.findings if f.finding.outcome is engine.Outcome.ERROR]
    assert not errors, errors
    named = frozenset(f.finding.check for f in verdict.findings)
    enforced = (
        frozenset(f.finding.check for f in verdict.enforced()) if policy.enforcing else frozenset()
    )
    containers: dict[str, set[str]] = {}
    for f in verdict.findings:
        if f.finding.container:
            containers.setdefault(f.finding.check, set()).add(f.finding.container)
    return named, enforced, {c: frozenset(n) for c, n in containers.items()}


def _named(warnings: tuple[str, ...], vap_names: set[str]) -> dict[str, str]:
    out = {}
    for w in warnings:
        m = _WARNED.match(w)
        if m and m.group(1) in vap_names:
            n = _NAMED.match(m.group(2))
            assert n, w
            out[n.group(1)] = m.group(2)
    return out


def _judge(
    kube: ak.Client, ns: str, obj: dict[str, Any], vap_names: set[str]
) -> tuple[dict[str, str] | None, frozenset[str] | None, str | None]:
    """(checks warned, check denied for, not-comparable reason) for one dry-run create."""
    kind = obj["kind"]
    ephemeral = kind == "Pod" and obj["spec"].get("ephemeralContainers")
    if ephemeral:
        return _judge_ephemeral(kube, ns, obj, vap_names)
    r = kube.call("POST", ak.collection(kind, ns), obj, query={"dryRun": "All"})
    return _read(r, vap_names)


def _read(
    r: ak.Response, vap_names: set[str]
) -> tuple[dict[str, str] | None, frozenset[str] | None, str | None]:
    if r.ok:
        return _named(r.warnings, vap_names), None, None
    m = _VAP_SAYS.search(r.message)
    if m and m.group(1) in vap_names:
        n = _DENIED.match(m.group(2))
        assert n, r.message
        return None, frozenset(n.group(1).split(", ")), None
    return None, None, f"HTTP {r.status}: {r.message[:300]}"


def _judge_ephemeral(
    kube: ak.Client, ns: str, obj: dict[str, Any], vap_names: set[str]
) -> tuple[dict[str, str] | None, frozenset[str] | None, str | None]:
    base = copy.deepcopy(obj)
    ephemeral = base["spec"].pop("ephemeralContainers")
    name = f"{base['metadata']['name'][:50]}-{abs(hash(json.dumps(obj, sort_keys=True))) % 10**8}"
    base["metadata"]["name"] = name
    path = f"{ak.collection('Pod', ns)}/{name}"
    created = kube.call("POST", ak.collection("Pod", ns), base)
    if not created.ok:
        return None, None, f"base pod refused: HTTP {created.status}: {created.message[:300]}"
    try:
        live = created.body
        live["spec"]["ephemeralContainers"] = ephemeral
        r = kube.call("PUT", f"{path}/ephemeralcontainers", live, query={"dryRun": "All"})
        return _read(r, vap_names)
    finally:
        kube.call("DELETE", path, {"gracePeriodSeconds": 0})


@pytest.fixture(scope="module")
def setup(
    kube: ak.Client, run_id: str
) -> dict[tuple[Combo, str], tuple[str, policy_model.Policy, set[str]]]:
    """Per (combo, mode): a namespace, the parsed policy and its generated VAPs."""
    combos = sorted({c.combo for c in CASES}, key=lambda c: (c.level, c.params))
    out = {}
    for i, combo in enumerate(combos):
        for mode in ("Audit", "Enforce"):
            label = f"{run_id}-{i}-{mode.lower()}"
            ns = f"verdict-{label}"
            raw = combo.policy(f"verdict-{label}", mode, label)
            pol = policy_model.parse(raw, known_checks=registry.ids())
            desired = admission.build(pol, now=NOW)
            names = set()
            for manifest in desired.objects:
                manifest["metadata"]["labels"][RUN_LABEL] = run_id
                path = ak.VAP if manifest["kind"] == "ValidatingAdmissionPolicy" else ak.VAPB
                kube.apply(path, manifest["metadata"]["name"], manifest)
                names.add(manifest["metadata"]["name"])
            kube.must(
                "POST",
                ak.NAMESPACES,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns,
                        "labels": {
                            RUN_LABEL: run_id,
                            "kube-guardrails.io/verdict": label,
                            # The cluster's own PodSecurity admission must not refuse first.
                            "pod-security.kubernetes.io/enforce": "privileged",
                        },
                    },
                },
            )
            out[(combo, mode)] = (ns, pol, names)
    _wait_until_active(kube, out)
    return out


def _wait_until_active(
    kube: ak.Client, setup: Mapping[Any, tuple[str, policy_model.Policy, set[str]]]
) -> None:
    """Policies take effect asynchronously: wait until each namespace warns/denies a probe."""
    import time

    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]
        },
    }
    deadline = time.monotonic() + 60
    for ns, _, names in setup.values():
        while True:
            warned, denied, _ = _read(
                kube.call("POST", ak.collection("Pod", ns), bad, query={"dryRun": "All"}), names
            )
            if denied or (warned and "privileged" in warned):
                break
            assert time.monotonic() < deadline, f"admission policies for {ns} never took effect"
            time.sleep(0.2)


def test_engine_and_admission_agree(kube: ak.Client, setup: Any) -> None:
    jobs = []
    for case in CASES:
        for mode, kinds in (("Audit", AUDIT_KINDS), ("Enforce", ENFORCE_KINDS)):
            ns, pol, names = setup[(case.combo, mode)]
            for kind in kinds:
                obj = as_kind(case.pod, kind)
                if obj is not None:
                    jobs.append((case, mode, kind, ns, pol, names, obj))

    def run(job: Any) -> Outcome:
        case, mode, kind, ns, pol, names, obj = job
        named, enforced, containers = _engine(pol, obj, ns)
        warned, denied, refused = _judge(kube, ns, obj, names)
        return Outcome(case.id, kind, mode, named, enforced, containers, warned, denied, refused)

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(run, jobs))

    mismatches = [f"{o.mode} {o.kind} {o.case}: {o.mismatch()}" for o in outcomes if o.mismatch()]
    refused = [o for o in outcomes if o.not_comparable]
    refused_pods = [f"{o.mode} {o.case}: {o.not_comparable}" for o in refused if o.kind == "Pod"]
    compared = Counter((o.mode, o.kind) for o in outcomes if not o.not_comparable)
    print(
        f"\ncompared {sum(compared.values())} (case, kind, mode) verdicts "
        f"from {len(CASES)} cases: {dict(sorted(compared.items()))}"
    )
    print(
        f"not comparable (refused by the API server's own validation as that kind): "
        f"{len(refused)}: {dict(Counter(o.kind for o in refused))}"
    )
    print(
        "refused as Pods (invalid objects, no admission happens):\n  " + "\n  ".join(refused_pods)
    )
    # Only the API server's own validation may refuse a case (HTTP 400/422), never anything
    # else (an error of ours, a 403 from the cluster's PodSecurity admission...).
    assert all(o.not_comparable.startswith(("HTTP 400", "HTTP 422")) for o in refused), [
        o.not_comparable
        for o in refused
        if not o.not_comparable.startswith(("HTTP 400", "HTTP 422"))
    ]
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)
    # The comparison must have covered what it claims: every check failed somewhere.
    failing = {c for o in outcomes if not o.not_comparable for c in o.engine}
    assert failing == set(registry.ids()), set(registry.ids()) - failing
    warned = {c for o in outcomes if o.api for c in o.api}
    denied = {c for o in outcomes if o.denied_by for c in o.denied_by}
    assert warned == set(registry.ids()), set(registry.ids()) - warned
    assert denied, "no Enforce-mode case was denied"
