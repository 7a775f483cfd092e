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

import json
import pathlib
import sys

import cases
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
    if case.stderr and out.exit == 2:
        # Exit 2 with a message of its own (not a report): one line, no traceback.
        assert len(out.stderr.strip().splitlines()) == 1, shown
