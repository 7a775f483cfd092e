"""What applying GuardrailPolicy objects would do to a cluster, computed without I/O.

Given the policies of a file, the policies already in the cluster, the namespaces, the
live objects bearing our managed names and the workloads, :func:`compute` returns a
:class:`Plan`. Every decision is the operator's own, called here rather than
re-implemented:

* selection and priority: ``model.policy.selects_namespace``,
  ``planning.governing_policy`` (the highest-priority matching policy governs
  hardening, ties by name), over the cluster's policies with the file's replacing
  same-named ones (``kubectl apply`` of the file updates them in place);
* hardening: ``builders.desired_objects`` and ``builders.planned_change`` (the
  comparison ``services.hardening`` writes by, including "someone else's object:
  never touched");
* workload verdicts: ``planning.review`` over the pod or pod template
  (``checks.engine.pod_input``), with exemptions and their expiry at ``now``;
* evictions: ``violations.eviction_decision`` (protected Pods, exclusions, Enforce
  mode and Enforce-action checks only), asked as of the moment the policy is applied,
  so its answer is "after the grace period" or "never, because ...".

Workloads are consumed as an iterable, one at a time, and only violating ones are
kept, so a caller can stream them from paginated LISTs.

* admission: ``admission.build`` for each of the file's policies (as applied: the uid of
  the policy it replaces) and ``admission.changed`` (the operator's comparison) against
  the live ValidatingAdmissionPolicies and bindings of ``admission.all_names``
  (:func:`plan_admission`).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube_guardrails import admission, builders, planning, violations
from kube_guardrails.checks import engine
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import selectors

WORKLOAD_ORDER = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "CronJob", "Job", "Pod")


@dataclasses.dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    terminating: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Namespace:
        meta = obj.get("metadata") or {}
        phase = (obj.get("status") or {}).get("phase")
        return cls(
            name=str(meta.get("name") or ""),
            labels=dict(meta.get("labels") or {}),
            terminating=phase == "Terminating" or bool(meta.get("deletionTimestamp")),
        )


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    name: str
    mode: str
    priority: int
    replaces: bool  # a policy of that name is in the cluster now


@dataclasses.dataclass(frozen=True)
class ObjectChange:
    kind: str
    name: str
    action: str  # create | update | delete | unchanged | conflict
    reason: str
    policy: str | None  # the policy whose desired object this is (None for delete)


@dataclasses.dataclass(frozen=True)
class Violation:
    policy: str
    check: str
    action: str  # Audit | Enforce
    severity: str
    outcome: str  # fail | error
    container: str | None
    path: str
    message: str


@dataclasses.dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    owner: str | None  # "Kind/name" of the controller, if any
    violations: tuple[Violation, ...]

    @property
    def checks(self) -> frozenset[str]:
        return frozenset(v.check for v in self.violations)


@dataclasses.dataclass(frozen=True)
class Eviction:
    """What Enforce would do to one violating Pod for one policy."""

    pod: str
    policy: str
    evict: bool
    dry_run: bool
    after_seconds: int | None  # the grace period, when evicted
    checks: tuple[str, ...]  # the Enforce-action checks it fails
    reason: str  # why not, when spared (protected Pod, ...)


@dataclasses.dataclass(frozen=True)
class ExpiredExemption:
    policy: str
    index: int


@dataclasses.dataclass
class NamespacePlan:
    name: str
    selected_by: tuple[str, ...]
    # For each file policy that does not select it: why (system, excluded, selector).
    not_selected: Mapping[str, str]
    governing_before: str | None
    governing_after: str | None
    terminating: bool = False
    changes: list[ObjectChange] = dataclasses.field(default_factory=list)
    workloads: list[Workload] = dataclasses.field(default_factory=list)
    evictions: list[Eviction] = dataclasses.field(default_factory=list)
    expired_exemptions: set[ExpiredExemption] = dataclasses.field(default_factory=set)
    checked: int = 0

    @property
    def selected(self) -> bool:
        return bool(self.selected_by)

    @property
    def writes(self) -> list[ObjectChange]:
        return [c for c in self.changes if c.action in ("create", "update", "delete")]


VAP = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"
ADMISSION_KINDS = (VAP, BINDING)


@dataclasses.dataclass(frozen=True)
class AdmissionChange:
    """One generated ValidatingAdmissionPolicy or binding and what applying does to it."""

    kind: str  # ValidatingAdmissionPolicy | ValidatingAdmissionPolicyBinding
    name: str
    action: str  # create | update | delete | unchanged | conflict
    reason: str
    policy: str  # the file policy the name belongs to
    validation_actions: tuple[str, ...]  # of the pair's binding: [Deny] or [Warn, Audit]
    checks: tuple[str, ...]  # what the pair's policy validates (check ids, namespaceReady)


@dataclasses.dataclass(frozen=True)
class AdmissionPlan:
    """What would happen to the generated admission policies (README "Admission")."""

    available: bool
    reason: str
    changes: tuple[AdmissionChange, ...] = ()

    def count(self) -> dict[str, int]:
        out = dict.fromkeys(("create", "update", "delete", "conflict"), 0)
        for c in self.changes:
            if c.action in out:
                out[c.action] += 1
        return out


# Before the cluster was read (and for callers that do not plan admission).
ADMISSION_PENDING = AdmissionPlan(available=False, reason="not planned")


@dataclasses.dataclass
class Plan:
    policies: tuple[PolicyInfo, ...]
    namespaces: list[NamespacePlan]
    now: datetime.datetime
    operator_namespace: str
    invalid_cluster_policies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # facts about the cluster the reader should know
    admission: AdmissionPlan = ADMISSION_PENDING

    def count_changes(self) -> dict[str, int]:
        out = dict.fromkeys(("create", "update", "delete", "conflict"), 0)
        for ns in self.namespaces:
            for c in ns.changes:
                if c.action in out:
                    out[c.action] += 1
        return out

    def by_check(self) -> dict[str, int]:
        """Check id -> number of workloads failing it (any file policy)."""
        counter: collections.Counter[str] = collections.Counter()
        for ns in self.namespaces:
            for w in ns.workloads:
                counter.update(w.checks)
        return dict(sorted(counter.items()))


def not_selected_reason(
    policy: policy_model.Policy,
    *,
    name: str,
    labels: Mapping[str, str] | None,
    operator_namespace: str,
) -> str | None:
    """Why the policy does not select the namespace, or None when it does.

    The same tests as ``model.policy.selects_namespace`` in the same order (the unit
    table checks they agree), spelled out for a person.
    """
    if name in policy_model.ALWAYS_EXCLUDED:
        return "system namespace (always excluded)"
    if name == operator_namespace:
        return "the operator's namespace (always excluded)"
    for pattern in policy.exclude_namespaces:
        if selectors.glob_match(name, [pattern]):
            return f"excludeNamespaces: {pattern}"
    if not policy.namespace_selector.matches(labels):
        return "namespaceSelector does not match its labels"
    return None


def effective_policies(
    policies: Sequence[policy_model.Policy], cluster: Sequence[policy_model.Policy]
) -> tuple[list[policy_model.Policy], list[policy_model.Policy]]:
    """(the file's policies as applied, every policy in the cluster after applying).

    A file policy replacing a cluster policy keeps that policy's uid (applying updates
    the object in place), so the managed objects' ownerReference stays comparable.
    """
    by_name = {p.name: p for p in cluster}
    applied = [
        dataclasses.replace(p, uid=by_name[p.name].uid) if p.name in by_name else p
        for p in policies
    ]
    names = {p.name for p in applied}
    return applied, [p for p in cluster if p.name not in names] + applied


def checks_of(vap: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The check ids a generated ValidatingAdmissionPolicy validates, in its order.

    Read from the object itself (so a live one being deleted is described as it is):
    each check is a variable ``v_<check id>``; the readiness gate is the validation
    whose message starts with ``namespaceReady``.
    """
    spec = (vap or {}).get("spec") or {}
    out: list[str] = []
    for v in spec.get("validations") or []:
        if str(v.get("message") or "").startswith(f"{admission.GATE_CHECK} "):
            out.append(admission.GATE_CHECK)
    for var in spec.get("variables") or []:
        name = str(var.get("name") or "")
        if name.startswith("v_"):
            out.append(name[2:])
    return tuple(out)


