"""Policy reports in the OpenReports format: the desired ``Report`` of a namespace.

Security teams read policy results where their tools already look: Policy Reporter and
other consumers of the OpenReports API (``openreports.io/v1alpha1``, kind ``Report``,
https://github.com/openreports/reports-api). This module turns the current violations of
one namespace into that namespace's Report manifest. It is a pure function of its
arguments, and deterministic (sorted results, timestamps from when each violation set was
first seen, never "now"), so "nothing changed" is an equality test and a resync or a
restart writes nothing.

The Report is compact:

* one per namespace, named :data:`REPORT_NAME`, and only for a namespace with
  violations (no Report is an all-clear);
* results only for what fails: one per (workload, policy, check), ``rule`` = the check
  id, ``result`` = ``fail`` for a check whose action is Enforce, ``warn`` for an Audit
  check (OpenReports: "not met, not scored"), ``error`` when the check itself crashed;
  no ``pass`` results, which ``configuration.limits.statusFilter`` declares, so
  ``summary.pass`` is always 0;
* at most :data:`MAX_RESULTS` results (the summary still counts all of them), so a
  namespace with thousands of violating Pods cannot exceed etcd's object size limit.

No ownerReference: a Report spans every policy that selects its namespace, so no single
policy may garbage-collect it; the namespace's deletion removes it, and the operator
deletes it when the last violation goes.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from kube_guardrails import LABEL_MANAGED_BY, MANAGED_BY_VALUE
from kube_guardrails.checks import engine, registry

GROUP = "openreports.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Report"
PLURAL = "reports"
REPORT_NAME = "kube-guardrails"
SOURCE = "kube-guardrails"
MAX_RESULTS = 1000
MAX_MESSAGE = 512
STATUS_FILTER = ("fail", "warn", "error")
SUMMARY_KEYS = ("pass", "fail", "warn", "error", "skip")

_CATEGORIES = {
    registry.Level.BASELINE: "Pod Security Standards (Baseline)",
    registry.Level.RESTRICTED: "Pod Security Standards (Restricted)",
}
_BEST_PRACTICES = "Best Practices"


class Attributed(Protocol):
    """A finding with its policy and that policy's action (``planning.AttributedFinding``)."""

    @property
    def policy(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def finding(self) -> engine.Finding: ...


@dataclasses.dataclass(frozen=True, order=True)
class Subject:
    """The checked workload, as the OpenReports result's ``resources`` entry names it."""

    kind: str
    name: str
    api_version: str = "v1"
    uid: str = ""

    def reference(self, namespace: str) -> dict[str, str]:
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": namespace,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclasses.dataclass(frozen=True)
class Entry:
    """One violating workload of the namespace: who, what it fails, and since when.

    ``since`` is when the current violation set was first seen (the object's
    ``kube-guardrails.io/violations-since``); it becomes the results' timestamp.
    """

    subject: Subject
    findings: Sequence[Attributed]
    since: datetime.datetime | None = None


def category(check_id: str) -> str:
    try:
        chk = registry.get(check_id)
    except KeyError:
        return ""
    if chk.level is None:
        return _BEST_PRACTICES
    return _CATEGORIES.get(chk.level, "Pod Security Standards")


def result_of(action: str, outcomes: Iterable[engine.Outcome]) -> str:
    """The OpenReports result of one (workload, policy, check): fail, warn or error."""
    if engine.Outcome.FAIL not in set(outcomes):
        return "error"
    return "fail" if action == "Enforce" else "warn"


def _message(findings: Sequence[engine.Finding]) -> str:
    # The finding messages name the container already; the path says which field.
    parts = [f"{f.path}: {f.message}" if f.path else f.message for f in findings]
    text = "; ".join(dict.fromkeys(parts))  # de-duplicated, order kept
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 4].rstrip() + " ..."
    return text


def _timestamp(since: datetime.datetime | None) -> dict[str, int] | None:
    if since is None:
        return None
    return {"seconds": int(since.timestamp()), "nanos": 0}


def results_of(entry: Entry, *, namespace: str) -> list[dict[str, Any]]:
    """The results of one workload: one per (policy, check) it fails, sorted."""
    grouped: dict[tuple[str, str], list[Attributed]] = {}
    for f in entry.findings:
        grouped.setdefault((f.policy, f.finding.check), []).append(f)
    out: list[dict[str, Any]] = []
    for (policy, check), items in sorted(grouped.items()):
        findings = sorted(
            (a.finding for a in items),
            key=lambda f: (f.container or "", f.path, f.message),
        )
        action = "Enforce" if any(a.action == "Enforce" for a in items) else "Audit"
        result: dict[str, Any] = {
            "source": SOURCE,
            "policy": policy,
            "rule": check,
            "result": result_of(action, (f.outcome for f in findings)),
            "severity": max(f.severity for f in findings).label,
            "message": _message(findings),
            "resources": [entry.subject.reference(namespace)],
        }
        cat = category(check)
        if cat:
            result["category"] = cat
        if result["result"] == "fail":
            result["scored"] = True
        stamp = _timestamp(entry.since)
        if stamp is not None:
            result["timestamp"] = stamp
        properties = {"action": action}
        containers = sorted({f.container for f in findings if f.container})
        if containers:
            properties["containers"] = ",".join(containers)
        result["properties"] = properties
        out.append(result)
    return out


def _sort_key(result: Mapping[str, Any]) -> tuple[str, ...]:
    ref = result["resources"][0]
    return (ref["kind"], ref["name"], ref.get("uid", ""), result["policy"], result["rule"])


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(SUMMARY_KEYS, 0)
    for r in results:
        counts[r["result"]] += 1
    return counts


def build_report(namespace: str, entries: Iterable[Entry]) -> dict[str, Any] | None:
    """The namespace's Report, or None when nothing in it fails (then it has none)."""
    results: list[dict[str, Any]] = []
    for entry in entries:
        results.extend(results_of(entry, namespace=namespace))
    if not results:
        return None
    results.sort(key=_sort_key)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE},
        },
        "source": SOURCE,
        "configuration": {
            "limits": {"maxResults": MAX_RESULTS, "statusFilter": list(STATUS_FILTER)},
        },
        "summary": summarize(results),
        "results": results[:MAX_RESULTS],
    }


# The top-level fields a Report's content is made of (metadata aside).
CONTENT_FIELDS = ("source", "configuration", "summary", "results")


def content(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What is compared to decide whether a write is needed (server fields left out)."""
    if report is None:
        return None
    labels = (report.get("metadata") or {}).get("labels") or {}
    return {
        "labels": {LABEL_MANAGED_BY: labels.get(LABEL_MANAGED_BY)},
        **{key: report.get(key) for key in CONTENT_FIELDS},
    }


def is_ours(report: Mapping[str, Any]) -> bool:
    """Written by this operator (only such Reports are ever replaced or deleted)."""
    meta = report.get("metadata") or {}
    labels = meta.get("labels") or {}
    return meta.get("name") == REPORT_NAME and labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE
