"""Which checks a policy runs, with action, severity and parameters resolved.

One resolution for every consumer: the engine's verdicts (``planning``), the generated
admission policies (``admission``) and so the audit, ``plan`` and the operator, so the
API server and the operator can never disagree on which checks are on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model


@dataclasses.dataclass(frozen=True)
class ActiveCheck:
    """A check as one policy configures it: action Audit or Enforce, never Off."""

    check: registry.Check
    action: str
    severity: registry.Severity
    params: Mapping[str, Any]


def level_of(policy: policy_model.Policy) -> registry.Level:
    return registry.Level(policy.workloads.pod_security)


def resolve(policy: policy_model.Policy) -> list[ActiveCheck]:
    """The checks a policy runs.

    Pod Security checks come from ``podSecurity`` (baseline checks at baseline and
    restricted, restricted checks at restricted only) with their default action;
    best-practice checks are on with theirs. ``checks.<id>`` overrides either; naming a
    Pod Security check with an action turns it on even above the policy's level.
    """
    level = level_of(policy)
    out: list[ActiveCheck] = []
    for chk in registry.all_checks():
        setting = policy.workloads.checks.get(chk.id)
        if chk.level is None:
            on_by_level = True
        elif chk.level is registry.Level.BASELINE:
            on_by_level = level in (registry.Level.BASELINE, registry.Level.RESTRICTED)
        else:
            on_by_level = level is registry.Level.RESTRICTED
        action = chk.default_action if on_by_level else "Off"
        if setting is not None and setting.action is not None:
            action = setting.action
        if action == "Off":
            continue
        severity = chk.severity
        if setting is not None and setting.severity is not None:
            severity = registry.Severity.parse(setting.severity)
        params = dict(setting.params) if setting is not None else {}
        out.append(ActiveCheck(check=chk, action=action, severity=severity, params=params))
    return out
