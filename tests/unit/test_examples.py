"""The bundled examples (``examples/workloads/``) say what they claim to say.

``compliant/`` must pass every check of ``examples/restricted-policy.yaml`` (restricted
Pod Security, every best practice, images only from ``registry.example.com/``);
``violating/`` must, between its files, violate every registered check, and each file
must violate exactly the checks its ``# violates:`` comment names, so the README's
quick start shows what the examples promise.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from kube_guardrails import planning
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import schema

ROOT = pathlib.Path(__file__).resolve().parents[2] / "examples"
WORKLOADS = ROOT / "workloads"
POLICY_FILE = ROOT / "restricted-policy.yaml"
NOW = datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Workload:
    where: str  # file[document index] or file[document index].items[i]
    obj: Mapping[str, Any]


def workloads(path: pathlib.Path) -> Iterator[Workload]:
    """Every workload in a file: multi-document YAML and ``kind: List`` expanded."""
    with path.open(encoding="utf-8") as f:
        documents = list(yaml.safe_load_all(f))
    for d, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            continue
        where = f"{path.name}[{d}]"
        items = doc.get("items") if doc.get("kind") == "List" else [doc]
        for i, item in enumerate(items or []):
            if isinstance(item, Mapping) and engine.pod_input(item) is not None:
                yield Workload(where=f"{where}.items[{i}]" if item is not doc else where, obj=item)


def declared(path: pathlib.Path) -> set[str]:
    """The check ids named on the file's ``# violates:`` comment line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# violates:"):
            return {c.strip() for c in line.split(":", 1)[1].split(",") if c.strip()}
    return set()


def policy() -> policy_model.Policy:
    obj = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    return policy_model.parse(obj, known_checks=registry.ids())


def findings(w: Workload) -> list[planning.AttributedFinding]:
    pod = engine.pod_input(w.obj)
    assert pod is not None
    meta = w.obj.get("metadata") or {}
    verdict = planning.review(
        pod,
        [policy()],
        namespace=str(meta.get("namespace") or "default"),
        labels=meta.get("labels") or {},
        now=NOW,
    )
    return list(verdict.findings)


COMPLIANT = sorted((WORKLOADS / "compliant").glob("*.yaml"))
VIOLATING = sorted((WORKLOADS / "violating").glob("*.yaml"))


def test_the_example_policy_is_valid() -> None:
    obj = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    assert schema.validate(obj) == []
    assert policy().workloads.pod_security == "restricted"


@pytest.mark.parametrize("path", COMPLIANT, ids=lambda p: p.name)
def test_compliant_example_has_no_findings(path: pathlib.Path) -> None:
    found = list(workloads(path))
    assert found, f"{path.name} holds no workload"
    for w in found:
        problems = [f"{a.finding.check}: {a.finding.message}" for a in findings(w)]
        assert not problems, f"{w.where}:\n  " + "\n  ".join(problems)


def test_compliant_examples_cover_the_common_kinds() -> None:
    kinds = {w.obj["kind"] for p in COMPLIANT for w in workloads(p)}
    assert {"Deployment", "Pod", "CronJob", "StatefulSet"} <= kinds


@pytest.mark.parametrize("path", VIOLATING, ids=lambda p: p.name)
def test_violating_example_violates_what_it_says(path: pathlib.Path) -> None:
    expected = declared(path)
    assert expected, f"{path.name} needs a '# violates: <check>, ...' comment line"
    unknown = expected - registry.ids()
    assert not unknown, f"{path.name} names unknown checks {sorted(unknown)}"
    found = list(workloads(path))
    assert found, f"{path.name} holds no workload"
    got = {a.finding.check for w in found for a in findings(w)}
    assert got == expected, (
        f"{path.name}: the examples' policy reports {sorted(got)}, "
        f"the file says it violates {sorted(expected)}"
    )


def test_every_check_is_violated_by_some_example() -> None:
    got = {a.finding.check for p in VIOLATING for w in workloads(p) for a in findings(w)}
    missing = sorted(registry.ids() - got)
    assert not missing, f"no example in examples/workloads/violating/ violates {missing}"


def test_multi_document_and_list_files_are_expanded() -> None:
    where = {w.where for p in VIOLATING for w in workloads(p)}
    assert "multi-document.yaml[1]" in where  # the DaemonSet; ConfigMap and Service skipped
    assert {"list.yaml[0].items[0]", "list.yaml[0].items[1]"} <= where
