"""The ValidatingAdmissionPolicies and bindings generated for one GuardrailPolicy.

Pure: a function of (policy, now). Same input, same dicts, key for key, so the operator
can compare the desired objects with the live ones and write only on a difference.

Per GuardrailPolicy there are up to two pairs (one binding has one set of
``validationActions``):

- ``<prefix><policy>.deny`` + binding with ``validationActions: [Deny]``: the checks whose
  action is ``Enforce`` when the policy is in ``Enforce`` mode, and the namespace
  readiness gate (always Deny: it only holds while a new namespace is being hardened);
- ``<prefix><policy>.warn`` + binding with ``[Warn, Audit]``: every other active check,
  so ``kubectl apply`` prints the violation and the audit log records it.

A pair is left out when it would have nothing to validate. The binding selects the
policy's namespaces (``namespaceSelector`` plus the always-excluded ones by their
immutable ``kubernetes.io/metadata.name`` label); ``excludeNamespaces`` globs are a match
condition on ``request.namespace``.

Exemptions: CEL in the API server has no clock, so an exemption's expiry cannot be an
expression. :func:`build` leaves out exemptions that have expired at ``now`` and returns
the earliest expiry still ahead (``Desired.next_change``): the operator must build and
apply again at that time (and on every policy change); until then the exemption applies
at admission exactly as in the engine.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from kube_guardrails import (
    API_GROUP,
    API_VERSION,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_POLICY,
    MANAGED_BY_VALUE,
    OPERATOR_NAMESPACE,
)
from kube_guardrails.admission import cel, rules
from kube_guardrails.checks import activation, registry
from kube_guardrails.model import policy as policy_model

ADMISSION_API = "admissionregistration.k8s.io/v1"
NAME_PREFIX = "kube-guardrails."
DENY = "deny"
WARN = "warn"
# The readiness label the operator sets on a namespace once its managed objects exist.
# Only the operator's ServiceAccount may set or remove it (manifests/admission-*.yaml).
LABEL_HARDENED = "kube-guardrails.io/hardened"
GATE_CHECK = "namespaceReady"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# A violation message is cut to this many characters: a Pod with hundreds of containers
# must still get a readable message. (The API server also caps the warnings of one
# response at 4 KiB in total, cutting each to 256 characters when there are many: the
# check id comes first so that it survives; the audit log keeps every failure.)
MESSAGE_LIMIT = 1000

# What the policies match: Pods and the pod templates of every controller kind, on create
# and on update (updates that leave the pod spec / template alone are skipped by a match
# condition, so metadata writes such as the operator's annotations always pass).
RESOURCE_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"],
    },
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
    },
    {
        "apiGroups": ["batch"],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["jobs", "cronjobs"],
    },
)


def _pod_part(obj: str) -> str:
    return (
        f"request.kind.kind == 'Pod' ? {obj} : (request.kind.kind == 'CronJob' ? "
        f"{obj}.spec.jobTemplate.spec.template : {obj}.spec.template)"
    )


# Skip updates that do not touch what the checks read (spec of a Pod, template of the rest).
SPEC_CHANGED = (
    "request.operation != 'UPDATE' || (request.kind.kind == 'Pod' ? "
    "object.spec != oldObject.spec : (request.kind.kind == 'CronJob' ? "
    "object.spec.jobTemplate.spec.template != oldObject.spec.jobTemplate.spec.template : "
    "object.spec.template != oldObject.spec.template))"
)

BASE_VARIABLES: tuple[dict[str, str], ...] = (
    {"name": "pod", "expression": _pod_part("object")},
    {"name": "spec", "expression": "variables.pod.spec"},
    {"name": "meta", "expression": "variables.pod.?metadata.orValue({})"},
    {"name": "labels", "expression": "object.metadata.?labels.orValue({})"},
)


ActiveCheck = activation.ActiveCheck
active_checks = activation.resolve  # the same resolution as the engine's (planning)


@dataclasses.dataclass(frozen=True)
class Desired:
    """What should exist for one GuardrailPolicy.

    ``objects``: name -> manifest for every ValidatingAdmissionPolicy and binding, in apply
    order (each policy before its binding). Any object named in :func:`all_names` but
    absent here must be deleted. ``next_change``: when to build again (the earliest expiry
    of an exemption still in force), or None.
    """

    policies: Mapping[str, dict[str, Any]]
    bindings: Mapping[str, dict[str, Any]]
    next_change: datetime.datetime | None
    runtime_only: tuple[str, ...]

    @property
    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, vap in self.policies.items():
            out.append(vap)
            out.append(self.bindings[name])
        return out


def object_name(policy_name: str, which: str) -> str:
    """``kube-guardrails.<policy>.<deny|warn>``, hashed down when it would exceed 253."""
    name = f"{NAME_PREFIX}{policy_name}.{which}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(policy_name.encode()).hexdigest()[:10]
    keep = 253 - len(NAME_PREFIX) - len(which) - len(digest) - 3
    return f"{NAME_PREFIX}{policy_name[:keep].rstrip('.-')}-{digest}.{which}"


def all_names(policy_name: str) -> tuple[str, str]:
    """Every name :func:`build` may use for this policy (VAP and binding share it)."""
    return object_name(policy_name, DENY), object_name(policy_name, WARN)


def owner_reference(policy: policy_model.Policy) -> dict[str, Any]:
    """Owned by the GuardrailPolicy: deleting it garbage-collects the admission objects."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": policy.name,
        "uid": policy.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _metadata(name: str, policy: policy_model.Policy) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_POLICY: policy.name},
    }
    if policy.uid:
        meta["ownerReferences"] = [owner_reference(policy)]
    return meta


