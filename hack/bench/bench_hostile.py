#!/usr/bin/env python3
"""Time, peak memory and exit status of ``kube-guardrails audit`` on each hostile input.

The inputs are the table of ``tests/hostile/cases.py`` (issue 10), run the way the test
runs them (a child with CPU and address-space limits and a timeout), and printed as a
table: what the case is, exit status, wall seconds, peak RSS. ``--source DIR`` runs an
other tree's code (its ``operator/`` directory goes first on PYTHONPATH), which is how
the "before" column of the issue's closing note was measured:

    git archive main | tar -x -C /tmp/before
    .venv/bin/python hack/bench/bench_hostile.py --source /tmp/before --timeout 60
    .venv/bin/python hack/bench/bench_hostile.py

``--large MB`` adds inputs of that size that the test table keeps small (they take
seconds to minutes): documents the audit refuses, distinct kinds it ignores, and
minimal Pods that each have findings (the report grows with the findings: the known
limit of streaming, see the README).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hostile"))

import cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=pathlib.Path, default=None, help="tree to run")
    parser.add_argument("--timeout", type=float, default=90.0, help="wall seconds per case")
    parser.add_argument("--cpu", type=int, default=120, help="CPU seconds per process")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address space limit")
    parser.add_argument("-k", default="", help="only cases whose id contains this")
    parser.add_argument("--large", type=int, default=0, metavar="MB", help="add large inputs")
    args = parser.parse_args()
    pythonpath = str(args.source / "operator") if args.source else None
    print(f"{'case':30} {'exit':>7} {'seconds':>8} {'peak RSS MiB':>12}  stands for")
    for case in [*cases.CASES, *_large(args.large)]:
        if args.k not in case.id:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = cases.execute(
                case,
                pathlib.Path(tmp),
                python=sys.executable,
                pythonpath=pythonpath,
                cpu_seconds=args.cpu,
                memory_bytes=int(args.memory_gib * 1024**3),
                timeout=args.timeout,
            )
        code = "timeout" if out.exit == cases.TIMEOUT else str(out.exit)
        if "Traceback" in out.stderr + out.stdout:
            code += "+tb"
        print(
            f"{case.id:30} {code:>7} {out.seconds:8.2f} {out.max_rss_kib / 1024:12.1f}  "
            f"{case.issue} (want {case.exit})",
            flush=True,
        )
    return 0


def _large(mb: int) -> list[cases.Case]:
    if not mb:
        return []
    size = mb * 1024 * 1024

    def fill(unit: str) -> str:
        return unit * (size // len(unit))

    def file(name: str, text: str) -> Callable[[pathlib.Path], cases.Run]:
        def build(d: pathlib.Path) -> cases.Run:
            path = d / name
            path.write_text(text)
            return cases.Run([str(path)])

        return build

    unique = "".join(f"kind: K{i}\n---\n" for i in range(size // 14))
    return [
        cases.Case(
            f"large-bad-docs-{mb}MB",
            "kind: Pod documents",
            file("b.yaml", fill("kind: Pod\n---\n")),
            2,
        ),
        cases.Case(f"large-unique-kinds-{mb}MB", "kind: K1, K2, ...", file("k.yaml", unique), 0),
        cases.Case(
            f"large-tiny-pods-{mb}MB",
            "{kind: Pod, spec: {containers: [{}]}}",
            file("p.yaml", fill("{kind: Pod, spec: {containers: [{}]}}\n---\n")),
            1,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
