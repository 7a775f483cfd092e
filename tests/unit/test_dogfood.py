"""Dogfooding: the operator's own install passes its own strictest checks.

Runs the audit at ``--level restricted`` over ``manifests/`` (what ``kubectl apply -k
manifests/`` installs) and expects no finding. ``--include-excluded`` matters: the
operator's namespace is always excluded from policies, so without it the Deployment
would be skipped and the test would pass without checking anything. For the same
reason the test fails, loudly, if it finds no workload to check.
"""

from __future__ import annotations

import datetime
import io
import json
import pathlib

from kube_guardrails import cli
from kube_guardrails.audit import command

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


def test_install_manifests_pass_restricted_with_no_finding() -> None:
    assert MANIFESTS.is_dir(), f"{MANIFESTS} is missing: the install manifests are part of the repo"
    args = cli.build_parser().parse_args(
        [
            "audit",
            str(MANIFESTS),
            "--level",
            "restricted",
            "--include-excluded",
            "--format",
            "json",
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    code = command.execute(
        args,
        stdin=io.BytesIO(),
        stdout=out,
        stderr=err,
        now=datetime.datetime.now(datetime.UTC),
        progress_enabled=False,
    )
    report = json.loads(out.getvalue())
    checked = [o for o in report["objects"] if o["status"] == "checked"]
    assert checked, (
        f"no Pod or workload with a pod template found under {MANIFESTS}: the operator's "
        "Deployment must be there for this test to mean anything"
    )
    assert "Deployment" in {o["kind"] for o in checked}
    findings = [
        f"{o['file']} {o['kind']}/{o['name']}: {f['check']} {f['path']}: {f['message']}"
        for o in checked
        for f in o["findings"]
    ]
    assert findings == [], "\n".join(findings)
    assert report["errors"] == [], err.getvalue()
    assert code == 0
