"""The GuardrailPolicy CRD: its identity, its schema's agreement with model/policy.py, its
CEL rules (compiled and evaluated with cel-python, since no API server runs here) and the
example policies.

The CRD and the parser describe one API twice; these tests fail when the two drift apart
in a field name, a default, an enum or a bound.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kube_guardrails import API_GROUP, API_VERSION, KIND, PLURAL
from kube_guardrails.checks import registry
from kube_guardrails.model import policy, quantity, schema

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "guardrailpolicies.kube-guardrails.io.yaml"
PACKAGED_CRD = REPO / "operator" / "kube_guardrails" / "data" / "guardrailpolicy-crd.yaml"
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def root_schema() -> dict[str, Any]:
    version: dict[str, Any] = crd()["spec"]["versions"][0]
    return dict(version["schema"]["openAPIV3Schema"])


def spec_schema() -> dict[str, Any]:
    return dict(root_schema()["properties"]["spec"])


def at(node: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A schema node by property path (``hardening.limitRange``; ``[]`` for list items)."""
    for part in dotted.split("."):
        if part.endswith("[]"):
            node = node["properties"][part[:-2]]["items"]
        else:
            node = node["properties"][part]
    return node


def walk(
    node: dict[str, Any], path: str = "", enclosing: int = 1
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every schema node with its path and how many times it can occur in one object
    (the product of the maxItems / maxProperties of the lists and maps around it)."""
    yield path, node, enclosing
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name, enclosing)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]", enclosing * node.get("maxItems", 10**9))
    if isinstance(node.get("additionalProperties"), dict):
        times = enclosing * node.get("maxProperties", 10**9)
        yield from walk(node["additionalProperties"], f"{path}.*", times)


def minimal(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": "p"},
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


# --------------------------------------------------------------------------- identity


def test_packaged_copy_is_byte_identical() -> None:
    # The audit validates --policy files against the packaged copy; it must be this CRD.
    assert PACKAGED_CRD.read_bytes() == CRD_FILE.read_bytes(), (
        "operator/kube_guardrails/data/guardrailpolicy-crd.yaml differs from crds/: "
        "cp crds/guardrailpolicies.kube-guardrails.io.yaml "
        "operator/kube_guardrails/data/guardrailpolicy-crd.yaml"
    )


def test_schema_module_reads_the_packaged_crd() -> None:
    assert schema.openapi_schema() == root_schema()


def test_crd_identity() -> None:
    doc = crd()
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["metadata"]["name"] == f"{PLURAL}.{API_GROUP}"
    spec = doc["spec"]
    assert spec["group"] == API_GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["plural"] == PLURAL
    assert spec["names"]["shortNames"] == ["gp"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (API_VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    # priority 1: shown by `kubectl get gp -o wide` only.
    assert columns == [
        ("Mode", "string", ".spec.mode", 0),
        ("Namespaces", "integer", ".status.namespaces.hardened", 0),
        ("Matched", "integer", ".status.namespaces.matched", 1),
        ("Violations", "integer", ".status.violations.total", 0),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', 1),
        ("Last Reconcile", "date", ".status.lastReconcileTime", 1),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]


def test_every_printer_column_reads_a_field_the_schema_has() -> None:
    status = root_schema()["properties"]["status"]["properties"]
    assert status["lastReconcileTime"] == {
        "type": "string",
        "format": "date-time",
        "description": status["lastReconcileTime"]["description"],
    }
    assert set(status["namespaces"]["properties"]) == {"matched", "hardened"}


# --------------------------------------------------------------------------- structure


def test_every_node_has_a_type() -> None:
    # A structural schema (required for CRDs) types every node; int-or-string is the one
    # node kind that carries no type.
    untyped = [
        path or "(root)"
        for path, node, _ in walk(root_schema())
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_enum_values_are_strings() -> None:
    # YAML 1.1, which kubectl speaks, reads unquoted Off/On/Yes/No as booleans: an enum
    # written [Off, Audit] would hold false, and the API server would refuse the CRD.
    bad = [
        (path, value)
        for path, node, _ in walk(root_schema())
        for value in node.get("enum", [])
        if not isinstance(value, str)
    ]
    assert bad == []


def test_spec_is_bounded_for_cel_cost() -> None:
    # The API server estimates the cost of CEL rules from maxItems, maxProperties and
    # maxLength, and refuses a CRD whose estimate is too high; bound everything in spec.
    unbounded = []
    for path, node, _ in walk(spec_schema()):
        kind = node.get("type")
        if kind == "array" and "maxItems" not in node:
            unbounded.append((path, "maxItems"))
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append((path, "maxProperties"))
        if (kind == "string" or node.get("x-kubernetes-int-or-string")) and not (
            "maxLength" in node or "enum" in node
        ):
            unbounded.append((path, "maxLength"))
    assert unbounded == []


def test_nested_objects_default_to_empty_so_defaults_materialise() -> None:
    # The API server applies a field's default only when its parent object exists; each
    # object holding defaulted fields defaults to {} itself, so `spec: {}` (or no spec)
    # gets every default.
    missing = [
        path
        for path, node, _ in walk(root_schema())
        if path
        and "[]" not in path
        and ".*" not in path
        and node.get("type") == "object"
        and any("default" in sub for sub in (node.get("properties") or {}).values())
        and "default" not in node
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("path", "values"),
    [
        pytest.param("mode", policy.MODES, id="mode"),
        pytest.param("workloads.podSecurity", policy.LEVELS, id="podSecurity"),
        pytest.param("workloads.checks.*.action", policy.ACTIONS, id="action"),
        pytest.param("workloads.checks.*.severity", policy.SEVERITIES, id="severity"),
        pytest.param(
            "hardening.networkPolicy.policyTypes[]", policy.POLICY_TYPES, id="policyTypes"
        ),
        pytest.param(
            "namespaceSelector.matchExpressions[].operator",
            ("In", "NotIn", "Exists", "DoesNotExist"),
            id="selector-operator",
        ),
    ],
)
def test_enums_match_the_model(path: str, values: tuple[str, ...]) -> None:
    nodes = {p: n for p, n, _ in walk(spec_schema())}
    assert tuple(nodes[path]["enum"]) == values


@pytest.mark.parametrize("which", ["defaultRequest", "default", "max"])
def test_limit_range_resources_match_the_model(which: str) -> None:
    node = at(spec_schema(), f"hardening.limitRange.{which}")
    assert tuple(node["properties"]) == policy.RESOURCE_NAMES


def _set(spec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = spec
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return spec


def _bound_cases() -> Iterator[Any]:
    bounds = [
        ("priority", -1000, 1000),
        ("workloads.enforcement.gracePeriodSeconds", 0, 604800),
        ("workloads.enforcement.maxEvictionsPerMinute", 1, 1000),
    ]
    for field, lo, hi in bounds:
        name = field.rsplit(".", 1)[-1]
        for value, valid in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
            yield pytest.param(field, value, valid, id=f"{name}={value}")
    enums: list[tuple[str, tuple[str, ...], str]] = [
        ("mode", policy.MODES, "audit"),
        ("workloads.podSecurity", policy.LEVELS, "privileged"),
        ("workloads.checks.probes.action", policy.ACTIONS, "Warn"),
        ("workloads.checks.probes.severity", policy.SEVERITIES, "info"),
    ]
    for field, values, wrong in enums:
        name = field.rsplit(".", 1)[-1]
        for value in values:
            yield pytest.param(field, value, True, id=f"{name}={value}")
        yield pytest.param(field, wrong, False, id=f"{name}={wrong}")
    yield pytest.param(
        "hardening.networkPolicy.policyTypes", ["Egress"], True, id="policyTypes=Egress"
    )
    yield pytest.param(
        "hardening.networkPolicy.policyTypes", ["Egress", "Egress"], False, id="policyTypes-dup"
    )
    for name in policy.RESOURCE_NAMES:
        # High enough to stay above the default limits (the parser compares them).
        yield pytest.param(f"hardening.limitRange.max.{name}", "64Gi", True, id=f"max.{name}")
    yield pytest.param("hardening.limitRange.max.gpu", "1", False, id="max.gpu")


@pytest.mark.parametrize(("field", "value", "valid"), list(_bound_cases()))
def test_schema_and_parser_agree_on_bounds_and_enums(field: str, value: Any, valid: bool) -> None:
    obj = minimal(_set({}, field, value))
    schema_ok = schema.validate(obj) == []
    try:
        policy.parse(obj, known_checks=registry.ids())
        parser_ok = True
    except policy.PolicyError:
        parser_ok = False
    assert (schema_ok, parser_ok) == (valid, valid)


# --------------------------------------------------------------------------- defaults


def test_schema_defaults_are_the_dataclass_defaults() -> None:
    np, lr, rq = policy.NetworkPolicySpec(), policy.LimitRangeSpec(), policy.ResourceQuotaSpec()
    en, wl = policy.Enforcement(), policy.Workloads()
    fields = {f.name: f for f in dataclasses.fields(policy.Policy)}
    expected = {
        "mode": fields["mode"].default,
        "priority": fields["priority"].default,
        "namespaceSelector": {},
        "hardening": {
            "networkPolicy": {
                "enabled": np.enabled,
                "policyTypes": list(np.policy_types),
                "allowDNS": np.allow_dns,
                "allowSameNamespace": np.allow_same_namespace,
            },
            "limitRange": {
                "enabled": lr.enabled,
                "defaultRequest": dict(lr.default_request),
                "default": dict(lr.default),
            },
            "resourceQuota": {"enabled": rq.enabled},
        },
        "workloads": {
            "podSecurity": wl.pod_security,
            "enforcement": {
                "gracePeriodSeconds": en.grace_period_seconds,
                "maxEvictionsPerMinute": en.max_evictions_per_minute,
                "dryRun": en.dry_run,
            },
        },
    }
    assert schema.apply_defaults(minimal())["spec"] == expected


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(None, id="no-spec"),
        pytest.param({}, id="empty"),
        pytest.param({"hardening": {"networkPolicy": {"enabled": False}}}, id="np-off"),
        pytest.param({"hardening": {"limitRange": {"max": {"cpu": "2"}}}}, id="lr-max"),
        pytest.param({"workloads": {"enforcement": {"dryRun": True}}}, id="dry-run"),
        *[pytest.param(yaml.safe_load(p.read_text())["spec"], id=p.stem) for p in EXAMPLES],
    ],
)
def test_parsing_a_defaulted_policy_changes_nothing(spec: dict[str, Any] | None) -> None:
    # What the API server stores (defaults filled in) must parse to the same Policy as
    # what the user wrote: the parser's fallbacks are the CRD's defaults.
    obj = minimal(spec)
    defaulted = schema.apply_defaults(obj)
    assert schema.validate(defaulted) == []
    assert policy.parse(defaulted) == policy.parse(obj)


# --------------------------------------------------------------------------- CEL rules


def rules() -> list[tuple[str, dict[str, Any], int]]:
    return [
        (path, rule, times)
        for path, node, times in walk(spec_schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]


def test_the_cel_rules_are_where_they_help() -> None:
    where = sorted({path for path, _, _ in rules()})
    assert where == [
        "hardening.limitRange",
        "hardening.networkPolicy",
        "hardening.resourceQuota",
        "namespaceSelector.matchExpressions[]",
        "workloads.exemptions[].selector.matchExpressions[]",
    ]
    messages = [rule["message"] for path, rule, _ in rules() if path == "hardening.limitRange"]
    assert messages == [
        "defaultRequest.cpu must not be above default.cpu",
        "defaultRequest.memory must not be above default.memory",
        "default.cpu must not be above max.cpu",
        "default.memory must not be above max.memory",
        "defaultRequest.cpu must not be above max.cpu",
        "defaultRequest.memory must not be above max.memory",
    ]


def test_rules_have_messages_and_valid_field_paths() -> None:
    spec = spec_schema()
    for path, rule, _ in rules():
        assert rule.get("message"), rule
        # fieldPath is a path below the node the rule sits on; the API server refuses the
        # CRD when it names no property of the schema.
        target = at(spec, path)
        parts = rule["fieldPath"].lstrip(".").split(".") if "fieldPath" in rule else []
        for part in parts:
            assert part in target.get("properties", {}), (path, rule["fieldPath"])
            target = target["properties"][part]


def test_cel_cost_stays_small() -> None:
    # No rule iterates (no all/exists/map/filter), so each evaluation costs a bounded
    # handful of operations on strings of at most 64 characters; the number of evaluations
    # per object is bounded by maxItems. The API server's limits (1,000,000 cost units per
    # evaluation at run time, 10,000,000 per rule and 100,000,000 per CRD in its static
    # estimate) are then orders of magnitude away.
    iterating = [
        r["rule"]
        for _, r, _ in rules()
        if re.search(r"\.(all|exists|exists_one|map|filter)\(", r["rule"])
    ]
    assert iterating == []
    evaluations = sum(times for _, _, times in rules())
    assert evaluations <= 5000, evaluations


@dataclasses.dataclass(frozen=True)
class Cel:
    """cel-python with the Kubernetes quantity library the rules use."""

    compile: Callable[[str], Any]
    evaluate: Callable[[Any, Any], Any]


@pytest.fixture(scope="module")
def cel() -> Cel:
    celpy = pytest.importorskip("celpy", reason="cel-python (a test extra) evaluates CEL rules")
    from celpy import celtypes

    def is_quantity(value: Any) -> Any:
        try:
            quantity.parse_quantity(str(value))
        except quantity.QuantityError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    def to_quantity(value: Any) -> Any:
        quantity.parse_quantity(str(value))  # raises like the real quantity() on bad input
        return celtypes.StringType(str(value))

    def compare_to(left: Any, right: Any) -> Any:
        a, b = quantity.parse_quantity(str(left)), quantity.parse_quantity(str(right))
        return celtypes.IntType((a > b) - (a < b))

    functions = {"isQuantity": is_quantity, "quantity": to_quantity, "compareTo": compare_to}
    env = celpy.Environment()

    def evaluate(program: Any, value: Any) -> Any:
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        # A rule's verdict as a Python bool; anything else (an evaluation error) as is.
        return bool(result) if isinstance(result, celtypes.BoolType) else result

    return Cel(
        compile=lambda text: env.program(env.compile(text), functions=functions),
        evaluate=evaluate,
    )


def test_every_rule_compiles(cel: Cel) -> None:
    for _, rule, _ in rules():
        cel.compile(rule["rule"])


def node_values(obj: Any, dotted: str) -> list[Any]:
    """The values at a schema path in a (defaulted) object; [] expands list items."""
    values = [obj]
    for part in dotted.split("."):
        name = part[:-2] if part.endswith("[]") else part
        values = [v[name] for v in values if isinstance(v, dict) and name in v]
        if part.endswith("[]"):
            values = [item for v in values for item in v]
    return values


SEL = "namespaceSelector.matchExpressions[]"
EX_SEL = "workloads.exemptions[].selector.matchExpressions[]"
EXEMPTION = {"reason": "r", "expires": "2027-01-31T00:00:00Z"}

CEL_CASES = [
    # (spec, rule location, messages of the rules that must fail there)
    pytest.param({}, "hardening.networkPolicy", set(), id="np-defaults"),
    pytest.param(
        {"hardening": {"networkPolicy": {"policyTypes": []}}},
        "hardening.networkPolicy",
        {"must name Ingress and/or Egress when the NetworkPolicy is enabled"},
        id="np-enabled-no-types",
    ),
    pytest.param(
        {"hardening": {"networkPolicy": {"enabled": False, "policyTypes": []}}},
        "hardening.networkPolicy",
        set(),
        id="np-disabled-no-types",
    ),
    pytest.param({}, "hardening.limitRange", set(), id="lr-defaults"),
    pytest.param(
        {"hardening": {"limitRange": {"defaultRequest": {"cpu": 1}, "default": {"cpu": "1000m"}}}},
        "hardening.limitRange",
        set(),
        id="lr-equal-int-and-milli",
    ),
    pytest.param(
        {"hardening": {"limitRange": {"defaultRequest": {"cpu": "600m"}}}},
        "hardening.limitRange",
        {"defaultRequest.cpu must not be above default.cpu"},
        id="lr-request-above-default-cpu",
    ),
    pytest.param(
        {"hardening": {"limitRange": {"defaultRequest": {"memory": "1Gi"}}}},
        "hardening.limitRange",
        {"defaultRequest.memory must not be above default.memory"},
        id="lr-request-above-default-memory",
    ),
    pytest.param(
        {"hardening": {"limitRange": {"max": {"cpu": "200m", "memory": "256Mi"}}}},
        "hardening.limitRange",
        {"default.cpu must not be above max.cpu", "default.memory must not be above max.memory"},
        id="lr-default-above-max",
    ),
    pytest.param(
        {
            "hardening": {
                "limitRange": {
                    "defaultRequest": {"cpu": "2", "memory": "2Gi"},
                    "default": {},
                    "max": {"cpu": "1", "memory": "1Gi"},
                }
            }
        },
        "hardening.limitRange",
        {
            "defaultRequest.cpu must not be above max.cpu",
            "defaultRequest.memory must not be above max.memory",
        },
        id="lr-request-above-max",
    ),
    pytest.param({}, "hardening.resourceQuota", set(), id="rq-defaults"),
    pytest.param(
        {"hardening": {"resourceQuota": {"enabled": True}}},
        "hardening.resourceQuota",
        {"must set at least one limit when the quota is enabled"},
        id="rq-enabled-no-hard",
    ),
    pytest.param(
        {"hardening": {"resourceQuota": {"enabled": True, "hard": {}}}},
        "hardening.resourceQuota",
        {"must set at least one limit when the quota is enabled"},
        id="rq-enabled-empty-hard",
    ),
    pytest.param(
        {"hardening": {"resourceQuota": {"enabled": True, "hard": {"pods": 10}}}},
        "hardening.resourceQuota",
        set(),
        id="rq-enabled-with-hard",
    ),
    pytest.param(
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        SEL,
        {"values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"},
        id="sel-in-without-values",
    ),
    pytest.param(
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]
            }
        },
        SEL,
        set(),
        id="sel-notin-with-values",
    ),
    pytest.param(
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
            }
        },
        SEL,
        {"values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"},
        id="sel-exists-with-values",
    ),
    pytest.param(
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}},
        SEL,
        set(),
        id="sel-does-not-exist",
    ),
    pytest.param(
        {
            "workloads": {
                "exemptions": [
                    {
                        **EXEMPTION,
                        "selector": {
                            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
                        },
                    }
                ]
            }
        },
        EX_SEL,
        {"values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"},
        id="exemption-sel-in-empty-values",
    ),
]


@pytest.mark.parametrize(("spec", "location", "failing"), CEL_CASES)
def test_cel_rules_and_parser_agree(
    cel: Cel, spec: dict[str, Any], location: str, failing: set[str]
) -> None:
    obj = schema.apply_defaults(minimal(spec))  # rules run on the defaulted object
    assert schema.validate(obj) == []
    values = node_values(obj["spec"], location)
    assert values, f"nothing at {location}"
    failed = set()
    for path, rule, _ in rules():
        if path != location:
            continue
        program = cel.compile(rule["rule"])
        for value in values:
            result = cel.evaluate(program, value)
            assert isinstance(result, bool), f"{rule['rule']} -> {result!r}"
            if not result:
                failed.add(rule["message"])
    assert failed == failing
    # The operator's parser refuses exactly what the rules refuse.
    try:
        policy.parse(obj)
        parser_refused = False
    except policy.PolicyError:
        parser_refused = True
    assert parser_refused == bool(failing)


def test_every_rule_is_exercised_by_a_failing_case() -> None:
    covered = {(case.values[1], m) for case in CEL_CASES for m in case.values[2]}
    declared = {(path, rule["message"]) for path, rule, _ in rules()}
    assert declared == covered


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_policy_is_valid(path: pathlib.Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert schema.validate(obj) == []
    parsed = policy.parse(obj, known_checks=registry.ids())
    # Ship safe: every example starts in Audit mode; Enforce is one documented line.
    assert parsed.mode == "Audit"


def test_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == [
        "baseline-audit.yaml",
        "enforce-example.yaml",
        "restricted-team.yaml",
    ]


def test_enforce_example_documents_the_one_line_and_starts_dry() -> None:
    path = REPO / "manifests" / "examples" / "enforce-example.yaml"
    text = path.read_text()
    assert re.search(r"^  mode: Audit +#.*Enforce", text, flags=re.MULTILINE)
    parsed = policy.parse(yaml.safe_load(text), known_checks=registry.ids())
    assert parsed.workloads.enforcement.dry_run is True
    assert any(s.action == "Enforce" for s in parsed.workloads.checks.values())
