"""The policy the audit uses when no ``--policy`` is given, defined in this one place.

Baseline Pod Security plus every best-practice check, in Audit mode: what a platform
team would most likely apply first, so that a developer running the audit with no
arguments sees roughly what the cluster will tell them. It is written as a
GuardrailPolicy object and goes through the same parser as any policy file, so it can
never drift from what the CRD accepts. ``imageRegistry`` needs an allow-list to mean
anything, so without one it is skipped, as in the cluster.
"""

from __future__ import annotations

from typing import Any

from kube_guardrails import API_GROUP, API_VERSION, KIND
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model

NAME = "kube-guardrails-default"


def document() -> dict[str, Any]:
    """The default policy as a GuardrailPolicy object (printable, parseable)."""
    best_practices = {
        c.id: {"action": "Audit"}
        for c in registry.all_checks()
        if c.category is registry.Category.BEST_PRACTICE
    }
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": NAME},
        "spec": {
            "mode": "Audit",
            "namespaceSelector": {},
            "workloads": {"podSecurity": "baseline", "checks": best_practices},
        },
    }


def policy() -> policy_model.Policy:
    return policy_model.parse(document(), known_checks=registry.ids())
