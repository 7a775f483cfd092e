"""The audit's verdicts: parsed manifests in, one report per workload out.

Pure (no I/O, time passed in), and built on :func:`planning.review`, the function the
operator uses for Pods and pod controllers, so that a manifest gets the same findings here
as in a cluster. What differs offline, and why:

- Namespace: ``metadata.namespace``, or ``default`` when the manifest has none (what
  ``kubectl apply`` without ``-n`` does).
- ``namespaceSelector`` is not evaluated: a manifest carries no labels of the namespace
  it will land in, so every policy is taken to select it. ``excludeNamespaces`` and the
  namespaces that are always excluded (``kube-system``, ``kube-public``,
  ``kube-node-lease`` and the operator's own) do apply: such objects are reported as
  ``excluded`` and not checked, as in the cluster, unless ``include_excluded`` asks to
  check them anyway.
- Exemption selectors match the labels of the object in the manifest (a Deployment's
  own labels, a Pod's), as the operator matches the object it reviews.

Kinds with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
ReplicationController, CronJob) are checked through that template, Pods directly;
``kind: List`` and the API's list kinds (``PodList``, ``DeploymentList``, ...) are
opened, nested ones too; every other kind is counted as ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube_guardrails import OPERATOR_NAMESPACE, planning
from kube_guardrails.audit import fieldtypes, loader
from kube_guardrails.checks import engine
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import selectors

DEFAULT_NAMESPACE = "default"
MAX_TYPE_ERRORS = 10  # per object: enough to fix, not a flood
# Per file: errors beyond this are counted in one closing error, not kept. A 32 MB file
# of "kind: Pod\n---\n" was 2.4 million errors, 783 MB of memory and as many lines.
MAX_ERRORS_PER_FILE = 100
# Distinct kinds counted as ignored; the rest are counted together under OTHER_KINDS
# (a file of "kind: k1", "kind: k2", ... grew the counter and its line without bound).
MAX_IGNORED_KINDS = 100
NOT_AN_OBJECT = "<not a Kubernetes object>"
OTHER_KINDS = "<other kinds>"


class Status(enum.StrEnum):
    CHECKED = "checked"
    EXCLUDED = "excluded"  # in a namespace no policy applies to (see the module doc)


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """Where a workload was found and what it is."""

    source: str
    document: int  # 1-based, see loader
    line: int
    item: int | None  # index in a List's items, else None
    api_version: str
    kind: str
    namespace: str
    name: str
    # Where in nested Lists, e.g. "items[2].items[0]"; empty for a top-level object.
    item_path: str = ""

    @property
    def title(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def where(self) -> str:
        out = f"{self.source} document {self.document}"
        if self.item_path:
            out += f" {self.item_path}"
        elif self.item is not None:
            out += f" items[{self.item}]"
        return out


@dataclasses.dataclass(frozen=True)
class ObjectReport:
    ref: ObjectRef
    status: Status
    findings: tuple[planning.AttributedFinding, ...] = ()
    # Matching exemptions past their expiry, as (policy, index in spec.workloads.exemptions).
    expired_exemptions: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass
class AuditResult:
    """Everything the reports need: workloads, errors, and what was not looked at."""

    objects: list[ObjectReport] = dataclasses.field(default_factory=list)
    errors: list[loader.InputError] = dataclasses.field(default_factory=list)
    # Kinds without a pod spec (ConfigMap, Service, ...), with how many were seen.
    ignored: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    documents: int = 0
    files: int = 0

    def findings(self) -> list[planning.AttributedFinding]:
        return [f for o in self.objects for f in o.findings]


class Auditor:
    """Reviews manifests against a fixed set of policies at a fixed time.

    Built once per run so the offline view of the policies is prepared once; feed it
    documents with :meth:`add` and read :attr:`result`.
    """

    def __init__(
        self,
        policies: Sequence[policy_model.Policy],
        *,
        now: datetime.datetime,
        include_excluded: bool = False,
        operator_namespace: str = OPERATOR_NAMESPACE,
    ) -> None:
        self.policies = [offline_view(p) for p in policies]
        # Compiled once per run: every workload is reviewed against the same policies.
        self.compiled = [planning.compile_policy(p) for p in self.policies]
        self.now = now
        self.include_excluded = include_excluded
        self.operator_namespace = operator_namespace
        self.result = AuditResult()
        self._matching: dict[str, list[planning.CompiledPolicy]] = {}
        self._errors_in_file = 0
        self._errors_not_kept = 0
        self._error_source: str | None = None

    def error(self, error: loader.InputError) -> None:
        """Record an input error, at most :data:`MAX_ERRORS_PER_FILE` of them per file."""
        if error.source != self._error_source:
            self.end_file()
            self._error_source = error.source
        self._errors_in_file += 1
        if self._errors_in_file <= MAX_ERRORS_PER_FILE:
            self.result.errors.append(error)
        else:
            self._errors_not_kept += 1

    def end_file(self) -> None:
        """Close the current file's errors: one more error saying how many were not listed."""
        if self._errors_not_kept and self._error_source is not None:
            self.result.errors.append(
                loader.InputError(
                    source=self._error_source,
                    message=f"{self._errors_not_kept} more error(s) in this file, not listed "
                    f"(at most {MAX_ERRORS_PER_FILE} per file are)",
                )
            )
        self._errors_in_file = self._errors_not_kept = 0
        self._error_source = None

    def _ignore(self, kind: str) -> None:
        ignored = self.result.ignored
        if kind in ignored or len(ignored) < MAX_IGNORED_KINDS:
            ignored[kind] += 1
        else:
            ignored[OTHER_KINDS] += 1

    def add(self, item: loader.Document | loader.InputError) -> ObjectReport | None:
        """Audit one document (or record one error); returns the last workload's report."""
        if isinstance(item, loader.InputError):
            if item.index is not None:
                self.result.documents += 1  # a malformed document is still a document
            self.error(item)
            return None
        self.result.documents += 1
        try:
            return self._open(item.obj, doc=item, item=None, path="")
        except (RecursionError, MemoryError):
            # Bounded by the loader (depth, aliases); never let one document stop the run.
            message = "too large or too deeply nested to check"
        except Exception as e:  # one document's surprise is its own error, not the run's
            message = f"could not be checked (internal error: {type(e).__name__}: {e})"[:300]
        self.error(
            loader.InputError(source=item.source, index=item.index, line=item.line, message=message)
        )
        return None

    def _open(
        self, obj: Any, *, doc: loader.Document, item: int | None, path: str
    ) -> ObjectReport | None:
        """A workload, or every workload of a ``List`` / ``*List`` (nested Lists too).

        ``kubectl get -o yaml`` writes ``kind: List`` and the API server's list kinds
        (``PodList``, ``DeploymentList``) hold workloads as much as the objects do: a list
        left unopened would pass CI with workloads nobody checked.
        """
        if isinstance(obj, Mapping) and _is_list_kind(obj.get("kind")):
            items = obj.get("items")
            if items is None:
                items = []  # an empty list, without items or "items: null" (Go's nil slice)
            if not isinstance(items, list):
                self.error(
                    loader.InputError(
                        source=doc.source,
                        index=doc.index,
                        line=doc.line,
                        message=f"{path + ': ' if path else ''}kind: {obj.get('kind')} "
                        "whose items is not a list",
                    )
                )
                return None
            last = None
            for i, sub in enumerate(items):
                sub_path = f"{path}.items[{i}]" if path else f"items[{i}]"
                last = self._open(sub, doc=doc, item=i, path=sub_path) or last
            return last
        return self._object(obj, doc=doc, item=item, path=path)

    def _object(
        self, obj: Any, *, doc: loader.Document, item: int | None, path: str = ""
    ) -> ObjectReport | None:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("kind"), str):
            self._ignore(NOT_AN_OBJECT)
            return None
        kind: str = obj["kind"]
        pod = engine.pod_input(obj)
        if pod is None:
            self._ignore(kind)
            return None
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        ref = ObjectRef(
            source=doc.source,
            document=doc.index,
            line=doc.line,
            item=item,
            api_version=str(obj.get("apiVersion") or ""),
            kind=kind,
            namespace=_str(meta.get("namespace")) or DEFAULT_NAMESPACE,
            name=_name(meta),
            item_path=path if "." in path else "",
        )
        containers = pod.spec.get("containers")
        if not isinstance(containers, list) or not containers:
            # The API server refuses such an object; checking it would report nonsense.
            where = f" {path}" if path else ""
            self.error(
                loader.InputError(
                    source=doc.source,
                    index=doc.index,
                    line=doc.line,
                    message=f"{ref.title}{where}: {pod.spec_path}.containers is missing or "
                    f"empty; not a valid {kind}",
                )
            )
            return None
        wrong = [
            *fieldtypes.labels(meta.get("labels"), where="metadata.labels"),
            *fieldtypes.problems(pod.spec, spec_path=pod.spec_path),
        ]
        if wrong:
            where = f" {path}" if path else ""
            for problem in wrong[:MAX_TYPE_ERRORS]:
                self.error(
                    loader.InputError(
                        source=doc.source,
                        index=doc.index,
                        line=doc.line,
                        message=f"{ref.title}{where}: {problem}",
                    )
                )
            return None
        report = self.review(pod, ref=ref, labels=_labels(meta.get("labels")))
        self.result.objects.append(report)
        return report

    def review(
        self, pod: engine.PodInput, *, ref: ObjectRef, labels: Mapping[str, str]
    ) -> ObjectReport:
        """The verdict for one workload, through the operator's own review function."""
        if self.include_excluded:
            matching = self.compiled
        else:
            cached = self._matching.get(ref.namespace)
            if cached is None:
                cached = planning.matching_policies(
                    self.compiled,
                    namespace=ref.namespace,
                    labels=None,
                    operator_namespace=self.operator_namespace,
                )
                self._matching[ref.namespace] = cached
            matching = cached
        if not matching:
            return ObjectReport(ref=ref, status=Status.EXCLUDED)
        verdict = planning.review(
            pod, matching, namespace=ref.namespace, labels=labels, now=self.now
        )
        return ObjectReport(
            ref=ref,
            status=Status.CHECKED,
            findings=verdict.findings,
            expired_exemptions=tuple(sorted(verdict.expired_exemptions)),
        )


