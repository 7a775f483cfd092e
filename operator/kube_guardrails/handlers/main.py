"""``kube-guardrails run``: the kopf operator, its settings, login and dependencies.

Every dependency (settings, API client, policy store, status batcher, hardening
service, work queue) is built once in :func:`startup` and reaches the handlers only
through kopf's ``memo``. The same startup runs under ``kube-guardrails run`` (settings
from flags and env, passed in ``memo``) and under ``kopf.testing.KopfRunner`` (settings
from ``KUBE_GUARDRAILS_*`` env vars), so integration tests run the real operator.

kopf is configured to behave as a guest on objects it does not own: only
``@kopf.on.event`` and ``@kopf.index`` handlers (no bookkeeping annotations, no
finalizers), standalone (no peering objects), no posting of its own info Events, and
CRD scanning off (one discovery at start-up, so it needs no CRD read permission).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from kube_guardrails import logs
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.handlers import health
from kube_guardrails.k8s import client as k8s_client
from kube_guardrails.k8s import hardening as k8s_hardening
from kube_guardrails.k8s import policies as k8s_policies
from kube_guardrails.services import hardening, policies, status, workqueue

log = logs.get(__name__)

HANDLER_MODULES = ("kube_guardrails.handlers.policies", "kube_guardrails.handlers.namespaces")
WORKLOADS_MODULE = "kube_guardrails.handlers.workloads"
RECONCILE_WORKERS = 8
# Parallel writes within a reconcile (one per managed kind) and Event posts.
WRITE_THREADS = 16


def handler_modules(config: guardrails_settings.Settings) -> list[str]:
    """The handler modules to load: workloads only if enabled and present."""
    modules = list(HANDLER_MODULES)
    if config.workloads and importlib.util.find_spec(WORKLOADS_MODULE) is not None:
        modules.append(WORKLOADS_MODULE)
    return modules


def run(config: guardrails_settings.Settings) -> int:
    """Run the operator until SIGINT/SIGTERM; returns the process exit status."""
    logs.configure(fmt=config.log_format, level=config.log_level)
    for module in handler_modules(config):
        importlib.import_module(module)
    log.info(
        "operator-starting",
        context=config.context or ("in-cluster" if k8s_client.in_cluster() else "current"),
        namespace=config.namespace,
        workloads=config.workloads,
        resync_seconds=config.resync_seconds,
    )
    # The health endpoint is ours (handlers.health), not kopf's: kopf caches probe
    # results for 10 s, so "synced" showed up that much late.
    kopf.run(
        clusterwide=True,
        standalone=True,
        memo=kopf.Memo(settings=config, serve_health=bool(config.liveness)),
    )
    return 0


def settings_from_env(env: Mapping[str, str] | None = None) -> guardrails_settings.Settings:
    """Settings from ``KUBE_GUARDRAILS_*`` only (the KopfRunner path has no flags)."""
    return guardrails_settings.from_args(argparse.Namespace(), os.environ if env is None else env)


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """No diff base: with no change-detecting handlers, kopf needs none.

    kopf computes an object's "essence" (a deep copy of the body) and reads its last
    handled state on every watch event, only to feed ``@kopf.on.create/update/...``
    handlers and daemons. We register none of those (only ``@kopf.on.event`` and
    ``@kopf.index``), so both are pure CPU cost per event; kopf never stores one either.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        pass


