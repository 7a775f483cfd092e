"""A :class:`core.Plan` as text: a table for people, JSON for scripts.

The JSON document's shape is a stable interface (``schema: kube-guardrails.plan/v1``,
documented in the README); fields are only ever added to it. Every namespace of the
cluster is listed, selected or not, in name order; workloads appear only when they
violate.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any, TextIO

from kube_guardrails import violations
from kube_guardrails.plan import core

SCHEMA = "kube-guardrails.plan/v1"
WRITE_ACTIONS = ("create", "update", "delete", "conflict")


def to_dict(plan: core.Plan, *, context: str, sources: Mapping[str, str]) -> dict[str, Any]:
    """The JSON document (see the module docs); ``sources``: policy name -> file."""
    doc = _head(plan, context=context, sources=sources)
    doc["namespaces"] = [_namespace(ns) for ns in plan.namespaces]
    return doc


def _head(plan: core.Plan, *, context: str, sources: Mapping[str, str]) -> dict[str, Any]:
    """Everything but the namespaces' details (which :func:`write_json` streams)."""
    return {
        "schema": SCHEMA,
        "context": context,
        "now": violations.format_time(plan.now),
        "operatorNamespace": plan.operator_namespace,
        "policies": [
            {
                "name": p.name,
                "source": sources.get(p.name, ""),
                "mode": p.mode,
                "priority": p.priority,
                "replaces": p.replaces,
            }
            for p in plan.policies
        ],
        "ignoredClusterPolicies": list(plan.invalid_cluster_policies),
        "notes": list(plan.notes),
        "namespaces": _NAMESPACES,
        "admission": {
            "available": plan.admission.available,
            "reason": plan.admission.reason,
            "changes": [_admission_change(c) for c in plan.admission.changes],
        },
        "summary": summary(plan),
    }


_NAMESPACES = "\x00namespaces\x00"  # placeholder: no namespace name can contain NUL


def summary(plan: core.Plan) -> dict[str, Any]:
    evictions = [e for ns in plan.namespaces for e in ns.evictions]
    evicted = {(ns.name, e.pod) for ns in plan.namespaces for e in ns.evictions if e.evict}
    return {
        "namespaces": {
            "total": len(plan.namespaces),
            "selected": sum(1 for ns in plan.namespaces if ns.selected),
        },
        "hardening": plan.count_changes(),
        "admission": plan.admission.count(),
        "workloads": {
            "checked": sum(ns.checked for ns in plan.namespaces),
            "violating": sum(len(ns.workloads) for ns in plan.namespaces),
            "byCheck": plan.by_check(),
        },
        "evictions": {
            "evict": len(evicted),
            "dryRun": sum(1 for e in evictions if e.evict and e.dry_run),
            "spared": sum(1 for e in evictions if not e.evict),
        },
    }


def write_json(
    plan: core.Plan, stream: TextIO, *, context: str, sources: Mapping[str, str]
) -> None:
    """Write the JSON document, one namespace at a time, each on one line.

    Never holds the whole document: on a 10,000-Pod cluster where everything violates,
    building it first cost more memory than reading the cluster. One compact line per
    namespace also keeps the C encoder in use (``indent`` forces the slow pure-Python
    one; it was most of the run time) and makes the output easy to grep.
    """
    head = json.dumps(_head(plan, context=context, sources=sources), indent=2)
    before, after = head.split(json.dumps(_NAMESPACES), 1)
    stream.write(before)
    if not plan.namespaces:
        stream.write("[]")
    for i, ns in enumerate(plan.namespaces):
        stream.write("[\n    " if i == 0 else ",\n    ")
        stream.write(json.dumps(_namespace(ns)))
    if plan.namespaces:
        stream.write("\n  ]")
    stream.write(after + "\n")


def _change(c: core.ObjectChange) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "name": c.name,
        "action": c.action,
        "reason": c.reason,
        "policy": c.policy,
    }


def _admission_change(c: core.AdmissionChange) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "name": c.name,
        "action": c.action,
        "reason": c.reason,
        "policy": c.policy,
        "validationActions": list(c.validation_actions),
        "checks": list(c.checks),
    }


def _namespace(ns: core.NamespacePlan) -> dict[str, Any]:
    return {
        "name": ns.name,
        "selected": ns.selected,
        "selectedBy": list(ns.selected_by),
        "notSelected": dict(sorted(ns.not_selected.items())),
        "terminating": ns.terminating,
        "hardening": {
            "governingBefore": ns.governing_before,
            "governingAfter": ns.governing_after,
            "changes": [_change(c) for c in ns.changes],
        },
        "workloadsChecked": ns.checked,
        "workloads": [
            {
                "kind": w.kind,
                "name": w.name,
                "owner": w.owner,
                "violations": [
                    {
                        "policy": v.policy,
                        "check": v.check,
                        "action": v.action,
                        "severity": v.severity,
                        "outcome": v.outcome,
                        "container": v.container,
                        "path": v.path,
                        "message": v.message,
                    }
                    for v in w.violations
                ],
            }
            for w in ns.workloads
        ],
        "evictions": [
            {
                "pod": e.pod,
                "policy": e.policy,
                "evict": e.evict,
                "dryRun": e.dry_run,
                "afterSeconds": e.after_seconds,
                "checks": list(e.checks),
                "reason": e.reason,
            }
            for e in ns.evictions
        ],
        "expiredExemptions": [
            {"policy": x.policy, "index": x.index}
            for x in sorted(ns.expired_exemptions, key=lambda x: (x.policy, x.index))
        ],
    }


def render_json(plan: core.Plan, *, context: str, sources: Mapping[str, str]) -> str:
    out = io.StringIO()
    write_json(plan, out, context=context, sources=sources)
    return out.getvalue()


