#!/usr/bin/env python3
"""Count the writes one user made, from a kube-apiserver audit log (JSON lines).

The proof that the operator writes nothing on a restart or a resync is in the API
server's own record, not in the operator's logs. ``../shared/kube/cluster`` writes every
create/update/patch/delete to ``$KUBE_TEST_DIR/audit.log``::

    T=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)     # then restart the operator, wait
    hack/bench/count_operator_writes.py --since "$T"

prints the writes per verb and resource (``0 writes`` when there were none).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import sys

OPERATOR = "system:serviceaccount:kube-guardrails-system:kube-guardrails"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def count(lines: list[str], *, user: str, since: str) -> collections.Counter[str]:
    """Writes by ``user`` at or after ``since`` (RFC 3339, as the audit log writes it)."""
    out: collections.Counter[str] = collections.Counter()
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("verb") not in WRITES or entry.get("user", {}).get("username") != user:
            continue
        if str(entry.get("stageTimestamp", "")) < since:
            continue
        ref = entry.get("objectRef") or {}
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        out[f"{entry['verb']} {ref.get('resource')}{sub}"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    default_log = pathlib.Path(os.environ.get("KUBE_TEST_DIR", ".")) / "audit.log"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audit-log", type=pathlib.Path, default=default_log)
    parser.add_argument("--since", required=True, help="RFC 3339 UTC, e.g. 2026-11-29T02:00:00Z")
    parser.add_argument("--user", default=OPERATOR)
    args = parser.parse_args(argv)
    if not args.audit_log.is_file():
        print(f"no audit log at {args.audit_log}", file=sys.stderr)
        return 2
    found = count(args.audit_log.read_text().splitlines(), user=args.user, since=args.since)
    print(json.dumps(dict(sorted(found.items()))) if found else "0 writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
