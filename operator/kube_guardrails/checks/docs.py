"""The README's check table, generated from the registry so that it cannot drift.

The README holds the table between ``<!-- checks:begin -->`` and ``<!-- checks:end -->``;
``tests/unit/test_docs.py`` fails when that block differs from :func:`markdown_table`.
After adding or changing a check, regenerate it from the repository root::

    python -m kube_guardrails.checks.docs --write

Only the text between the markers is ever rewritten; a README without them gets a
``## Checks`` section appended, so the rest of the README stays hand-written.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from kube_guardrails.checks import registry

BEGIN = "<!-- checks:begin -->"
END = "<!-- checks:end -->"
COMMAND = "python -m kube_guardrails.checks.docs --write"


def markdown_table() -> str:
    """Every registered check as a Markdown table, plus a table of policy parameters."""
    checks = registry.all_checks()
    lines = [
        "| Check | Level / category | Severity | Default action | Title | Hint |",
        "|---|---|---|---|---|---|",
    ]
    for c in checks:
        cells = (
            f"`{c.id}`",
            _level(c),
            c.severity.label,
            c.default_action,
            c.title,
            c.hint,
        )
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    params = [(c.id, name, text) for c in checks for name, text in c.params.items()]
    if params:
        lines += [
            "",
            "Parameters, set next to `action` under `spec.workloads.checks.<check>`:",
            "",
            "| Check | Parameter | Meaning |",
            "|---|---|---|",
        ]
        lines += [f"| `{cid}` | `{name}` | {_cell(text)} |" for cid, name, text in params]
    return "\n".join(lines) + "\n"


def _level(c: registry.Check) -> str:
    if c.level is not None:
        return f"Pod Security {c.level.value}"
    return c.category.value.replace("-", " ")


def _cell(text: str) -> str:
    """One table cell: no line breaks, and a literal ``|`` must not end the cell."""
    return " ".join(text.split()).replace("|", "\\|")


def extract_block(text: str) -> str | None:
    """The text between the markers, or None when the README has no (ordered) markers."""
    start = text.find(BEGIN)
    end = text.find(END, start + len(BEGIN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[start + len(BEGIN) : end]


def render(text: str) -> str:
    """The README text with its check block replaced (or a Checks section appended)."""
    block = f"{BEGIN}\n\n{markdown_table()}\n{END}"
    if extract_block(text) is None:
        lead = text.rstrip("\n") + "\n\n" if text.strip() else ""
        return f"{lead}## Checks\n\n{block}\n"
    start = text.index(BEGIN)
    end = text.index(END, start + len(BEGIN)) + len(END)
    return text[:start] + block + text[end:]


def is_current(text: str) -> bool:
    block = extract_block(text)
    return block is not None and block.strip() == markdown_table().strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kube_guardrails.checks.docs",
        description="Print the check table, or rewrite it in the README between "
        f"{BEGIN} and {END}.",
    )
    parser.add_argument(
        "--readme",
        type=pathlib.Path,
        default=pathlib.Path("README.md"),
        help="the README to update or check (default: README.md in the current directory)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the block in the README")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when the README's block is out of date"
    )
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(markdown_table())
        return 0
    try:
        text = args.readme.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if args.check:
        if is_current(text):
            return 0
        sys.stderr.write(f"{args.readme}: the check table is out of date; run {COMMAND}\n")
        return 1
    new = render(text)
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        sys.stderr.write(f"{args.readme}: check table updated\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