def build(
    policy: policy_model.Policy,
    *,
    now: datetime.datetime,
    operator_namespace: str = OPERATOR_NAMESPACE,
    readiness_gate: bool = True,
) -> Desired:
    """The admission objects for ``policy`` at time ``now`` (see the module docstring).

    ``readiness_gate``: refuse Pod creation in a selected namespace until the operator has
    labelled it ``kube-guardrails.io/hardened`` (only when the policy hardens anything).
    """
    active = active_checks(policy)
    level = registry.Level(policy.workloads.pod_security)
    exemptions = [ex for ex in policy.workloads.exemptions if not ex.expired(now)]
    expiries = [ex.expires for ex in exemptions]
    next_change = min(expiries) if expiries else None

    groups: dict[str, list[tuple[ActiveCheck, str]]] = {DENY: [], WARN: []}
    runtime_only: list[str] = []
    for a in active:
        if a.check.id in rules.RUNTIME_ONLY:
            runtime_only.append(a.check.id)
            continue
        expr = rules.RULES[a.check.id](level, a.params)
        if expr is None:
            continue
        which = DENY if policy.enforcing and a.action == "Enforce" else WARN
        groups[which].append((a, expr))

    gate = readiness_gate and _hardens(policy)
    policies: dict[str, dict[str, Any]] = {}
    bindings: dict[str, dict[str, Any]] = {}
    for which in (DENY, WARN):
        checks = groups[which]
        with_gate = gate and which == DENY
        if not checks and not with_gate:
            continue
        name = object_name(policy.name, which)
        policies[name] = _vap(name, policy, checks, exemptions, with_gate, deny=which == DENY)
        bindings[name] = _binding(name, policy, which, operator_namespace)
    return Desired(
        policies=policies,
        bindings=bindings,
        next_change=next_change,
        runtime_only=tuple(runtime_only),
    )


def _hardens(policy: policy_model.Policy) -> bool:
    h = policy.hardening
    return h.network_policy.enabled or h.limit_range.enabled or h.resource_quota.enabled


def _exemption_terms(exemptions: list[policy_model.Exemption]) -> list[dict[str, str]]:
    out = []
    for n, ex in enumerate(exemptions):
        terms = []
        if ex.namespaces:
            terms.append(cel.glob_match("request.namespace", ex.namespaces))
        if not ex.selector.empty:
            terms.append(cel.selector("variables.labels", ex.selector))
        out.append({"name": f"exemption{n}", "expression": cel.all_of(terms)})
    return out


