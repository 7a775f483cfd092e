"""Operator settings: one object, built once from flags and ``KUBE_GUARDRAILS_*`` env vars.

Flags win over environment variables, which win over the defaults. Every field is
validated at start-up so that a typo stops the operator with a clear message instead
of misbehaving later. Nothing here is read at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from collections.abc import Mapping

from kube_guardrails import OPERATOR_NAMESPACE

ENV_PREFIX = "KUBE_GUARDRAILS_"


class SettingsError(ValueError):
    """A setting with a bad value; the message names the flag and the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    #: Namespace the operator runs in; always excluded from every policy.
    namespace: str = OPERATOR_NAMESPACE
    #: ``json`` (for clusters), ``console`` (for terminals) or ``auto`` (console on a tty).
    log_format: str = "auto"
    #: ``debug``, ``info``, ``warning`` or ``error``.
    log_level: str = "info"
    #: kube config context to use when running outside the cluster (default: current).
    context: str | None = None
    #: Address of the health endpoint (``handlers.health``); empty: none.
    liveness: str = "http://0.0.0.0:8080/healthz"
    #: Seconds between full re-checks of every namespace (a safety net; watches do the work).
    resync_seconds: float = 600.0
    #: Seconds over which policy status updates are batched into one write per policy.
    status_interval_seconds: float = 5.0
    #: Watch and check Pods and Deployments (turn off to run hardening only).
    workloads: bool = True
    #: Seconds before retrying an eviction a PodDisruptionBudget refused (429); doubles on
    #: each refusal, capped at 300 s. The Pod is never deleted directly.
    eviction_backoff_seconds: float = 5.0


_FIELDS: dict[str, tuple[str, str]] = {
    # field: (flag, help)
    "namespace": ("--namespace", "namespace the operator runs in (always excluded)"),
    "log_format": ("--log-format", "json, console or auto (console on a terminal)"),
    "log_level": ("--log-level", "debug, info, warning or error"),
    "context": ("--context", "kube config context (default: the current one, or in-cluster)"),
    "liveness": ("--liveness", "health endpoint URL (http only; empty: none)"),
    "resync_seconds": ("--resync-seconds", "seconds between full re-checks (safety net)"),
    "status_interval_seconds": (
        "--status-interval-seconds",
        "seconds over which policy status writes are batched",
    ),
    "workloads": ("--workloads", "check Pods and Deployments: true or false"),
    "eviction_backoff_seconds": (
        "--eviction-backoff-seconds",
        "seconds before retrying an eviction a PodDisruptionBudget refused (doubles, max 300)",
    ),
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for field, (flag, text) in _FIELDS.items():
        default = getattr(defaults, field)
        parser.add_argument(
            flag,
            dest=f"setting_{field}",
            metavar=flag.lstrip("-").replace("-", "_").upper(),
            default=None,
            help=f"{text} [env {env_name(field)}; default {default}]",
        )


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    raw: dict[str, str] = {}
    env = os.environ if env is None else env
    for field in _FIELDS:
        value = getattr(args, f"setting_{field}", None)
        if value is None:
            value = env.get(env_name(field))
        if value is not None:
            raw[field] = value
    return build(raw)


def build(raw: Mapping[str, str]) -> Settings:
    """Validate raw string values into Settings; raise SettingsError naming the setting."""
    values: dict[str, object] = {}
    for field, value in raw.items():
        flag = _FIELDS[field][0]
        where = f"{flag} / {env_name(field)}"
        if field in ("resync_seconds", "status_interval_seconds", "eviction_backoff_seconds"):
            try:
                number = float(value)
            except ValueError:
                raise SettingsError(f"{where}: {value!r} is not a number") from None
            if not 0.1 <= number <= 86400:
                raise SettingsError(f"{where}: must be between 0.1 and 86400 seconds")
            values[field] = number
        elif field == "workloads":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise SettingsError(f"{where}: {value!r} is not true or false")
            values[field] = lowered in ("true", "1", "yes")
        elif field == "log_format":
            if value not in ("json", "console", "auto"):
                raise SettingsError(f"{where}: must be json, console or auto, not {value!r}")
            values[field] = value
        elif field == "log_level":
            if value.lower() not in ("debug", "info", "warning", "error"):
                raise SettingsError(f"{where}: must be debug, info, warning or error")
            values[field] = value.lower()
        elif field == "liveness":
            parts = urllib.parse.urlsplit(value)
            if value and (parts.scheme != "http" or not parts.hostname or not parts.path):
                raise SettingsError(
                    f"{where}: {value!r} is not an http://HOST:PORT/PATH URL (or empty for none)"
                )
            values[field] = value
        elif field == "namespace":
            if not value:
                raise SettingsError(f"{where}: must not be empty")
            values[field] = value
        else:
            values[field] = value or None
    return Settings(**values)  # type: ignore[arg-type]
