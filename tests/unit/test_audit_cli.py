"""``kube-guardrails audit`` end to end (argument parsing to exit status), as a table.

Each case writes manifests into a temporary directory, runs the real command path
(``cli.build_parser`` then ``command.execute``) with captured streams and a fixed clock,
and checks the exit status and what the report says.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml

from kube_guardrails import cli
from kube_guardrails.audit import command, core, defaults, loader, policyfile, progress, runner

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)

# A Pod that passes restricted Pod Security and every best practice.
COMPLIANT_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "app",
                "image": "registry.example.com/web:1.2.3",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    },
}


def pod(name: str = "web", *, namespace: str | None = "shop", **container: Any) -> dict[str, Any]:
    obj = copy.deepcopy(COMPLIANT_POD)
    obj["metadata"]["name"] = name
    if namespace is None:
        del obj["metadata"]["namespace"]
    else:
        obj["metadata"]["namespace"] = namespace
    c = obj["spec"]["containers"][0]
    for key, value in container.items():
        if key == "securityContext":
            c["securityContext"] = {**c["securityContext"], **value}
        else:
            c[key] = value
    return obj


def root_pod(name: str = "root") -> dict[str, Any]:
    """Compliant at baseline and with every best practice, but may run as root."""
    obj = pod(name)
    del obj["spec"]["securityContext"]["runAsNonRoot"]
    return obj


def template(kind: str, p: dict[str, Any], *, labels: dict[str, str] | None = None) -> Any:
    meta = {"name": p["metadata"]["name"], "namespace": p["metadata"].get("namespace", "shop")}
    if labels:
        meta["labels"] = labels
    tpl = {"metadata": {"labels": {"app": "web"}}, "spec": p["spec"]}
    if kind == "CronJob":
        spec: dict[str, Any] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tpl}}}
        api = "batch/v1"
    else:
        spec = {"selector": {"matchLabels": {"app": "web"}}, "template": tpl}
        api = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


PRIVILEGED = {"securityContext": {"privileged": True, "allowPrivilegeEscalation": True}}
LATEST = {"image": "registry.example.com/web:latest"}

POLICY_RESTRICTED = {
    "apiVersion": "kube-guardrails.io/v1alpha1",
    "kind": "GuardrailPolicy",
    "metadata": {"name": "strict"},
    "spec": {"workloads": {"podSecurity": "restricted"}},
}


def exempting_policy(expires: str) -> dict[str, Any]:
    return {
        "apiVersion": "kube-guardrails.io/v1alpha1",
        "kind": "GuardrailPolicy",
        "metadata": {"name": "legacy"},
        "spec": {
            "workloads": {
                "podSecurity": "baseline",
                "exemptions": [
                    {
                        "namespaces": ["shop"],
                        "selector": {"matchLabels": {"app": "legacy"}},
                        "checks": ["privileged"],
                        "reason": "vendor image, SEC-123",
                        "expires": expires,
                    }
                ],
            }
        },
    }


def dump(*docs: Any) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


@dataclasses.dataclass
class Case:
    files: dict[str, str]
    args: list[str]
    exit: int
    stdin: str = ""
    # Expectations on the JSON report (the run is repeated with --format json).
    checks: dict[str, int] = dataclasses.field(default_factory=dict)  # check id -> count
    errors: list[tuple[str, int | None]] = dataclasses.field(default_factory=list)
    status: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> status
    paths: list[str] = dataclasses.field(default_factory=list)  # finding paths expected
    stderr: str = ""


CASES = {
    "compliant-pod-exit-0": Case({"p.yaml": dump(pod())}, ["p.yaml"], 0),
    "privileged-pod-exit-1": Case(
        {"p.yaml": dump(pod(**PRIVILEGED))},
        ["p.yaml"],
        1,
        checks={"privileged": 1},
        paths=["spec.containers[0].securityContext.privileged"],
    ),
    "fail-on-high-ignores-medium": Case(
        {"p.yaml": dump(pod(**LATEST))}, ["p.yaml", "--fail-on", "high"], 0, checks={"imageTag": 1}
    ),
    "fail-on-medium-catches-medium": Case(
        {"p.yaml": dump(pod(**LATEST))},
        ["p.yaml", "--fail-on", "medium"],
        1,
        checks={"imageTag": 1},
    ),
    "fail-on-none-never-fails-on-findings": Case(
        {"p.yaml": dump(pod(**PRIVILEGED))},
        ["p.yaml", "--fail-on", "none"],
        0,
        checks={"privileged": 1},
    ),
    "default-policy-is-baseline-root-allowed": Case({"p.yaml": dump(root_pod())}, ["p.yaml"], 0),
    "level-restricted-catches-root": Case(
        {"p.yaml": dump(root_pod())},
        ["p.yaml", "--level", "restricted"],
        1,
        checks={"runAsNonRoot": 1},
    ),
    "level-none-turns-pod-security-off": Case(
        {"p.yaml": dump(pod(securityContext={"privileged": True}))},
        ["p.yaml", "--level", "none"],
        0,
    ),
    "policy-file-restricted": Case(
        {"p.yaml": dump(root_pod()), "pol.yaml": dump(POLICY_RESTRICTED)},
        ["p.yaml", "--policy", "pol.yaml"],
        1,
        checks={"runAsNonRoot": 1},
    ),
    "level-overrides-policy-file": Case(
        {"p.yaml": dump(root_pod()), "pol.yaml": dump(POLICY_RESTRICTED)},
        ["p.yaml", "--policy", "pol.yaml", "--level", "baseline"],
        0,
    ),
    "deployment-template-checked": Case(
        {"d.yaml": dump(template("Deployment", pod(**PRIVILEGED)))},
        ["d.yaml"],
        1,
        checks={"privileged": 1},
        paths=["spec.template.spec.containers[0].securityContext.privileged"],
    ),
    "cronjob-template-checked": Case(
        {"c.yaml": dump(template("CronJob", pod(**PRIVILEGED)))},
        ["c.yaml"],
        1,
        checks={"privileged": 1},
        paths=["spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged"],
    ),
    "statefulset-daemonset-job-replicaset": Case(
        {
            "w.yaml": dump(
                *(
                    template(k, pod(k.lower(), **PRIVILEGED))
                    for k in ("StatefulSet", "DaemonSet", "Job", "ReplicaSet")
                )
            )
        },
        ["w.yaml"],
        1,
        checks={"privileged": 4},
    ),
    "kind-list-items-checked": Case(
        {
            "l.yaml": dump(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": [pod("a"), pod("b", **PRIVILEGED), {"kind": "Service"}],
                }
            )
        },
        ["l.yaml"],
        1,
        checks={"privileged": 1},
        status={"a": "checked", "b": "checked"},
    ),
    "directory-recursive": Case(
        {
            "d/one.yaml": dump(pod("one")),
            "d/sub/two.yml": dump(pod("two", **PRIVILEGED)),
            "d/.hidden/three.yaml": dump(pod("three", **PRIVILEGED)),
            "d/readme.md": "# not yaml",
        },
        ["d"],
        1,
        checks={"privileged": 1},
        status={"one": "checked", "two": "checked"},
    ),
    "stdin": Case({}, ["-"], 1, stdin=dump(pod(**PRIVILEGED)), checks={"privileged": 1}),
    "malformed-document-reported-others-checked": Case(
        {
            "m.yaml": dump(pod("first"))
            + "---\nkind: Pod\nmetadata: {name: [\n---\n"
            + dump(pod("third", **PRIVILEGED))
        },
        ["m.yaml"],
        2,
        checks={"privileged": 1},
        errors=[("m.yaml", 2)],
        status={"first": "checked", "third": "checked"},
    ),
    "missing-path-exit-2-others-checked": Case(
        {"p.yaml": dump(pod(**PRIVILEGED))},
        ["p.yaml", "nope.yaml"],
        2,
        checks={"privileged": 1},
        errors=[("nope.yaml", None)],
    ),
    "workload-without-containers-is-an-input-error": Case(
        {
            "d.yaml": dump(
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
            )
        },
        ["d.yaml"],
        2,
        errors=[("d.yaml", 1)],
    ),
    "other-kinds-ignored": Case(
        {"s.yaml": dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}})},
        ["s.yaml"],
        0,
        stderr="no Pods or workloads",
    ),
    "excluded-namespace-not-checked": Case(
        {"p.yaml": dump(pod(namespace="kube-system", **PRIVILEGED))},
        ["p.yaml"],
        0,
        status={"web": "excluded"},
    ),
    "include-excluded-checks-them": Case(
        {"p.yaml": dump(pod(namespace="kube-system", **PRIVILEGED))},
        ["p.yaml", "--include-excluded"],
        1,
        checks={"privileged": 1},
        status={"web": "checked"},
    ),
    "no-namespace-means-default": Case(
        {"p.yaml": dump(pod(namespace=None, **PRIVILEGED))}, ["p.yaml"], 1, checks={"privileged": 1}
    ),
    "exemption-applies-before-expiry": Case(
        {
            "d.yaml": dump(template("Deployment", pod(**PRIVILEGED), labels={"app": "legacy"})),
            "pol.yaml": dump(exempting_policy("2027-01-31T00:00:00Z")),
        },
        ["d.yaml", "--policy", "pol.yaml"],
        0,
    ),
    "exemption-stops-at-expiry": Case(
        {
            "d.yaml": dump(template("Deployment", pod(**PRIVILEGED), labels={"app": "legacy"})),
            "pol.yaml": dump(exempting_policy("2026-11-01T00:00:00Z")),
        },
        ["d.yaml", "--policy", "pol.yaml"],
        1,
        checks={"privileged": 1},
    ),
    "exemption-selector-uses-workload-labels": Case(
        {
            "d.yaml": dump(template("Deployment", pod(**PRIVILEGED), labels={"app": "other"})),
            "pol.yaml": dump(exempting_policy("2027-01-31T00:00:00Z")),
        },
        ["d.yaml", "--policy", "pol.yaml"],
        1,
        checks={"privileged": 1},
    ),
}


def run(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, case: Case, extra: list[str]
) -> tuple[int, str, str]:
    for name, text in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["audit", *case.args, *extra])
    out, err = io.StringIO(), io.StringIO()
    code = command.execute(
        args,
        stdin=io.BytesIO(case.stdin.encode()),
        stdout=out,
        stderr=err,
        now=NOW,
        progress_enabled=False,
    )
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_exit_status_and_table(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    code, out, err = run(tmp_path, monkeypatch, case, [])
    assert code == case.exit, out + err
    for check in case.checks:
        assert check in out
    for source, index in case.errors:
        where = source if index is None else f"{source} document {index}"
        assert where in out
    if case.stderr:
        assert case.stderr in err
    assert "\033[" not in out  # not a terminal: no colour


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_json_report(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    code, out, err = run(tmp_path, monkeypatch, case, ["--format", "json"])
    assert code == case.exit
    doc = json.loads(out)
    assert doc["schemaVersion"] == 1
    assert doc["summary"]["byCheck"] == dict(sorted(case.checks.items()))
    if code != 2:
        assert doc["summary"]["failed"] == (code == 1)
    assert [(e["file"], e["document"]) for e in doc["errors"]] == case.errors
    statuses = {o["name"]: o["status"] for o in doc["objects"]}
    for name, status in case.status.items():
        assert statuses[name] == status
    paths = [f["path"] for o in doc["objects"] for f in o["findings"]]
    for p in case.paths:
        assert p in paths
    # Errors go to stderr as well when the report is machine-readable.
    for source, _ in case.errors:
        assert source in err


def test_json_schema_fields(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case({"p.yaml": dump(pod(**PRIVILEGED))}, ["p.yaml"], 1)
    _, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json"])
    doc = json.loads(out)
    assert set(doc) == {"schemaVersion", "tool", "policies", "summary", "objects", "errors"}
    assert doc["policies"] == [
        {"name": defaults.NAME, "source": "built-in", "podSecurity": "baseline", "mode": "Audit"}
    ]
    obj = doc["objects"][0]
    assert set(obj) == {
        "file",
        "document",
        "item",
        "line",
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "status",
        "findings",
        "expiredExemptions",
    }
    assert (obj["file"], obj["document"], obj["line"], obj["kind"]) == ("p.yaml", 1, 1, "Pod")
    finding = obj["findings"][0]
    assert set(finding) == {
        "check",
        "severity",
        "outcome",
        "policy",
        "action",
        "container",
        "path",
        "message",
        "hint",
    }
    assert (finding["check"], finding["severity"], finding["container"]) == (
        "privileged",
        "high",
        "app",
    )
    assert set(doc["summary"]["bySeverity"]) == {"critical", "high", "medium", "low"}


def test_expired_exemption_is_reported(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES["exemption-stops-at-expiry"]
    _, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json"])
    obj = json.loads(out)["objects"][0]
    assert obj["expiredExemptions"] == [{"policy": "legacy", "index": 0}]


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        pytest.param(
            {**POLICY_RESTRICTED, "spec": {"workloads": {"podSecurity": "strict"}}},
            "pol.yaml document 1: spec.workloads.podSecurity",
            id="bad-enum",
        ),
        pytest.param(
            {**POLICY_RESTRICTED, "spec": {"workloads": {"checks": {"nosuch": {}}}}},
            "spec.workloads.checks.nosuch",
            id="unknown-check",
        ),
        pytest.param(
            {**POLICY_RESTRICTED, "spec": {"mode": "Sometimes"}},
            "spec.mode",
            id="bad-mode",
        ),
        pytest.param(
            exempting_policy("next tuesday"),
            "spec.workloads.exemptions[0].expires",
            id="bad-expiry",
        ),
        pytest.param(
            {**POLICY_RESTRICTED, "kind": "ConfigMap"}, "pol.yaml document 1: kind", id="wrong-kind"
        ),
        pytest.param("a: [\n", "pol.yaml document 1", id="malformed-yaml"),
        pytest.param("# nothing\n", "no GuardrailPolicy", id="empty-file"),
    ],
)
def test_bad_policy_exit_2_names_the_field(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, policy: Any, fragment: str
) -> None:
    text = policy if isinstance(policy, str) else dump(policy)
    case = Case({"p.yaml": dump(pod()), "pol.yaml": text}, ["p.yaml", "--policy", "pol.yaml"], 2)
    code, out, err = run(tmp_path, monkeypatch, case, [])
    assert code == 2
    assert out == ""
    assert fragment in err


def test_missing_policy_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case({"p.yaml": dump(pod())}, ["p.yaml", "--policy", "nope.yaml"], 2)
    code, _, err = run(tmp_path, monkeypatch, case, [])
    assert code == 2
    assert "nope.yaml" in err


def test_two_policies_both_apply(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second = copy.deepcopy(POLICY_RESTRICTED)
    second["metadata"]["name"] = "strict-too"
    case = Case(
        {"p.yaml": dump(root_pod()), "pol.yaml": dump(POLICY_RESTRICTED, second)},
        ["p.yaml", "--policy", "pol.yaml"],
        1,
    )
    _, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json"])
    findings = json.loads(out)["objects"][0]["findings"]
    assert sorted(f["policy"] for f in findings if f["check"] == "runAsNonRoot") == [
        "strict",
        "strict-too",
    ]


def test_output_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case({"p.yaml": dump(pod(**PRIVILEGED))}, ["p.yaml"], 1)
    code, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json", "-o", "report.json"])
    assert code == 1
    assert out == ""
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["findings"] >= 1


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param([], "PATH", id="no-path"),
        pytest.param(["x.yaml", "--format", "xml"], "--format", id="bad-format"),
        pytest.param(["x.yaml", "--fail-on", "severe"], "--fail-on", id="bad-fail-on"),
        pytest.param(["x.yaml", "--level", "max"], "--level", id="bad-level"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["audit", *argv])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "no_color", "expected"),
    [
        pytest.param(True, None, True, id="terminal"),
        pytest.param(True, "1", False, id="terminal-NO_COLOR"),
        pytest.param(False, None, False, id="pipe"),
    ],
)
def test_colour_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, no_color: str | None, expected: bool
) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    stream = FakeTerminal() if tty else io.StringIO()
    assert command.use_color(stream) is expected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("enabled", "steps", "shown"),
    [
        pytest.param(True, [(0.1, 10)], False, id="small-and-quick-prints-nothing"),
        pytest.param(True, [(0.1, 500)], True, id="many-documents"),
        pytest.param(True, [(1.5, 3)], True, id="slow"),
        pytest.param(False, [(5.0, 5000)], False, id="not-a-terminal"),
    ],
)
def test_progress_indicator(enabled: bool, steps: list[tuple[float, int]], shown: bool) -> None:
    stream = io.StringIO()
    clock = Clock()
    bar = progress.Progress(stream, total_files=10, enabled=enabled, clock=clock)
    for at, documents in steps:
        clock.now = at
        bar.update(files=1, documents=documents)
    bar.done()
    text = stream.getvalue()
    assert ("documents" in text) is shown
    if shown:
        assert text.endswith("\r\033[K")  # erased before the report


def test_console_script_smoke(tmp_path: pathlib.Path) -> None:
    """The installed entry point wires ``audit`` up (one real subprocess)."""
    (tmp_path / "p.yaml").write_text(dump(pod(**PRIVILEGED)))
    proc = subprocess.run(
        [sys.executable, "-m", "kube_guardrails", "audit", "p.yaml", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["summary"]["byCheck"]["privileged"] == 1


def test_worker_processes_give_the_same_report(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large inputs are audited in worker processes; the report must not change."""
    files = {
        f"d{n // 50}/w{n:04d}.yaml": dump(pod(f"w{n:04d}", **(PRIVILEGED if n % 3 else LATEST)))
        for n in range(300)
    }
    files["d0/zz-bad.yaml"] = "kind: [\n"
    case = Case(files, ["."], 2)
    reports = []
    for jobs in ("1", "2"):
        code, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json", "--jobs", jobs])
        assert code == 2
        reports.append(json.loads(out))
    assert reports[0] == reports[1]
    assert reports[0]["summary"]["workloads"] == 300
    # Input order (directories and files sorted), whichever worker did the work.
    assert [o["name"] for o in reports[0]["objects"]] == [f"w{n:04d}" for n in range(300)]


