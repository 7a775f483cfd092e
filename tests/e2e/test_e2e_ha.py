"""High availability (DESIGN section 9, issue 8): two replicas, one leader, take-over.

Each test runs hack/e2e.sh's operator (replica A, the leader) and a second
``kube-guardrails run`` next to it (replica B, the standby; ``e2e_replicas``), both as
the operator's ServiceAccount, campaigning for the same Lease, exactly as two Pods of
the Deployment do. Checked on the real API server:

* only the leader writes (the audit log, by the identity in each replica's User-Agent,
  and the standby's own counters);
* the standby is live (its health endpoint answers and says "standby");
* the leader killed with SIGKILL in the middle of a burst of new namespaces: the
  standby takes over, and every namespace ends hardened with exactly one create of
  each managed object and exactly one NamespaceHardened Event;
* a graceful stop (SIGTERM) releases the Lease, so the standby need not wait for it
  to expire.

These tests kill and restart the operator, so they are ``e2e_serial``; afterwards A
leads again (restarted if it was killed, then B stopped gracefully).
"""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_replicas as replicas
import e2e_scenario
import pytest

from kube_guardrails import OPERATOR_NAMESPACE
from kube_guardrails.k8s import leader

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_serial]

Scenario = e2e_scenario.Scenario
NAMESPACE_HARDENED = e2e_scenario.NAMESPACE_HARDENED
MANAGED_RESOURCES = ("networkpolicies", "limitranges")


class Pair:
    def __init__(self, leader: replicas.Replica, standby: replicas.Replica) -> None:
        self.leader = leader
        self.standby = standby


@pytest.fixture
def pair(restartable: e2e_scenario.Env) -> Iterator[Pair]:
    """hack/e2e.sh's operator leading, a second replica on standby; restored afterwards."""
    env = restartable
    settings = env.settings
    if settings.mode != "local" or not settings.operator_pidfile:
        pytest.skip(
            "the HA tests run a second replica next to a local operator: run hack/e2e.sh "
            "(local mode; it sets KUBE_GUARDRAILS_E2E_OPERATOR_PIDFILE)"
        )
    a = replicas.Replica(
        name="replica-a", liveness_url=settings.liveness_url, pidfile=settings.operator_pidfile
    )
    if a.gone() or a.report() is None:
        env.restart_operator()
    replicas.wait_role(a, "leader", timeout=settings.timeout)
    workdir = pathlib.Path(settings.operator_pidfile).parent  # next to A's log
    b = replicas.start_replica(settings, name=f"replica-b-{env.run}", workdir=workdir)
    try:
        replicas.wait_warm_standby(b, a, timeout=settings.timeout)
        yield Pair(leader=a, standby=b)
    finally:
        try:
            if a.gone() or a.report() is None:
                env.restart_operator()
            b.stop()
            replicas.wait_role(a, "leader", timeout=settings.timeout)
        except Exception:
            print(f"replica B log:\n{b.log_tail()}")
            raise


def audit_log(scenario: Scenario) -> replicas.AuditLog | None:
    path = scenario.env.settings.audit_log
    return replicas.AuditLog(path) if path else None


def operator_user(scenario: Scenario) -> str | None:
    return scenario.env.settings.operator_account


def test_standby_is_live_and_says_so(scenario: Scenario, pair: Pair) -> None:
    leader_id, standby_id = pair.leader.identity(), pair.standby.identity()
    assert leader_id and standby_id and leader_id != standby_id
    report = pair.standby.report()
    assert report is not None, "the standby's liveness endpoint does not answer"
    assert report["leader"] == {
        "election": True,
        "role": "standby",
        "identity": standby_id,
        "holder": leader_id,
        "lease": f"{OPERATOR_NAMESPACE}/{leader.LEASE_NAME}",
    }
    assert report["hardening"]["synced"] is True  # warm caches, ready to take over
    assert report["writing"] is False
    assert pair.leader.role() == "leader"
    assert replicas.lease_holder(scenario.kube) == leader_id


def test_only_the_leader_writes(scenario: Scenario, pair: Pair) -> None:
    audit = audit_log(scenario)
    leader_id, standby_id = pair.leader.identity(), pair.standby.identity()
    assert leader_id and standby_id
    policy = scenario.policy(
        "p", {"workloads": {"podSecurity": "baseline", "checks": e2e_scenario.QUIET_CHECKS}}
    )["metadata"]["name"]
    scenario.wait_policy_ready(policy)
    namespaces = [scenario.namespace()["metadata"]["name"] for _ in range(3)]
    for ns in namespaces:
        scenario.wait_hardened(ns, policy)
    pod = scenario.create(
        kube_api.pods(namespaces[0]),
        e2e_scenario.pod(
            namespaces[0], scenario.name("priv"), scenario.env.settings.image, privileged=True
        ),
    )
    scenario.wait_annotated(pod)
    scenario.wait_event(pod, e2e_scenario.GUARDRAIL_VIOLATION)

    standby = pair.standby.report() or {}
    assert standby["hardening"]["reconciled"] == 0
    assert standby["hardening"]["statusWrites"] == 0
    assert standby["workloads"]["annotationWrites"] == 0
    assert standby["workloads"]["reviews"] == 0
    if audit is None:
        pytest.skip("no audit log (KUBE_GUARDRAILS_E2E_AUDIT_LOG): checked the counters only")
    writes = audit.writes(user=operator_user(scenario))
    by_standby = [replicas.object_of(w) for w in writes if replicas.written_by(w, standby_id)]
    by_leader = [replicas.object_of(w) for w in writes if replicas.written_by(w, leader_id)]
    assert by_standby == []
    written = {(resource, ns) for resource, ns, _ in by_leader}
    for ns in namespaces:
        assert ("networkpolicies", ns) in written and ("limitranges", ns) in written
    assert ("pods", namespaces[0]) in written  # the violation annotation


