"""The SARIF report validates against the official SARIF 2.1.0 schema and points at lines.

The schema is vendored in ``tests/data/sarif-schema-2.1.0.json``: the OASIS TC's file
``Schemata/sarif-schema-2.1.0.json`` from github.com/oasis-tcs/sarif-spec (commit
85971b3), unchanged. It is not checked against its own meta-schema: upstream's file
nests one ``anyOf`` under ``region.properties``, which the 2020-12 meta-schema rejects;
validating documents with it works and is what matters here.
"""

from __future__ import annotations

import datetime
import io
import json
import pathlib
from typing import Any

import jsonschema
import pytest

from kube_guardrails import cli
from kube_guardrails.audit import command
from kube_guardrails.checks import registry

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
NOW = datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
spec:
  containers:
  - name: app
    image: nginx
    securityContext:
      privileged: {privileged}
"""


def sarif(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> Any:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["audit", *sorted(files), "--format", "sarif"])
    out = io.StringIO()
    command.execute(
        args, stdin=io.BytesIO(), stdout=out, stderr=io.StringIO(), now=NOW, progress_enabled=False
    )
    return json.loads(out.getvalue())


def validate(log: Any) -> list[str]:
    cls = jsonschema.validators.validator_for(SCHEMA)
    validator = cls(SCHEMA, format_checker=cls.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


CASES = {
    "findings": {"a.yaml": POD.format(name="a", privileged="true")},
    "clean": {"a.yaml": POD.format(name="a", privileged="false").replace("nginx", "nginx:1.27")},
    "nothing-to-check": {"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"},
    "malformed-document": {
        "m.yaml": POD.format(name="a", privileged="true") + "---\nkind: [\n",
    },
    "subdirectory-and-multi-document": {
        "deploy/app.yaml": "# leading comment\n"
        + POD.format(name="a", privileged="true")
        + "---\n"
        + POD.format(name="b", privileged="true"),
    },
}


@pytest.mark.parametrize("files", list(CASES.values()), ids=list(CASES))
def test_sarif_validates_against_the_official_schema(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    log = sarif(tmp_path, monkeypatch, files)
    assert validate(log) == []
    assert log["version"] == "2.1.0"


def test_rules_come_from_the_registry(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = sarif(tmp_path, monkeypatch, CASES["findings"])
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "kube-guardrails"
    assert driver["version"]
    rules = {r["id"]: r for r in driver["rules"]}
    assert set(rules) == registry.ids()
    for chk in registry.all_checks():
        rule = rules[chk.id]
        assert rule["shortDescription"]["text"] == chk.title
        assert rule["help"]["text"] == chk.hint
        assert rule["fullDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert chk.category.value in rule["properties"]["tags"]


def test_results_point_at_the_document_line(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = sarif(tmp_path, monkeypatch, CASES["subdirectory-and-multi-document"])
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    privileged = [r for r in run["results"] if r["ruleId"] == "privileged"]
    assert len(privileged) == 2
    starts = []
    for result in privileged:
        assert rules[result["ruleIndex"]]["id"] == "privileged"
        assert result["level"] == "error"
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "deploy/app.yaml", "uriBaseId": "%SRCROOT%"}
        starts.append(physical["region"]["startLine"])
        (logical,) = location["logicalLocations"]
        assert logical["fullyQualifiedName"].startswith("Pod/shop/")
        assert result["partialFingerprints"]
    # Line 2 (after the comment) and the line after the "---" separator.
    separator = 2 + POD.count("\n")
    assert sorted(starts) == [2, separator + 1]


def test_input_errors_are_tool_notifications(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = sarif(tmp_path, monkeypatch, CASES["malformed-document"])
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert "m.yaml document 2" in note["message"]["text"]
    # The good document before it was still checked.
    assert any(r["ruleId"] == "privileged" for r in log["runs"][0]["results"])
