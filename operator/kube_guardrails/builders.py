"""Desired manifests of the managed objects (NetworkPolicy, LimitRange, ResourceQuota).

Pure functions of (namespace, policy): the hardening use case compares what they return
with the live objects and writes only the difference. :func:`matches` is that
comparison; it looks only at the fields we set, because the API server adds defaults
(``protocol: TCP`` on ports, ``type: Container`` on limits, quantities normalised such
as ``1000m`` to ``1``) and a difference there is not a reason to write.
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Collection, Mapping
from typing import Any

from kube_guardrails import (
    API_GROUP,
    API_VERSION,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_POLICY,
    MANAGED_BY_VALUE,
)
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import quantity

NETWORK_POLICY_NAME = "kube-guardrails-default-deny"
LIMIT_RANGE_NAME = "kube-guardrails-limits"
RESOURCE_QUOTA_NAME = "kube-guardrails-quota"


@dataclasses.dataclass(frozen=True)
class Kind:
    """A managed kind: how to address it in the API and what we name our object."""

    api_version: str
    kind: str
    plural: str
    name: str


NETWORK_POLICY = Kind(
    "networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", NETWORK_POLICY_NAME
)
LIMIT_RANGE = Kind("v1", "LimitRange", "limitranges", LIMIT_RANGE_NAME)
RESOURCE_QUOTA = Kind("v1", "ResourceQuota", "resourcequotas", RESOURCE_QUOTA_NAME)
MANAGED_KINDS = (NETWORK_POLICY, LIMIT_RANGE, RESOURCE_QUOTA)

DNS_NAMESPACE_LABELS = {"kubernetes.io/metadata.name": "kube-system"}
DNS_POD_LABELS = {"k8s-app": "kube-dns"}


def managed_labels(policy: policy_model.Policy) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_POLICY: policy.name}


def policy_owner_uids(obj: Mapping[str, Any]) -> frozenset[str]:
    """The uids of the GuardrailPolicies named in the object's ownerReferences."""
    refs = (obj.get("metadata") or {}).get("ownerReferences")
    out: set[str] = set()
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, Mapping):
            continue
        group = str(ref.get("apiVersion") or "").split("/")[0]
        if group == API_GROUP and ref.get("kind") == KIND and ref.get("uid"):
            out.add(str(ref["uid"]))
    return frozenset(out)


def is_managed(obj: Mapping[str, Any], *, policy_uids: Collection[str] | None = None) -> bool:
    """Did we create this object? (Only such objects are ever changed or deleted.)

    Decided by the ownerReference to a GuardrailPolicy, never by the ``managed-by``
    label, which anyone who may edit the object can remove (and then edit it at will).
    ``policy_uids``: the uids of the policies that exist (the operator passes them, so a
    forged reference to a made-up uid does not count); None accepts any policy uid.
    """
    owners = policy_owner_uids(obj)
    if policy_uids is None:
        return bool(owners)
    return bool(owners & set(policy_uids))


def owner_reference(policy: policy_model.Policy) -> dict[str, Any]:
    """Owned by the (cluster-scoped) policy, so deleting the policy garbage-collects it.

    A cluster-scoped owner of namespaced dependents is allowed by the garbage
    collector. ``blockOwnerDeletion`` is false: the policy's deletion must not wait for
    (or need permission on) every namespace's objects.
    """
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": policy.name,
        "uid": policy.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _metadata(kind: Kind, namespace: str, policy: policy_model.Policy) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": kind.name,
        "namespace": namespace,
        "labels": managed_labels(policy),
    }
    if policy.uid:  # a policy read from a file (tests, audit) has no uid to own by
        meta["ownerReferences"] = [owner_reference(policy)]
    return meta


