"""Kubernetes resource quantities (``100m``, ``128Mi``, ``1e3``) as exact decimals.

The model layer may not import ``kubernetes``, whose ``utils.parse_quantity`` does the
same; this follows the same grammar (apimachinery ``resource.Quantity``).

Quantities come from files and objects anyone can write, so parsing is linear and
bounded: at most :data:`MAX_LENGTH` characters, a pattern without nested repetition
(``\\d+\\.?\\d*`` backtracked quadratically on ``"111...1x"``), an exponent of at most
three digits and a result of at most :data:`MAX_MAGNITUDE`, so no ``decimal.Overflow``
(``"1e999999999"``) and no NaN or infinity (YAML's ``.nan``, ``.inf``) ever leaves here.
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
    r"(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exp>[eE][+-]?[0-9]{1,3})|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)
# Far beyond any real request or limit (an exbibyte is about 1.2e18), far below where
# Decimal arithmetic gets slow or overflows.
MAX_MAGNITUDE = decimal.Decimal("1e30")
MAX_LENGTH = 64


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
    if isinstance(value, int):
        if abs(value) > MAX_MAGNITUDE:
            raise QuantityError(f"{_show(value)} is too large for a quantity")
        return decimal.Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise QuantityError(f"{value!r} is not a quantity (not a finite number)")
        return _bounded(decimal.Decimal(str(value)), value)
    if not isinstance(value, str):
        raise QuantityError(f"{_show(value)} is not a quantity")
    text = value.strip()
    if len(text) > MAX_LENGTH:
        raise QuantityError(
            f"{_show(value)} is not a quantity (longer than {MAX_LENGTH} characters)"
        )
    match = _PATTERN.fullmatch(text)
    if not match:
        raise QuantityError(f"{_show(value)} is not a quantity (examples: 100m, 0.5, 128Mi, 1G)")
    number = decimal.Decimal(match.group("num"))
    exp = match.group("exp")
    if exp:
        # scaleb: exact, and the exponent has at most three digits (the pattern).
        return _bounded(number.scaleb(int(exp[1:])), value)
    return _bounded(number * _SUFFIXES[match.group("suffix") or ""], value)


def _bounded(number: decimal.Decimal, value: object) -> decimal.Decimal:
    if abs(number) > MAX_MAGNITUDE:
        raise QuantityError(f"{_show(value)} is too large for a quantity")
    return number


def _show(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value) if value.bit_length() < 256 else "a number with too many digits"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
