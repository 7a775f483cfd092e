"""The architecture holds: import-linter's layer contracts, and no stdlib shadowing."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_stdlib_operator_module_is_not_shadowed() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    module = importlib.import_module("operator")
    assert module.itemgetter(1)([0, 42]) == 42
    assert module.__file__ is None or "site-packages" not in module.__file__
    assert not str(getattr(module, "__file__", "") or "").startswith(str(ROOT / "operator"))
