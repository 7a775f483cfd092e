"""``--policy FILE``: GuardrailPolicy objects from YAML, checked as the cluster checks them.

A policy file goes through two gates, in the order the cluster applies them: the CRD's
OpenAPI schema (what the API server would refuse), then the operator's own parser
(:func:`model.policy.parse`, what the operator would mark not Ready). Either way the
error names the file, the document and the field path, so the fix is obvious. One file
may hold several policies (``---``), and ``--policy`` may be repeated: as in a cluster,
every policy applies to the workloads it selects. A ``kind: List`` or
``GuardrailPolicyList`` (``kubectl get gp -o yaml``) holds policies as its items.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kube_guardrails import API_GROUP, KIND
from kube_guardrails.audit import loader, report
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import schema

# metadata.name of a cluster-scoped object: a DNS-1123 subdomain, as the API server
# requires. Checked here because the file never meets the API server: a name holding an
# ESC would otherwise reach every report line that names the policy.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NAME = 253


class PolicyFileError(Exception):
    """A policy file that cannot be used; the message says where and what."""


@dataclasses.dataclass(frozen=True)
class LoadedPolicy:
    policy: policy_model.Policy
    source: str  # the file it came from, or "built-in"
    document: int


def load(paths: Sequence[str]) -> list[LoadedPolicy]:
    """Every GuardrailPolicy in the given files; raise PolicyFileError at the first problem."""
    out: list[LoadedPolicy] = []
    names: dict[str, str] = {}
    for path in paths:
        found = 0
        for item in loader.load(path):
            if isinstance(item, loader.InputError):
                raise PolicyFileError(f"{item.where()}: {item.message}")
            for where, obj in _objects(item.obj, f"{item.source} document {item.index}"):
                out.append(_policy(obj, where, source=item.source, index=item.index, names=names))
                found += 1
        if not found:
            raise PolicyFileError(f"{loader.display_name(path)}: no GuardrailPolicy in the file")
    return out


def _objects(obj: object, where: str) -> list[tuple[str, Any]]:
    """The objects of a document: itself, or the items of a ``List`` /
    ``GuardrailPolicyList`` (what ``kubectl get gp -o yaml`` writes)."""
    if isinstance(obj, Mapping) and obj.get("kind") in ("List", f"{KIND}List"):
        items = obj.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise PolicyFileError(f"{where}: items: must be a list of GuardrailPolicy objects")
        return [(f"{where} items[{i}]", sub) for i, sub in enumerate(items)]
    return [(where, obj)]


def _policy(
    obj: object, where: str, *, source: str, index: int, names: dict[str, str]
) -> LoadedPolicy:
    """One GuardrailPolicy through the schema and the parser (see the module doc)."""
    if not isinstance(obj, Mapping):
        raise PolicyFileError(f"{where}: not a GuardrailPolicy object (a YAML mapping)")
    _check_type(obj, where)
    problems = schema.validate(obj)
    if problems:
        # All of them at once: fixing a policy one error per run is tedious.
        # One line each: a field name holding a line break stays on its line.
        raise PolicyFileError(
            "\n".join(
                report.escape(f"{where}: {e.field or '(root)'}: {e.message}") for e in problems
            )
        )
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if isinstance(name, str) and (len(name) > MAX_NAME or not _NAME.fullmatch(name)):
        raise PolicyFileError(
            report.escape(
                f"{where}: metadata.name: {name[:80]!r} is not a valid name (lower-case "
                "letters, digits, '-' and '.', at most 253 characters), as the API server "
                "requires"
            )
        )
    try:
        parsed = policy_model.parse(obj, known_checks=registry.ids())
    except policy_model.PolicyError as e:
        raise PolicyFileError(f"{where}: {e.field or '(root)'}: {e.message}") from None
    if parsed.name in names:
        raise PolicyFileError(
            f"{where}: metadata.name: policy {parsed.name!r} is already defined in "
            f"{names[parsed.name]} (policy names are unique, as in a cluster)"
        )
    names[parsed.name] = where
    return LoadedPolicy(policy=parsed, source=source, document=index)


def _check_type(obj: Mapping[str, Any], where: str) -> None:
    kind = obj.get("kind")
    if kind != KIND:
        raise PolicyFileError(f"{where}: kind: must be {KIND}, not {kind!r}")
    api_version = obj.get("apiVersion")
    group = api_version.split("/", 1)[0] if isinstance(api_version, str) else None
    if group != API_GROUP:
        raise PolicyFileError(
            f"{where}: apiVersion: must be {API_GROUP}/<version>, not {api_version!r}"
        )
