"""The GuardrailPolicy CRD's OpenAPI schema, checked offline as the API server checks it.

The offline audit (``--policy FILE``) must refuse what ``kubectl apply`` would refuse, with
an error naming the field. The schema comes from the CRD shipped in the package
(``data/guardrailpolicy-crd.yaml``, a byte-identical copy of ``crds/``), so the two can
never disagree. Kubernetes' OpenAPI dialect is translated into plain JSON Schema:

- ``x-kubernetes-int-or-string`` becomes "an integer or a string";
- ``nullable`` adds ``null`` to the type;
- an object with ``properties`` refuses unknown fields (what ``kubectl apply`` does with
  the server's strict field validation), unless it has ``additionalProperties`` or
  ``x-kubernetes-preserve-unknown-fields``;
- ``x-kubernetes-list-type: set`` means unique items;
- ``format: date-time`` is checked as RFC 3339, as the API server does.

CEL rules (``x-kubernetes-validations``) are not evaluated here: everything they check is
also checked by :func:`kube_guardrails.model.policy.parse`, which the audit runs next.
YAML timestamps (``expires: 2027-01-31T00:00:00Z`` unquoted), which PyYAML loads as
datetimes, are turned back into strings first: kubectl sends them as written.
"""

from __future__ import annotations

import copy
import datetime
import functools
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jsonschema
import yaml

CRD_RESOURCE = "data/guardrailpolicy-crd.yaml"
VERSION = "v1alpha1"

# RFC 3339 date-time, as apimachinery's strfmt accepts it (a 'T' or space separator, an
# optional fraction, a Z or numeric offset).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class SchemaError(NamedTuple):
    """One schema violation; iterates as ``(field, message)`` for callers that unpack."""

    field: str  # e.g. spec.workloads.exemptions[0].expires; "" for the object itself
    message: str

    def __str__(self) -> str:
        return f"{self.field or '(root)'}: {self.message}"


@functools.cache
def crd() -> Mapping[str, Any]:
    """The packaged CustomResourceDefinition, parsed once (a fresh copy is not needed:
    callers only read it)."""
    text = importlib.resources.files("kube_guardrails").joinpath(CRD_RESOURCE).read_text("utf-8")
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, Mapping):
        raise RuntimeError(f"{CRD_RESOURCE} is not a CustomResourceDefinition")
    return loaded


