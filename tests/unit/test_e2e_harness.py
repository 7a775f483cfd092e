"""The pure helpers of the e2e harness (tests/e2e/e2e_harness.py), tested without a cluster.

The context rule decides whether the suite may touch a cluster at all, and the
percentile is what the hardening benchmark reports; both must be right before anyone
runs them against a real cluster. The module is loaded from its file because
``tests/e2e`` is not a package (pytest puts it on ``sys.path`` only when it collects
that directory).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    if "e2e_harness" in sys.modules:
        return sys.modules["e2e_harness"]
    spec = importlib.util.spec_from_file_location(
        "e2e_harness", ROOT / "tests" / "e2e" / "e2e_harness.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_harness"] = module
    spec.loader.exec_module(module)
    return module


harness = _load()

CONTEXTS = [
    ("kind-kind", True),
    ("kind-guardrails", True),
    ("k3d-dev", True),
    ("minikube", True),
    ("docker-desktop", True),
    ("staging-test-cluster", True),
    ("ci-e2e", True),
    ("CI-E2E", True),
    ("kind", False),  # kind's contexts are always "kind-<cluster>"
    ("kindness-prod", False),
    ("prod-eu-1", False),
    ("gke_acme_europe-west1_prod", False),
    ("arn:aws:eks:eu-west-1:123456789012:cluster/payments", False),
    ("", False),
]


@pytest.mark.parametrize(("name", "allowed"), CONTEXTS, ids=[c[0] or "empty" for c in CONTEXTS])
def test_context_name_rule(name: str, allowed: bool) -> None:
    assert harness.looks_like_test_context(name) is allowed


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(("name", "allowed"), CONTEXTS, ids=[c[0] or "empty" for c in CONTEXTS])
def test_hack_e2e_sh_applies_the_same_context_rule(name: str, allowed: bool) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "e2e.sh"), "check-context", name],
        capture_output=True,
        timeout=30,
    )
    assert (result.returncode == 0) is allowed, result.stderr


@pytest.mark.parametrize(
    ("name", "env", "refused", "mentions"),
    [
        pytest.param("kind-kind", {}, False, [], id="test-context"),
        pytest.param("prod", {}, True, ["'prod'", harness.ALLOW_ANY_CONTEXT_ENV], id="refused"),
        pytest.param("prod", {harness.ALLOW_ANY_CONTEXT_ENV: "1"}, False, [], id="opt-in-1"),
        pytest.param("prod", {harness.ALLOW_ANY_CONTEXT_ENV: "true"}, False, [], id="opt-in-true"),
        pytest.param("prod", {harness.ALLOW_ANY_CONTEXT_ENV: "0"}, True, ["'prod'"], id="opt-in-0"),
        pytest.param(None, {}, True, ["no current context"], id="no-context"),
    ],
)
def test_context_refusal(
    name: str | None, env: dict[str, str], refused: bool, mentions: list[str]
) -> None:
    reason = harness.context_refusal(name, env)
    assert (reason is not None) is refused
    for text in mentions:
        assert text in (reason or "")


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        pytest.param(list(range(1, 101)), 50, 50, id="p50-of-100"),
        pytest.param(list(range(1, 101)), 99, 99, id="p99-of-100"),
        pytest.param(list(range(1, 101)), 100, 100, id="p100-is-max"),
        pytest.param(list(range(1, 201)), 99, 198, id="p99-of-200"),
        pytest.param([5.0], 99, 5.0, id="single-value"),
        pytest.param([3, 1, 2], 50, 2, id="unsorted-input"),
        pytest.param([1, 2, 3, 4], 50, 2, id="even-count-no-interpolation"),
        pytest.param([10, 20], 1, 10, id="tiny-percentile-is-min"),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert harness.percentile(values, pct) == expected


@pytest.mark.parametrize(
    ("values", "pct"),
    [
        pytest.param([], 50, id="no-values"),
        pytest.param([1.0], 0, id="zero"),
        pytest.param([1.0], 101, id="above-100"),
    ],
)
def test_percentile_rejects_bad_input(values: list[float], pct: float) -> None:
    with pytest.raises(ValueError):
        harness.percentile(values, pct)


def test_summary_of_latencies() -> None:
    summary = harness.Summary.of([0.010 * i for i in range(1, 101)])
    assert (summary.count, summary.p50, summary.p99) == (100, pytest.approx(0.5), 0.99)
    assert summary.max == pytest.approx(1.0)
    assert summary.line() == "n=100 p50=500.0ms p90=900.0ms p99=990.0ms max=1000.0ms"


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _sequence(*values: object) -> Callable[[], object]:
    it = iter(values)
    return lambda: next(it)


@pytest.mark.parametrize(
    ("values", "result", "sleeps"),
    [
        pytest.param([{"a": 1}], {"a": 1}, 0, id="immediately"),
        pytest.param([None, [], "ready"], "ready", 2, id="after-two-polls"),
        pytest.param([0, False, 7], 7, 2, id="falsy-values-keep-polling"),
    ],
)
def test_wait_for_returns_the_first_truthy_value(
    values: list[object], result: object, sleeps: int
) -> None:
    clock = FakeClock()
    got = harness.wait_for(
        _sequence(*values), timeout=10, what="x", interval=0.5, clock=clock, sleep=clock.sleep
    )
    assert got == result
    assert clock.sleeps == [0.5] * sleeps


def test_wait_for_times_out_naming_what_and_the_last_value() -> None:
    clock = FakeClock()
    with pytest.raises(
        harness.WaitTimeout, match=r"after 2s waiting for the thing; last seen: \[\]"
    ):
        harness.wait_for(
            lambda: [], timeout=2, what="the thing", interval=0.5, clock=clock, sleep=clock.sleep
        )
    assert clock.now == pytest.approx(2.0)


def test_wait_timeout_is_an_assertion_error() -> None:
    # pytest then reports a timeout as a test failure, not as an error in the harness.
    assert issubclass(harness.WaitTimeout, AssertionError)


@pytest.mark.parametrize(
    ("values", "holds"),
    [
        pytest.param([True] * 10, True, id="holds-throughout"),
        pytest.param([True, True, False, True], False, id="breaks-midway"),
        pytest.param([False], False, id="false-at-once"),
    ],
)
def test_hold_for(values: list[bool], holds: bool) -> None:
    clock = FakeClock()
    predicate = _sequence(*values)
    if holds:
        harness.hold_for(
            predicate,
            duration=2,
            what="x",
            interval=0.5,
            clock=clock,
            sleep=clock.sleep,
        )
        assert clock.now == pytest.approx(2.0)
    else:
        with pytest.raises(AssertionError, match="expected x to hold for 2s"):
            harness.hold_for(
                predicate,
                duration=2,
                what="x",
                interval=0.5,
                clock=clock,
                sleep=clock.sleep,
            )


NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("case", "suffix"),
    [
        pytest.param("new_namespace_is_hardened", "p", id="short"),
        pytest.param(
            "tampered_managed_object_is_restored[deleted-network-policy]", "ns1", id="param-id"
        ),
        pytest.param("X" * 200, "Y" * 200, id="very-long"),
        pytest.param("!!!", "", id="nothing-usable"),
    ],
)
def test_object_names_are_dns_labels(case: str, suffix: str) -> None:
    name = harness.object_name("abc123", case, suffix)
    assert len(name) <= 63 and NAME.match(name), name
    assert name.startswith(harness.NAME_PREFIX + "abc123-")


def test_truncated_names_stay_distinct() -> None:
    a = harness.object_name("r", "tampered_managed_object_is_restored[deleted-network-policy]", "p")
    b = harness.object_name("r", "tampered_managed_object_is_restored[deleted-limit-range]", "p")
    assert a != b


@pytest.mark.parametrize(
    ("metadata", "found"),
    [
        pytest.param({}, [], id="bare"),
        pytest.param(
            {"annotations": {"kube-guardrails.io/violations": "p/privileged"}}, [], id="ours-only"
        ),
        pytest.param(
            {
                "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"},
                "finalizers": ["kopf.zalando.org/KopfFinalizerMarker", "kubernetes"],
            },
            ["kopf.zalando.org/KopfFinalizerMarker", "kopf.zalando.org/last-handled-configuration"],
            id="kopf-state",
        ),
        pytest.param(
            {"annotations": {"my-op.kopf.zalando.org/progress": "{}"}},
            ["my-op.kopf.zalando.org/progress"],
            id="custom-kopf-prefix",
        ),
    ],
)
def test_kopf_state_detection(metadata: dict[str, object], found: list[str]) -> None:
    assert harness.kopf_state(metadata) == found


@pytest.mark.parametrize(
    ("events", "total"),
    [
        pytest.param([], 0, id="none"),
        pytest.param([{}], 1, id="no-count-is-one"),
        pytest.param([{"count": 3}], 3, id="core-count"),
        pytest.param([{"count": 0, "series": {"count": 5}}], 5, id="events-k8s-io-series"),
        pytest.param([{"count": 2}, {"count": 1}], 3, id="several"),
    ],
)
def test_event_total(events: list[dict[str, object]], total: int) -> None:
    assert harness.event_total(events) == total


def test_deep_merge_merges_maps_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = harness.deep_merge(base, {"a": {"c": [3], "e": 2}, "d": {"x": 1}})
    assert merged == {"a": {"b": 1, "c": [3], "e": 2}, "d": {"x": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}, "the base is not modified"


def test_iso_utc() -> None:
    assert harness.iso_utc(0) == "1970-01-01T00:00:00Z"
    assert harness.iso_utc(1_800_000_000.7) == "2027-01-15T08:00:00Z"


def test_settings_defaults() -> None:
    settings = harness.E2ESettings.from_env({})
    assert settings == harness.E2ESettings()
    assert settings.mode == "local" and settings.resync_seconds is None


def test_settings_from_env() -> None:
    p = harness.ENV_PREFIX
    settings = harness.E2ESettings.from_env(
        {
            p + "OPERATOR": "in-cluster",
            p + "LIVENESS_URL": "http://127.0.0.1:18080/healthz",
            p + "RESYNC_SECONDS": "5",
            p + "STATUS_INTERVAL_SECONDS": "1",
            p + "RESTART_COMMAND": "hack/e2e.sh restart-operator",
            p + "TIMEOUT": "90",
            p + "IMAGE": "registry.example.com/pause:1",
            p + "CONTEXT": "kind-x",
            p + "OPERATOR_ACCOUNT": "system:serviceaccount:kube-guardrails-system:kube-guardrails",
            p + "OPERATOR_KUBECONFIG": "/tmp/operator.kubeconfig",
        }
    )
    assert settings == harness.E2ESettings(
        mode="in-cluster",
        liveness_url="http://127.0.0.1:18080/healthz",
        resync_seconds=5.0,
        status_interval_seconds=1.0,
        restart_command="hack/e2e.sh restart-operator",
        timeout=90.0,
        image="registry.example.com/pause:1",
        context="kind-x",
        operator_account="system:serviceaccount:kube-guardrails-system:kube-guardrails",
        operator_kubeconfig="/tmp/operator.kubeconfig",
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        pytest.param("OPERATOR", "remote", "must be local or in-cluster", id="mode"),
        pytest.param("RESYNC_SECONDS", "soon", "is not a number", id="not-a-number"),
        pytest.param("TIMEOUT", "-1", "must be positive", id="negative"),
    ],
)
def test_settings_errors_name_the_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        harness.E2ESettings.from_env({harness.ENV_PREFIX + key: value})
    assert harness.ENV_PREFIX + key in str(error.value)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param(
            {"kind": "PodList", "apiVersion": "v1", "items": [{"metadata": {"name": "a"}}]},
            [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}}],
            id="real-server-omits-kind",
        ),
        pytest.param(
            {
                "kind": "NetworkPolicyList",
                "apiVersion": "networking.k8s.io/v1",
                "items": [{"kind": "NetworkPolicy", "metadata": {"name": "b"}}],
            },
            [
                {
                    "kind": "NetworkPolicy",
                    "apiVersion": "networking.k8s.io/v1",
                    "metadata": {"name": "b"},
                }
            ],
            id="kind-kept",
        ),
        pytest.param({"kind": "Status", "items": None}, [], id="no-items"),
        pytest.param(
            {"items": [{"metadata": {"name": "c"}}]}, [{"metadata": {"name": "c"}}], id="no-kind"
        ),
    ],
)
def test_list_items_carry_their_kind(
    response: dict[str, object], expected: list[dict[str, object]]
) -> None:
    assert harness.list_items(response) == expected
