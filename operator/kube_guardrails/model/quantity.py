"""Kubernetes resource quantities (``100m``, ``128Mi``, ``1e3``) as exact decimals.

The model layer may not import ``kubernetes``, whose ``utils.parse_quantity`` does the
same; this follows the same grammar (apimachinery ``resource.Quantity``).
"""

from __future__ import annotations

import decimal
import re

_SUFFIXES: dict[str, decimal.Decimal] = {
    "": decimal.Decimal(1),
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    "Ki": decimal.Decimal(1024),
    "Mi": decimal.Decimal(1024**2),
    "Gi": decimal.Decimal(1024**3),
    "Ti": decimal.Decimal(1024**4),
    "Pi": decimal.Decimal(1024**5),
    "Ei": decimal.Decimal(1024**6),
}

_PATTERN = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


# Parsed strings: the same few quantities ("100m", "128Mi") recur in every pod spec, and
# the resources check parses each container's; Decimals are immutable, so sharing is safe.
_PARSED: dict[str, decimal.Decimal] = {}
_PARSED_MAX = 4096


def parse_quantity(value: object) -> decimal.Decimal:
    """Return the quantity as a Decimal in base units; raise QuantityError if malformed."""
    if type(value) is str:
        cached = _PARSED.get(value)
        if cached is None:
            cached = _parse(value)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[value] = cached
        return cached
    return _parse(value)


def _parse(value: object) -> decimal.Decimal:
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return decimal.Decimal(str(value))
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity")
    match = _PATTERN.match(value.strip())
    if not match:
        raise QuantityError(f"{value!r} is not a quantity (examples: 100m, 0.5, 128Mi, 1G)")
    number = decimal.Decimal(match.group("num"))
    if match.group("exp"):
        return number * (decimal.Decimal(10) ** int(match.group("exp")[1:]))
    return number * _SUFFIXES[match.group("suffix") or ""]
