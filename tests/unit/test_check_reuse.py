"""Shared work in a review must never change a verdict.

``planning.review`` runs a check once per pod when several policies configure it alike
(same params; same level when the check is ``level_sensitive``) and attributes the
violations to each policy. These tests pin the assumptions that makes safe: checks not
declared level-sensitive give the same result at every level, a multi-policy review
equals the policy-by-policy reviews put together, and the engine's fast Context
constructor builds the same Context as the dataclass.
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
    "none-with-level-sensitive-checks-on": [
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


LEVEL_FREE = [c for c in registry.all_checks() if not c.level_sensitive]


@pytest.mark.parametrize("chk", LEVEL_FREE, ids=lambda c: c.id)
def test_a_check_not_declared_level_sensitive_gives_the_same_result_at_every_level(
    chk: registry.Check,
) -> None:
    selected = [engine.Selected(check=chk, params=ALLOWED.get(chk.id, {}))]
    for pod_id, pod in PODS:
        results = {level: engine.run(pod, selected, level=level) for level in registry.Level}
        assert len(set(map(repr, results.values()))) == 1, pod_id


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
    a = engine.Selected(check=chk, params=params_a).reuse_key(level)
    b = engine.Selected(check=chk, params=params_b).reuse_key(level)
    assert (a == b) is same


@pytest.mark.parametrize(
    ("check_id", "shared_across_levels"),
    [
        pytest.param("privileged", True, id="privileged-level-free"),
        pytest.param("resources", True, id="resources-level-free"),
        pytest.param("seccomp", False, id="seccomp-level-sensitive"),
        pytest.param("capabilities", False, id="capabilities-level-sensitive"),
        pytest.param("procMount", False, id="procMount-level-sensitive"),
    ],
)
def test_reuse_keys_carry_the_level_only_for_level_sensitive_checks(
    check_id: str, shared_across_levels: bool
) -> None:
    sel = engine.Selected(check=registry.get(check_id))
    keys = {sel.reuse_key(level) for level in registry.Level}
    assert (len(keys) == 1) is shared_across_levels


def test_params_that_cannot_be_frozen_are_never_reused() -> None:
    sel = engine.Selected(check=registry.get("imageRegistry"), params={"allowed": {"a/"}})
    assert sel.reuse_key(registry.Level.BASELINE) is None


def test_make_context_sets_every_context_field() -> None:
    fields = {f.name for f in dataclasses.fields(registry.Context)}
    assert set(inspect.signature(registry.make_context).parameters) == fields
    values: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {"containers": []},
        "level": registry.Level.RESTRICTED,
        "params": {"allowed": ["a/"]},
        "spec_path": "spec.template.spec",
        "metadata_path": "spec.template.metadata",
        "derived": {},
    }
    fast = registry.make_context(**values)
    assert fast == registry.Context(**values)
    assert vars(fast) == vars(registry.Context(**values))
