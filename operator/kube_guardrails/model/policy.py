"""GuardrailPolicy objects parsed into frozen dataclasses, with field-named errors.

The CRD's schema (``crds/``) rejects most bad input at the API server; this module
checks what a structural schema cannot (quantities that compare, selectors, known
check ids, timestamps) and is also what the offline audit runs on ``--policy`` files.
Every error names the field path (``spec.hardening.limitRange.default.cpu``), so the
``Ready`` condition and the CLI can say exactly what to fix.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kube_guardrails.model import quantity, selectors

MODES = ("Audit", "Enforce")
ACTIONS = ("Off", "Audit", "Enforce")
LEVELS = ("none", "baseline", "restricted")
POLICY_TYPES = ("Ingress", "Egress")
SEVERITIES = ("low", "medium", "high", "critical")
ALWAYS_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


class PolicyError(ValueError):
    """A policy that cannot be enforced; ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class NetworkPolicySpec:
    enabled: bool = True
    policy_types: tuple[str, ...] = ("Ingress", "Egress")
    allow_dns: bool = True
    allow_same_namespace: bool = False


@dataclasses.dataclass(frozen=True)
class LimitRangeSpec:
    enabled: bool = True
    default_request: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi"}
    )
    default: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"cpu": "500m", "memory": "512Mi"}
    )
    max: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ResourceQuotaSpec:
    enabled: bool = False
    hard: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Hardening:
    network_policy: NetworkPolicySpec = NetworkPolicySpec()
    limit_range: LimitRangeSpec = LimitRangeSpec()
    resource_quota: ResourceQuotaSpec = ResourceQuotaSpec()


@dataclasses.dataclass(frozen=True)
class CheckSetting:
    """``spec.workloads.checks.<id>``: an override of the level's default for one check."""

    action: str | None = None  # None: keep the default action
    severity: str | None = None  # None: the check's own severity
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Enforcement:
    grace_period_seconds: int = 300
    max_evictions_per_minute: int = 10
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class Exemption:
    """Exempts matching workloads from some checks until ``expires``.

    Empty ``namespaces`` means every namespace the policy selects; a missing
    ``selector`` means every workload; empty ``checks`` means every check.
    """

    index: int
    reason: str
    expires: datetime.datetime
    namespaces: tuple[str, ...] = ()
    selector: selectors.LabelSelector = selectors.LabelSelector()
    checks: frozenset[str] = frozenset()

    def expired(self, now: datetime.datetime) -> bool:
        return now >= self.expires


@dataclasses.dataclass(frozen=True)
class Workloads:
    pod_security: str = "baseline"
    checks: Mapping[str, CheckSetting] = dataclasses.field(default_factory=dict)
    enforcement: Enforcement = Enforcement()
    exemptions: tuple[Exemption, ...] = ()


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    mode: str = "Audit"
    priority: int = 0
    namespace_selector: selectors.LabelSelector = selectors.LabelSelector()
    exclude_namespaces: tuple[str, ...] = ()
    hardening: Hardening = Hardening()
    workloads: Workloads = Workloads()
    uid: str = ""
    generation: int = 0

    @property
    def enforcing(self) -> bool:
        return self.mode == "Enforce"


# --------------------------------------------------------------------------- parsing


