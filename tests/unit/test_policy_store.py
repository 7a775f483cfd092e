"""The policy store compiles a policy when it changes, and only then.

Reviews take ``PolicyStore.compiled()``; these tests pin that a compiled policy is the
store's current valid policy, built once per change (a resync of the same spec keeps
it), and bound to the rules of the policy's level.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import workload_fakes as fakes

from kube_guardrails.checks import pss, registry
from kube_guardrails.services import policies


def _rules(store: policies.PolicyStore) -> dict[str, registry.CheckFn]:
    [compiled] = store.compiled()
    return {b.check.id: b.rule for b in compiled.checks}


def test_a_stored_policy_is_compiled_with_its_entry() -> None:
    store = policies.PolicyStore()
    entry = store.upsert(fakes.policy("p", level="restricted"))
    [compiled] = store.compiled()
    assert entry.compiled is compiled
    assert compiled.policy is entry.policy
    assert compiled.level is registry.Level.RESTRICTED
    assert [b.check.id for b in compiled.checks] == [a.check.id for a in compiled.active]


def test_a_resync_of_the_same_spec_keeps_the_compiled_policy() -> None:
    store = policies.PolicyStore()
    obj = fakes.policy("p")
    store.upsert(obj)
    [before] = store.compiled()
    again = copy.deepcopy(obj)
    again["metadata"]["resourceVersion"] = "999"  # a status update, a periodic relist
    entry = store.upsert(again)
    [after] = store.compiled()
    assert after is before
    assert entry.policy is before.policy


@pytest.mark.parametrize(
    ("level", "seccomp_rule", "capabilities_rule"),
    [
        pytest.param("baseline", pss.seccomp, pss.capabilities, id="baseline-rules"),
        pytest.param(
            "restricted",
            pss.seccomp_restricted,
            pss.capabilities_restricted,
            id="restricted-overrides",
        ),
    ],
)
def test_a_changed_level_recompiles_with_the_rules_of_that_level(
    level: str, seccomp_rule: Any, capabilities_rule: Any
) -> None:
    store = policies.PolicyStore()
    other = "restricted" if level == "baseline" else "baseline"
    store.upsert(fakes.policy("p", level=other))
    store.upsert(fakes.policy("p", level=level))
    rules = _rules(store)
    assert rules["seccomp"] is seccomp_rule
    assert rules["capabilities"] is capabilities_rule


def test_invalid_and_removed_policies_are_not_compiled() -> None:
    store = policies.PolicyStore()
    store.upsert(fakes.policy("good"))
    bad = fakes.policy("bad")
    bad["spec"]["workloads"]["podSecurity"] = "extreme"
    entry = store.upsert(bad)
    assert entry.error is not None and entry.compiled is None
    assert [c.name for c in store.compiled()] == ["good"]
    store.remove("good")
    assert store.compiled() == []
