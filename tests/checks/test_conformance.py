"""Conformance with widely used policy suites: Kyverno's and Gatekeeper's Pod Security tests.

The resources under ``conformance/`` are the test resources of Kyverno's pod-security
policies and of gatekeeper-library's pod-security-policy samples (provenance: NOTICE),
each annotated with the suite's verdict on the control its policy tests and with every
Pod Security check that fails at the level of the directory (``baseline/`` or
``restricted/``) as the Pod Security Standards define them (README.md there).

Each resource goes through the audit's own pipeline (``core.audit_object`` with the
built-in policy at the level, as ``kube-guardrails audit --level`` runs it): pod
controllers are judged through their pod template exactly as the audit and the operator
do. The test asserts the exact set of failing Pod Security checks, and that our verdict on
the suite's control is the suite's, unless the fixture documents why the suite deviates
from the Pod Security Standards (a deviation note on a case where we agree would be
stale, and fails too).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from kube_guardrails import cli
from kube_guardrails.audit import command, core, defaults
from kube_guardrails.checks import engine, registry

ROOT = pathlib.Path(__file__).parent / "conformance"
LEVELS = ("baseline", "restricted")
SUITES = ("kyverno", "gatekeeper")
PREFIX = "conformance.kube-guardrails.io/"
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
PSS_IDS = frozenset(
    c.id for c in registry.all_checks() if c.category is registry.Category.POD_SECURITY
)


@dataclasses.dataclass(frozen=True)
class Case:
    suite: str
    level: str
    file: pathlib.Path
    document: int  # 1-based, as the audit reports it
    obj: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.level}/{self.file.stem}/{self.kind}/{self.name}"

    def note(self, key: str) -> str | None:
        value = self.obj["metadata"].get("annotations", {}).get(PREFIX + key)
        return None if value is None else str(value)

    @property
    def control(self) -> str:
        return self.note("control") or ""

    @property
    def fails(self) -> frozenset[str]:
        return frozenset(x for x in (self.note("fails") or "").split(",") if x)


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(ROOT.glob("*/*/*.yaml")):
        suite, level = path.parent.parent.name, path.parent.name
        docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        cases.extend(Case(suite, level, path, i, doc) for i, doc in enumerate(docs, start=1))
    return cases


CASES = load_cases()


def pss_failures(findings: list[engine.Finding]) -> frozenset[str]:
    return frozenset(f.check for f in findings if f.check in PSS_IDS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_agrees_with_the_suite_or_with_pss_where_the_suite_deviates(case: Case) -> None:
    policy = core.with_level(defaults.policy(), case.level)
    report = core.audit_object(case.obj, policies=[policy], now=NOW)
    assert report is not None and report.status is core.Status.CHECKED, case.id
    findings = [a.finding for a in report.findings]
    assert not [f for f in findings if f.outcome is engine.Outcome.ERROR], findings

    failed = pss_failures(findings)
    listing = "\n".join(
        f"  {f.check} {f.path}: {f.message}" for f in findings if f.check in PSS_IDS
    )
    assert failed == case.fails, (
        f"at {case.level}, Pod Security checks failing: expected {sorted(case.fails)}, "
        f"got {sorted(failed)}:\n{listing or '  (nothing)'}"
    )

    ours = "deny" if case.control in failed else "allow"
    theirs = case.note("suite")
    deviation = case.note("deviation")
    if deviation is None:
        assert ours == theirs, (
            f"the suite says {theirs} on {case.control}, we say {ours}:\n{listing}"
        )
    else:
        assert ours != theirs, f"stale deviation note (we agree with the suite): {deviation}"

    target = engine.pod_input(case.obj)
    assert target is not None
    for f in findings:
        assert f.path.startswith((target.spec_path, target.metadata_path)), f.path


def test_fixtures_are_well_formed() -> None:
    assert {p.name for p in ROOT.iterdir() if p.is_dir()} == set(SUITES)
    for suite in SUITES:
        assert {p.name for p in (ROOT / suite).iterdir()} <= set(LEVELS), suite
    names: dict[pathlib.Path, list[str]] = {}
    for case in CASES:
        assert case.kind in engine.WORKLOAD_KINDS, case.id
        assert case.control in PSS_IDS, case.id
        assert case.note("suite") in ("allow", "deny"), case.id
        assert case.note("source"), case.id
        assert case.fails <= PSS_IDS, case.id
        names.setdefault(case.file, []).append(f"{case.kind}/{case.name}")
    for path, seen in names.items():
        assert len(seen) == len(set(seen)), f"{path}: duplicate object names"


def test_every_pod_security_check_is_a_tested_control() -> None:
    assert {c.control for c in CASES} == PSS_IDS


def test_both_suites_have_allowed_and_denied_cases_at_both_levels() -> None:
    for suite in SUITES:
        for level in LEVELS:
            verdicts = {c.note("suite") for c in CASES if (c.suite, c.level) == (suite, level)}
            assert verdicts == {"allow", "deny"}, (suite, level)
    kinds = {c.kind for c in CASES}
    assert {"Pod", "Deployment", "CronJob"} <= kinds


@pytest.mark.parametrize(
    ("suite", "level"), [(s, lv) for s in SUITES for lv in LEVELS], ids=lambda v: str(v)
)
def test_audit_cli_over_a_suite_directory(suite: str, level: str, tmp_path: pathlib.Path) -> None:
    """``kube-guardrails audit --policy`` (Pod Security only) over a whole directory.

    Exit status 1 (the suites' denied resources are findings), one report per object,
    and per object exactly the failing checks its annotation lists.
    """
    off = {
        c.id: {"action": "Off"}
        for c in registry.all_checks()
        if c.category is registry.Category.BEST_PRACTICE
    }
    policy = {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": f"pss-{level}"},
        "spec": {"workloads": {"podSecurity": level, "checks": off}},
    }
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy), encoding="utf-8")
    directory = ROOT / suite / level
    args = cli.build_parser().parse_args(
        ["audit", str(directory), "--policy", str(policy_file), "--format", "json", "--jobs", "1"]
    )
    out, err = io.StringIO(), io.StringIO()
    code = command.execute(
        args, stdin=io.BytesIO(), stdout=out, stderr=err, now=NOW, progress_enabled=False
    )
    assert code == command.EXIT_FINDINGS, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["errors"] == []
    expected = {
        (str(c.file), c.document): c.fails for c in CASES if (c.suite, c.level) == (suite, level)
    }
    got = {
        (o["file"], o["document"]): frozenset(f["check"] for f in o["findings"])
        for o in report["objects"]
        if o["status"] == "checked"
    }
    assert got == expected