def plan_admission(
    policies: Sequence[policy_model.Policy],
    live: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    now: datetime.datetime,
    operator_namespace: str,
) -> AdmissionPlan:
    """What applying ``policies`` (as applied, :func:`effective_policies`) does to their
    admission objects.

    ``live``: (kind, name) -> the live object of every name in ``admission.all_names``
    of those policies (``k8s.reader.list_admission``). Per name and kind, as the
    operator decides: an object without our ``managed-by`` label is someone else's and
    never touched (``conflict`` if we want the name); otherwise wanted and absent is a
    create, present and not wanted (say the policy no longer enforces anything, so its
    ``deny`` pair goes) a delete, present and different (``admission.changed``) an
    update. Names neither wanted nor present are left out.
    """
    changes: list[AdmissionChange] = []
    for pol in sorted(policies, key=lambda p: p.name):
        desired = admission.build(pol, now=now, operator_namespace=operator_namespace)
        for name in admission.all_names(pol.name):
            wanted = {VAP: desired.policies.get(name), BINDING: desired.bindings.get(name)}
            got = {kind: live.get((kind, name)) for kind in ADMISSION_KINDS}
            binding = wanted[BINDING] or got[BINDING]
            actions = tuple((binding or {}).get("spec", {}).get("validationActions") or ())
            checks = checks_of(wanted[VAP] or got[VAP])
            for kind in ADMISSION_KINDS:
                action, reason = _admission_action(got[kind], wanted[kind])
                if action is None:
                    continue
                changes.append(
                    AdmissionChange(
                        kind=kind,
                        name=name,
                        action=action,
                        reason=reason,
                        policy=pol.name,
                        validation_actions=actions,
                        checks=checks,
                    )
                )
    return AdmissionPlan(available=True, reason="", changes=tuple(changes))


