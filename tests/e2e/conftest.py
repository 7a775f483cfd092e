"""End-to-end fixtures: the cluster of the current kube context, and the operator on it.

The suite runs only when all of this holds, and every e2e test is reported as skipped
with the reason otherwise (so a plain ``pytest`` on a machine without a cluster stays
green and says why):

1. a kube config exists (``KUBECONFIG`` or ``~/.kube/config``) and its API server answers;
2. the context looks like a test cluster (kind-, k3d-, minikube, docker-desktop, or a
   name containing "test"/"e2e"), or ``KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1``;
3. the GuardrailPolicy CRD is installed and the operator is live: locally
   (``KUBE_GUARDRAILS_E2E_OPERATOR=local``, its liveness URL answers) or in-cluster
   (``=in-cluster``, its Deployment's pods are Ready).

``hack/e2e.sh`` arranges all three. The cluster is probed once per session, and only
when e2e tests were collected. Under hack/e2e.sh (``KUBE_GUARDRAILS_E2E_RESTART_COMMAND``
is set) the operator is waited for (its e2e_serial tests, in a process of their own, may
be restarting it just then), and a precondition that still fails fails the session: a
run of hack/e2e.sh that skipped every test would pass without testing anything.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import time
from collections.abc import Iterator

import e2e_harness as harness
import e2e_kube as kube_api
import e2e_scenario
import pytest

from kube_guardrails import API_GROUP, OPERATOR_NAMESPACE, PLURAL

_ENV_KEY = pytest.StashKey[e2e_scenario.Env | None]()
_REASON_KEY = pytest.StashKey[str]()


def _probe() -> tuple[e2e_scenario.Env | None, str]:
    """Connect and check preconditions; (env, "") or (None, the reason to skip)."""
    try:
        settings = harness.E2ESettings.from_env(os.environ)
    except ValueError as e:
        return None, f"bad e2e settings: {e}"
    try:
        context = kube_api.context_name(settings.context)
    except Exception as e:  # no kube config file, or an unreadable one
        return None, f"{harness.NO_CLUSTER_REASON} ({type(e).__name__}: {e})"
    # The safety rule is applied to the name before a single request is sent.
    refusal = harness.context_refusal(context, os.environ)
    if refusal:
        return None, refusal
    kube, reason = kube_api.probe_cluster(context)
    if kube is None:
        return None, reason or harness.NO_CLUSTER_REASON
    crd = kube.get_or_none(kube_api.crd(f"{PLURAL}.{API_GROUP}"))
    if crd is None:
        return None, (
            f"the GuardrailPolicy CRD is not installed in context {kube.context!r}: "
            "run hack/e2e.sh (or kubectl apply -f crds/ and start the operator)"
        )
    env = e2e_scenario.Env(kube=kube, settings=settings, run=harness.new_run_id())
    if not env.operator_alive() and settings.restart_command:
        # Run by hack/e2e.sh, which started the operator: the e2e_serial tests, in a
        # process of their own, may be restarting it while this one collects.
        with contextlib.suppress(harness.WaitTimeout):
            harness.wait_for(
                env.operator_alive, timeout=OPERATOR_WAIT_SECONDS, what="the operator live"
            )
    if not env.operator_alive():
        where = (
            f"its liveness URL {settings.liveness_url} does not answer"
            if settings.mode == "local"
            else f"no Ready operator pod in namespace {OPERATOR_NAMESPACE}"
        )
        return None, (
            f"the kube-guardrails operator is not running ({settings.mode} mode: {where}); "
            "run the suite through hack/e2e.sh, which starts it"
        )
    return env, ""


SERIAL = "e2e_serial"
#: How long a run of hack/e2e.sh waits for the operator it started to answer (an
#: operator restart by the e2e_serial tests takes a few seconds, more on a loaded machine).
OPERATOR_WAIT_SECONDS = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERIAL}: must not overlap with an operator restart: the restart tests themselves "
        "and tests that rely on the operator's in-memory state over a minute (rate limit, "
        "exemption expiry) or on its namespace. hack/e2e.sh runs them in one process, "
        "next to the xdist workers that run the rest (tests using the restartable fixture "
        "get the mark automatically)",
    )


# tryfirst: before pytest's own hook applies -m (so ``-m e2e_serial`` sees the added mark).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "restartable" in getattr(item, "fixturenames", ()):
            item.add_marker(SERIAL)
    e2e_items = [item for item in items if item.get_closest_marker("e2e")]
    if not e2e_items:
        return
    env, reason = _probe()
    config.stash[_ENV_KEY] = env
    config.stash[_REASON_KEY] = reason
    if env is None and os.environ.get(harness.ENV_PREFIX + "RESTART_COMMAND", "").strip():
        # hack/e2e.sh set everything up: a suite that skips every test there would pass
        # without testing anything. Fail loudly instead.
        raise pytest.UsageError(f"hack/e2e.sh set up the e2e suite, but: {reason}")
    if env is None:
        skip = pytest.mark.skip(reason=reason)
        for item in e2e_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def e2e_env(pytestconfig: pytest.Config) -> Iterator[e2e_scenario.Env]:
    env = pytestconfig.stash.get(_ENV_KEY, None)
    if env is None:
        pytest.skip(pytestconfig.stash.get(_REASON_KEY, harness.NO_CLUSTER_REASON))
    _delete_leftovers(env)
    yield env
    _delete_leftovers(env, keep_none=True)


#: Objects of other runs younger than this may belong to a run still going on (two CI
#: jobs sharing a cluster); they select only their own namespaces, so they can wait.
LEFTOVER_AGE_SECONDS = 3600


def _delete_leftovers(env: e2e_scenario.Env, *, keep_none: bool = False) -> None:
    """Delete policies and namespaces that an interrupted earlier run left behind.

    Everything the suite creates carries the run label, so this never touches anything
    else. At session start, other runs' objects older than an hour go; at the end,
    everything of this run.
    """
    if keep_none:
        selector = f"{harness.LABEL_RUN}={env.run}"
    else:
        selector = f"{harness.LABEL_RUN},{harness.LABEL_RUN}!={env.run}"
    now = time.time()

    def stale(item: kube_api.Obj) -> bool:
        if keep_none:
            return True
        created = item["metadata"].get("creationTimestamp") or ""
        try:
            age = now - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return False
        return age > LEFTOVER_AGE_SECONDS

    for item in env.kube.list(kube_api.policies(), labels=selector):
        if stale(item):
            env.kube.delete(kube_api.policies(item["metadata"]["name"]))
    for item in env.kube.list(kube_api.namespaces(), labels=selector):
        if stale(item) and not item["metadata"].get("deletionTimestamp"):
            env.kube.delete(kube_api.namespaces(item["metadata"]["name"]))


@pytest.fixture
def scenario(
    e2e_env: e2e_scenario.Env, request: pytest.FixtureRequest
) -> Iterator[e2e_scenario.Scenario]:
    """The test's own namespaces and policies, deleted afterwards."""
    case = request.node.name.removeprefix("test_")
    scn = e2e_scenario.Scenario(e2e_env, case)
    try:
        yield scn
    finally:
        scn.cleanup()


@pytest.fixture
def resync_window(e2e_env: e2e_scenario.Env) -> float:
    """Seconds covering two operator resyncs; skips when the resync interval is unknown."""
    if e2e_env.settings.resync_seconds is None:
        pytest.skip(
            "the operator's resync interval is unknown: set KUBE_GUARDRAILS_E2E_RESYNC_SECONDS "
            "to its --resync-seconds (hack/e2e.sh does)"
        )
    return e2e_env.resync_window()


@pytest.fixture
def restartable(e2e_env: e2e_scenario.Env) -> e2e_scenario.Env:
    """The env, when the harness knows how to restart the operator; skips otherwise."""
    if not e2e_env.settings.restart_command:
        pytest.skip(
            "no way to restart the operator: set KUBE_GUARDRAILS_E2E_RESTART_COMMAND "
            "(hack/e2e.sh sets it to 'hack/e2e.sh restart-operator')"
        )
    return e2e_env
