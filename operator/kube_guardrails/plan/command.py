"""``kube-guardrails plan --policy FILE``: what applying a policy would do, read-only.

Reads the cluster of the current kube context (or ``--context``) with GET and LIST
only (``k8s.reader``: paginated, projected), validates the file exactly as ``audit
--policy`` does (``audit.policyfile``), and prints the :mod:`plan.core` result as a
table or JSON (:mod:`plan.render`).

Exit status: 0 when the plan was computed (whatever it says); 2 for a bad policy file,
no usable kube config or context, or a failed API request, with a one-line message
naming what failed and never a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from kube_guardrails import OPERATOR_NAMESPACE
from kube_guardrails.audit import policyfile
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.plan import core, render

if TYPE_CHECKING:
    from kube_guardrails.k8s import client as k8s_client

EXIT_OK = 0
EXIT_ERROR = 2
FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show what applying a GuardrailPolicy file would do in the cluster of the current "
        "kube context: the namespaces it selects, the NetworkPolicy / LimitRange / "
        "ResourceQuota and the ValidatingAdmissionPolicies / bindings it would create, "
        "update or delete, the workloads that would violate, and the Pods Enforce would "
        "evict. Read-only (GET and LIST). Exit "
        "status: 0 plan shown, 2 error."
    )
    parser.add_argument(
        "--policy", required=True, metavar="FILE", help="GuardrailPolicy YAML (- for stdin)"
    )
    parser.add_argument("--context", default=None, help="kube config context (default: current)")
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--now",
        default=None,
        metavar="TIMESTAMP",
        help="evaluate exemption expiry at this RFC 3339 time instead of now "
        "(e.g. 2027-02-01T00:00:00Z: what happens after an exemption expires)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("KUBE_GUARDRAILS_NAMESPACE") or OPERATOR_NAMESPACE,
        metavar="NAME",
        help="the operator's namespace, always excluded (default: $KUBE_GUARDRAILS_NAMESPACE "
        f"or {OPERATOR_NAMESPACE})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        return execute(args, stdout=sys.stdout, stderr=sys.stderr)
    except BrokenPipeError:
        # The reader went away (`plan ... | head`): not an error of the plan. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def execute(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> int:
    """The whole command with its streams passed in (the tests drive it this way)."""

    def fail(message: str) -> int:
        stderr.write(f"kube-guardrails plan: error: {' '.join(message.split())}\n")
        return EXIT_ERROR

    try:
        loaded = policyfile.load([args.policy])
    except policyfile.PolicyFileError as e:
        # Several schema problems come one per line; keep them, each names its field.
        for line in str(e).splitlines():
            stderr.write(f"kube-guardrails plan: error: bad --policy: {line}\n")
        return EXIT_ERROR
    if args.now:
        try:
            now = policy_model.parse_time(args.now, "--now")
        except policy_model.PolicyError as e:
            return fail(f"--now: {e.message}")
    else:
        now = clock()

    # Imported here: only this command needs the kubernetes client.
    from kube_guardrails.k8s import client, reader

    try:
        context = reader.context_name(args.context)
        api = client.make_api_client(context=args.context)
        state = _read(api)
        plan = core.compute(
            policies=[lp.policy for lp in loaded],
            cluster_policies=state.policies,
            namespaces=state.namespaces,
            managed=state.managed,
            workloads=state.workloads(),
            operator_namespace=args.operator_namespace,
            now=now,
            invalid_cluster_policies=state.invalid,
            notes=state.notes,
        )
        plan.admission = _admission_plan(
            api,
            [lp.policy for lp in loaded],
            state.policies,
            now=now,
            operator_namespace=args.operator_namespace,
        )
    except client.ApiError as e:
        return fail(_describe(e))
    sources = {lp.policy.name: f"{lp.source} document {lp.document}" for lp in loaded}
    if args.format == "json":
        render.write_json(plan, stdout, context=context, sources=sources)
    else:
        stdout.write(render.render_table(plan, context=context, sources=sources))
    return EXIT_OK


class _State:
    """What was read before the workloads (which are streamed page by page)."""

    def __init__(
        self,
        *,
        policies: list[policy_model.Policy],
        invalid: list[str],
        namespaces: list[core.Namespace],
        managed: Mapping[tuple[str, str], Mapping[str, Any]],
        workloads: Callable[[], Iterator[Mapping[str, Any]]],
        notes: list[str],
    ) -> None:
        self.policies = policies
        self.invalid = invalid
        self.namespaces = namespaces
        self.managed = managed
        self.workloads = workloads
        self.notes = notes


def _read(api: Any) -> _State:
    from kube_guardrails import builders
    from kube_guardrails.k8s import reader

    policies: list[policy_model.Policy] = []
    invalid: list[str] = []
    known = registry.ids()
    notes: list[str] = []
    stored = reader.list_policies(api)
    if stored is None:
        notes.append(
            "the GuardrailPolicy CRD is not installed: the cluster has no policies, and "
            "applying the file needs the CRD first (kubectl apply -f crds/)"
        )
    for obj in stored or []:
        try:
            policies.append(policy_model.parse(obj, known_checks=known))
        except policy_model.PolicyError:
            # The operator ignores an invalid policy (it is not Ready); so does the plan.
            invalid.append(str((obj.get("metadata") or {}).get("name") or "?"))
    namespaces = [core.Namespace.from_object(o) for o in reader.list_namespaces(api)]
    managed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for kind in builders.MANAGED_KINDS:
        for obj in reader.list_managed(api, kind):
            managed[kind.kind, str(obj["metadata"].get("namespace") or "")] = obj

    def workloads() -> Iterator[Mapping[str, Any]]:
        return itertools.chain.from_iterable(
            reader.list_workloads(api, kind) for kind in reader.WORKLOAD_KINDS
        )

    return _State(
        policies=policies,
        invalid=invalid,
        namespaces=namespaces,
        managed=managed,
        workloads=workloads,
        notes=notes,
    )


def _admission_plan(
    api: Any,
    policies: list[policy_model.Policy],
    cluster_policies: list[policy_model.Policy],
    *,
    now: datetime.datetime,
    operator_namespace: str,
) -> core.AdmissionPlan:
    """The file's admission policies and bindings against the live ones (read-only).

    Reads only the names the file's policies may use (``admission.all_names``). An API
    server that does not serve ``admissionregistration.k8s.io/v1`` admission policies
    (before Kubernetes 1.30) answers 404: the plan says so instead of failing, as the
    operator cannot apply them there either.
    """
    from kube_guardrails import admission
    from kube_guardrails.k8s import client, reader

    applied, _ = core.effective_policies(policies, cluster_policies)
    names = [n for p in applied for n in admission.all_names(p.name)]
    try:
        live = reader.list_admission(api, names)
    except client.ApiError as e:
        if not e.not_found:
            raise
        return core.AdmissionPlan(
            available=False,
            reason="the API server does not serve admissionregistration.k8s.io/v1 "
            "ValidatingAdmissionPolicies (Kubernetes 1.30 or later)",
        )
    return core.plan_admission(applied, live, now=now, operator_namespace=operator_namespace)


def _describe(e: k8s_client.ApiError) -> str:
    """One line naming the request that failed (or the missing kube config)."""
    if e.method == "CONFIG":
        return f"{e.message} ({e.path})"
    if e.status == 0:
        return f"cannot reach the API server: {e.method} {e.path}: {e.reason}: {e.message}"
    return f"{e.method} {e.path}: {e.status} {e.reason}: {e.message}"
