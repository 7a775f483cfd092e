"""The audit's outputs: a table for people, JSON for scripts, SARIF for code scanning.

All three render the same :class:`Report`, so they never disagree. The JSON layout is a
public interface (``schemaVersion`` changes when a field changes meaning or goes away;
new fields may be added within a version). SARIF follows version 2.1.0 of the OASIS
standard with rule metadata from the check registry, so GitHub code scanning (and any
SARIF viewer) shows the check's title, hint and severity next to the manifest line.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any, Protocol

from kube_guardrails import __version__
from kube_guardrails.audit import core, loader
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model

JSON_SCHEMA_VERSION = 1
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "kube-guardrails"
# The base that relative artifact URIs are resolved against: the directory the audit
# ran in (in CI, the repository's root), which is what GitHub code scanning expects.
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "kubeGuardrailsFinding/v1"

SEVERITIES = tuple(sorted(registry.Severity, reverse=True))  # critical first
# SARIF has three levels; "error" is what fails a code-scanning gate by default.
SARIF_LEVEL = {
    registry.Severity.CRITICAL: "error",
    registry.Severity.HIGH: "error",
    registry.Severity.MEDIUM: "warning",
    registry.Severity.LOW: "note",
}
# GitHub's "security-severity" scale (0.1-10): critical >= 9, high >= 7, medium >= 4.
SECURITY_SEVERITY = {
    registry.Severity.CRITICAL: "9.5",
    registry.Severity.HIGH: "8.0",
    registry.Severity.MEDIUM: "5.5",
    registry.Severity.LOW: "3.0",
}


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    name: str
    source: str  # a file, or "built-in"
    pod_security: str
    mode: str


@dataclasses.dataclass(frozen=True)
class Report:
    result: core.AuditResult
    policies: Sequence[PolicyInfo]
    fail_on: registry.Severity | None  # None: --fail-on none
    include_excluded: bool = False

    def failing(self) -> list[tuple[core.ObjectReport, Any]]:
        """Findings at or above --fail-on, with their object."""
        if self.fail_on is None:
            return []
        return [
            (o, f)
            for o in self.result.objects
            for f in o.findings
            if f.finding.severity >= self.fail_on
        ]

    @property
    def failed(self) -> bool:
        return bool(self.failing())


def policy_info(p: policy_model.Policy, source: str) -> PolicyInfo:
    return PolicyInfo(
        name=p.name, source=source, pod_security=p.workloads.pod_security, mode=p.mode
    )


# --------------------------------------------------------------------------- summary


def summary(report: Report) -> dict[str, Any]:
    res = report.result
    checked = [o for o in res.objects if o.status is core.Status.CHECKED]
    findings = res.findings()
    by_severity = {s.label: 0 for s in SEVERITIES}
    by_check: collections.Counter[str] = collections.Counter()
    for f in findings:
        by_severity[f.finding.severity.label] += 1
        by_check[f.finding.check] += 1
    return {
        "files": res.files,
        "documents": res.documents,
        "workloads": len(res.objects),
        "checked": len(checked),
        "excluded": len(res.objects) - len(checked),
        "compliant": sum(1 for o in checked if not o.findings),
        "withFindings": sum(1 for o in checked if o.findings),
        "findings": len(findings),
        "bySeverity": by_severity,
        "byCheck": dict(sorted(by_check.items())),
        "ignored": dict(sorted(res.ignored.items())),
        "errors": len(res.errors),
        "failOn": report.fail_on.label if report.fail_on is not None else "none",
        "failed": report.failed,
    }


# --------------------------------------------------------------------------- table

_RESET = "\033[0m"
_STYLE = {
    "critical": "\033[1;35m",
    "high": "\033[31m",
    "medium": "\033[33m",
    "low": "\033[36m",
    "bold": "\033[1m",
    "dim": "\033[2m",
    "ok": "\033[32m",
    "error": "\033[1;31m",
}


def _escape_table() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
    # Bidirectional overrides and isolates ("Trojan Source"): they reorder what is shown.
    for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C):
        table[c] = f"\\u{c:04x}"
    return table


_ESCAPES = _escape_table()


def escape(text: object) -> str:
    """Text from the input made safe for a terminal: control characters shown escaped.

    Names, images and messages come from files anyone can write: raw, an ESC could clear
    the screen or write the clipboard (OSC 52), a CR could overprint a fake "PASS" line.
    """
    return str(text).translate(_ESCAPES)


def render_table(report: Report, *, color: bool = False) -> str:
    """Findings grouped by object, then errors, then a summary; colour only if asked.

    Every piece of input is escaped (:func:`escape`) before the colours are added.
    """
    return "".join(line + "\n" for line in _table_lines(report, color=color))


def write_table(report: Report, stream: Writer, *, color: bool = False) -> None:
    """:func:`render_table` written in pieces of about 64 KB, never whole in memory."""
    batch: list[str] = []
    size = 0
    for line in _table_lines(report, color=color):
        batch.append(line)
        size += len(line) + 1
        if size >= 65536:
            stream.write("\n".join(batch) + "\n")
            batch, size = [], 0
    if batch:
        stream.write("\n".join(batch) + "\n")


def _table_lines(report: Report, *, color: bool) -> Iterator[str]:

    def paint(style: str, text: str) -> str:
        text = escape(text)
        return f"{_STYLE[style]}{text}{_RESET}" if color else text

    for obj in (o for o in report.result.objects if o.findings):
        ref = obj.ref
        header = f"{ref.where} (line {ref.line})  {ref.title}"
        yield paint("bold", header)
        multi_policy = len({f.policy for f in obj.findings}) > 1 or len(report.policies) > 1
        check_w = max(len(f.finding.check) for f in obj.findings)
        cont_w = max(len(escape(f.finding.container or "-")) for f in obj.findings)
        pad = " " * (2 + 8 + 2 + check_w + 2 + cont_w + 2)
        for i, af in enumerate(obj.findings):
            f = af.finding
            sev = f.severity.label
            policy = f" [{af.policy}]" if multi_policy else ""
            container = escape(f.container or "-").ljust(cont_w)
            rest = escape(f"{f.message}{policy}")
            yield (
                f"  {paint(sev, sev.upper().ljust(8))}  {escape(f.check.ljust(check_w))}  "
                f"{container}  {rest}"
            )
            yield paint("dim", f"{pad}at {f.path}")
            following = obj.findings[i + 1].finding if i + 1 < len(obj.findings) else None
            if following is None or (following.check, following.hint) != (f.check, f.hint):
                # One hint per run of findings of the same check: it is the same text.
                yield paint("dim", f"{pad}hint: {f.hint}")
        for pol, idx in obj.expired_exemptions:
            yield paint("dim", f"  note: exemption {idx} of policy {pol} has expired")
        yield ""
    if report.result.errors:
        yield paint("error", "ERRORS (these inputs were not checked)")
        for e in report.result.errors:
            yield escape(f"  {e.where()}: {e.message}")
        yield ""
    yield from _summary_lines(report, paint)


def _summary_lines(report: Report, paint: Any) -> list[str]:
    s = summary(report)
    out: list[str] = []
    sev = ", ".join(f"{n} {name}" for name, n in s["bySeverity"].items() if n)
    out.append(
        f"Checked {s['checked']} workload(s) from {s['documents']} document(s) in "
        f"{s['files']} file(s): {s['compliant']} compliant, {s['withFindings']} with "
        f"findings; {s['findings']} finding(s)" + (f" ({sev})" if sev else "") + "."
    )
    names = ", ".join(f"{p.name} ({p.pod_security}, {p.source})" for p in report.policies)
    out.append(escape(f"Policy: {names}."))
    if s["excluded"]:
        namespaces = sorted(
            {o.ref.namespace for o in report.result.objects if o.status is core.Status.EXCLUDED}
        )
        out.append(
            escape(
                f"Not checked: {s['excluded']} workload(s) in namespaces the policy excludes "
                f"({', '.join(namespaces)}); --include-excluded checks them too."
            )
        )
    if s["ignored"]:
        kinds = ", ".join(f"{k} {n}" for k, n in s["ignored"].items())
        out.append(escape(f"Ignored (no pod spec): {kinds}."))
    if s["errors"]:
        out.append(paint("error", f"{s['errors']} input error(s): see ERRORS above."))
    if s["failed"]:
        assert report.fail_on is not None
        n = len(report.failing())
        out.append(paint("error", f"FAIL: {n} finding(s) at or above {report.fail_on.label}."))
    elif s["findings"] and report.fail_on is None:
        out.append("PASS (--fail-on none).")
    elif not s["errors"]:
        out.append(paint("ok", "PASS."))
    return out


# --------------------------------------------------------------------------- json


def render_json(report: Report) -> str:
    """The documented JSON layout (see the README's "JSON output" section)."""
    out = io.StringIO()
    write_json(report, out)
    return out.getvalue()


class Writer(Protocol):
    """Where a report goes: a text stream, or anything with ``write(str)``."""

    def write(self, text: str, /) -> object: ...


def write_json(report: Report, stream: Writer) -> None:
    """:func:`render_json` written piece by piece: one object's dict at a time in memory."""
    doc: dict[str, Any] = {
        "schemaVersion": JSON_SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "policies": [
            {"name": p.name, "source": p.source, "podSecurity": p.pod_security, "mode": p.mode}
            for p in report.policies
        ],
        "summary": summary(report),
        "objects": _Lazy(_object_json(o) for o in report.result.objects),
        "errors": _Lazy(_error_json(e) for e in report.result.errors),
    }
    _emit(stream.write, doc, 0)
    stream.write("\n")


class _Lazy:
    """A JSON array produced item by item while it is written (see :func:`_emit`)."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def _has_lazy(value: Any) -> bool:
    if isinstance(value, _Lazy):
        return True
    if isinstance(value, dict):
        return any(_has_lazy(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_lazy(v) for v in value)
    return False


def _emit(write: Callable[[str], Any], value: Any, level: int) -> None:
    """Write ``value`` exactly as ``json.dumps(value, indent=2)`` would, streaming _Lazy.

    A report holds a few dicts per finding: built all at once for a large input, with
    the encoder's chunks and the final string, that was several times the input's size
    in memory. Only the skeleton around the lazy arrays is walked here; everything else
    goes through ``json.dumps`` (ASCII output, so structural newlines are the only ones
    and re-indenting them is safe).
    """
    pad, close = "  " * (level + 1), "  " * level
    if isinstance(value, _Lazy) or (isinstance(value, list) and _has_lazy(value)):
        first = True
        for item in value.items if isinstance(value, _Lazy) else value:
            write("[\n" if first else ",\n")
            write(pad)
            _emit(write, item, level + 1)
            first = False
        write("[]" if first else f"\n{close}]")
    elif isinstance(value, dict) and value and _has_lazy(value):
        write("{\n")
        for i, (key, item) in enumerate(value.items()):
            if i:
                write(",\n")
            write(f"{pad}{json.dumps(key)}: ")
            _emit(write, item, level + 1)
        write(f"\n{close}}}")
    else:
        text = json.dumps(value, indent=2)
        write(text.replace("\n", "\n" + close) if level else text)


def _object_json(o: core.ObjectReport) -> dict[str, Any]:
    ref = o.ref
    return {
        "file": ref.source,
        "document": ref.document,
        "item": ref.item,
        "line": ref.line,
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "namespace": ref.namespace,
        "name": ref.name,
        "status": o.status.value,
        "findings": [
            {
                "check": af.finding.check,
                "severity": af.finding.severity.label,
                "outcome": af.finding.outcome.value,
                "policy": af.policy,
                "action": af.action,
                "container": af.finding.container,
                "path": af.finding.path,
                "message": af.finding.message,
                "hint": af.finding.hint,
            }
            for af in o.findings
        ],
        "expiredExemptions": [{"policy": p, "index": i} for p, i in o.expired_exemptions],
    }


def _error_json(e: loader.InputError) -> dict[str, Any]:
    return {"file": e.source, "document": e.index, "line": e.line, "message": e.message}


# --------------------------------------------------------------------------- sarif


def render_sarif(report: Report, *, cwd: str | None = None) -> str:
    """A SARIF 2.1.0 log with one run; results point at the manifest's document line."""
    out = io.StringIO()
    write_sarif(report, out, cwd=cwd)
    return out.getvalue()


def write_sarif(report: Report, stream: Writer, *, cwd: str | None = None) -> None:
    """:func:`render_sarif` written piece by piece (see :func:`write_json`)."""
    cwd = cwd or os.getcwd()
    checks = registry.all_checks()
    rule_index = {c.id: i for i, c in enumerate(checks)}
    driver: dict[str, Any] = {
        "name": TOOL_NAME,
        "version": __version__,
        "semanticVersion": __version__,
        "rules": [_rule(c) for c in checks],
    }
    uri = information_uri()
    if uri:
        driver["informationUri"] = uri
    results = _Lazy(
        _result(o, af, rule_index=rule_index, cwd=cwd)
        for o in report.result.objects
        for af in o.findings
    )
    notifications = _Lazy(
        {
            "level": "error",
            "message": {"text": f"{e.where()}: {e.message}"},
            "locations": [{"physicalLocation": _physical(e.source, e.line, cwd=cwd)}],
        }
        for e in report.result.errors
    )
    invocation: dict[str, Any] = {
        "executionSuccessful": not report.result.errors,
        "toolExecutionNotifications": notifications,
    }
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"summary": summary(report)},
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    _emit(stream.write, log, 0)
    stream.write("\n")