def offline_view(policy: policy_model.Policy) -> policy_model.Policy:
    """The policy with its namespaceSelector dropped: namespace labels are unknown offline."""
    if policy.namespace_selector.empty:
        return policy
    return dataclasses.replace(policy, namespace_selector=selectors.LabelSelector())


def with_level(policy: policy_model.Policy, level: str) -> policy_model.Policy:
    """The policy with ``spec.workloads.podSecurity`` replaced (the ``--level`` flag)."""
    workloads = dataclasses.replace(policy.workloads, pod_security=level)
    return dataclasses.replace(policy, workloads=workloads)


def audit_documents(
    documents: Iterable[loader.Document | loader.InputError],
    *,
    policies: Sequence[policy_model.Policy],
    now: datetime.datetime,
    include_excluded: bool = False,
    operator_namespace: str = OPERATOR_NAMESPACE,
) -> AuditResult:
    """Audit parsed documents (as :func:`loader.load` yields them) against policies.

    This is the whole audit minus reading files and printing: the CLI runs it, and so
    does the test that compares the audit's findings with the operator's.
    """
    auditor = Auditor(
        policies, now=now, include_excluded=include_excluded, operator_namespace=operator_namespace
    )
    for doc in documents:
        auditor.add(doc)
    auditor.end_file()
    return auditor.result


def audit_object(
    obj: Mapping[str, Any],
    *,
    policies: Sequence[policy_model.Policy],
    now: datetime.datetime,
    include_excluded: bool = False,
    operator_namespace: str = OPERATOR_NAMESPACE,
) -> ObjectReport | None:
    """Audit one object (a dict as in a manifest); None if it is not a workload."""
    auditor = Auditor(
        policies, now=now, include_excluded=include_excluded, operator_namespace=operator_namespace
    )
    return auditor.add(loader.Document(source="<object>", index=1, line=1, obj=obj))


def _is_list_kind(kind: object) -> bool:
    # "List" (kubectl), "PodList", "DeploymentList", ...: a Kind is CamelCase, so a
    # kind ending in "List" with an upper-case start is a list kind.
    return isinstance(kind, str) and kind.endswith("List") and kind[:1].isupper()


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _name(meta: Mapping[str, Any]) -> str:
    name = _str(meta.get("name"))
    if name:
        return name
    generate = _str(meta.get("generateName"))
    return f"{generate}*" if generate else "<unnamed>"


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}
