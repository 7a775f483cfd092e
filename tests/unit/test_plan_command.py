"""``kube-guardrails plan`` errors: exit 2 with one line naming what failed, never a traceback.

The cluster-facing behaviour is tested against a real API server in
``tests/integration/test_plan_cluster.py``; these cases need no cluster because the
command stops before its first request.
"""

from __future__ import annotations

import pathlib

import pytest

from kube_guardrails import cli

VALID = """\
apiVersion: kube-guardrails.io/v1alpha1
kind: GuardrailPolicy
metadata: {name: team}
spec: {mode: Audit}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("mode: Audit", "mode: Sometimes"), "document 1: spec.mode"),
        (
            VALID + "---\n" + VALID.replace("{mode: Audit}", "{priority: 5000}"),
            "document 2: spec.priority",
        ),
        (
            "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n",
            "document 1: kind: must be GuardrailPolicy",
        ),
        ("{unclosed", "invalid YAML"),
    ],
    ids=["enum", "second-document", "wrong-kind", "bad-yaml"],
)
def test_bad_policy_file_exits_2_naming_file_document_and_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "--policy", str(path))
    assert code == 2 and out == ""
    assert err.startswith("kube-guardrails plan: error: bad --policy: ")
    assert str(path) in err and expected in err
    assert "Traceback" not in err


def test_bad_now_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(VALID)
    code, _, err = run(capsys, "--policy", str(path), "--now", "tomorrow")
    assert code == 2 and err.startswith("kube-guardrails plan: error: --now: ")


@pytest.mark.parametrize(
    ("kubeconfig", "context", "expected"),
    [
        ("missing", None, "no kube config"),
        ("empty-contexts", "nope", "context 'nope' is not in the kube config"),
    ],
    ids=["no-file", "unknown-context"],
)
def test_no_usable_kube_context_exits_2_in_one_line(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kubeconfig: str,
    context: str | None,
    expected: str,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(VALID)
    config = tmp_path / "kubeconfig"
    if kubeconfig == "empty-contexts":
        config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
            "contexts: [{name: a, context: {cluster: a, user: a}}]\n"
            "clusters: [{name: a, cluster: {server: 'https://127.0.0.1:1'}}]\n"
            "users: [{name: a, user: {token: t}}]\n"
        )
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    args = ["--policy", str(policy)] + (["--context", context] if context else [])
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_unreachable_api_server_exits_2_naming_the_request(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(VALID)
    config = tmp_path / "kubeconfig"
    # Port 1 on loopback: connection refused at once (no timeout to wait for).
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "contexts: [{name: a, context: {cluster: a, user: a}}]\n"
        "clusters: [{name: a, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: a, user: {token: t}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run(capsys, "--policy", str(policy))
    assert code == 2
    assert err.startswith("kube-guardrails plan: error: cannot reach the API server: GET /apis/")
    assert err.count("\n") == 1


def test_building_the_command_line_imports_neither_kopf_nor_kubernetes() -> None:
    """``plan`` is registered for every invocation; the kubernetes client is loaded only
    when ``plan`` runs, so ``audit`` stays free of it (and kopf stays ``run``'s alone)."""
    import subprocess
    import sys

    code = (
        "import sys; from kube_guardrails import cli; cli.build_parser(); "
        "print(sorted(m for m in ('kopf', 'kubernetes') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
