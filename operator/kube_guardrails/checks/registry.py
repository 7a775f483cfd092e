"""The check registry: every check is a small function with metadata.

A check is registered with :func:`check` and receives a :class:`Context` (the pod's
metadata and spec and the check's parameters from the policy). It yields
:class:`Violation` objects; an empty result means the check passed. It may raise
:class:`Skip` when it does not apply (e.g. ``imageRegistry`` without an allow-list). The
engine turns any other exception into an ``error`` outcome for that check only.

A check never sees the Pod Security level. A rule that is stricter at a higher level is
registered as an :func:`override` of the check at that level, the way
pod-security-admission's restricted checks override their baseline counterparts; a
compiled policy binds each check to the rule of its level once
(``planning.compile_policy``). So a function always judges a pod the same way, and the
engine may reuse its violations across the policies of one review without the check's
author declaring anything.

The registry is validated once (:func:`validate`): ids are unique, metadata complete.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

_T = TypeVar("_T")


class Severity(enum.IntEnum):
    """Ordered so that ``--fail-on`` can compare; the names are the public spelling."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls[value.upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of {names})") from None


class Category(enum.StrEnum):
    POD_SECURITY = "pod-security"
    BEST_PRACTICE = "best-practice"


class Level(enum.StrEnum):
    """Pod Security Standards levels; ``none`` turns the Pod Security checks off."""

    NONE = "none"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


class Skip(Exception):
    """Raised by a check that does not apply to this pod or configuration."""


@dataclasses.dataclass(frozen=True)
class Violation:
    """One thing wrong, as a check reports it."""

    message: str
    path: str  # field path from the pod root, e.g. spec.containers[0].securityContext.privileged
    container: str | None = None


@dataclasses.dataclass(frozen=True)
class Context:
    """What a check sees.

    ``metadata`` and ``spec`` are the Pod's (for workloads: the pod template's), as plain
    dicts. ``path_prefix`` is where ``spec`` lives in the original object (``spec`` for a
    Pod, ``spec.template.spec`` for a Deployment); checks build paths with :meth:`path`.
    """

    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    spec_path: str = "spec"
    metadata_path: str = "metadata"
    # Facts derived from this pod that several checks need (the container walk, ...).
    # The engine passes one dict to every Context of one pod in one review, so each fact
    # is computed once per pod rather than once per check and per policy. Only for
    # values that depend on the pod alone, never on params: see :meth:`derive`.
    derived: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def path(self, *parts: str | int) -> str:
        """Build a field path under the pod spec: ``ctx.path('containers', 0, 'image')``."""
        out = self.spec_path
        for p in parts:
            out += f"[{p}]" if type(p) is int else f".{p}"
        return out

    def derive(self, key: str, build: Callable[[Mapping[str, Any]], _T]) -> _T:
        """``build(spec)``, computed once per pod and shared by every check that asks.

        ``key`` names the fact (prefix it with the module); ``build`` must depend on the
        spec only, since the result is reused across rules, params and policies.
        """
        try:
            value: _T = self.derived[key]
        except KeyError:
            value = self.derived[key] = build(self.spec)
        return value

    def meta_path(self, *parts: str) -> str:
        return ".".join((self.metadata_path, *parts))

    def containers(self) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
        """Every container with its list name: (``containers``|``initContainers``|
        ``ephemeralContainers``, index, container)."""
        return iter(self.container_tuple())

    def container_tuple(self) -> tuple[tuple[str, int, Mapping[str, Any]], ...]:
        """:meth:`containers` as a tuple, walked once per pod (see ``derived``)."""
        return self.derive("registry.containers", walk_containers)


_CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")


def walk_containers(spec: Mapping[str, Any]) -> tuple[tuple[str, int, Mapping[str, Any]], ...]:
    """The walk behind :meth:`Context.containers`, for ``Context.derive`` builders."""
    out: list[tuple[str, int, Mapping[str, Any]]] = []
    for kind in _CONTAINER_KINDS:
        items = spec.get(kind) or []
        if isinstance(items, list):
            for i, c in enumerate(items):
                # ``type(...) is dict`` first: the ABC isinstance check is slow, and
                # decoded YAML/JSON is made of plain dicts.
                if type(c) is dict or isinstance(c, Mapping):
                    out.append((kind, i, c))
    return tuple(out)


def make_context(
    *,
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    params: Mapping[str, Any],
    spec_path: str,
    metadata_path: str,
    derived: dict[str, Any],
) -> Context:
    """``Context(...)`` with every field given, without the frozen dataclass's ``__init__``.

    The engine builds contexts for every pod it evaluates, and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field) was a visible part of that cost.
    The result is indistinguishable from one built by ``Context(...)`` (a unit test
    keeps the parameters in step with the dataclass's fields).
    """
    ctx: Context = object.__new__(Context)
    ctx.__dict__.update(
        metadata=metadata,
        spec=spec,
        params=params,
        spec_path=spec_path,
        metadata_path=metadata_path,
        derived=derived,
    )
    return ctx


