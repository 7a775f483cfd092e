"""The check registry: validation at start-up, duplicate ids, metadata of every check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kube_guardrails.checks import registry

BEST_PRACTICES = ("resources", "probes", "imageTag", "imageRegistry", "readOnlyRootFilesystem")


def _passes(ctx: registry.Context) -> Iterator[registry.Violation]:
    """Finds nothing: a stand-in check body for registration tests."""
    yield from ()


def _undocumented(ctx: registry.Context) -> Iterator[registry.Violation]:
    yield from ()


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, registry.Check]:
    """A copy of the registry for the test to register into; the real one is restored.

    The real check modules are imported first, so the copy starts with every real check
    (``validate`` sees them) and nothing a test registers leaks into other tests.
    """
    registry.ids()
    fresh = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", fresh)
    return fresh


def _meta(**overrides: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": "throwawayCheck",
        "title": "A throwaway check",
        "category": registry.Category.BEST_PRACTICE,
        "severity": registry.Severity.LOW,
        "hint": "nothing to do",
    }
    meta.update(overrides)
    return meta


def test_the_real_registry_validates() -> None:
    registry.validate()


def test_best_practice_checks_are_registered() -> None:
    assert set(BEST_PRACTICES) <= registry.ids()


@pytest.mark.parametrize("check_id", sorted(registry.ids()))
def test_duplicate_id_is_rejected_and_the_original_kept(check_id: str) -> None:
    original = registry.get(check_id)
    with pytest.raises(registry.RegistryError, match=f"duplicate check id '{check_id}'"):
        registry.check(**_meta(id=check_id))(_passes)
    assert registry.get(check_id) is original


def test_registration_records_metadata_and_docstring(
    fresh_registry: dict[str, registry.Check],
) -> None:
    fn = registry.check(**_meta(params={"limit": "how many"}))(_passes)
    assert fn is _passes  # the decorator returns the function unchanged
    chk = fresh_registry["throwawayCheck"]
    assert (chk.title, chk.hint, chk.default_action) == (
        "A throwaway check",
        "nothing to do",
        "Audit",
    )
    assert chk.doc == "Finds nothing: a stand-in check body for registration tests."
    assert chk.params == {"limit": "how many"}
    registry.validate()


@pytest.mark.parametrize(
    ("overrides", "fn", "problem"),
    [
        pytest.param({"id": "Bad-id"}, _passes, "id must be lowerCamelCase", id="bad-id"),
        pytest.param({"title": ""}, _passes, "title is empty", id="no-title"),
        pytest.param({"hint": ""}, _passes, "hint is empty", id="no-hint"),
        pytest.param({}, _undocumented, "doc is empty", id="no-docstring"),
        pytest.param({"default_action": "Block"}, _passes, "default_action", id="bad-action"),
        pytest.param(
            {"level": registry.Level.BASELINE}, _passes, "need a level", id="best-practice-level"
        ),
        pytest.param(
            {"category": registry.Category.POD_SECURITY}, _passes, "need a level", id="pss-no-level"
        ),
    ],
)
def test_validate_names_incomplete_metadata(
    fresh_registry: dict[str, registry.Check],
    overrides: dict[str, Any],
    fn: registry.CheckFn,
    problem: str,
) -> None:
    registry.check(**_meta(**overrides))(fn)
    with pytest.raises(registry.RegistryError, match=problem):
        registry.validate()


_PSS = {"category": registry.Category.POD_SECURITY, "level": registry.Level.BASELINE}


@pytest.mark.parametrize(
    ("meta", "level", "problem"),
    [
        pytest.param(_PSS, registry.Level.RESTRICTED, None, id="stricter-level-ok"),
        pytest.param(_PSS, registry.Level.BASELINE, "must be stricter", id="same-level"),
        pytest.param(_PSS, registry.Level.NONE, "must be stricter", id="lower-level"),
        pytest.param({}, registry.Level.RESTRICTED, "must be stricter", id="best-practice"),
    ],
)
def test_validate_accepts_only_overrides_stricter_than_the_check(
    fresh_registry: dict[str, registry.Check],
    meta: dict[str, Any],
    level: registry.Level,
    problem: str | None,
) -> None:
    registry.check(**_meta(**meta))(_passes)
    registry.override("throwawayCheck", level=level)(_undocumented)
    assert fresh_registry["throwawayCheck"].rule(registry.Level.RESTRICTED) is _undocumented
    if problem is None:
        registry.validate()
    else:
        with pytest.raises(registry.RegistryError, match=problem):
            registry.validate()


def test_an_override_needs_a_registered_check_and_only_one_per_level(
    fresh_registry: dict[str, registry.Check],
) -> None:
    with pytest.raises(registry.RegistryError, match="override of unknown check"):
        registry.override("noSuchCheck", level=registry.Level.RESTRICTED)(_passes)
    registry.check(**_meta(**_PSS))(_passes)
    registry.override("throwawayCheck", level=registry.Level.RESTRICTED)(_passes)
    with pytest.raises(registry.RegistryError, match="duplicate override"):
        registry.override("throwawayCheck", level=registry.Level.RESTRICTED)(_undocumented)


def test_order_is_pod_security_first_then_best_practices() -> None:
    categories = [c.category for c in registry.all_checks()]
    assert categories == sorted(categories, key=lambda c: c is registry.Category.BEST_PRACTICE)


@pytest.mark.parametrize(
    ("check_id", "severity", "params"),
    [
        ("resources", registry.Severity.MEDIUM, set()),
        ("probes", registry.Severity.LOW, set()),
        ("imageTag", registry.Severity.MEDIUM, set()),
        ("imageRegistry", registry.Severity.HIGH, {"allowed"}),
        ("readOnlyRootFilesystem", registry.Severity.MEDIUM, set()),
    ],
)
def test_best_practice_metadata(
    check_id: str, severity: registry.Severity, params: set[str]
) -> None:
    chk = registry.get(check_id)
    assert chk.category is registry.Category.BEST_PRACTICE
    assert chk.level is None
    assert chk.default_action == "Audit"
    assert chk.severity is severity
    assert set(chk.params) == params
    assert all(text.strip() for text in chk.params.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("low", registry.Severity.LOW),
        ("Medium", registry.Severity.MEDIUM),
        ("HIGH", registry.Severity.HIGH),
        ("critical", registry.Severity.CRITICAL),
    ],
)
def test_severity_parse(text: str, expected: registry.Severity) -> None:
    assert registry.Severity.parse(text) is expected


def test_severity_parse_names_the_choices() -> None:
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        registry.Severity.parse("urgent")


def test_severities_are_ordered_for_fail_on() -> None:
    assert sorted(registry.Severity, reverse=True)[0] is registry.Severity.CRITICAL
    assert registry.Severity.LOW < registry.Severity.MEDIUM < registry.Severity.HIGH


@pytest.mark.parametrize(
    ("spec_path", "parts", "expected"),
    [
        ("spec", ("containers", 0, "image"), "spec.containers[0].image"),
        ("spec.template.spec", ("volumes", 2), "spec.template.spec.volumes[2]"),
        ("spec", (), "spec"),
    ],
)
def test_context_path(spec_path: str, parts: tuple[str | int, ...], expected: str) -> None:
    ctx = registry.Context(metadata={}, spec={}, spec_path=spec_path)
    assert ctx.path(*parts) == expected


def test_context_lists_every_container_kind_and_ignores_junk() -> None:
    ctx = registry.Context(
        metadata={},
        spec={
            "containers": [{"name": "app"}, "not-a-container"],
            "initContainers": [{"name": "init"}],
            "ephemeralContainers": [{"name": "debug"}],
        },
    )
    assert [(kind, i, c["name"]) for kind, i, c in ctx.containers()] == [
        ("initContainers", 0, "init"),
        ("containers", 0, "app"),
        ("ephemeralContainers", 0, "debug"),
    ]
