"""The README's check table is generated from the registry and must not drift."""

from __future__ import annotations

import pathlib

import pytest

from kube_guardrails.checks import docs, registry

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_check_table_is_current() -> None:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    block = docs.extract_block(text)
    assert block is not None, (
        f"README.md has no {docs.BEGIN} ... {docs.END} block; run `{docs.COMMAND}` "
        "from the repository root"
    )
    assert block.strip() == docs.markdown_table().strip(), (
        f"the check table in README.md is out of date; run `{docs.COMMAND}` "
        "from the repository root and commit README.md"
    )


def test_table_has_one_row_per_check_in_registry_order() -> None:
    rows = [
        line
        for line in docs.markdown_table().split("\n\n")[0].splitlines()
        if line.startswith("| `")
    ]
    assert [r.split("`")[1] for r in rows] == [c.id for c in registry.all_checks()]


def test_table_documents_parameters() -> None:
    assert "| `imageRegistry` | `allowed` |" in docs.markdown_table()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "## Checks\n\n{block}\n", id="no-readme"),
        pytest.param(
            "# Title\n\nIntro.\n", "# Title\n\nIntro.\n\n## Checks\n\n{block}\n", id="no-markers"
        ),
        pytest.param(
            f"# T\n\n{docs.BEGIN}\nstale\n{docs.END}\n\nAfter.\n",
            "# T\n\n{block}\n\nAfter.\n",
            id="replace-between-markers",
        ),
    ],
)
def test_render(text: str, expected: str) -> None:
    block = f"{docs.BEGIN}\n\n{docs.markdown_table()}\n{docs.END}"
    rendered = docs.render(text)
    assert rendered == expected.replace("{block}", block)
    assert docs.is_current(rendered)
    assert docs.render(rendered) == rendered  # idempotent


def test_cell_escapes_pipes_and_newlines() -> None:
    assert docs._cell("a | b\n  c") == "a \\| b c"


def test_write_then_check(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nHand-written.\n", encoding="utf-8")
    assert docs.main(["--check", "--readme", str(readme)]) == 1
    assert docs.COMMAND in capsys.readouterr().err
    assert docs.main(["--write", "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Project\n\nHand-written.\n\n## Checks\n")
    assert docs.main(["--check", "--readme", str(readme)]) == 0
    assert docs.main(["--write", "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text


def test_print_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main([]) == 0
    assert capsys.readouterr().out == docs.markdown_table()