CheckFn = Callable[[Context], Iterable[Violation]]


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    title: str
    category: Category
    severity: Severity
    hint: str
    # The rule at the check's own level (and below it, when a policy names the check).
    fn: CheckFn
    # Pod Security level that introduces the check (None for best practices).
    level: Level | None = None
    # Default action when the check is active and the policy says nothing about it.
    default_action: str = "Audit"
    # Human description of the parameters a policy may set under checks.<id>.
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    doc: str = ""
    # Stricter rules replacing ``fn`` from a level up (see :func:`override`).
    overrides: Mapping[Level, CheckFn] = dataclasses.field(default_factory=dict)

    def rule(self, level: Level) -> CheckFn:
        """The function that judges a pod for a policy at ``level``.

        The override registered for the highest level not above ``level``, else ``fn``.
        Called when a policy is compiled, not per pod.
        """
        chosen = self.fn
        for candidate in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]:
            chosen = self.overrides.get(candidate, chosen)
        return chosen


# Levels from the least to the most strict.
LEVEL_ORDER: tuple[Level, ...] = (Level.NONE, Level.BASELINE, Level.RESTRICTED)


_REGISTRY: dict[str, Check] = {}
_LOADED = False
_ID = re.compile(r"^[a-z][A-Za-z0-9]+$")


def check(
    *,
    id: str,
    title: str,
    category: Category,
    severity: Severity,
    hint: str,
    level: Level | None = None,
    default_action: str = "Audit",
    params: Mapping[str, str] | None = None,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function; its docstring becomes the check's documentation."""

    def decorator(fn: CheckFn) -> CheckFn:
        if id in _REGISTRY:
            raise RegistryError(f"duplicate check id {id!r}")
        _REGISTRY[id] = Check(
            id=id,
            title=title,
            category=category,
            severity=severity,
            hint=hint,
            fn=fn,
            level=level,
            default_action=default_action,
            params=dict(params or {}),
            doc=(fn.__doc__ or "").strip(),
        )
        return fn

    return decorator


def override(check_id: str, *, level: Level) -> Callable[[CheckFn], CheckFn]:
    """Register the rule that replaces a check's rule for policies at ``level`` and above.

    As upstream's ``capabilities_restricted`` overrides ``capabilities_baseline``: the
    check keeps one id, one action and one documentation (its own function's docstring),
    and the compiled policy runs whichever rule its level calls for.
    """

    def decorator(fn: CheckFn) -> CheckFn:
        chk = _REGISTRY.get(check_id)
        if chk is None:
            raise RegistryError(f"override of unknown check {check_id!r}")
        if level in chk.overrides:
            raise RegistryError(f"duplicate override of {check_id!r} at {level.value}")
        _REGISTRY[check_id] = dataclasses.replace(chk, overrides={**chk.overrides, level: fn})
        return fn

    return decorator


class RegistryError(Exception):
    """The registry is inconsistent: a programming error, found at start-up."""


def all_checks() -> list[Check]:
    """Every registered check, in a stable order (category, then registration order)."""
    _load()
    order = {Category.POD_SECURITY: 0, Category.BEST_PRACTICE: 1}
    return sorted(_REGISTRY.values(), key=lambda c: order[c.category])


def get(check_id: str) -> Check:
    _load()
    return _REGISTRY[check_id]


def ids() -> frozenset[str]:
    """Every registered check id (asked when a policy is parsed, never per review)."""
    _load()
    return frozenset(_REGISTRY)


def validate() -> None:
    """Fail loudly if any check lacks metadata; called at start-up and by the tests."""
    problems: list[str] = []
    for c in all_checks():
        if not _ID.match(c.id):
            problems.append(f"{c.id}: id must be lowerCamelCase")
        for field in ("title", "hint", "doc"):
            if not getattr(c, field):
                problems.append(f"{c.id}: {field} is empty")
        if c.default_action not in ("Off", "Audit", "Enforce"):
            problems.append(f"{c.id}: default_action {c.default_action!r} is not Off/Audit/Enforce")
        if (c.category is Category.POD_SECURITY) != (c.level is not None):
            problems.append(f"{c.id}: Pod Security checks need a level, others none")
        for over in c.overrides:
            if c.level is None or LEVEL_ORDER.index(over) <= LEVEL_ORDER.index(c.level):
                problems.append(
                    f"{c.id}: an override at {over.value} must be stricter than the check's "
                    "own level"
                )
    if problems:
        raise RegistryError("check registry is invalid:\n  " + "\n  ".join(problems))


def _load() -> None:
    # Importing the check modules registers their checks; done lazily so that the
    # registry module itself has no import cycle with them. The flag skips the import
    # machinery on the paths that ask often (every policy parse asks for ids()).
    global _LOADED
    if _LOADED:
        return
    from kube_guardrails.checks import practices, pss  # noqa: F401

    _LOADED = True
