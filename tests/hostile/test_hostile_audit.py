"""``kube-guardrails audit`` on hostile input (issue 10): one row per case, in a cage.

Every case runs the real CLI in a child process with a CPU-time limit, an address-space
limit and a wall-clock timeout (``cases.execute``), so a regression (an alias bomb that
expands again, a quadratic pattern, a FIFO that blocks) fails this test instead of
hanging or swapping CI. The limits are generous ceilings, not timings: a correct run
takes well under a second of CPU and a few tens of MB.

What every case must show, besides its own fragments: the documented exit status, no
traceback, and for exit 2 a message on stdout or stderr saying what was wrong.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import cases
import jsonschema
import pytest

CPU_SECONDS = 30
MEMORY_BYTES = 1024**3  # address space, per process (each worker has its own)
TIMEOUT = 90.0


@pytest.mark.parametrize("case", cases.CASES, ids=[c.id for c in cases.CASES])
def test_hostile_input(case: cases.Case, tmp_path: pathlib.Path) -> None:
    out = cases.execute(
        case,
        tmp_path,
        python=sys.executable,
        cpu_seconds=CPU_SECONDS,
        memory_bytes=MEMORY_BYTES,
        timeout=TIMEOUT,
    )
    shown = f"exit {out.exit}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
    assert out.exit != cases.TIMEOUT, f"no result within {TIMEOUT} s\n{shown}"
    assert out.exit == case.exit, shown
    assert "Traceback" not in out.stdout + out.stderr, shown
    for fragment in case.stdout:
        assert fragment in out.stdout, f"{fragment!r} not on stdout\n{shown}"
    for fragment in case.stderr:
        assert fragment in out.stderr, f"{fragment!r} not on stderr\n{shown}"
    if case.valid_json:
        json.loads(out.stdout)
    # Raw control characters never reach a terminal or a report (ours: newline only).
    assert not set(out.stdout) & (set(map(chr, range(32))) - {"\n"} | {"\x7f", "\u202e"}), shown
    assert not set(out.stderr) & (set(map(chr, range(32))) - {"\n"} | {"\x7f", "\u202e"}), shown
    if out.exit == 2:
        assert "error" in (out.stdout + out.stderr).lower(), shown
        # A run that failed never tells a reader (or a CI log grep) that it passed.
        assert "PASS" not in out.stdout, shown
    if case.stderr and out.exit == 2:
        # Exit 2 with a message of its own (not a report): one line, no traceback.
        assert len(out.stderr.strip().splitlines()) == 1, shown


SARIF_SCHEMA = json.loads(
    (pathlib.Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json").read_text()
)
# Every case whose report would go to stdout (the others are about stdout or -o).
_NOT_STDOUT = {"output-dev-full", "stdout-full", "stdout-closed", "stdout-broken-pipe"}
_REPORTING = [c for c in cases.CASES if c.id not in _NOT_STDOUT]


@pytest.mark.parametrize("case", _REPORTING, ids=[c.id for c in _REPORTING])
def test_sarif_stays_valid(case: cases.Case, tmp_path: pathlib.Path) -> None:
    """Whatever the input, the SARIF report is valid SARIF 2.1.0, formats included
    (artifact URIs built from hostile file names must be URIs). JSON reports go through
    the same writer and encoder, so this parse covers them too."""
    fmt = "sarif"

    def build(d: pathlib.Path) -> cases.Run:
        run = case.build(d)
        args = list(run.args)
        if "--format" in args:
            del args[args.index("--format") : args.index("--format") + 2]
        return dataclasses.replace(run, args=["--format", fmt, *args])

    out = cases.execute(
        dataclasses.replace(case, build=build),
        tmp_path,
        python=sys.executable,
        cpu_seconds=CPU_SECONDS,
        memory_bytes=MEMORY_BYTES,
        timeout=TIMEOUT,
    )
    assert out.exit == case.exit, out.stderr[-2000:]
    if not out.stdout.strip():
        # No report at all is only right for a run that could not produce one.
        assert out.exit == 2 and out.stderr.strip(), out.stderr[-2000:]
        return
    report = json.loads(out.stdout)
    cls = jsonschema.validators.validator_for(SARIF_SCHEMA)
    assert "uri-reference" in cls.FORMAT_CHECKER.checkers  # rfc3986-validator installed
    validator = cls(SARIF_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
    assert not errors, errors[:5]
