"""Client setup and the one raw JSON request path every ``k8s`` module uses.

We talk to the API with plain dicts (``request(...)``) instead of the generated model
classes: the objects we build are dicts already (``builders``), comparing desired with
live state is simpler on dicts, and skipping model (de)serialisation keeps the hot path
cheap. Errors come back as :class:`ApiError` with the HTTP status, so callers can treat
404 (gone) and 409 (conflict / already exists) as the normal events they are.

Credentials are loaded once, the same way for kopf and for this client
(:func:`credentials`), so both act as the same identity. Nothing here logs a token,
a key or a kube config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client
import kubernetes.config

# Seconds: (connect, read). Short enough that an API outage surfaces as an error the
# caller retries, instead of a worker thread hanging on a dead connection.
DEFAULT_TIMEOUT = (5.0, 30.0)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A failed API request: ``status`` is the HTTP status (0: no response at all)."""

    def __init__(self, *, status: int, reason: str, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def retryable(self) -> bool:
        """Worth retrying later: outages, throttling, timeouts, conflicts."""
        return self.status in (0, 409, 429) or self.status >= 500


def in_cluster() -> bool:
    """True when running in a Pod with a service account (the kubelet sets these)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def make_configuration(*, context: str | None) -> kubernetes.client.Configuration:
    """In-cluster config when available (and no context asked for), else the kube config."""
    cfg = kubernetes.client.Configuration()
    if context is None and in_cluster():
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        try:
            # KUBECONFIG is read now, not at import time (the client's own default is
            # frozen when the kubernetes package is first imported).
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        except kubernetes.config.ConfigException as e:
            where = f"context {context!r}" if context else "the current context"
            raise ApiError(
                status=0,
                reason="NoConfig",
                message=f"cannot load {where}: {e}",
                method="CONFIG",
                path=os.environ.get("KUBECONFIG", "~/.kube/config"),
            ) from None
    return cfg


POOL_SIZE = 180


def make_api_client(*, context: str | None) -> kubernetes.client.ApiClient:
    """An ApiClient for the cluster: in-cluster if available, else kube config ``context``."""
    cfg = make_configuration(context=context)
    # A pooled connection for every thread that may hold one at once: the API threads of
    # the reviews and reconciles (64), the hardening writers (64) and Event posters (32),
    # one watch stream per listed kind (11), the status writer and the leader election.
    # A smaller pool discards the extra
    # connections after use ("Connection pool is full") and the next requests pay a new
    # TCP+TLS handshake each: measurable CPU on both sides in a burst of 10,000 reviews.
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, POOL_SIZE)
    return kubernetes.client.ApiClient(cfg)


@dataclasses.dataclass(frozen=True, repr=False)
class Credentials:
    """What kopf needs to log in as the same identity as the client (plain values)."""

    server: str
    ca_path: str | None
    insecure: bool
    username: str | None
    password: str | None
    scheme: str | None
    token: str | None
    certificate_path: str | None
    private_key_path: str | None

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Credentials(server={self.server!r})"


def credentials(api_client: kubernetes.client.ApiClient) -> Credentials:
    """Extract the connection details of a configured client (for kopf's login)."""
    cfg = api_client.configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return Credentials(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )


def request(
    api_client: kubernetes.client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = JSON,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """One API request with a JSON body; returns the decoded response or raises ApiError.

    Every failure is also reported to the client's error observer, if one is set
    (:func:`observe_errors`: the ``kube_guardrails_api_errors_total`` metric).
    """
    try:
        return _request(
            api_client,
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout,
        )
    except ApiError as e:
        report_error(api_client, verb=method, status=e.status)
        raise


#: ``observer(verb, status)``: a failed request (status 0: no response at all).
ErrorObserver = Callable[[str, int], None]

# Per ApiClient, so each operator (and each test) counts into its own metrics; weak, so a
# closed client does not keep its observer alive.
_observers: weakref.WeakKeyDictionary[Any, ErrorObserver] = weakref.WeakKeyDictionary()


def observe_errors(api_client: kubernetes.client.ApiClient, observer: ErrorObserver) -> None:
    """Report every failed request made with this client to ``observer``."""
    _observers[api_client] = observer


def report_error(api_client: kubernetes.client.ApiClient, *, verb: str, status: int) -> None:
    """Tell the client's observer about a failed request (also used by ``k8s.watch``)."""
    observer = _observers.get(api_client)
    if observer is not None:
        with contextlib.suppress(Exception):  # counting must never turn into a failure
            observer(verb.lower(), status)


def _request(
    api_client: kubernetes.client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None,
    body: Any,
    content_type: str,
    timeout: tuple[float, float],
) -> dict[str, Any]:
    full_path = path + ("?" + urllib.parse.urlencode(dict(query)) if query else "")
    try:
        http_method, url, headers, serialized, _ = api_client.param_serialize(
            method=method,
            resource_path=full_path,
            header_params={"Content-Type": content_type, "Accept": JSON},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(
            http_method, url, header_params=headers, body=serialized, _request_timeout=timeout
        )
        raw = response.read()  # type: ignore[no-untyped-call]
    except kubernetes.client.ApiException as e:
        raise ApiError(
            status=int(e.status or 0),
            reason=str(e.reason or "Error"),
            message=str(e.body or ""),
            method=method,
            path=path,
        ) from None
    except OSError as e:  # urllib3 wraps connection errors in OSError subclasses
        raise ApiError(
            status=0, reason=type(e).__name__, message=str(e), method=method, path=path
        ) from None
    except Exception as e:  # urllib3.exceptions.HTTPError (e.g. MaxRetryError) is not OSError
        if type(e).__module__.startswith("urllib3"):
            raise ApiError(
                status=0, reason=type(e).__name__, message=str(e), method=method, path=path
            ) from None
        raise
    status = int(response.status)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not 200 <= status < 300:
        message = data.get("message") if isinstance(data, dict) else None
        raise ApiError(
            status=status,
            reason=str((data.get("reason") if isinstance(data, dict) else None) or response.reason),
            message=str(message or (raw[:200].decode("utf-8", "replace") if raw else "")),
            method=method,
            path=path,
        )
    return data if isinstance(data, dict) else {"items": data}


def get_or_none(api_client: kubernetes.client.ApiClient, path: str) -> dict[str, Any] | None:
    """GET an object; None when it does not exist (404)."""
    try:
        return request(api_client, "GET", path)
    except ApiError as e:
        if e.not_found:
            return None
        raise


def delete_ignoring_missing(api_client: kubernetes.client.ApiClient, path: str) -> bool:
    """DELETE an object; False if it was already gone (404), which is what we wanted."""
    try:
        request(api_client, "DELETE", path)
    except ApiError as e:
        if e.not_found:
            return False
        raise
    return True


def object_path(
    *, api_version: str, plural: str, namespace: str | None, name: str | None = None
) -> str:
    """The REST path of a collection or an object: core ``/api/v1``, others ``/apis/G/V``."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    quote = urllib.parse.quote
    ns = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    tail = f"/{quote(name, safe='')}" if name else ""
    return f"{base}{ns}/{plural}{tail}"
