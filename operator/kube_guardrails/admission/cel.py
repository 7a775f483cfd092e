"""Small CEL writers: literals, label selectors and namespace globs as CEL.

Everything here returns CEL source text. Values from a policy (label keys, registry
prefixes, globs) only ever enter an expression through :func:`string` or :func:`strings`,
so no policy content can change an expression's structure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kube_guardrails.model import selectors


def string(value: str) -> str:
    """A CEL string literal for ``value`` (double-quoted, every special character escaped)."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def strings(values: Iterable[str]) -> str:
    """A CEL list literal of strings, in the given order."""
    return "[" + ", ".join(string(v) for v in values) + "]"


def any_of(terms: Iterable[str], *, empty: str = "false") -> str:
    items = [f"({t})" for t in terms]
    return " || ".join(items) if items else empty


def all_of(terms: Iterable[str], *, empty: str = "true") -> str:
    items = [f"({t})" for t in terms]
    return " && ".join(items) if items else empty


def glob_regex(pattern: str) -> str:
    """An RE2 regular expression matching exactly what ``fnmatch.fnmatchcase`` matches.

    ``*`` is any run of characters, ``?`` one character, ``[abc]``/``[!abc]``/``[a-z]``
    a character class; everything else is literal. An unterminated ``[`` is a literal
    ``[``, as in fnmatch.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("(?s:.*)")
        elif ch == "?":
            out.append("(?s:.)")
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
                continue
            body = pattern[i:j]
            i = j + 1
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body:
                # fnmatch: "[!]" matches any character, "[]" never reached (']' first is
                # literal and consumed above).
                out.append("(?s:.)" if negate else "[^\\s\\S]")
                continue
            cls = "".join(_class_char(c) for c in body)
            out.append(f"[{'^' if negate else ''}{cls}]")
        else:
            out.append(_literal(ch))
    return "^" + "".join(out) + "$"


def _literal(ch: str) -> str:
    if ch.isalnum() or ch in "_":
        return ch
    if ord(ch) < 0x80:
        return "\\" + ch
    return ch


def _class_char(ch: str) -> str:
    # Inside a class only these are special in RE2; '-' keeps its range meaning as in fnmatch.
    return "\\" + ch if ch in "\\^[]" else ch


def glob_match(subject: str, patterns: Iterable[str]) -> str:
    """CEL: does ``subject`` (a CEL string expression) match any of the globs?"""
    regexes = [glob_regex(p) for p in patterns]
    if not regexes:
        return "false"
    if len(regexes) == 1:
        return f"{subject}.matches({string(regexes[0])})"
    joined = "|".join(f"(?:{r})" for r in regexes)
    return f"{subject}.matches({string(joined)})"


def selector(labels: str, sel: selectors.LabelSelector) -> str:
    """CEL: does the label map ``labels`` (a CEL map expression) match the selector?"""
    terms: list[str] = []
    for req in sel.requirements:
        key = string(req.key)
        values = strings(sorted(req.values))
        if req.operator == "In":
            terms.append(f"{key} in {labels} && {labels}[{key}] in {values}")
        elif req.operator == "NotIn":
            terms.append(f"!({key} in {labels}) || !({labels}[{key}] in {values})")
        elif req.operator == "Exists":
            terms.append(f"{key} in {labels}")
        else:
            terms.append(f"!({key} in {labels})")
    return all_of(terms)


def label_selector(sel: selectors.LabelSelector) -> dict[str, Any]:
    """The selector as a ``metav1.LabelSelector`` dict (for a binding's namespaceSelector)."""
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, object]] = []
    for req in sel.requirements:
        if req.operator == "In" and len(req.values) == 1 and req.key not in match_labels:
            match_labels[req.key] = next(iter(req.values))
            continue
        expr: dict[str, object] = {"key": req.key, "operator": req.operator}
        if req.operator in ("In", "NotIn"):
            expr["values"] = sorted(req.values)
        expressions.append(expr)
    out: dict[str, Any] = {}
    if match_labels:
        out["matchLabels"] = dict(sorted(match_labels.items()))
    if expressions:
        out["matchExpressions"] = expressions
    return out
