"""Structured logging: one structlog pipeline for our own logs and everyone else's.

kopf, aiohttp and the kubernetes client log through the stdlib ``logging`` module. We
route those records through structlog's ``ProcessorFormatter`` so that every line the
operator prints has the same shape: JSON in a cluster (one object per line, easy to
ship and query), key=value on a terminal. Our own code logs an event name plus fields
(``log.info("namespace-hardened", namespace=..., policy=...)``).

Secrets never reach the output: fields whose names look like credentials are masked
by a processor, whatever the caller passed, and nothing in the package logs a token or
a kube config (see ``k8s/client.py``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Field names that are never printed as given, whatever the caller passed.
_SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "authorization",
        "bearer",
        "client_key",
        "private_key",
        "kubeconfig",
        "api_key",
        "certificate_data",
        "private_key_data",
        "secret",
    }
)

# Third-party loggers that are too chatty at INFO for an operator's normal output.
_QUIET = {"urllib3": logging.WARNING, "aiohttp.access": logging.WARNING, "asyncio": logging.WARNING}


def _mask_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def _kopf_fields(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Lift kopf's per-object context (``extra={'k8s_ref': ...}``) into plain fields."""
    record = event_dict.get("_record")
    ref = getattr(record, "k8s_ref", None) if record is not None else None
    if isinstance(ref, dict):
        for key in ("namespace", "name", "kind"):
            value = ref.get(key)
            if value and key not in event_dict:
                event_dict[key] = value
    return event_dict


def resolve_format(fmt: str, *, stream: Any = None) -> str:
    """``auto`` becomes ``console`` on a terminal and ``json`` everywhere else."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure(*, fmt: str, level: str) -> None:
    """Set up structlog and the stdlib root logger; safe to call more than once."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    fmt = resolve_format(fmt)
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be json, console or auto, not {fmt!r}")

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from stdlib loggers (kopf, aiohttp, kubernetes) get the same fields.
        foreign_pre_chain=[*shared, _kopf_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _passthrough,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    # Replace our previous handler and any console handler (kopf's CLI installs one);
    # keep others, such as a test runner's capturing handler.
    root.handlers[:] = [h for h in root.handlers if not _replaceable(h)] + [handler]
    root.setLevel(LEVELS[level])
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, LEVELS[level]))
    # kopf says "Handler ... succeeded" for every watch event; our services log what
    # was done (with namespace= and policy=). Keep kopf's per-object lines for debug.
    logging.getLogger("kopf.objects").setLevel(
        logging.DEBUG if level == "debug" else max(logging.WARNING, LEVELS[level])
    )
    # kopf attaches its own handlers only through its CLI; make sure none duplicate ours.
    for name in ("kopf", "kopf.objects"):
        kopf_logger = logging.getLogger(name)
        kopf_logger.handlers[:] = []
        kopf_logger.propagate = True


_MARK = "_kube_guardrails_handler"


def _replaceable(handler: logging.Handler) -> bool:
    if getattr(handler, _MARK, False):
        return True
    stream = getattr(handler, "stream", None)
    return type(handler) is logging.StreamHandler and stream in (sys.stderr, sys.stdout)


def _passthrough(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event_dict


def get(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; ``name`` is the module (``__name__``)."""
    return structlog.stdlib.get_logger(name)
