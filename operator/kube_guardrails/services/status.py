"""Policy status, batched: the desired status lives in memory, the API sees few writes.

Counters such as ``status.namespaces.hardened`` change with every namespace hardened;
writing each change would turn a burst of 1000 new namespaces into 1000 status writes
per policy. Instead the use cases set the desired values here, and a flush loop writes
each policy's status at most once per ``interval`` seconds, and only the parts that
differ from what the object already shows (seeded from the watch with :meth:`observe`),
so a restart with everything in place writes nothing.

Thread-safe: setters are called from the reconcile worker threads and kopf handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kube_guardrails import logs

log = logs.get(__name__)

#: ``write(policy_name, status_merge_patch) -> bool``; False when the policy is gone.
StatusWriter = Callable[[str, Mapping[str, Any]], bool]

READY = "Ready"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class _State:
    # What the object shows (observed at first sight, then what we wrote). None: unknown.
    live_namespaces: dict[str, int] | None = None
    live_violations: dict[str, Any] | None = None
    live_generation: int | None = None
    live_conditions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # What it should show. None: not decided yet (so nothing is written for that part).
    namespaces: dict[str, int] | None = None
    violations: dict[str, Any] | None = None
    generation: int | None = None
    ready: tuple[str, str, str] | None = None  # (status, reason, message)
    last_write: float | None = None  # monotonic


class StatusBatcher:
    """Desired policy status in memory, flushed as merge patches at a bounded rate."""

    def __init__(
        self,
        *,
        write: StatusWriter,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self._write = write
        self._interval = interval
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self.writes = 0  # total successful writes, for the benchmark and tests

    # ------------------------------------------------------------------ setters

    def observe(
        self, policy: str, status: Mapping[str, Any] | None, *, follow: bool = False
    ) -> None:
        """Seed what the object already shows (first sighting only, e.g. at start-up).

        Later watch events may lag behind our own writes; trusting them would make us
        rewrite a status we had just written, so only the first sighting counts. A
        standby replica (``follow=True``) writes nothing itself, so for it every event is
        the truth: it follows the leader's writes and, when it takes over, rewrites only
        what really differs.
        """
        with self._lock:
            state = self._states.get(policy)
            if state is not None and not follow:
                return
            if state is None:
                state = self._states[policy] = _State()
            status = status or {}
            ns = status.get("namespaces")
            state.live_namespaces = (
                {"matched": int(ns.get("matched") or 0), "hardened": int(ns.get("hardened") or 0)}
                if isinstance(ns, Mapping)
                else None
            )
            vi = status.get("violations")
            by_check = vi.get("byCheck") if isinstance(vi, Mapping) else None
            state.live_violations = (
                {
                    "total": int(vi.get("total") or 0),
                    "byCheck": dict(by_check) if isinstance(by_check, Mapping) else {},
                }
                if isinstance(vi, Mapping)
                else None
            )
            gen = status.get("observedGeneration")
            state.live_generation = gen if isinstance(gen, int) else None
            conditions = status.get("conditions")
            state.live_conditions = (
                [dict(c) for c in conditions if isinstance(c, Mapping)]
                if isinstance(conditions, list)
                else []
            )

    def set_namespaces(self, policy: str, *, matched: int, hardened: int) -> None:
        with self._lock:
            self._state(policy).namespaces = {"matched": matched, "hardened": hardened}

    def set_violations(self, policy: str, *, total: int, by_check: Mapping[str, int]) -> None:
        with self._lock:
            self._state(policy).violations = {
                "total": total,
                "byCheck": {k: int(v) for k, v in sorted(by_check.items()) if v},
            }

    def set_ready(
        self, policy: str, *, ready: bool, reason: str, message: str, observed_generation: int
    ) -> None:
        with self._lock:
            state = self._state(policy)
            state.ready = ("True" if ready else "False", reason, message)
            state.generation = observed_generation

    def forget(self, policy: str) -> None:
        """The policy is gone: drop its state so nothing is written for it."""
        with self._lock:
            self._states.pop(policy, None)

    def _state(self, policy: str) -> _State:
        state = self._states.get(policy)
        if state is None:
            state = self._states[policy] = _State()
        return state

    # ------------------------------------------------------------------ flushing

    def pending(self) -> list[str]:
        """Policies whose desired status differs from what they show."""
        with self._lock:
            return sorted(name for name, st in self._states.items() if self._diff(st)[0])

    def _diff(self, st: _State) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        patch: dict[str, Any] = {}
        if st.namespaces is not None and st.namespaces != st.live_namespaces:
            patch["namespaces"] = dict(st.namespaces)
        if st.violations is not None and st.violations != st.live_violations:
            old_checks = (st.live_violations or {}).get("byCheck", {})
            by_check: dict[str, Any] = dict(st.violations["byCheck"])
            # A merge patch keeps keys it does not mention: remove vanished checks with null.
            for check in old_checks:
                by_check.setdefault(check, None)
            patch["violations"] = {"total": st.violations["total"], "byCheck": by_check}
        if st.generation is not None and st.generation != st.live_generation:
            patch["observedGeneration"] = st.generation
        conditions: list[dict[str, Any]] | None = None
        if st.ready is not None:
            status, reason, message = st.ready
            current = next((c for c in st.live_conditions if c.get("type") == READY), None)
            if current is None or (
                current.get("status"),
                current.get("reason"),
                current.get("message"),
                current.get("observedGeneration", st.generation),
            ) != (status, reason, message, st.generation):
                transition = (
                    current.get("lastTransitionTime")
                    if current is not None and current.get("status") == status
                    else None
                ) or _stamp(self._now())
                ready = {
                    "type": READY,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": transition,
                }
                if st.generation is not None:
                    ready["observedGeneration"] = st.generation
                # Lists are replaced whole by a merge patch: keep others' conditions.
                conditions = [c for c in st.live_conditions if c.get("type") != READY] + [ready]
                patch["conditions"] = conditions
        return patch, conditions

    def flush(self, *, force: bool = False) -> int:
        """Write every due, changed status now; returns the number of writes made.

        ``force`` ignores the per-policy interval (used on shutdown and in tests).
        """
        now = self._clock()
        due: list[tuple[str, dict[str, Any], list[dict[str, Any]] | None]] = []
        with self._lock:
            for name, st in self._states.items():
                if not force and st.last_write is not None and now - st.last_write < self._interval:
                    continue
                patch, conditions = self._diff(st)
                if patch:
                    due.append((name, patch, conditions))
        writes = 0
        for name, patch, conditions in due:
            try:
                exists = self._write(name, patch)
            except Exception as e:  # an outage: keep the desired state, retry next round
                log.warning("status-write-failed", policy=name, error=repr(e)[:300])
                continue
            with self._lock:
                state = self._states.get(name)
                if state is None:
                    continue
                if not exists:
                    del self._states[name]
                    continue
                state.last_write = now
                if "namespaces" in patch:
                    state.live_namespaces = dict(patch["namespaces"])
                if "violations" in patch:
                    vi = patch["violations"]
                    state.live_violations = {
                        "total": vi["total"],
                        "byCheck": {k: v for k, v in vi["byCheck"].items() if v is not None},
                    }
                if "observedGeneration" in patch:
                    state.live_generation = patch["observedGeneration"]
                if conditions is not None:
                    state.live_conditions = conditions
            writes += 1
            log.debug("status-written", policy=name, fields=sorted(patch))
        self.writes += writes
        return writes

    async def run(self) -> None:
        """The flush loop: check a few times per interval, write in a worker thread."""
        tick = max(min(self._interval / 4, 1.0), 0.05)
        while True:
            await asyncio.sleep(tick)
            await asyncio.to_thread(self.flush)
