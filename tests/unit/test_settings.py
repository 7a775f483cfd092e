"""Settings from flags and KUBE_GUARDRAILS_* env vars: precedence and validation."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from kube_guardrails import settings


def parse(argv: list[str], env: dict[str, str] | None = None) -> settings.Settings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.from_args(parser.parse_args(argv), env or {})


def test_defaults() -> None:
    assert parse([]) == settings.Settings()
    defaults = settings.Settings()
    assert defaults.namespace == "kube-guardrails-system"
    assert defaults.log_format == "auto" and defaults.log_level == "info"
    assert defaults.context is None and defaults.workloads is True


@pytest.mark.parametrize(
    ("argv", "env", "field", "value"),
    [
        pytest.param([], {"KUBE_GUARDRAILS_LOG_FORMAT": "json"}, "log_format", "json", id="env"),
        pytest.param(
            ["--log-format", "console"],
            {"KUBE_GUARDRAILS_LOG_FORMAT": "json"},
            "log_format",
            "console",
            id="flag-beats-env",
        ),
        pytest.param(["--log-level", "DEBUG"], {}, "log_level", "debug", id="level-lowercased"),
        pytest.param(["--context", "kind-dev"], {}, "context", "kind-dev", id="context"),
        pytest.param([], {"KUBE_GUARDRAILS_CONTEXT": ""}, "context", None, id="empty-context"),
        pytest.param(
            [], {"KUBE_GUARDRAILS_RESYNC_SECONDS": "30"}, "resync_seconds", 30.0, id="resync"
        ),
        pytest.param(
            ["--status-interval-seconds", "0.5"], {}, "status_interval_seconds", 0.5, id="status"
        ),
        pytest.param([], {"KUBE_GUARDRAILS_WORKLOADS": "no"}, "workloads", False, id="bool-no"),
        pytest.param(["--workloads", "TRUE"], {}, "workloads", True, id="bool-true"),
        pytest.param(["--namespace", "ops"], {}, "namespace", "ops", id="namespace"),
        pytest.param(
            ["--liveness", "http://127.0.0.1:9000/healthz"],
            {},
            "liveness",
            "http://127.0.0.1:9000/healthz",
            id="liveness",
        ),
    ],
)
def test_values(argv: list[str], env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(parse(argv, env), field) == value


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        pytest.param(
            ["--log-format", "xml"], {}, "--log-format / KUBE_GUARDRAILS_LOG_FORMAT", id="format"
        ),
        pytest.param(["--log-level", "loud"], {}, "--log-level", id="level"),
        pytest.param([], {"KUBE_GUARDRAILS_RESYNC_SECONDS": "soon"}, "not a number", id="nan"),
        pytest.param(["--resync-seconds", "0"], {}, "between 0.1 and 86400", id="too-small"),
        pytest.param(["--workloads", "maybe"], {}, "not true or false", id="bool"),
        pytest.param(["--namespace", ""], {}, "must not be empty", id="namespace"),
        pytest.param(["--liveness", "https://0.0.0.0:8080/healthz"], {}, "not an http", id="tls"),
        pytest.param(["--liveness", ":8080"], {}, "not an http://HOST", id="no-scheme"),
    ],
)
def test_errors_name_flag_and_variable(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(settings.SettingsError, match=fragment.replace("/", ".")):
        parse(argv, env)


def test_every_field_has_a_flag_and_an_env_var() -> None:
    import dataclasses

    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    help_text = parser.format_help()
    for field in dataclasses.fields(settings.Settings):
        assert settings.env_name(field.name) in help_text, field.name
