"""Label selectors and namespace globs, as the API server evaluates them.

A ``LabelSelector`` (``matchLabels`` + ``matchExpressions``) matches when every
requirement holds; an empty selector matches everything (apimachinery
``metav1.LabelSelectorAsSelector``). A null selector is represented by ``None`` at the
call sites that need the distinction.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

# apimachinery's validation (IsQualifiedName, IsValidLabelValue): what the API server
# accepts in labels, so nothing longer or stranger can ever match. Checked here too
# because selectors come from users (policies, the audit's --policy files) and a
# selector is evaluated against every workload: bounded input, linear patterns.
MAX_KEY = 317  # a 253-character DNS prefix, "/", a 63-character name
MAX_VALUE = 63
MAX_REQUIREMENTS = 100
MAX_VALUES = 100
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")


class SelectorError(ValueError):
    """A malformed label selector; ``field`` is relative to the selector."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_selector(raw: object) -> LabelSelector:
    """Parse a metav1.LabelSelector dict; raise SelectorError naming the bad field."""
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        raise SelectorError("", "must be an object with matchLabels and/or matchExpressions")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise SelectorError(sorted(unknown)[0], "unknown field")
    reqs: list[Requirement] = []
    match_labels = raw.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise SelectorError("matchLabels", "must be a map of label keys to values")
    exprs = raw.get("matchExpressions") or []
    if len(match_labels) + (len(exprs) if isinstance(exprs, list) else 0) > MAX_REQUIREMENTS:
        raise SelectorError("", f"more than {MAX_REQUIREMENTS} requirements")
    for key, value in match_labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SelectorError(f"matchLabels.{_short(key)}", "keys and values must be strings")
        _check_key(key, f"matchLabels.{_short(key)}")
        _check_value(value, f"matchLabels.{_short(key)}")
        reqs.append(Requirement(key=key, operator="In", values=frozenset([value])))
    if not isinstance(exprs, list):
        raise SelectorError("matchExpressions", "must be a list")
    for i, expr in enumerate(exprs):
        where = f"matchExpressions[{i}]"
        if not isinstance(expr, Mapping):
            raise SelectorError(where, "must be an object with key, operator, values")
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not isinstance(key, str) or not key:
            raise SelectorError(f"{where}.key", "is required")
        _check_key(key, f"{where}.key")
        if op not in OPERATORS:
            raise SelectorError(f"{where}.operator", f"must be one of {', '.join(OPERATORS)}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SelectorError(f"{where}.values", "must be a list of strings")
        if len(values) > MAX_VALUES:
            raise SelectorError(f"{where}.values", f"more than {MAX_VALUES} values")
        for j, v in enumerate(values):
            _check_value(v, f"{where}.values[{j}]")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"{where}.values", f"must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"{where}.values", f"must be empty for operator {op}")
        reqs.append(Requirement(key=key, operator=op, values=frozenset(values)))
    return LabelSelector(requirements=tuple(reqs))


def _check_key(key: str, field: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if (
        len(key) > MAX_KEY
        or not _NAME.fullmatch(name)
        or (slash and (len(prefix) > 253 or not _PREFIX.fullmatch(prefix)))
    ):
        raise SelectorError(
            field,
            f"{_short(key)} is not a valid label key (an optional DNS prefix and '/', then "
            "at most 63 characters: letters, digits, '-', '_', '.')",
        )


def _check_value(value: str, field: str) -> None:
    if value and (len(value) > MAX_VALUE or not _NAME.fullmatch(value)):
        raise SelectorError(
            field,
            f"{_short(value)} is not a valid label value (at most 63 characters: letters, "
            "digits, '-', '_', '.', starting and ending with a letter or digit)",
        )


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def glob_match(name: str, patterns: Iterable[str]) -> bool:
    """True if the name matches any shell-style glob (``team-*``, ``kube-?``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