def openapi_schema(version: str = VERSION) -> Mapping[str, Any]:
    """The ``openAPIV3Schema`` of one version of the CRD, as written there."""
    for item in crd()["spec"]["versions"]:
        if item["name"] == version:
            schema: Mapping[str, Any] = item["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"the GuardrailPolicy CRD has no version {version!r}")


def validate(obj: Mapping[str, Any]) -> list[SchemaError]:
    """Every way ``obj`` breaks the CRD schema, ordered by field path; empty when valid."""
    errors = [_convert(e) for e in _validator().iter_errors(_to_json(obj))]
    unique = sorted(set(errors), key=lambda e: (_sort_key(e.field), e.message))
    return unique


validate_policy = validate  # the name issue #2 uses; ``validate`` is what the audit looks up


def apply_defaults(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with the CRD's defaults filled in, as the API server stores it.

    Defaults apply recursively: a defaulted ``{}`` gets its own fields' defaults, which is
    why every nested object in the CRD defaults to ``{}``.
    """
    out = copy.deepcopy(_to_json(obj))
    if not isinstance(out, dict):
        raise TypeError("a GuardrailPolicy must be a mapping")
    _default(out, openapi_schema())
    return out


# --------------------------------------------------------------------------- internals


@functools.cache
def _validator() -> Any:
    schema = _to_json_schema(openapi_schema(), root=True)
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    original = cls.VALIDATORS["pattern"]

    def bounded_pattern(validator: Any, pattern: Any, instance: Any, node: Any) -> Any:
        # jsonschema runs every keyword: a string far over maxLength would still go
        # through the pattern, and some patterns (label keys) backtrack quadratically on
        # megabytes. Over the limit, the maxLength error alone says what is wrong.
        limit = node.get("maxLength")
        if isinstance(instance, str) and isinstance(limit, int) and len(instance) > limit:
            return ()
        return original(validator, pattern, instance, node)

    bounded = jsonschema.validators.extend(cls, {"pattern": bounded_pattern})
    return bounded(schema, format_checker=checker)


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports non-strings
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:  # e.g. month 13
        return False
    return True


def _to_json_schema(node: Mapping[str, Any], *, root: bool = False) -> dict[str, Any]:
    """Translate one OpenAPI (Kubernetes dialect) schema node into JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
            if root and "metadata" in out[key]:
                # The CRD restricts only metadata.name; the rest of ObjectMeta is the API
                # server's business and never refused here as unknown.
                out[key]["metadata"]["additionalProperties"] = True
        elif key == "items" or (key == "additionalProperties" and isinstance(value, Mapping)):
            out[key] = _to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(sub) for sub in value]
        elif key == "not":
            out[key] = _to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "description", "default"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _to_json(value: Any) -> Any:
    """YAML values as their JSON form (what kubectl sends): timestamps become strings."""
    if isinstance(value, datetime.datetime):
        # kubectl sends the timestamp as written; one without a zone stays without one (and
        # is refused as not RFC 3339), as it would be by the API server.
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _default(value: Any, node: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(value[name], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name, item in value.items():
                if name not in (node.get("properties") or {}):
                    _default(item, extra)
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for item in value:
            _default(item, node["items"])


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _sort_key(field: str) -> list[Any]:
    # Numeric order for list indices, so exemptions[10] sorts after exemptions[2].
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", field) if p]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_WORDS = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _not_a_time(instance: Any) -> str:
    # One message for the format and the year-range pattern, so a bad time is one error.
    return (
        f"{_describe(instance)} is not an RFC 3339 time in the years 1970 to 9998 "
        "(e.g. 2027-01-31T00:00:00Z)"
    )


def _convert(error: Any) -> SchemaError:
    """A jsonschema error as (field path, message in the words the API server would use)."""
    parts: list[str | int] = list(error.absolute_path)
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "required":
        missing = [m for m in expected if isinstance(instance, Mapping) and m not in instance]
        name = missing[0] if missing else str(expected)
        return SchemaError(_path([*parts, name]), "is required")
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        name = extra[0] if extra else ""
        return SchemaError(_path([*parts, name]), f"unknown field (allowed: {', '.join(allowed)})")
    field = _path(parts)
    if isinstance(instance, bool) and error.schema.get("type") == "string":
        # YAML 1.1, which kubectl speaks, reads unquoted Off/On/Yes/No as booleans; the
        # type and enum errors get the same words so that only one is reported.
        message = (
            f"must be a string, not {_describe(instance)}: unquoted Off, On, Yes and No are "
            'booleans in YAML, so quote the value (action: "Off")'
        )
    elif validator == "type":
        types = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        message = f"must be {words}, not {_describe(instance)}"
    elif validator == "enum":
        message = f"must be one of {', '.join(map(str, expected))}, not {_describe(instance)}"
    elif validator == "minimum":
        message = f"must be at least {expected}, not {instance}"
    elif validator == "maximum":
        message = f"must be at most {expected}, not {instance}"
    elif validator == "minLength":
        message = "must not be empty" if expected == 1 else f"must be at least {expected} long"
    elif validator == "maxLength":
        message = f"must be at most {expected} characters long"
    elif validator == "maxItems":
        message = f"must have at most {expected} items"
    elif validator == "maxProperties":
        message = f"must have at most {expected} entries"
    elif validator == "uniqueItems":
        message = "must not repeat an item"
    elif validator == "pattern":
        message = f"{_describe(instance)} does not match {expected}"
        if "KMGTPE" in str(expected):
            message = f"{_describe(instance)} is not a quantity (examples: 100m, 0.5, 128Mi, 1G)"
        elif expected == r"\S":
            message = "must not be blank"
        elif str(expected).startswith("^(19[7-9]"):
            message = _not_a_time(instance)
    elif validator == "format" and expected == "date-time":
        message = _not_a_time(instance)
    else:
        message = str(error.message)
    return SchemaError(field, message)
