"""StatusBatcher: only changes are written, at most once per interval per policy."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from kube_guardrails.services import status

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Reconciled",
    "message": "ok",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
    "observedGeneration": 3,
}
LIVE = {
    "observedGeneration": 3,
    "conditions": [READY],
    "namespaces": {"matched": 2, "hardened": 2},
    "violations": {"total": 1, "byCheck": {"probes": 1}},
}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(*, gone: bool = False) -> tuple[status.StatusBatcher, list[tuple[str, Any]], Clock]:
    written: list[tuple[str, Any]] = []
    clock = Clock()

    def write(name: str, patch: Mapping[str, Any]) -> bool:
        written.append((name, dict(patch)))
        return not gone

    batcher = status.StatusBatcher(write=write, interval=5.0, clock=clock, now=lambda: NOW)
    return batcher, written, clock


def same_as_live(b: status.StatusBatcher) -> None:
    b.set_ready("p", ready=True, reason="Reconciled", message="ok", observed_generation=3)
    b.set_namespaces("p", matched=2, hardened=2)
    b.set_violations("p", total=1, by_check={"probes": 1})


def test_nothing_changed_writes_nothing() -> None:
    b, written, _ = make()
    b.observe("p", LIVE)
    same_as_live(b)
    assert b.flush() == 0 and written == [] and b.pending() == []


def test_unset_parts_are_not_written() -> None:
    b, written, _ = make()
    b.observe("p", {})
    b.set_namespaces("p", matched=1, hardened=0)
    b.flush()
    assert written == [("p", {"namespaces": {"matched": 1, "hardened": 0}})]


@pytest.mark.parametrize(
    ("change", "patch"),
    [
        pytest.param(
            lambda b: b.set_namespaces("p", matched=3, hardened=2),
            {"namespaces": {"matched": 3, "hardened": 2}},
            id="counts",
        ),
        pytest.param(
            lambda b: b.set_violations("p", total=2, by_check={"imageTag": 2}),
            {"violations": {"total": 2, "byCheck": {"imageTag": 2, "probes": None}}},
            id="violations-null-removes-vanished-check",
        ),
        pytest.param(
            lambda b: b.set_ready(
                "p", ready=True, reason="Reconciled", message="ok", observed_generation=4
            ),
            {
                "observedGeneration": 4,
                "conditions": [dict(READY, observedGeneration=4)],
            },
            id="generation-keeps-transition-time",
        ),
        pytest.param(
            lambda b: b.set_ready(
                "p",
                ready=False,
                reason="PolicyInvalid",
                message="spec.mode: bad",
                observed_generation=3,
            ),
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "PolicyInvalid",
                        "message": "spec.mode: bad",
                        "lastTransitionTime": "2026-11-23T12:00:00Z",
                        "observedGeneration": 3,
                    }
                ]
            },
            id="ready-flips-new-transition-time",
        ),
    ],
)
def test_changes_are_written_as_minimal_merge_patches(change: Any, patch: dict[str, Any]) -> None:
    b, written, _ = make()
    b.observe("p", LIVE)
    same_as_live(b)
    change(b)
    assert b.flush() == 1
    assert written == [("p", patch)]
    assert b.flush(force=True) == 0  # written: now live


def test_at_most_one_write_per_interval() -> None:
    b, written, clock = make()
    b.observe("p", {})
    for i in range(10):
        b.set_namespaces("p", matched=i, hardened=i)
        b.flush()
    assert len(written) == 1
    clock.t += 5.0
    b.flush()
    assert written[-1] == ("p", {"namespaces": {"matched": 9, "hardened": 9}})
    assert len(written) == 2


def test_other_conditions_are_kept() -> None:
    b, written, _ = make()
    other = {"type": "Degraded", "status": "False"}
    b.observe("p", {"conditions": [other]})
    b.set_ready("p", ready=True, reason="Reconciled", message="ok", observed_generation=1)
    b.flush()
    assert written[0][1]["conditions"][0] == other


def test_failed_write_is_retried_and_gone_policy_forgotten() -> None:
    calls: list[str] = []

    def write(name: str, patch: Mapping[str, Any]) -> bool:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionError("API down")
        return False  # the policy was deleted meanwhile

    b = status.StatusBatcher(write=write, interval=5.0)
    b.set_namespaces("p", matched=1, hardened=1)
    assert b.flush() == 0
    assert b.pending() == ["p"]
    b.flush(force=True)
    assert b.pending() == [] and calls == ["p", "p"]


def test_observe_counts_only_the_first_sighting() -> None:
    b, _, _ = make()
    b.observe("p", LIVE)
    b.observe("p", {})  # a lagging watch event must not make us rewrite
    same_as_live(b)
    assert b.flush() == 0


def test_forget() -> None:
    b, written, _ = make()
    b.set_namespaces("p", matched=1, hardened=1)
    b.forget("p")
    assert b.flush() == 0 and written == []
