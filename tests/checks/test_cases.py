"""The fixture table: every ``cases/<checkId>/<outcome>-<what>.yaml`` through the engine.

Each folder is named after a registered check and holds minimal manifests (a valid Pod,
or a workload with a pod template, plus one tweak). The file name's prefix is the
outcome that check must produce: ``pass-``, ``fail-`` or ``skip-``. Only that one check
runs, so a fixture tests exactly one rule.

Optional leading comment lines configure a case:

- ``# level: baseline|restricted`` - the Pod Security level in force (default: the
  check's own level; ``baseline`` for best-practice checks);
- ``# params: {"allowed": ["registry.example.com/"]}`` - the check's policy parameters,
  a JSON mapping;
- ``# paths: ["spec.containers[0].image"]`` - for ``fail-`` cases, the exact set of field
  paths the findings must name.

Any other comment line is free text describing the case.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from kube_guardrails.checks import engine, registry

CASES = pathlib.Path(__file__).parent / "cases"
OUTCOMES = {
    "pass": engine.Outcome.PASS,
    "fail": engine.Outcome.FAIL,
    "skip": engine.Outcome.SKIP,
}
HEADER_KEYS = ("level", "params", "paths")


@dataclasses.dataclass(frozen=True)
class Case:
    check_id: str
    path: pathlib.Path

    @property
    def id(self) -> str:
        return f"{self.check_id}/{self.path.stem}"

    @property
    def prefix(self) -> str:
        return self.path.stem.split("-", 1)[0]


@dataclasses.dataclass(frozen=True)
class Header:
    level: registry.Level | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paths: tuple[str, ...] | None = None


def discover() -> list[Case]:
    """Every fixture file, in a stable order (folder, then file name)."""
    if not CASES.is_dir():
        return []
    return [
        Case(check_id=folder.name, path=f)
        for folder in sorted(p for p in CASES.iterdir() if p.is_dir())
        for f in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    ]


def parse_header(text: str, *, source: pathlib.Path) -> Header:
    """Read the recognised ``# key: value`` lines before the first YAML line."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        key, sep, value = stripped.lstrip("#").strip().partition(":")
        if sep and key.strip() in HEADER_KEYS:
            values[key.strip()] = value.strip()
    level = registry.Level(values["level"]) if "level" in values else None
    params: Mapping[str, Any] = {}
    if "params" in values:
        params = json.loads(values["params"])
        if not isinstance(params, dict):
            raise ValueError(f"{source}: '# params:' must be a JSON mapping")
    paths: tuple[str, ...] | None = None
    if "paths" in values:
        raw = json.loads(values["paths"])
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise ValueError(f"{source}: '# paths:' must be a JSON list of strings")
        paths = tuple(raw)
    return Header(level=level, params=params, paths=paths)


ALL_CASES = discover()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ALL_CASES])
def test_case(case: Case) -> None:
    if case.check_id not in registry.ids():
        pytest.fail(f"folder cases/{case.check_id} names no registered check")
    if case.prefix not in OUTCOMES:
        pytest.fail(f"{case.id}: file name must start with pass-, fail- or skip-")
    chk = registry.get(case.check_id)
    text = case.path.read_text(encoding="utf-8")
    header = parse_header(text, source=case.path)
    obj = yaml.safe_load(text)
    assert isinstance(obj, Mapping), f"{case.id}: the fixture must be one YAML mapping"
    pod = engine.pod_input(obj)
    assert pod is not None, f"{case.id}: kind {obj.get('kind')!r} has no pod spec"
    level = header.level or chk.level or registry.Level.BASELINE

    results = engine.run(pod, [engine.Selected(check=chk, params=header.params)], level=level)

    assert [r.check for r in results] == [chk.id]
    result = results[0]
    found = "\n".join(f"  {f.path}: {f.message}" for f in result.findings) or "  (none)"
    expected = OUTCOMES[case.prefix]
    assert result.outcome is expected, (
        f"{case.id}: expected {expected.value}, got {result.outcome.value}; findings:\n{found}"
    )
    if expected is not engine.Outcome.FAIL:
        assert not result.findings
        return
    assert result.findings, f"{case.id}: a failing check must say what is wrong"
    for f in result.findings:
        assert f.message.strip(), f"{case.id}: finding without a message at {f.path}"
        # Paths are built from the pod's own prefix, so they point into the real object
        # (spec.template.spec... for a Deployment), never into a detached pod spec.
        assert f.path.startswith((pod.spec_path, pod.metadata_path)), (
            f"{case.id}: path {f.path!r} is not under {pod.spec_path!r}/{pod.metadata_path!r}"
        )
    if header.paths is not None:
        assert sorted(f.path for f in result.findings) == sorted(header.paths), found


@pytest.mark.parametrize("check_id", sorted(registry.ids()))
def test_every_check_has_pass_and_fail_fixtures(check_id: str) -> None:
    prefixes = {c.prefix for c in ALL_CASES if c.check_id == check_id}
    missing = [p for p in ("pass", "fail") if p not in prefixes]
    assert not missing, (
        f"check {check_id!r} needs at least one {' and one '.join(missing)} fixture in "
        f"tests/checks/cases/{check_id}/"
    )


def test_every_folder_names_a_registered_check() -> None:
    folders = sorted({c.check_id for c in ALL_CASES})
    unknown = [f for f in folders if f not in registry.ids()]
    assert not unknown, f"fixture folders naming no registered check: {unknown}"
    assert folders, "no fixtures found under tests/checks/cases/"


def test_fixture_file_names_state_an_outcome() -> None:
    bad = [c.id for c in ALL_CASES if c.prefix not in OUTCOMES]
    assert not bad, f"fixture names must start with pass-, fail- or skip-: {bad}"
