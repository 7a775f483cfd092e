"""The operator's in-memory view of GuardrailPolicy objects.

Filled from the policy watch by the handlers; read by every use case (namespace
hardening, workload review). Only policies that parsed and validated are ``valid()``;
an invalid policy is remembered with its error so it never changes what the valid
ones enforce. Listeners are told which policy changed so they can re-evaluate only
what it selects.

A policy is compiled (``planning.compile_policy``) once, when it is stored, and the
reviews take the compiled policies (``compiled()``): nothing about a policy is worked
out again per workload.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kube_guardrails import planning
from kube_guardrails.checks import registry
from kube_guardrails.model import policy as policy_model


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    uid: str
    generation: int
    policy: policy_model.Policy | None
    error: policy_model.PolicyError | None
    # ``policy`` compiled, when valid; kept with it so the two never disagree.
    compiled: planning.CompiledPolicy | None = None


Listener = Callable[[str, policy_model.Policy | None, policy_model.Policy | None], None]


class PolicyStore:
    """Thread-safe: kopf runs sync handlers in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """``listener(name, old, new)`` is called after a valid policy changes or goes."""
        with self._lock:
            self._listeners.append(listener)

    def upsert(self, obj: Mapping[str, Any]) -> Entry:
        """Parse and remember a policy object; returns the entry (with error if invalid)."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        try:
            parsed: policy_model.Policy | None = policy_model.parse(
                obj, known_checks=registry.ids()
            )
            error = None
        except policy_model.PolicyError as e:
            parsed, error = None, e
        with self._lock:
            old = self._entries.get(name)
        compiled: planning.CompiledPolicy | None = None
        if parsed is not None:
            # An unchanged policy (a resync, a status-only update) keeps its compiled form.
            if old is not None and old.compiled is not None and old.policy == parsed:
                parsed, compiled = old.compiled.policy, old.compiled
            else:
                compiled = planning.compile_policy(parsed)
        entry = Entry(
            name=name,
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            policy=parsed,
            error=error,
            compiled=compiled,
        )
        with self._lock:
            old = self._entries.get(name)
            self._entries[name] = entry
            listeners = list(self._listeners)
        old_policy = old.policy if old else None
        if old_policy != parsed:
            for listener in listeners:
                listener(name, old_policy, parsed)
        return entry

    def remove(self, name: str) -> None:
        with self._lock:
            old = self._entries.pop(name, None)
            listeners = list(self._listeners)
        if old is not None and old.policy is not None:
            for listener in listeners:
                listener(name, old.policy, None)

    def get(self, name: str) -> Entry | None:
        with self._lock:
            return self._entries.get(name)

    def valid(self) -> list[policy_model.Policy]:
        """Every valid policy, in name order."""
        with self._lock:
            return sorted(
                (e.policy for e in self._entries.values() if e.policy is not None),
                key=lambda p: p.name,
            )

    def compiled(self) -> list[planning.CompiledPolicy]:
        """Every valid policy compiled, in name order (what reviews take)."""
        with self._lock:
            return sorted(
                (e.compiled for e in self._entries.values() if e.compiled is not None),
                key=lambda c: c.name,
            )

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)