def parse(obj: Mapping[str, Any], *, known_checks: Collection[str] | None = None) -> Policy:
    """Parse a GuardrailPolicy object (as the API returns it, or as written in YAML).

    Missing fields take the defaults the CRD declares, so a policy parsed from a file
    equals the one the API server would store. ``known_checks`` (the registry's ids)
    makes unknown check ids in ``checks`` and ``exemptions`` an error.
    """
    if not isinstance(obj, Mapping):
        raise PolicyError("", "a GuardrailPolicy must be a mapping")
    meta = _obj(obj, "metadata", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError("metadata.name", "is required")
    spec = _obj(obj, "spec", "spec")
    _no_unknown(
        spec,
        "spec",
        {"mode", "priority", "namespaceSelector", "excludeNamespaces", "hardening", "workloads"},
    )
    mode = _enum(spec, "mode", "spec.mode", MODES, "Audit")
    priority = _int(spec, "priority", "spec.priority", 0, lo=-1000, hi=1000)
    try:
        ns_selector = selectors.parse_selector(spec.get("namespaceSelector"))
    except selectors.SelectorError as e:
        raise PolicyError(_join("spec.namespaceSelector", e.field), e.message) from None
    exclude = _str_list(spec, "excludeNamespaces", "spec.excludeNamespaces")
    hardening = _parse_hardening(_obj(spec, "hardening", "spec.hardening"))
    workloads = _parse_workloads(_obj(spec, "workloads", "spec.workloads"), known_checks)
    generation = meta.get("generation")
    return Policy(
        name=name,
        mode=mode,
        priority=priority,
        namespace_selector=ns_selector,
        exclude_namespaces=tuple(exclude),
        hardening=hardening,
        workloads=workloads,
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else 0,
    )


def _parse_hardening(raw: Mapping[str, Any]) -> Hardening:
    base = "spec.hardening"
    _no_unknown(raw, base, {"networkPolicy", "limitRange", "resourceQuota"})
    np_raw = _obj(raw, "networkPolicy", f"{base}.networkPolicy")
    p = f"{base}.networkPolicy"
    _no_unknown(np_raw, p, {"enabled", "policyTypes", "allowDNS", "allowSameNamespace"})
    types = _str_list(np_raw, "policyTypes", f"{p}.policyTypes", default=["Ingress", "Egress"])
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            raise PolicyError(f"{p}.policyTypes[{i}]", f"must be Ingress or Egress, not {t!r}")
    if len(set(types)) != len(types):
        raise PolicyError(f"{p}.policyTypes", "must not repeat a type")
    np_enabled = _bool(np_raw, "enabled", f"{p}.enabled", True)
    if np_enabled and not types:
        raise PolicyError(f"{p}.policyTypes", "must name Ingress and/or Egress when enabled")
    network_policy = NetworkPolicySpec(
        enabled=np_enabled,
        policy_types=tuple(t for t in POLICY_TYPES if t in types),
        allow_dns=_bool(np_raw, "allowDNS", f"{p}.allowDNS", True),
        allow_same_namespace=_bool(np_raw, "allowSameNamespace", f"{p}.allowSameNamespace", False),
    )

    lr_raw = _obj(raw, "limitRange", f"{base}.limitRange")
    p = f"{base}.limitRange"
    _no_unknown(lr_raw, p, {"enabled", "defaultRequest", "default", "max"})
    default_request = _resources(lr_raw, "defaultRequest", p, {"cpu": "100m", "memory": "128Mi"})
    default = _resources(lr_raw, "default", p, {"cpu": "500m", "memory": "512Mi"})
    maximum = _resources(lr_raw, "max", p, {})
    # The API server rejects a LimitRange whose defaultRequest exceeds default, or
    # whose default exceeds max (core/v1 validation); say so here, naming the field.
    _not_above(default_request, default, f"{p}.defaultRequest", "default")
    _not_above(default, maximum, f"{p}.default", "max")
    _not_above(default_request, maximum, f"{p}.defaultRequest", "max")
    limit_range = LimitRangeSpec(
        enabled=_bool(lr_raw, "enabled", f"{p}.enabled", True),
        default_request=default_request,
        default=default,
        max=maximum,
    )

    rq_raw = _obj(raw, "resourceQuota", f"{base}.resourceQuota")
    p = f"{base}.resourceQuota"
    _no_unknown(rq_raw, p, {"enabled", "hard"})
    hard_raw = _obj(rq_raw, "hard", f"{p}.hard")
    hard: dict[str, str] = {}
    for key, value in hard_raw.items():
        try:
            quantity.parse_quantity(value)
        except quantity.QuantityError as e:
            raise PolicyError(f"{p}.hard.{key}", str(e)) from None
        hard[str(key)] = str(value)
    rq_enabled = _bool(rq_raw, "enabled", f"{p}.enabled", False)
    if rq_enabled and not hard:
        raise PolicyError(f"{p}.hard", "must set at least one limit when the quota is enabled")
    return Hardening(
        network_policy=network_policy,
        limit_range=limit_range,
        resource_quota=ResourceQuotaSpec(enabled=rq_enabled, hard=hard),
    )


def _parse_workloads(raw: Mapping[str, Any], known: Collection[str] | None) -> Workloads:
    base = "spec.workloads"
    _no_unknown(raw, base, {"podSecurity", "checks", "enforcement", "exemptions"})
    level = _enum(raw, "podSecurity", f"{base}.podSecurity", LEVELS, "baseline")
    checks_raw = _obj(raw, "checks", f"{base}.checks")
    checks: dict[str, CheckSetting] = {}
    for check_id, setting in checks_raw.items():
        p = f"{base}.checks.{check_id}"
        if known is not None and check_id not in known:
            raise PolicyError(p, f"unknown check {check_id!r} (known: {', '.join(sorted(known))})")
        if setting is None:
            setting = {}
        if not isinstance(setting, Mapping):
            raise PolicyError(p, "must be an object such as {action: Audit}")
        action = setting.get("action")
        if action is not None and action not in ACTIONS:
            raise PolicyError(f"{p}.action", f"must be one of {', '.join(ACTIONS)}, not {action!r}")
        severity = setting.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise PolicyError(
                f"{p}.severity", f"must be one of {', '.join(SEVERITIES)}, not {severity!r}"
            )
        params = {k: v for k, v in setting.items() if k not in ("action", "severity")}
        if check_id == "imageRegistry" and "allowed" in params:
            allowed = params["allowed"]
            if not isinstance(allowed, list) or not all(isinstance(a, str) and a for a in allowed):
                raise PolicyError(f"{p}.allowed", "must be a list of registry prefixes")
        checks[str(check_id)] = CheckSetting(action=action, severity=severity, params=params)

    en_raw = _obj(raw, "enforcement", f"{base}.enforcement")
    p = f"{base}.enforcement"
    _no_unknown(en_raw, p, {"gracePeriodSeconds", "maxEvictionsPerMinute", "dryRun"})
    enforcement = Enforcement(
        grace_period_seconds=_int(
            en_raw, "gracePeriodSeconds", f"{p}.gracePeriodSeconds", 300, lo=0, hi=86400 * 7
        ),
        max_evictions_per_minute=_int(
            en_raw, "maxEvictionsPerMinute", f"{p}.maxEvictionsPerMinute", 10, lo=1, hi=1000
        ),
        dry_run=_bool(en_raw, "dryRun", f"{p}.dryRun", False),
    )

    ex_raw = raw.get("exemptions") or []
    if not isinstance(ex_raw, list):
        raise PolicyError(f"{base}.exemptions", "must be a list")
    exemptions = tuple(
        _parse_exemption(i, item, f"{base}.exemptions[{i}]", known) for i, item in enumerate(ex_raw)
    )
    return Workloads(
        pod_security=level, checks=checks, enforcement=enforcement, exemptions=exemptions
    )


def _parse_exemption(index: int, raw: object, p: str, known: Collection[str] | None) -> Exemption:
    if not isinstance(raw, Mapping):
        raise PolicyError(p, "must be an object with reason, expires and what it exempts")
    _no_unknown(raw, p, {"namespaces", "selector", "checks", "reason", "expires"})
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise PolicyError(f"{p}.reason", "is required: say why (e.g. a ticket number)")
    expires = parse_time(raw.get("expires"), f"{p}.expires")
    namespaces = _str_list(raw, "namespaces", f"{p}.namespaces")
    try:
        selector = selectors.parse_selector(raw.get("selector"))
    except selectors.SelectorError as e:
        raise PolicyError(_join(f"{p}.selector", e.field), e.message) from None
    checks = _str_list(raw, "checks", f"{p}.checks")
    for i, c in enumerate(checks):
        if known is not None and c not in known:
            raise PolicyError(f"{p}.checks[{i}]", f"unknown check {c!r}")
    return Exemption(
        index=index,
        reason=reason,
        expires=expires,
        namespaces=tuple(namespaces),
        selector=selector,
        checks=frozenset(checks),
    )


MIN_YEAR = 1970
MAX_YEAR = 9998


def parse_time(value: object, field: str) -> datetime.datetime:
    """An RFC 3339 timestamp (``2027-01-31T00:00:00Z``) as an aware datetime in UTC.

    Only years :data:`MIN_YEAR` to :data:`MAX_YEAR` (in UTC): at the edges of the
    calendar, applying an offset or adding a grace period raises OverflowError
    (``0001-01-01T00:00:00+01:00``), and an exemption or a violation time there is a
    typo anyway. Values come from users (policies, annotations), so the error names the
    field instead of escaping as an exception.
    """
    if isinstance(value, datetime.datetime):  # YAML loaders turn timestamps into datetimes
        parsed = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        shown = str(value)
    elif not isinstance(value, str) or not value:
        raise PolicyError(field, "is required: an RFC 3339 time such as 2027-01-31T00:00:00Z")
    else:
        shown = repr(value) if len(value) <= 64 else repr(value[:61] + "...")
        if len(value) > 64:
            raise PolicyError(field, f"{shown} is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)")
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PolicyError(
                field, f"{shown} is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)"
            ) from None
        if parsed.tzinfo is None:
            raise PolicyError(field, f"{shown} has no time zone; add Z or an offset")
    try:
        utc = parsed.astimezone(datetime.UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise PolicyError(field, f"{shown} is out of range (years {MIN_YEAR} to {MAX_YEAR})")
    return utc


# --------------------------------------------------------------------------- helpers


def _join(base: str, field: str) -> str:
    return f"{base}.{field}" if field else base


def _obj(raw: Mapping[str, Any], key: str, field: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(field, "must be an object")
    return value


def _no_unknown(raw: Mapping[str, Any], base: str, allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            raise PolicyError(
                f"{base}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )


def _enum(
    raw: Mapping[str, Any], key: str, field: str, values: tuple[str, ...], default: str
) -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    if value not in values:
        raise PolicyError(field, f"must be one of {', '.join(values)}, not {value!r}")
    return str(value)


def _int(raw: Mapping[str, Any], key: str, field: str, default: int, *, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(field, f"must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise PolicyError(field, f"must be between {lo} and {hi}, not {value}")
    return value


def _bool(raw: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PolicyError(field, f"must be true or false, not {value!r}")
    return value


def _str_list(
    raw: Mapping[str, Any], key: str, field: str, default: list[str] | None = None
) -> list[str]:
    value = raw.get(key)
    if value is None:
        return list(default or [])
    if not isinstance(value, list):
        raise PolicyError(field, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise PolicyError(f"{field}[{i}]", "must be a non-empty string")
    return list(value)


def _resources(
    raw: Mapping[str, Any], key: str, base: str, default: Mapping[str, str]
) -> dict[str, str]:
    field = f"{base}.{key}"
    value = raw.get(key)
    if value is None:
        return dict(default)
    if not isinstance(value, Mapping):
        raise PolicyError(field, "must be a map such as {cpu: 100m, memory: 128Mi}")
    out: dict[str, str] = {}
    for name, q in value.items():
        if name not in RESOURCE_NAMES:
            raise PolicyError(f"{field}.{name}", f"must be one of {', '.join(RESOURCE_NAMES)}")
        try:
            quantity.parse_quantity(q)
        except quantity.QuantityError as e:
            raise PolicyError(f"{field}.{name}", str(e)) from None
        out[str(name)] = str(q)
    return out


def _not_above(
    lower: Mapping[str, str], upper: Mapping[str, str], field: str, upper_name: str
) -> None:
    parse: Callable[[object], decimal.Decimal] = quantity.parse_quantity
    for name, q in lower.items():
        if name in upper and parse(q) > parse(upper[name]):
            raise PolicyError(
                f"{field}.{name}", f"{q} is above {upper_name}.{name} ({upper[name]})"
            )


def selects_namespace(
    policy: Policy,
    *,
    name: str,
    labels: Mapping[str, str] | None,
    operator_namespace: str,
) -> bool:
    """Does the policy apply to this namespace (selector, exclusions, system namespaces)?"""
    if name in ALWAYS_EXCLUDED or name == operator_namespace:
        return False
    if selectors.glob_match(name, policy.exclude_namespaces):
        return False
    return policy.namespace_selector.matches(labels)