def _admission_action(
    live: Mapping[str, Any] | None, want: Mapping[str, Any] | None
) -> tuple[str | None, str]:
    if live is not None and not builders.is_managed(live):
        if want is None:
            return None, ""
        return "conflict", "exists without an ownerReference to a GuardrailPolicy; left alone"
    if want is None:
        return (None, "") if live is None else ("delete", "no longer needed by the policy")
    if live is None:
        return "create", ""
    if not admission.changed(live, want):
        return "unchanged", ""
    if admission.changed({"spec": live.get("spec")}, {"spec": want.get("spec")}):
        return "update", "spec differs"
    return "update", "labels or ownerReference differ"


def top_level(body: Mapping[str, Any]) -> bool:
    """Is the object reviewed on its own (not through a reviewed controller above it)?"""
    # The operator's rule (a ReplicaSet whose controller is a Deployment, a Job whose
    # controller is a CronJob); Pods carry their own verdict: enforcement needs it.
    return not planning.reviewed_through_owner(body)


def compute(
    *,
    policies: Sequence[policy_model.Policy],
    cluster_policies: Sequence[policy_model.Policy],
    namespaces: Iterable[Namespace],
    managed: Mapping[tuple[str, str], Mapping[str, Any]],
    workloads: Iterable[Mapping[str, Any]],
    operator_namespace: str,
    now: datetime.datetime,
    invalid_cluster_policies: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> Plan:
    """The plan of applying ``policies`` (the file) to a cluster in the given state.

    ``managed`` maps (kind, namespace) to the live object bearing our name for that
    kind (ours or someone else's); ``workloads`` are Pods and controllers as the API
    returns them (or projected by ``k8s.reader``).
    """
    applied, after = effective_policies(policies, cluster_policies)
    before = list(cluster_policies)
    cluster_names = {p.name for p in cluster_policies}
    plan = Plan(
        policies=tuple(
            PolicyInfo(
                name=p.name, mode=p.mode, priority=p.priority, replaces=p.name in cluster_names
            )
            for p in applied
        ),
        namespaces=[],
        now=now,
        operator_namespace=operator_namespace,
        invalid_cluster_policies=tuple(sorted(invalid_cluster_policies)),
        notes=tuple(notes),
    )
    by_name: dict[str, NamespacePlan] = {}
    compiled = [planning.compile_policy(p) for p in applied]  # once for every workload
    selecting: dict[str, list[planning.CompiledPolicy]] = {}
    for ns in sorted(namespaces, key=lambda n: n.name):
        nsp = _namespace_plan(
            ns, applied=applied, before=before, after=after, operator_namespace=operator_namespace
        )
        if not ns.terminating:  # the operator leaves a namespace being deleted alone
            desired = builders.desired_objects(ns.name, _policy(after, nsp.governing_after))
            for kind, want in desired.items():
                change = builders.planned_change(managed.get((kind.kind, ns.name)), want)
                nsp.changes.append(
                    ObjectChange(
                        kind=kind.kind,
                        name=kind.name,
                        action=change.action,
                        reason=change.reason,
                        policy=nsp.governing_after if want is not None else None,
                    )
                )
        plan.namespaces.append(nsp)
        by_name[ns.name] = nsp
        selecting[ns.name] = [c for c in compiled if c.name in nsp.selected_by]

    for body in workloads:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        pols = selecting.get(namespace)
        if not pols or not top_level(body):
            continue
        nsp = by_name[namespace]
        nsp.checked += 1
        _review_one(nsp, body, pols, operator_namespace=operator_namespace, now=now)

    for nsp in plan.namespaces:
        nsp.workloads.sort(key=lambda w: (_kind_rank(w.kind), w.name))
        nsp.evictions.sort(key=lambda e: (e.pod, e.policy))
    return plan


def _namespace_plan(
    ns: Namespace,
    *,
    applied: Sequence[policy_model.Policy],
    before: Sequence[policy_model.Policy],
    after: Sequence[policy_model.Policy],
    operator_namespace: str,
) -> NamespacePlan:
    selected: list[str] = []
    why_not: dict[str, str] = {}
    for p in applied:
        reason = not_selected_reason(
            p, name=ns.name, labels=ns.labels, operator_namespace=operator_namespace
        )
        if reason is None:
            selected.append(p.name)
        else:
            why_not[p.name] = reason

    def governing(pols: Sequence[policy_model.Policy]) -> str | None:
        gov = planning.governing_policy(
            pols, namespace=ns.name, labels=ns.labels, operator_namespace=operator_namespace
        )
        return gov.name if gov is not None else None

    return NamespacePlan(
        name=ns.name,
        selected_by=tuple(selected),
        not_selected=why_not,
        governing_before=governing(before),
        governing_after=governing(after),
        terminating=ns.terminating,
    )


def _review_one(
    nsp: NamespacePlan,
    body: Mapping[str, Any],
    pols: Sequence[planning.CompiledPolicy],
    *,
    operator_namespace: str,
    now: datetime.datetime,
) -> None:
    pod = engine.pod_input(body)
    if pod is None:
        return
    meta = body.get("metadata") or {}
    kind = str(body.get("kind") or "")
    name = str(meta.get("name") or "")
    verdict = planning.review(
        pod, pols, namespace=nsp.name, labels=meta.get("labels") or {}, now=now
    )
    nsp.expired_exemptions.update(ExpiredExemption(p, i) for p, i in verdict.expired_exemptions)
    if verdict.compliant:
        return
    owner = next((r for r in _owners(body) if r.get("controller")), None)
    nsp.workloads.append(
        Workload(
            kind=kind,
            name=name,
            owner=f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
            violations=tuple(
                Violation(
                    policy=f.policy,
                    check=f.finding.check,
                    action=f.action,
                    severity=f.finding.severity.label,
                    outcome=str(f.finding.outcome),
                    container=f.finding.container,
                    path=f.finding.path,
                    message=f.finding.message,
                )
                for f in verdict.findings
            ),
        )
    )
    if kind != "Pod":
        return
    for pol in (c.policy for c in pols):
        mine = {pol.name: pol}
        enforced = sorted(
            {
                f.finding.check
                for f in verdict.findings
                if violations.is_enforced(f, policies=mine, kind="Pod")
            }
        )
        if not enforced:
            continue
        # As of the moment of applying: the violation set is new then (it gains this
        # policy's items), so the grace period starts then, and no eviction of this
        # policy has happened yet (an empty rate-limit window).
        decision = violations.eviction_decision(
            body,
            findings=verdict.findings,
            policy=pol,
            since=now,
            now=now,
            recent_evictions=(),
            operator_namespace=operator_namespace,
        )
        dry_run = pol.workloads.enforcement.dry_run
        if not isinstance(decision, violations.Never) and violations.claimed_daemonset(body):
            # The operator looks the DaemonSet up before evicting; plan does not read them.
            decision = violations.Never(reason="DaemonSet Pod (spared if its DaemonSet exists)")
        if isinstance(decision, violations.Never):
            nsp.evictions.append(
                Eviction(
                    pod=name,
                    policy=pol.name,
                    evict=False,
                    dry_run=dry_run,
                    after_seconds=None,
                    checks=tuple(enforced),
                    reason=decision.reason,
                )
            )
            continue
        after = 0
        if isinstance(decision, violations.Wait):
            after = int((decision.until - now).total_seconds())
        nsp.evictions.append(
            Eviction(
                pod=name,
                policy=pol.name,
                evict=True,
                dry_run=dry_run,
                after_seconds=after,
                checks=tuple(enforced),
                reason="",
            )
        )


def _policy(pols: Sequence[policy_model.Policy], name: str | None) -> policy_model.Policy | None:
    return next((p for p in pols if p.name == name), None) if name else None


def _owners(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    refs = (body.get("metadata") or {}).get("ownerReferences")
    return [r for r in refs if isinstance(r, Mapping)] if isinstance(refs, list) else []


def _kind_rank(kind: str) -> int:
    return WORKLOAD_ORDER.index(kind) if kind in WORKLOAD_ORDER else len(WORKLOAD_ORDER)