def information_uri() -> str | None:
    """The project's home page from the installed package metadata, if it declares one."""
    try:
        meta = metadata.metadata("kube-guardrails")
    except metadata.PackageNotFoundError:
        return None
    for home in meta.get_all("Home-page") or []:
        if str(home).startswith("https://"):
            return str(home)
    for entry in meta.get_all("Project-URL") or []:
        _, _, url = str(entry).partition(", ")
        if url.startswith("https://"):
            return url
    return None


def _rule(c: registry.Check) -> dict[str, Any]:
    tags = ["kubernetes", c.category.value]
    props: dict[str, Any] = {"tags": tags, "severity": c.severity.label}
    if c.category is registry.Category.POD_SECURITY:
        tags.insert(0, "security")
        if c.level is not None:
            tags.append(f"pod-security-{c.level.value}")
        props["security-severity"] = SECURITY_SEVERITY[c.severity]
    return {
        "id": c.id,
        "name": c.id[:1].upper() + c.id[1:],
        "shortDescription": {"text": c.title},
        "fullDescription": {"text": c.doc or c.title},
        "help": {"text": c.hint},
        "defaultConfiguration": {"level": SARIF_LEVEL[c.severity]},
        "properties": props,
    }


def _result(
    o: core.ObjectReport, af: Any, *, rule_index: Mapping[str, int], cwd: str
) -> dict[str, Any]:
    f = af.finding
    ref = o.ref
    where = f"container {f.container}: " if f.container else ""
    result: dict[str, Any] = {
        "ruleId": f.check,
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": f"{ref.title}: {where}{f.message} ({f.path}). Fix: {f.hint}"},
        "locations": [
            {
                "physicalLocation": _physical(ref.source, ref.line, cwd=cwd),
                "logicalLocations": [
                    {
                        "name": ref.name,
                        "fullyQualifiedName": f"{ref.kind}/{ref.namespace}/{ref.name}",
                        "kind": "resource",
                    }
                ],
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: _fingerprint(ref, f)},
        "properties": {
            "severity": f.severity.label,
            "policy": af.policy,
            "action": af.action,
            "container": f.container,
            "path": f.path,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            "document": ref.document,
        },
    }
    if f.check in rule_index:
        result["ruleIndex"] = rule_index[f.check]
    return result


def _physical(source: str, line: int | None, *, cwd: str) -> dict[str, Any]:
    out: dict[str, Any] = {"artifactLocation": artifact_location(source, cwd=cwd)}
    if line is not None:
        out["region"] = {"startLine": line}
    return out


def artifact_location(source: str, *, cwd: str) -> dict[str, str]:
    """A relative URI under %SRCROOT% for files below the working directory, else file:."""
    if source == loader.STDIN_NAME:
        return {"uri": "stdin"}
    path = pathlib.Path(os.path.abspath(source))
    try:
        rel = path.relative_to(os.path.abspath(cwd))
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": urllib.parse.quote(rel.as_posix()), "uriBaseId": SRCROOT}


def _fingerprint(ref: core.ObjectRef, f: Any) -> str:
    # Stable across runs and line moves: what is wrong, where in which object.
    key = "|".join(
        (ref.source, ref.kind, ref.namespace, ref.name, f.check, f.container or "", f.path)
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]