def _message(policy: policy_model.Policy, chk: registry.Check, var: str, *, deny: bool) -> str:
    """CEL for one check's message: ``<check> (kube-guardrails policy <p>): <violations>``.

    A denial carries only the message of the first failing validation, so in the Deny
    policy every message starts with the list of *all* failing checks
    (``variables.failing``): one refusal names everything to fix.
    """
    head = cel.string(f"{chk.id} (kube-guardrails policy {policy.name}): ")
    tail = cel.string(f". Fix: {chk.hint}")
    text = f"{head} + {var}.join('; ') + {tail}"
    if deny:
        lead = cel.string(f"kube-guardrails policy {policy.name} denies this: ")
        text = f"{lead} + variables.failing.join(', ') + '. ' + {text}"
    # A message must be one line: field values (an image name...) could carry a break.
    text = f"({text}).replace({cel.string(chr(10))}, ' ').replace({cel.string(chr(13))}, ' ')"
    cut = f"{text}.substring(0, {MESSAGE_LIMIT - 3}) + '...'"
    return f"{text}.size() > {MESSAGE_LIMIT} ? {cut} : {text}"


def _vap(
    name: str,
    policy: policy_model.Policy,
    checks: list[tuple[ActiveCheck, str]],
    exemptions: list[policy_model.Exemption],
    gate: bool,
    *,
    deny: bool,
) -> dict[str, Any]:
    variables: list[dict[str, str]] = [dict(v) for v in BASE_VARIABLES]
    exemption_vars = _exemption_terms(exemptions)
    variables.extend(exemption_vars)
    validations: list[dict[str, Any]] = []
    if gate:
        validations.append(
            {
                "expression": (
                    "request.kind.kind != 'Pod' || request.operation != 'CREATE' || "
                    f"{cel.string(LABEL_HARDENED)} in "
                    "namespaceObject.metadata.?labels.orValue({})"
                ),
                "message": (
                    f"{GATE_CHECK} (kube-guardrails policy {policy.name}): this namespace is "
                    "not hardened yet (its default-deny NetworkPolicy and LimitRange are "
                    "being created); Pods are refused until kube-guardrails labels it "
                    f"{LABEL_HARDENED}. Retry in a moment; if this persists, check that the "
                    "kube-guardrails operator is running."
                ),
                "reason": "Forbidden",
            }
        )
    verdicts: list[tuple[str, str]] = []
    for a, expr in checks:
        var = f"v_{a.check.id}"
        variables.append({"name": var, "expression": expr})
        exempt = [
            f"variables.{v['name']}"
            for ex, v in zip(exemptions, exemption_vars, strict=True)
            if not ex.checks or a.check.id in ex.checks
        ]
        passes = " || ".join([*exempt, f"size(variables.{var}) == 0"])
        verdicts.append((a.check.id, passes))
        validations.append(
            {
                "expression": passes,
                "messageExpression": _message(policy, a.check, f"variables.{var}", deny=deny),
                "reason": "Forbidden",
            }
        )
    if deny and checks:
        failing = ", ".join(f"({passes}) ? '' : {cel.string(check)}" for check, passes in verdicts)
        variables.append({"name": "failing", "expression": f"[{failing}].filter(x, x != '')"})
    match_conditions = [{"name": "pod-spec-changed", "expression": SPEC_CHANGED}]
    if policy.exclude_namespaces:
        match_conditions.append(
            {
                "name": "not-excluded",
                "expression": "!("
                + cel.glob_match("request.namespace", policy.exclude_namespaces)
                + ")",
            }
        )
    return {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _metadata(name, policy),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                # Fresh copies: the caller may change what it gets without touching these.
                "resourceRules": copy.deepcopy(list(RESOURCE_RULES)),
                "matchPolicy": "Equivalent",
            },
            "matchConditions": match_conditions,
            "variables": variables,
            "validations": validations,
        },
    }


def _binding(
    name: str, policy: policy_model.Policy, which: str, operator_namespace: str
) -> dict[str, Any]:
    selector = cel.label_selector(policy.namespace_selector)
    system = sorted({*policy_model.ALWAYS_EXCLUDED, operator_namespace})
    expressions = list(selector.get("matchExpressions") or [])
    expressions.append({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": system})
    selector["matchExpressions"] = expressions
    return {
        "apiVersion": ADMISSION_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _metadata(name, policy),
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"] if which == DENY else ["Warn", "Audit"],
            "matchResources": {"namespaceSelector": selector},
        },
    }