def build_network_policy(namespace: str, policy: policy_model.Policy) -> dict[str, Any]:
    """Default deny for the configured directions, with the configured exceptions."""
    spec = policy.hardening.network_policy
    types = list(spec.policy_types)
    body: dict[str, Any] = {"podSelector": {}, "policyTypes": types}
    same_namespace: dict[str, Any] = {"podSelector": {}}
    # Empty rule lists are left out: the API server drops them (omitempty), and an
    # absent list under a listed policy type already means "deny everything".
    if "Ingress" in types and spec.allow_same_namespace:
        body["ingress"] = [{"from": [same_namespace]}]
    if "Egress" in types:
        egress: list[dict[str, Any]] = []
        if spec.allow_dns:
            egress.append(
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": dict(DNS_NAMESPACE_LABELS)},
                            "podSelector": {"matchLabels": dict(DNS_POD_LABELS)},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            )
        if spec.allow_same_namespace:
            egress.append({"to": [same_namespace]})
        if egress:
            body["egress"] = egress
    return {
        "apiVersion": NETWORK_POLICY.api_version,
        "kind": NETWORK_POLICY.kind,
        "metadata": _metadata(NETWORK_POLICY, namespace, policy),
        "spec": body,
    }


def build_limit_range(namespace: str, policy: policy_model.Policy) -> dict[str, Any]:
    """Container defaults (and optional maximums) so unsized containers get sane values."""
    spec = policy.hardening.limit_range
    # Apply the API server's defaulting for Container limits (core/v1
    # SetDefaults_LimitRangeItem): a missing default limit takes the max, a missing
    # default request takes the default limit. The desired object then equals the
    # stored one, and the comparison needs no special cases.
    default = {**dict(spec.max), **dict(spec.default)}
    default_request = {**default, **dict(spec.default_request)}
    limit: dict[str, Any] = {"type": "Container"}
    if default:
        limit["default"] = default
    if default_request:
        limit["defaultRequest"] = default_request
    if spec.max:
        limit["max"] = dict(spec.max)
    return {
        "apiVersion": LIMIT_RANGE.api_version,
        "kind": LIMIT_RANGE.kind,
        "metadata": _metadata(LIMIT_RANGE, namespace, policy),
        "spec": {"limits": [limit]},
    }


def build_resource_quota(namespace: str, policy: policy_model.Policy) -> dict[str, Any]:
    spec = policy.hardening.resource_quota
    return {
        "apiVersion": RESOURCE_QUOTA.api_version,
        "kind": RESOURCE_QUOTA.kind,
        "metadata": _metadata(RESOURCE_QUOTA, namespace, policy),
        "spec": {"hard": dict(spec.hard)},
    }


def desired_objects(
    namespace: str, policy: policy_model.Policy | None
) -> dict[Kind, dict[str, Any] | None]:
    """Every managed kind -> the object it should be in the namespace, or None (absent)."""
    out: dict[Kind, dict[str, Any] | None] = dict.fromkeys(MANAGED_KINDS)
    if policy is None:
        return out
    hardening = policy.hardening
    if hardening.network_policy.enabled:
        out[NETWORK_POLICY] = build_network_policy(namespace, policy)
    if hardening.limit_range.enabled:
        out[LIMIT_RANGE] = build_limit_range(namespace, policy)
    if hardening.resource_quota.enabled:
        out[RESOURCE_QUOTA] = build_resource_quota(namespace, policy)
    return out


# ------------------------------------------------------------------------- comparison


