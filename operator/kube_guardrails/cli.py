"""The ``kube-guardrails`` command line: ``run`` (the operator), ``audit`` (offline), ``plan``.

kopf is imported only by ``run``: the audit path must work on a machine with no cluster
and no kube config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kube_guardrails import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kube-guardrails",
        description="Namespace hardening and workload guardrails for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kube-guardrails {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from kube_guardrails import settings
    from kube_guardrails.audit import command as audit_command

    run = sub.add_parser("run", help="run the operator against the current kube context")
    settings.add_arguments(run)
    audit = sub.add_parser("audit", help="check YAML manifests offline (no cluster needed)")
    audit_command.add_arguments(audit)
    from kube_guardrails.plan import command as plan_command

    plan = sub.add_parser(
        "plan", help="show what applying a policy file would do in the cluster (read-only)"
    )
    plan_command.add_arguments(plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from kube_guardrails.checks import registry

    # A check without metadata or a duplicate id is a bug in this program: refuse to
    # start rather than report half-documented findings.
    registry.validate()
    if args.command == "audit":
        from kube_guardrails.audit import command as audit_command

        return audit_command.run(args)
    if args.command == "plan":
        from kube_guardrails.plan import command as plan_command

        return plan_command.run(args)
    if args.command == "run":
        from kube_guardrails import settings

        try:
            config = settings.from_args(args)
        except settings.SettingsError as e:
            parser.error(str(e))
        from kube_guardrails.handlers import main as operator_main

        return operator_main.run(config)
    parser.error(f"unknown command {args.command!r}")
    return 2  # unreachable: parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