def render_table(plan: core.Plan, *, context: str, sources: Mapping[str, str]) -> str:
    """Per namespace: hardening writes, violating workloads, evictions; then a summary.

    Namespaces where nothing would happen and that no file policy selects are folded
    into one line per reason, so a 1,000-namespace cluster stays readable.
    """
    lines: list[str] = []
    for p in plan.policies:
        state = "replaces the policy of that name" if p.replaces else "new"
        lines.append(
            f"Policy {p.name} ({sources.get(p.name, '?')}): mode {p.mode}, "
            f"priority {p.priority}, {state}"
        )
    lines.append(f"Context {context}, as of {violations.format_time(plan.now)}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    for name in plan.invalid_cluster_policies:
        lines.append(f"  note: cluster policy {name} is invalid and ignored (as the operator does)")
    lines.append("")
    folded: dict[str, list[str]] = {}
    for ns in plan.namespaces:
        if (
            not ns.selected
            and not ns.writes
            and not any(c.action == "conflict" for c in ns.changes)
        ):
            reason = "; ".join(sorted(set(ns.not_selected.values()))) or "not selected"
            folded.setdefault(reason, []).append(ns.name)
            continue
        lines.extend(_namespace_lines(ns))
        lines.append("")
    for reason, names in sorted(folded.items()):
        shown = ", ".join(names[:20]) + (f" ... (+{len(names) - 20})" if len(names) > 20 else "")
        lines.append(f"Not selected ({reason}): {shown}")
    if folded:
        lines.append("")
    lines.extend(_admission_lines(plan.admission))
    s = summary(plan)
    hard = s["hardening"]
    wl = s["workloads"]
    ev = s["evictions"]
    adm = s["admission"]
    by_check = ", ".join(f"{c} {n}" for c, n in wl["byCheck"].items()) or "none"
    lines.append(
        f"Summary: {s['namespaces']['selected']} of {s['namespaces']['total']} namespaces "
        f"selected; hardening: {hard['create']} create, {hard['update']} update, "
        f"{hard['delete']} delete, {hard['conflict']} conflict; admission: "
        f"{adm['create']} create, {adm['update']} update, {adm['delete']} delete, "
        f"{adm['conflict']} conflict; {wl['violating']} of "
        f"{wl['checked']} workloads violate (by check: {by_check}); {ev['evict']} Pods "
        f"would be evicted ({ev['dryRun']} dry run), {ev['spared']} spared"
    )
    return "\n".join(lines) + "\n"


def _admission_lines(adm: core.AdmissionPlan) -> list[str]:
    """The generated admission policies: writes and conflicts, one line each."""
    if not adm.available:
        return [f"Admission policies: {adm.reason}"]
    shown = [c for c in adm.changes if c.action in WRITE_ACTIONS]
    unchanged = len(adm.changes) - len(shown)
    if not shown:
        return [f"Admission policies: no change ({unchanged} objects unchanged)"]
    out = [f"Admission policies ({unchanged} objects unchanged):"]
    for c in shown:
        what = f"[{', '.join(c.validation_actions)}] {', '.join(c.checks) or 'no checks'}"
        reason = f"  ({c.reason})" if c.reason else ""
        out.append(f"  {c.action:<9} {c.kind}/{c.name}: {what}{reason}")
    return out


def _namespace_lines(ns: core.NamespacePlan) -> list[str]:
    if ns.selected:
        head = f"Namespace {ns.name}: selected by {', '.join(ns.selected_by)}"
    else:
        head = f"Namespace {ns.name}: not selected ({'; '.join(ns.not_selected.values())})"
    if ns.terminating:
        head += "; terminating, left alone"
    elif ns.governing_after != ns.governing_before:
        head += (
            f"; hardening governed by {ns.governing_after or 'no policy'}"
            f" (now {ns.governing_before or 'none'})"
        )
    elif ns.governing_after:
        head += f"; hardening governed by {ns.governing_after}"
    out = [head]
    for c in ns.changes:
        if c.action in WRITE_ACTIONS:
            reason = f"  ({c.reason})" if c.reason else ""
            out.append(f"  {c.action:<9} {c.kind}/{c.name}{reason}")
    if ns.selected and not ns.writes and not ns.terminating:
        out.append("  hardening: no change")
    if ns.workloads:
        out.append(f"  violations ({len(ns.workloads)} of {ns.checked} workloads):")
        for w in ns.workloads:
            items: dict[tuple[str, str], set[str]] = {}
            for v in w.violations:
                items.setdefault((v.policy, v.check), set()).update(
                    [v.container] if v.container else []
                )
            text = ", ".join(
                f"{p}/{c}" + (f"({','.join(sorted(cs))})" if cs else "")
                for (p, c), cs in sorted(items.items())
            )
            owner = f" [{w.owner}]" if w.owner else ""
            out.append(f"    {w.kind}/{w.name}{owner}: {text}")
    elif ns.selected:
        out.append(f"  violations: none ({ns.checked} workloads checked)")
    for e in ns.evictions:
        checks = ", ".join(e.checks)
        if e.evict:
            verb = "would be evicted (dry run: Event only)" if e.dry_run else "evicted"
            out.append(
                f"  evict     Pod/{e.pod}: {verb} after {e.after_seconds}s by {e.policy} ({checks})"
            )
        else:
            out.append(f"  spared    Pod/{e.pod}: {e.reason} ({e.policy}: {checks})")
    for x in sorted(ns.expired_exemptions, key=lambda x: (x.policy, x.index)):
        out.append(f"  expired   {x.policy} spec.workloads.exemptions[{x.index}] no longer applies")
    return out