def matches(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Does the live object already say what the desired one says?

    Compared: our labels and ownerReference (other labels, annotations and owners are
    someone else's business), and the ``spec``, which must be equal: an extra ingress
    rule or an extra quota limit changes the meaning, so it counts. Equal here means
    equal after what the API server does on storing: empty maps and lists are dropped
    (``omitempty``), quantities are normalised (``1000m`` is ``1``). The builders
    already apply the server's defaulting, so the desired spec is what gets stored.
    """
    live_meta = live.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    live_labels = live_meta.get("labels") or {}
    for key, value in (want_meta.get("labels") or {}).items():
        if live_labels.get(key) != value:
            return False
    for ref in want_meta.get("ownerReferences") or []:
        if not any(_owner_matches(r, ref) for r in live_meta.get("ownerReferences") or []):
            return False
    return _equal(live.get("spec"), desired.get("spec"), quantities=False)


def _owner_matches(live: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    same = all(live.get(k) == want.get(k) for k in ("apiVersion", "kind", "name", "uid"))
    return same and bool(live.get("controller")) == bool(want.get("controller"))


# Maps whose values are quantities: "1000m" and "1" are the same CPU.
_QUANTITY_MAPS = frozenset(
    {"default", "defaultRequest", "max", "min", "hard", "maxLimitRequestRatio"}
)


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _equal(live: Any, want: Any, *, quantities: bool) -> bool:
    if isinstance(want, Mapping) or isinstance(live, Mapping):
        if not isinstance(want, Mapping) or not isinstance(live, Mapping):
            return _empty(live) and _empty(want)
        for key in set(live) | set(want):
            lv, wv = live.get(key), want.get(key)
            if _empty(lv) and _empty(wv):
                continue
            if quantities:
                if not _same_quantity(lv, wv):
                    return False
            elif not _equal(lv, wv, quantities=key in _QUANTITY_MAPS):
                return False
        return True
    if isinstance(want, list) or isinstance(live, list):
        if not isinstance(want, list) or not isinstance(live, list):
            return _empty(live) and _empty(want)
        if len(live) != len(want):
            return False
        return all(_equal(lv, wv, quantities=False) for lv, wv in zip(live, want, strict=True))
    return bool(live == want)


def _same_quantity(live: Any, want: Any) -> bool:
    try:
        return bool(quantity.parse_quantity(live) == quantity.parse_quantity(want))
    except (quantity.QuantityError, decimal.InvalidOperation, TypeError, ValueError):
        return bool(live == want)


# ------------------------------------------------------------------------- change


@dataclasses.dataclass(frozen=True)
class Change:
    """What reconciling one managed kind in one namespace does, and why (for ``plan``).

    ``action``: ``create``, ``update``, ``delete``, ``unchanged``, or ``conflict`` (an
    object with our name exists without an ownerReference to a policy: it belongs to someone
    else, so it is never touched and the namespace stays unhardened for that kind).
    """

    action: str
    reason: str = ""


def planned_change(live: Mapping[str, Any] | None, want: Mapping[str, Any] | None) -> Change:
    """The write the hardening reconcile makes for one kind, as a pure decision.

    The same rules as ``services.hardening`` (which applies them): a foreign object is
    left alone whatever we want; otherwise absent and wanted is a create, present and
    not wanted a delete, present and different (:func:`matches`) an update.
    """
    if live is not None and not is_managed(live):
        if want is None:
            return Change("unchanged")
        return Change(
            "conflict", "exists without an ownerReference to a GuardrailPolicy; left alone"
        )
    if want is None:
        return Change("unchanged") if live is None else Change("delete", _owner_text(live))
    if live is None:
        return Change("create")
    if matches(live, want):
        return Change("unchanged")
    return Change("update", _difference(live, want))


def _owner_text(live: Mapping[str, Any]) -> str:
    policy = ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_POLICY)
    return f"was from policy {policy}" if policy else ""


def _difference(live: Mapping[str, Any], want: Mapping[str, Any]) -> str:
    live_policy = ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_POLICY)
    want_policy = ((want.get("metadata") or {}).get("labels") or {}).get(LABEL_POLICY)
    parts: list[str] = []
    if live_policy != want_policy:
        parts.append(f"policy {live_policy or '(none)'} -> {want_policy}")
    if not _equal(live.get("spec"), want.get("spec"), quantities=False):
        parts.append("spec differs")
    return "; ".join(parts) or "labels or ownerReference differ"