class NoProcesses:
    """Stands in for ProcessPoolExecutor where a sandbox forbids worker processes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(38, "Function not implemented")


def test_no_worker_processes_falls_back_to_one_process(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoProcesses)
    files = {f"w{n:04d}.yaml": dump(pod(f"w{n:04d}", **PRIVILEGED)) for n in range(260)}
    case = Case(files, ["."], 1)
    code, out, _ = run(tmp_path, monkeypatch, case, ["--format", "json", "--jobs", "2"])
    assert code == 1
    assert json.loads(out)["summary"]["byCheck"] == {"privileged": 260}


@pytest.mark.parametrize(
    ("output", "inputs"),
    [
        pytest.param("p.yaml", ["p.yaml"], id="the-manifest-given"),
        pytest.param("k8s/p.yaml", ["k8s"], id="a-manifest-found-in-a-directory"),
        pytest.param("link.yaml", ["k8s/p.yaml"], id="a-symlink-to-the-manifest"),
        pytest.param("policy.yaml", ["--policy", "policy.yaml", "k8s/p.yaml"], id="the-policy"),
    ],
)
def test_output_never_overwrites_an_input(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
    inputs: list[str],
) -> None:
    manifest = dump(pod(**PRIVILEGED))
    policy = yaml.safe_dump(POLICY_RESTRICTED)
    (tmp_path / "k8s").mkdir()
    for name, text in {"p.yaml": manifest, "k8s/p.yaml": manifest, "policy.yaml": policy}.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "link.yaml").symlink_to(tmp_path / "k8s" / "p.yaml")
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["audit", *inputs, "--format", "json", "-o", output])
    err = io.StringIO()
    code = command.execute(
        args, stdin=io.BytesIO(), stdout=io.StringIO(), stderr=err, progress_enabled=False
    )
    assert code == 2
    assert "would overwrite it" in err.getvalue()
    for name, text in {"p.yaml": manifest, "k8s/p.yaml": manifest, "policy.yaml": policy}.items():
        assert (tmp_path / name).read_text() == text


@pytest.mark.parametrize(
    ("documents", "kept", "note"),
    [
        pytest.param(5, 5, None, id="few-errors-all-listed"),
        pytest.param(100, 100, None, id="at-the-cap"),
        pytest.param(101, 101, "1 more error(s) in this file", id="one-over"),
        pytest.param(5000, 101, "4900 more error(s) in this file", id="many"),
    ],
)
def test_errors_per_file_are_capped(
    tmp_path: pathlib.Path, documents: int, kept: int, note: str | None
) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Pod\n---\n" * documents)
    (tmp_path / "also-bad.yaml").write_text("kind: Pod\n")
    args = cli.build_parser().parse_args(["audit", "bad.yaml", "also-bad.yaml", "-j", "1"])
    job = runner.Job(policies=(defaults.policy(),), now=NOW, include_excluded=False)
    result = runner.audit_files([str(tmp_path / f) for f in args.paths], job=job, jobs=1)
    bad = [e for e in result.errors if e.source.endswith("/bad.yaml")]
    assert len(bad) == kept
    assert result.documents == documents + 1
    if note:
        assert note in bad[-1].message
    # The next file starts its own count: its error is listed.
    assert [e.source.endswith("also-bad.yaml") for e in result.errors].count(True) == 1


def test_distinct_ignored_kinds_are_capped() -> None:
    docs = [
        loader.Document(source="k.yaml", index=i + 1, line=1, obj={"kind": f"K{i}"})
        for i in range(core.MAX_IGNORED_KINDS + 50)
    ]
    result = core.audit_documents(docs, policies=[defaults.policy()], now=NOW)
    assert len(result.ignored) == core.MAX_IGNORED_KINDS + 1
    assert result.ignored[core.OTHER_KINDS] == 50
    assert sum(result.ignored.values()) == len(docs)


@pytest.mark.parametrize(
    ("kind", "items", "names"),
    [
        pytest.param("List", ["a", "b"], ["a", "b"], id="kubectl-get-o-yaml-List"),
        pytest.param("GuardrailPolicyList", ["a"], ["a"], id="GuardrailPolicyList"),
    ],
)
def test_policy_file_may_be_a_list(
    tmp_path: pathlib.Path, kind: str, items: list[str], names: list[str]
) -> None:
    policies = [dict(POLICY_RESTRICTED, metadata={"name": n}) for n in items]
    doc = {"apiVersion": "kube-guardrails.io/v1alpha1", "kind": kind, "items": policies}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    loaded = policyfile.load([str(tmp_path / "p.yaml")])
    assert [lp.policy.name for lp in loaded] == names


def test_policy_list_item_errors_name_the_item(tmp_path: pathlib.Path) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [POLICY_RESTRICTED, {"kind": "Pod"}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(policyfile.PolicyFileError, match=r"document 1 items\[1\]: kind"):
        policyfile.load([str(tmp_path / "p.yaml")])


@pytest.mark.parametrize("items", ["items: null\n", ""], ids=["items-null", "no-items"])
def test_an_empty_list_is_no_error(items: str) -> None:
    docs = list(loader.parse(f"apiVersion: v1\nkind: List\n{items}", "l.yaml"))
    result = core.audit_documents(docs, policies=[defaults.policy()], now=NOW)
    assert (result.errors, result.documents) == ([], 1)
