"""Event objects as kubectl describe finds them; structured logs, kopf's included."""

from __future__ import annotations

import datetime
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kube_guardrails import logs
from kube_guardrails.k8s import events

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("regarding", "event_namespace", "involved_namespace"),
    [
        pytest.param(
            {"apiVersion": "v1", "kind": "Namespace", "name": "team-a", "uid": "u1"},
            "default",
            None,
            id="cluster-scoped-namespace",
        ),
        pytest.param(
            {
                "apiVersion": "kube-guardrails.io/v1alpha1",
                "kind": "GuardrailPolicy",
                "name": "baseline",
                "uid": "u2",
            },
            "default",
            None,
            id="cluster-scoped-policy",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "team-a", "uid": "u3"},
            "team-a",
            "team-a",
            id="namespaced-pod",
        ),
    ],
)
def test_event_placement(
    regarding: dict[str, Any], event_namespace: str, involved_namespace: str | None
) -> None:
    ev = events.build_event(
        regarding=regarding,
        type="Warning",
        reason="R",
        message="m",
        action="A",
        now=NOW,
        instance="pod-1",
    )
    assert ev["metadata"]["namespace"] == event_namespace
    assert ev["metadata"]["generateName"] == f"{regarding['name']}."
    assert ev["involvedObject"].get("namespace") == involved_namespace
    assert ev["involvedObject"]["uid"] == regarding["uid"]
    assert ev["reportingComponent"] == "kube-guardrails"
    assert ev["source"] == {"component": "kube-guardrails"}
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2026-11-23T12:00:00Z"
    assert "eventTime" not in ev  # legacy core/v1 validation: cluster-scoped in "default"


def test_event_message_is_truncated_to_the_api_limit() -> None:
    ev = events.build_event(
        regarding={"kind": "Pod", "name": "x", "namespace": "a"},
        type="Normal",
        reason="R",
        message="x" * 5000,
        action="A",
        now=NOW,
        instance="i",
    )
    assert len(ev["message"]) == 1024 and ev["message"].endswith("...")


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(fmt="json", level="info")
    yield stream
    monkeypatch.undo()  # back to the real stderr before logging is set up again
    logs.configure(fmt="console", level="info")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_logs_with_fields(captured: io.StringIO) -> None:
    logs.get("kube_guardrails.test").info("namespace-hardened", namespace="team-a", policy="p")
    (record,) = lines(captured)
    assert record["event"] == "namespace-hardened"
    assert record["namespace"] == "team-a" and record["policy"] == "p"
    assert record["level"] == "info" and "timestamp" in record


def test_kopf_records_come_out_in_the_same_format(captured: io.StringIO) -> None:
    kopf_objects = logging.getLogger("kopf.objects")
    kopf_objects.info("Handler 'x' succeeded.")  # per-event chatter: debug level only
    kopf_objects.warning(
        "Handler 'x' failed.", extra={"k8s_ref": {"namespace": "team-a", "name": "web"}}
    )
    (record,) = lines(captured)
    assert record["event"] == "Handler 'x' failed."
    assert record["logger"] == "kopf.objects"
    assert (record["namespace"], record["name"]) == ("team-a", "web")


def test_secrets_are_masked(captured: io.StringIO) -> None:
    logs.get("kube_guardrails.test").warning("login", token="abc", server="https://k8s")
    (record,) = lines(captured)
    assert record["token"] == "***" and record["server"] == "https://k8s"


def test_debug_is_filtered_at_info(captured: io.StringIO) -> None:
    logs.get("kube_guardrails.test").debug("noise")
    assert lines(captured) == []


@pytest.mark.parametrize(
    ("fmt", "tty", "resolved"),
    [("auto", True, "console"), ("auto", False, "json"), ("json", True, "json")],
)
def test_auto_format(fmt: str, tty: bool, resolved: str) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert logs.resolve_format(fmt, stream=Stream()) == resolved


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        logs.configure(fmt="json", level="loud")