def test_leader_killed_mid_burst_standby_takes_over_nothing_lost_or_doubled(
    scenario: Scenario, pair: Pair
) -> None:
    audit = audit_log(scenario)
    old_id, new_id = pair.leader.identity(), pair.standby.identity()
    policy = scenario.policy(
        "p", {"workloads": {"podSecurity": "baseline", "checks": e2e_scenario.QUIET_CHECKS}}
    )["metadata"]["name"]
    scenario.wait_policy_ready(policy)
    image = scenario.env.settings.image
    first = scenario.namespace("a")["metadata"]["name"]
    scenario.wait_hardened(first, policy)
    # A violation the old leader recorded (annotation and Event) before it dies: the
    # new leader's first full review must find it recorded and post nothing again.
    before = scenario.create(
        kube_api.pods(first),
        e2e_scenario.pod(first, scenario.name("before"), image, privileged=True),
    )
    scenario.wait_event(before, e2e_scenario.GUARDRAIL_VIOLATION)
    namespaces = [first] + [scenario.namespace("a")["metadata"]["name"] for _ in range(9)]
    pair.leader.signal(signal.SIGKILL)
    killed = time.monotonic()
    namespaces += [scenario.namespace("b")["metadata"]["name"] for _ in range(10)]
    # In the first namespace: a new one may not have its default ServiceAccount yet.
    after = scenario.create(
        kube_api.pods(first),
        e2e_scenario.pod(first, scenario.name("after"), image, privileged=True),
    )
    harness.wait_for(pair.leader.gone, timeout=10, what="the killed leader to be gone")
    replicas.wait_role(pair.standby, "leader", timeout=scenario.timeout)
    print(f"take-over: {time.monotonic() - killed:.1f}s after SIGKILL (lease 10 s)")
    assert replicas.lease_holder(scenario.kube) == new_id
    scenario.wait_annotated(after)
    scenario.wait_event(after, e2e_scenario.GUARDRAIL_VIOLATION)

    uids = {}
    for ns in namespaces:
        scenario.wait_hardened(ns, policy)
        uids[ns] = scenario.kube.get(kube_api.namespaces(ns))["metadata"]["uid"]
    # Exactly one NamespaceHardened Event each: posted by the old leader, or owed and
    # posted by the new one (fixed names: a second post cannot make a second Event).
    for ns in namespaces:
        events = scenario.wait(
            lambda ns=ns: scenario.events(uids[ns], NAMESPACE_HARDENED),
            f"the NamespaceHardened Event of {ns}",
        )
        assert len(events) == 1 and harness.event_total(events) == 1, (ns, events)
    # One GuardrailViolation Event per violating Pod: the set changed once for each.
    for pod in (before, after):
        events = scenario.events(pod["metadata"]["uid"], e2e_scenario.GUARDRAIL_VIOLATION)
        assert harness.event_total(events) == 1, (pod["metadata"]["name"], events)
    if audit is None:
        pytest.skip("no audit log (KUBE_GUARDRAILS_E2E_AUDIT_LOG): checked objects and Events")
    writes = audit.writes(user=operator_user(scenario))
    # (resource, namespace) -> [(which leader, HTTP status)] of every create attempt. A
    # create cut off by the SIGKILL is logged as 504 whether or not the server stored
    # the object; a duplicate (acting on a stale view) would show as a second 201 or a
    # 409 AlreadyExists. That there is exactly one object was checked above.
    creates: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for w in writes:
        resource, ns, _ = replicas.object_of(w)
        if w.get("verb") == "create" and ns in uids and resource in MANAGED_RESOURCES:
            who = "old" if old_id and replicas.written_by(w, old_id) else "?"
            who = "new" if new_id and replicas.written_by(w, new_id) else who
            code = int((w.get("responseStatus") or {}).get("code") or 0)
            creates.setdefault((resource, ns), []).append((who, code))
    for ns in namespaces:
        for resource in MANAGED_RESOURCES:
            made = creates.get((resource, ns), [])
            created = [who for who, code in made if 200 <= code < 300]
            cut_off = [who for who, code in made if code == 504 and who == "old"]
            conflicts = [who for who, code in made if code == 409]
            assert len(created) <= 1 and not conflicts, f"{resource} in {ns}: {made}"
            assert created or cut_off, f"{resource} in {ns}: never created? {made}"
    # Each violating Pod annotated once (by whichever leader saw it first).
    for pod in (before, after):
        ref = ("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        patches = [w for w in writes if replicas.object_of(w) == ref and w.get("verb") == "patch"]
        assert len(patches) == 1, (ref, [w.get("userAgent") for w in patches])
    # The burst straddled the kill: both leaders did part of it.
    assert {who for made in creates.values() for who, code in made if code < 300} == {"old", "new"}


def test_graceful_stop_releases_the_lease(scenario: Scenario, pair: Pair) -> None:
    old_id, new_id = pair.leader.identity(), pair.standby.identity()
    assert replicas.lease_holder(scenario.kube) == old_id
    pair.leader.signal(signal.SIGTERM)
    harness.wait_for(pair.leader.gone, timeout=60, what="the leader to exit on SIGTERM")
    # Without a release the Lease would name the old leader for another lease duration
    # (10 s) after its last renewal; released, it is empty or the standby's already.
    assert replicas.lease_holder(scenario.kube) in ("", new_id)
    replicas.wait_role(pair.standby, "leader", timeout=scenario.timeout)
    assert replicas.lease_holder(scenario.kube) == new_id
