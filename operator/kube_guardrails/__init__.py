"""kube-guardrails: namespace hardening and workload guardrails for Kubernetes.

The package is layered (see DESIGN section 7 and ``pyproject.toml``'s import-linter
contracts): ``handlers`` (kopf) call ``services`` (use cases), which talk to the API
only through ``k8s``; ``model``, ``checks``, ``planning`` and ``builders`` are pure.
"""

__version__ = "0.1.0"

API_GROUP = "kube-guardrails.io"
API_VERSION = "v1alpha1"
KIND = "GuardrailPolicy"
PLURAL = "guardrailpolicies"
FIELD_MANAGER = "kube-guardrails"
OPERATOR_NAMESPACE = "kube-guardrails-system"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kube-guardrails"
LABEL_POLICY = "kube-guardrails.io/policy"
ANNOTATION_PREFIX = "kube-guardrails.io/"
ANNOTATION_VIOLATIONS = "kube-guardrails.io/violations"
