"""``kube-guardrails run``: the kopf operator, its settings, login and dependencies.

Every dependency is built once in :func:`startup` (``handlers.runtime``, the composition
root) and reaches the handlers only through kopf's ``memo.runtime``. The same startup
runs under ``kube-guardrails run`` (settings from flags and env, passed in ``memo``) and
under ``kopf.testing.KopfRunner`` (settings from ``KUBE_GUARDRAILS_*`` env vars), so
integration tests run the real operator.

kopf is configured to behave as a guest on objects it does not own: only
``@kopf.on.event`` and ``@kopf.index`` handlers (no bookkeeping annotations, no
finalizers), standalone (no peering objects), no posting of its own info Events, and CRD
scanning off (one discovery at start-up, so it needs no CRD read permission).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from kube_guardrails import logs, metrics
from kube_guardrails import settings as guardrails_settings
from kube_guardrails.handlers import runtime
from kube_guardrails.k8s import client as k8s_client

log = logs.get(__name__)

HANDLER_MODULES = (
    "kube_guardrails.handlers.policies",
    "kube_guardrails.handlers.admission",
)


def handler_modules(config: guardrails_settings.Settings) -> list[str]:
    """The kopf handler modules to load (the same with or without workload reviews:
    Pods and pod controllers are watched by ``k8s.watch``, built by ``handlers.runtime``)."""
    del config
    return list(HANDLER_MODULES)


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
        metrics_address=config.metrics_address or None,
    )
    # The health endpoint is ours (handlers.health), not kopf's: kopf caches probe
    # results for 10 s, so "synced" showed up that much late.
    kopf.run(
        clusterwide=True,
        standalone=True,
        memo=kopf.Memo(
            settings=config,
            serve_health=bool(config.liveness),
            serve_metrics=bool(config.metrics_address),
        ),
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
    """Build every service once (``handlers.runtime``), start the caches, then the writers."""
    configure_kopf(settings)
    config = memo.get("settings")
    if not isinstance(config, guardrails_settings.Settings):
        config = settings_from_env()
        memo.settings = config
    try:
        built = runtime.build(config, workloads_enabled=config.workloads)
    except k8s_client.ApiError as e:  # no usable kube config: retrying will not help
        raise kopf.PermanentError(str(e)) from None
    try:
        await built.start_caches(
            serve_health=bool(memo.get("serve_health")),
            serve_metrics=bool(memo.get("serve_metrics")),
        )
    except (OSError, metrics.MetricsError) as e:  # e.g. a port is taken: a retry would leak
        await built.stop()
        raise kopf.PermanentError(f"cannot start: {e}") from None
    memo.runtime = built
    # Writers start now, or when this replica acquires the leader Lease.
    built.start_leading()
    log.info(
        "operator-started",
        namespace=config.namespace,
        workers=runtime.RECONCILE_WORKERS,
        workloads=built.workloads is not None,
        leader_election=config.leader_election,
    )


def ensure_started(memo: kopf.Memo) -> None:
    """Called by every event handler: the first call means kopf's indexes are complete.

    kopf runs non-indexing handlers only after every indexed resource (policies, the
    generated admission objects) has been fully listed, so from the first event on the
    policy store is complete; the work queues start once the namespaces and managed
    objects are listed too (``Runtime._maybe_synced``).
    """
    built: runtime.Runtime = memo.runtime
    built.kopf_indexes_complete()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the loops and watches, write the last status changes, close the client."""
    built: runtime.Runtime | None = memo.get("runtime")
    if built is not None:
        await built.stop()


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
    built: runtime.Runtime = memo.runtime
    creds = k8s_client.credentials(built.api_client)
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