def configure_kopf(kopf_settings: kopf.OperatorSettings) -> None:
    """kopf settings for a well-behaved guest in a production cluster."""
    kopf_settings.persistence.diffbase_storage = NoDiffBaseStorage()
    # Only warnings and errors become Events; our own Events are posted explicitly.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.peering.standalone = True
    # A single discovery at start-up; no CRD/namespace watching (smaller RBAC).
    kopf_settings.scanning.disabled = True
    # Watches: ask the server to close the stream after 5 minutes, give up client-side a
    # bit later (a silent, half-dead connection), reconnect quickly but not in a hot loop.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.watching.connect_timeout = 10
    kopf_settings.watching.reconnect_backoff = 1.0
    kopf_settings.networking.request_timeout = 60
    kopf_settings.networking.connect_timeout = 10


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the dependencies, start the background loops (flush, reconcile, resync)."""
    configure_kopf(settings)
    config = memo.get("settings")
    if not isinstance(config, guardrails_settings.Settings):
        config = settings_from_env()
        memo.settings = config
    try:
        api_client = k8s_client.make_api_client(context=config.context)
    except k8s_client.ApiError as e:  # no usable kube config: retrying will not help
        raise kopf.PermanentError(str(e)) from None
    memo.api_client = api_client
    # asyncio.to_thread (every API call of the workload side) uses the loop's default
    # executor: min(32, cores + 4) threads would cap a burst of reviews at 6 requests in
    # flight on a 2-core node.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="api")
    )
    memo.policies = policies.PolicyStore()
    memo.status = status.StatusBatcher(
        write=lambda name, patch: k8s_policies.patch_status(api_client, name=name, status=patch),
        interval=config.status_interval_seconds,
    )
    memo.inventory = hardening.Inventory()
    memo.executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=WRITE_THREADS, thread_name_prefix="hardening-write"
    )
    memo.hardening = hardening.HardeningService(
        gateway=k8s_hardening.Gateway(api_client),
        inventory=memo.inventory,
        policies=memo.policies,
        status=memo.status,
        operator_namespace=config.namespace,
        executor=memo.executor,
    )
    service: hardening.HardeningService = memo.hardening
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        name="namespaces", process=service.reconcile, workers=RECONCILE_WORKERS
    )
    memo.queue = queue

    def on_policy_change(name: str, old: Any, new: Any) -> None:
        # Roll a policy change out to every namespace it selected or selects now.
        for namespace in service.affected_by_policy(old, new):
            queue.add_threadsafe(namespace)

    memo.policies.subscribe(on_policy_change)
    memo.tasks = [
        asyncio.create_task(memo.status.run(), name="status-flush"),
        asyncio.create_task(queue.run(), name="reconcile-queue"),
        asyncio.create_task(
            hardening.resync_forever(queue=queue, service=service, interval=config.resync_seconds),
            name="resync",
        ),
        asyncio.create_task(
            hardening.publish_status_forever(
                service=service, queue=queue, interval=max(config.status_interval_seconds / 2, 0.1)
            ),
            name="status-counts",
        ),
    ]
    if memo.get("serve_health"):
        memo.health = health.HealthServer(endpoint=config.liveness, report=lambda: report(memo))
        await memo.health.start()
    log.info("operator-started", namespace=config.namespace, workers=RECONCILE_WORKERS)


def ensure_started(memo: kopf.Memo) -> None:
    """Called by every event handler: the first call means the caches are complete.

    kopf runs non-indexing handlers only after every indexed resource (namespaces,
    policies, managed objects) has been fully listed, so from the first event on the
    inventory is warm and reconciling cannot mistake "not yet seen" for "missing".
    """
    queue: workqueue.WorkQueue[str] = memo.queue
    if not queue.started:
        queue.start()
        log.info("caches-synced", namespaces=len(memo.inventory.namespace_names()))


def report(memo: kopf.Memo) -> dict[str, Any]:
    """The health endpoint's body: one entry per component (as kopf's probes had)."""
    out = {"hardening": probe(memo)}
    workloads_probe = memo.get("workloads_probe")
    if callable(workloads_probe):
        out["workloads"] = workloads_probe(memo)
    return out


def probe(memo: kopf.Memo) -> dict[str, Any]:
    """Is the hardening side caught up with the cluster?"""
    queue: workqueue.WorkQueue[str] | None = memo.get("queue")
    batcher: status.StatusBatcher | None = memo.get("status")
    service: hardening.HardeningService | None = memo.get("hardening")
    if queue is None or batcher is None or service is None:
        return {"synced": False}
    return {
        "synced": queue.started,
        "busy": queue.busy,
        "reconciled": queue.processed,
        "failed": queue.failed,
        "statusPending": len(batcher.pending()),
        "statusRecounts": service.published,
        "statusWrites": batcher.writes,
    }


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the loops, write the last status changes, close the connection pool."""
    tasks: list[asyncio.Task[Any]] = memo.get("tasks") or []
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    server: health.HealthServer | None = memo.get("health")
    if server is not None:
        await server.stop()
    batcher: status.StatusBatcher | None = memo.get("status")
    if batcher is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(batcher.flush, force=True)
    executor: concurrent.futures.Executor | None = memo.get("executor")
    if executor is not None:  # let queued Event posts finish, then stop the threads
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=False)
    api_client = memo.get("api_client")
    if api_client is not None:
        api_client.close()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo:
    """kopf logs in exactly as the kubernetes client does (same context, same identity)."""
    config: guardrails_settings.Settings = memo.settings
    if config.context is None and k8s_client.in_cluster():
        # Re-reads the projected token on every re-login, so rotation just works.
        info = kopf.login_with_service_account(**kwargs)
        if info is None:
            raise kopf.LoginError("in a Pod, but the service account token is unreadable")
        return info
    creds = k8s_client.credentials(memo.api_client)
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_path,
        insecure=creds.insecure,
        username=creds.username,
        password=creds.password,
        scheme=creds.scheme,
        token=creds.token,
        certificate_path=creds.certificate_path,
        private_key_path=creds.private_key_path,
        default_namespace="default",
    )
