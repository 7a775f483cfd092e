"""Allow ``python -m kube_guardrails``."""

from kube_guardrails import cli

raise SystemExit(cli.main())
