"""Native admission for GuardrailPolicies: generated ValidatingAdmissionPolicies.

Pure (imports only ``checks`` and ``model``): :func:`build` turns a parsed policy into the
ValidatingAdmissionPolicy + binding manifests the operator applies; :mod:`.rules` holds
each check of the registry as CEL; :func:`changed` is the one comparison of a live object
with a built one (the operator's and ``plan``'s). See ``README.md`` ("Admission") for how
they are wired, what stays runtime-only and how the static admission policies in
``manifests/`` protect the operator's objects.
"""

from kube_guardrails.admission.compare import SERVER_DEFAULTS, changed
from kube_guardrails.admission.policies import (
    DENY,
    GATE_CHECK,
    LABEL_HARDENED,
    WARN,
    Desired,
    active_checks,
    all_names,
    build,
    object_name,
)
from kube_guardrails.admission.rules import RULES, RUNTIME_ONLY

__all__ = [
    "DENY",
    "GATE_CHECK",
    "LABEL_HARDENED",
    "RULES",
    "RUNTIME_ONLY",
    "SERVER_DEFAULTS",
    "WARN",
    "Desired",
    "active_checks",
    "all_names",
    "build",
    "changed",
    "object_name",
]
