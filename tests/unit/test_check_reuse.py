"""Shared work in a review must never change a verdict.

``planning.review`` runs a check once per pod when several compiled policies bound it
alike (the same rule for their levels, the same params) and attributes the violations
to each policy. These tests pin the assumptions that makes safe: checks bound alike at
two levels give the same result at both, a multi-policy review equals the
policy-by-policy reviews put together, and the engine's fast Context constructor builds
the same Context as the dataclass.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import pathlib
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from kube_guardrails import planning
from kube_guardrails.checks import engine, registry
from kube_guardrails.model import policy as policy_model

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
CASES = pathlib.Path(__file__).parent.parent / "checks" / "cases"
ALLOWED = {"imageRegistry": {"allowed": ["registry.example.com/"]}}


def fixture_pods() -> list[tuple[str, engine.PodInput]]:
    """Every manifest of the check fixtures, as (id, pod input)."""
    out: list[tuple[str, engine.PodInput]] = []
    for path in sorted(CASES.glob("*/*.yaml")):
        for n, doc in enumerate(yaml.safe_load_all(path.read_text())):
            pod = engine.pod_input(doc) if isinstance(doc, dict) else None
            if pod is not None:
                out.append((f"{path.parent.name}/{path.stem}#{n}", pod))
    return out


PODS = fixture_pods()


def policy(name: str, level: str, checks: dict[str, Any] | None = None, **spec: Any) -> Any:
    workloads: dict[str, Any] = {"podSecurity": level, "checks": checks or {}}
    if "exemptions" in spec:
        workloads["exemptions"] = spec.pop("exemptions")
    return policy_model.parse(
        {
            "apiVersion": "kube-guardrails.io/v1alpha1",
            "kind": "GuardrailPolicy",
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"workloads": workloads, **spec},
        }
    )


EXEMPT_SECCOMP = {
    "checks": ["seccomp", "probes"],
    "reason": "TICKET-1",
    "expires": "2027-01-31T00:00:00Z",
}
EXPIRED_ALL = {"reason": "TICKET-2", "expires": "2026-01-01T00:00:00Z"}

POLICY_SETS: dict[str, list[Any]] = {
    "baseline+restricted": [
        policy("base", "baseline", ALLOWED),
        policy("strict", "restricted", ALLOWED),
    ],
    "restricted+baseline": [
        policy("strict", "restricted", ALLOWED),
        policy("base", "baseline", ALLOWED),
    ],
    "same-checks-other-severity-and-action": [
        policy("a", "restricted", ALLOWED),
        policy(
            "b",
            "restricted",
            {
                **ALLOWED,
                "privileged": {"severity": "low"},
                "resources": {"action": "Enforce", "severity": "critical"},
            },
        ),
    ],
    "other-params": [
        policy("a", "baseline", ALLOWED),
        policy("b", "baseline", {"imageRegistry": {"allowed": ["docker.io/library/"]}}),
    ],
    "none-with-overridden-checks-on": [
        policy("off", "none", {"seccomp": {"action": "Audit"}, "capabilities": {}}),
        policy("base", "baseline"),
        policy("strict", "restricted"),
    ],
    "exemptions": [
        policy("a", "restricted", ALLOWED, exemptions=[EXEMPT_SECCOMP]),
        policy("b", "baseline", ALLOWED, exemptions=[EXPIRED_ALL]),
    ],
}


def review(pod: engine.PodInput, policies: Sequence[Any]) -> planning.Verdict:
    return planning.review(pod, policies, namespace="team", labels={"app": "x"}, now=NOW)


@pytest.mark.parametrize("policy_set", sorted(POLICY_SETS))
def test_a_review_of_several_policies_is_the_policy_by_policy_reviews_together(
    policy_set: str,
) -> None:
    policies = POLICY_SETS[policy_set]
    for pod_id, pod in PODS:
        together = review(pod, policies)
        one_by_one = [review(pod, [p]) for p in policies]
        expected = tuple(f for v in one_by_one for f in v.findings)
        assert together.findings == expected, pod_id
        assert together.expired_exemptions == frozenset().union(
            *(v.expired_exemptions for v in one_by_one)
        ), pod_id


@pytest.mark.parametrize("chk", registry.all_checks(), ids=lambda c: c.id)
def test_a_check_bound_alike_at_two_levels_gives_the_same_result_at_both(
    chk: registry.Check,
) -> None:
    """The reuse key is a promise: equal keys, equal violations, on every fixture pod."""
    sel = engine.Selected(check=chk, params=ALLOWED.get(chk.id, {}))
    by_key: dict[Any, list[registry.Level]] = {}
    for level in registry.Level:
        by_key.setdefault(engine.bind(sel, level).reuse_key, []).append(level)
    for levels in by_key.values():
        for pod_id, pod in PODS:
            results = {repr(engine.run(pod, [sel], level=level)) for level in levels}
            assert len(results) == 1, (pod_id, levels)


@pytest.mark.parametrize(
    ("params_a", "params_b", "same"),
    [
        pytest.param({}, {}, True, id="no-params"),
        pytest.param({"allowed": ["a/"]}, {"allowed": ["a/"]}, True, id="equal-lists"),
        pytest.param({"allowed": ["a/"]}, {"allowed": ["b/"]}, False, id="other-values"),
        pytest.param({"allowed": ["a/"]}, {"allowed": ("a/",)}, False, id="list-vs-tuple"),
        pytest.param({"n": 1}, {"n": True}, False, id="one-vs-true"),
        pytest.param({"n": 1}, {"n": 1.0}, False, id="int-vs-float"),
    ],
)
def test_reuse_keys_tell_params_apart(
    params_a: dict[str, Any], params_b: dict[str, Any], same: bool
) -> None:
    chk = registry.get("imageRegistry")
    level = registry.Level.BASELINE
    a = engine.bind(engine.Selected(check=chk, params=params_a), level).reuse_key
    b = engine.bind(engine.Selected(check=chk, params=params_b), level).reuse_key
    assert (a == b) is same


@pytest.mark.parametrize(
    ("check_id", "shared_across_levels"),
    [
        pytest.param("privileged", True, id="privileged-one-rule"),
        pytest.param("resources", True, id="resources-one-rule"),
        pytest.param("seccomp", False, id="seccomp-restricted-override"),
        pytest.param("capabilities", False, id="capabilities-restricted-override"),
        pytest.param("procMount", False, id="procMount-restricted-override"),
    ],
)
def test_reuse_keys_differ_across_levels_only_for_checks_with_an_override(
    check_id: str, shared_across_levels: bool
) -> None:
    sel = engine.Selected(check=registry.get(check_id))
    keys = {engine.bind(sel, level).reuse_key for level in registry.Level}
    assert (len(keys) == 1) is shared_across_levels


def test_params_that_cannot_be_frozen_are_never_reused() -> None:
    sel = engine.Selected(check=registry.get("imageRegistry"), params={"allowed": {"a/"}})
    assert engine.bind(sel, registry.Level.BASELINE).reuse_key is None


def test_make_context_sets_every_context_field() -> None:
    fields = {f.name for f in dataclasses.fields(registry.Context)}
    assert set(inspect.signature(registry.make_context).parameters) == fields
    values: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {"containers": []},
        "params": {"allowed": ["a/"]},
        "spec_path": "spec.template.spec",
        "metadata_path": "spec.template.metadata",
        "derived": {},
    }
    fast = registry.make_context(**values)
    assert fast == registry.Context(**values)
    assert vars(fast) == vars(registry.Context(**values))
