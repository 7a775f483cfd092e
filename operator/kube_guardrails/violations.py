"""Pure decisions about a workload's violations: annotation, Event text and eviction.

The annotation ``kube-guardrails.io/violations`` says which checks of which policies
the object fails, in a canonical form, so that a restart or a resync can tell "same as
before, say nothing" from "changed, tell the developer" (it only decides whether to
write the annotation and post an Event again). A second annotation,
``kube-guardrails.io/violations-since``, tells developers when the current set was first
seen. Both are output only for enforcement: anyone who may edit the workload may write
them, so nothing here reads them to decide whether or when a Pod is evicted (the grace
period counts from the operator's own memory, ``services.enforcement``), and "protected"
owners are only those verified to exist (:func:`protected`, :func:`claimed_mirror`,
:func:`claimed_daemonset`).

Annotation format (documented in the README; stable, tests pin it)::

    baseline/privileged(app,sidecar),baseline/runAsNonRoot; team/resources(app)!

* one item per (policy, check): ``policy/check``, then the containers that fail it in
  parentheses (omitted when only pod-level fields fail), then ``!`` when the item makes
  the Pod evictable (policy in Enforce mode, check action Enforce, Pods only);
* items of one policy are joined by ``,``; policies by ``; ``; everything is sorted
  (policy, check, container) and de-duplicated, so the same set always renders the same
  text;
* the value is at most :data:`MAX_ANNOTATION` characters: a longer list is cut at an
  item boundary and ends with `` ...+N more #<digest>``, where the digest is the
  fingerprint of the full set, so a cut annotation still identifies its set exactly.

Everything here is a function of its arguments (time is passed in), so it is table
tested without a cluster.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from kube_guardrails import ANNOTATION_PREFIX, planning
from kube_guardrails.checks import engine
from kube_guardrails.model import policy as policy_model
from kube_guardrails.model import selectors

ANNOTATION_VIOLATIONS = ANNOTATION_PREFIX + "violations"
ANNOTATION_SINCE = ANNOTATION_PREFIX + "violations-since"
MAX_ANNOTATION = 1024
# Set by the kubelet on the mirror Pod of a static Pod (immutable after creation).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Events are shown whole by `kubectl describe`; the API server cuts messages at 1 KiB
# for events.k8s.io (note) anyway, so we cut first, at a place we choose.
MAX_EVENT_MESSAGE = 1024
RATE_WINDOW = datetime.timedelta(minutes=1)


# --------------------------------------------------------------------------- items


@dataclasses.dataclass(frozen=True, order=True)
class Item:
    """One (policy, check) the object fails, with the containers that fail it."""

    policy: str
    check: str
    containers: tuple[str, ...] = ()
    enforced: bool = False

    def render(self) -> str:
        text = f"{self.policy}/{self.check}"
        if self.containers:
            text += "(" + ",".join(self.containers) + ")"
        return text + ("!" if self.enforced else "")


def is_enforced(
    finding: planning.AttributedFinding,
    *,
    policies: Mapping[str, policy_model.Policy],
    kind: str,
) -> bool:
    """Does this attributed finding make the object evictable?

    Only Pods are evicted, only by a policy in Enforce mode, only for a check whose
    action is Enforce, and only for a real failure: a check that crashed (``error``)
    is our bug, never a reason to evict someone's Pod.
    """
    pol = policies.get(finding.policy)
    return (
        kind == "Pod"
        and pol is not None
        and pol.enforcing
        and finding.action == "Enforce"
        and finding.finding.outcome is engine.Outcome.FAIL
    )


def items_of(
    findings: Iterable[planning.AttributedFinding],
    *,
    policies: Mapping[str, policy_model.Policy],
    kind: str,
) -> tuple[Item, ...]:
    """The canonical violation set of a verdict's findings for an object of ``kind``."""
    containers: dict[tuple[str, str], set[str]] = {}
    enforced: dict[tuple[str, str], bool] = {}
    for f in findings:
        key = (f.policy, f.finding.check)
        bucket = containers.setdefault(key, set())
        if f.finding.container:
            bucket.add(f.finding.container)
        enforced[key] = enforced.get(key, False) or is_enforced(f, policies=policies, kind=kind)
    return tuple(
        Item(
            policy=p,
            check=c,
            containers=tuple(sorted(containers[(p, c)])),
            enforced=enforced[(p, c)],
        )
        for p, c in sorted(containers)
    )


def _render_full(items: Sequence[Item]) -> str:
    groups: dict[str, list[str]] = {}
    for item in sorted(items):
        groups.setdefault(item.policy, []).append(item.render())
    return "; ".join(",".join(tokens) for tokens in groups.values())


def fingerprint(items: Sequence[Item]) -> str:
    """A short stable digest of a violation set (order-insensitive, 16 hex digits)."""
    return hashlib.sha256(_render_full(items).encode()).hexdigest()[:16]


def render(items: Sequence[Item], *, limit: int = MAX_ANNOTATION) -> str:
    """The annotation value for a violation set; empty string for no violations."""
    full = _render_full(items)
    if len(full) <= limit:
        return full
    ordered = sorted(items)
    digest = fingerprint(ordered)
    kept: list[Item] = []
    for n in range(len(ordered) + 1):
        suffix = f" ...+{len(ordered) - n} more #{digest}"
        candidate = _render_full(ordered[:n]) + suffix
        if len(candidate) > limit:
            break
        kept = ordered[:n]
    return _render_full(kept) + f" ...+{len(ordered) - len(kept)} more #{digest}"


@dataclasses.dataclass(frozen=True)
class Parsed:
    """An annotation value read back: its items, and for a cut value the hidden count."""

    items: tuple[Item, ...]
    more: int = 0
    digest: str | None = None

    @property
    def fingerprint(self) -> str:
        return self.digest if self.digest is not None else fingerprint(self.items)


_TOKEN = re.compile(
    r"(?P<policy>[a-z0-9]([a-z0-9.-]*[a-z0-9])?)/(?P<check>[A-Za-z][A-Za-z0-9]*)"
    r"(?:\((?P<containers>[a-z0-9.,-]*)\))?(?P<enforced>!)?"
)
# No leading \s*: searched from every position, it made a long run of blanks quadratic.
_MORE = re.compile(r"\.\.\.\+(?P<more>[0-9]{1,9}) more #(?P<digest>[0-9a-f]{16})$")
# We write at most MAX_ANNOTATION characters; anything far longer was not written by us,
# and annotations are anyone's to edit (up to 256 KB in total).
MAX_PARSE = 4 * MAX_ANNOTATION


def parse(value: str) -> Parsed | None:
    """Read an annotation value back; None if it is not in our format (hand-edited).

    Linear in the value and bounded: a value longer than :data:`MAX_PARSE` is not ours.
    """
    if not isinstance(value, str) or len(value) > MAX_PARSE:
        return None
    text = value.strip()
    more, digest = 0, None
    m = _MORE.search(text)
    if m:
        more, digest = int(m.group("more")), m.group("digest")
        text = text[: m.start()].strip()
    items: list[Item] = []
    if text:
        for group in text.split(";"):
            pos, group = 0, group.strip()
            while True:
                tm = _TOKEN.match(group, pos)
                if tm is None:
                    return None
                names = tm.group("containers")
                items.append(
                    Item(
                        policy=tm.group("policy"),
                        check=tm.group("check"),
                        containers=tuple(sorted({c for c in (names or "").split(",") if c})),
                        enforced=tm.group("enforced") is not None,
                    )
                )
                pos = tm.end()
                if pos == len(group):
                    break
                if group[pos] != ",":
                    return None
                pos += 1
    return Parsed(items=tuple(sorted(set(items))), more=more, digest=digest)


def annotation_fingerprint(annotations: Mapping[str, str] | None) -> str | None:
    """Fingerprint of the set an object's annotation records; None when there is none.

    An unreadable value gets a fingerprint of its text, which never equals a computed
    one, so the operator rewrites it in canonical form.
    """
    value = (annotations or {}).get(ANNOTATION_VIOLATIONS)
    if value is None:
        return None
    parsed = parse(value)
    if parsed is None:
        return "unparsable:" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return parsed.fingerprint


def parse_since(annotations: Mapping[str, str] | None) -> datetime.datetime | None:
    """The ``violations-since`` time, or None when absent or unreadable."""
    value = (annotations or {}).get(ANNOTATION_SINCE)
    if not value:
        return None
    try:
        return policy_model.parse_time(value, ANNOTATION_SINCE)
    except policy_model.PolicyError:
        return None


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- events


def _cut(text: str, limit: int, tail: str) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(tail))].rstrip() + tail


def violation_message(
    findings: Iterable[planning.AttributedFinding],
    *,
    eviction_note: str | None = None,
    limit: int = MAX_EVENT_MESSAGE,
) -> str:
    """The ``GuardrailViolation`` Event text: every finding once, each check's hint once.

    ``[baseline] privileged: container app: spec.containers[0]...: privileged is true.
    Fix: ...`` -- grouped by policy and check so the hint is not repeated per container.
    """
    grouped: dict[tuple[str, str], list[engine.Finding]] = {}
    for f in findings:
        grouped.setdefault((f.policy, f.finding.check), []).append(f.finding)
    total = sum(len(v) for v in grouped.values())
    parts: list[str] = []
    for (pol, check), items in sorted(grouped.items()):
        details = "; ".join(
            (f"container {fd.container}: " if fd.container else "") + f"{fd.path}: {fd.message}"
            for fd in sorted(items, key=lambda fd: (fd.container or "", fd.path, fd.message))
        )
        parts.append(f"[{pol}] {check}: {details}. Fix: {items[0].hint}")
    head = f"{total} guardrail violation{'s' if total != 1 else ''}"
    if eviction_note:
        head += f" ({eviction_note})"
    return _cut(
        head + ": " + " | ".join(parts),
        limit,
        f" ... (see annotation {ANNOTATION_VIOLATIONS})",
    )


def compliant_message(previous: str | None, *, limit: int = MAX_EVENT_MESSAGE) -> str:
    """The ``GuardrailCompliant`` Event text."""
    text = "No guardrail violations any more"
    if previous:
        text += f" (was: {previous})"
    return _cut(text, limit, " ...)")


# --------------------------------------------------------------------------- eviction


@dataclasses.dataclass(frozen=True)
class Evict:
    policy: str
    dry_run: bool
    message: str


@dataclasses.dataclass(frozen=True)
class Wait:
    policy: str
    until: datetime.datetime
    why: str  # "grace period" or "rate limit"


@dataclasses.dataclass(frozen=True)
class Never:
    reason: str


Decision = Evict | Wait | Never


def protected(
    pod: Mapping[str, Any],
    *,
    operator_namespace: str,
    node_verified: bool | None = None,
) -> str | None:
    """Why this Pod must never be evicted whatever the policy says; None if it may be.

    * mirror Pods of static Pods, as the kubelet creates them (:func:`claimed_mirror`:
      the annotation ``kubernetes.io/config.mirror``, which the API server refuses adding
      or removing on update, and a controller reference to its Node); the kubelet
      recreates them from a file, so eviction only makes noise. The annotation alone
      does not count: the API server accepts it from anyone who may create Pods (with
      ``spec.nodeName`` set), and neither does a Node owner without it.
      ``node_verified``: whether that Node was looked up and exists with that uid (the
      enforcer looks it up; False: a forged claim, the Pod may be evicted); None, not
      looked up (``plan``, which reads no Nodes, believes a complete claim);
    * the operator's own Pods, i.e. every Pod in the operator's namespace: it must not
      remove itself. A label alone is not trusted: any developer could put it on a Pod
      to escape Enforce;
    * Pods already terminating or finished: there is nothing left to remove.

    DaemonSet Pods are protected too, but only once the DaemonSet is verified to exist
    (:func:`claimed_daemonset`; the enforcer looks it up): an ownerReference is
    written by whoever creates the Pod.
    """
    meta = _mapping(pod.get("metadata"))
    if claimed_mirror(pod) is not None and node_verified is not False:
        return "mirror Pod (managed by the kubelet)"
    if meta.get("namespace") == operator_namespace:
        return "the operator's own Pod"
    if meta.get("deletionTimestamp"):
        return "already terminating"
    phase = _mapping(pod.get("status")).get("phase")
    if phase in ("Succeeded", "Failed"):
        return f"completed ({phase})"
    return None


def claimed_mirror(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(name, uid)`` of the Node whose mirror Pod this Pod says it is, or None.

    What the kubelet writes on a mirror Pod (and the NodeRestriction admission plugin
    requires of it): the annotation :data:`MIRROR_ANNOTATION` and a controller reference
    ``apiVersion: v1, kind: Node`` naming its node with that Node's uid. Whether that
    Node exists with that uid is for the caller to check: a namespace user can write
    both (only a real Node's uid is not theirs to read).
    """
    meta = _mapping(pod.get("metadata"))
    if MIRROR_ANNOTATION not in _mapping(meta.get("annotations")):
        return None
    return _controller_reference(meta, api_version="v1", kind="Node")


def claimed_daemonset(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(name, uid)`` of the DaemonSet the Pod says controls it, or None.

    Only a real controller reference counts: ``apiVersion: apps/v1``, ``kind:
    DaemonSet``, ``controller: true`` (as the DaemonSet controller writes it). Whether
    that DaemonSet exists with that uid is for the caller to check: the reference is
    written by whoever created the Pod.
    """
    return _controller_reference(
        _mapping(pod.get("metadata")), api_version="apps/v1", kind="DaemonSet"
    )


def _controller_reference(
    meta: Mapping[str, Any], *, api_version: str, kind: str
) -> tuple[str, str] | None:
    """``(name, uid)`` of the controller reference of exactly that apiVersion and kind."""
    owners = meta.get("ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        ref = _mapping(owner)
        if (
            ref.get("apiVersion") == api_version
            and ref.get("kind") == kind
            and ref.get("controller") is True
            and ref.get("name")
            and ref.get("uid")
        ):
            return str(ref["name"]), str(ref["uid"])
    return None


def excluded(policy: policy_model.Policy, *, namespace: str, operator_namespace: str) -> bool:
    """Is the namespace out of the policy's reach (system, operator's, excluded by glob)?"""
    return (
        namespace in policy_model.ALWAYS_EXCLUDED
        or namespace == operator_namespace
        or selectors.glob_match(namespace, policy.exclude_namespaces)
    )


def rate_limit_until(
    recent: Iterable[datetime.datetime],
    *,
    now: datetime.datetime,
    per_minute: int,
) -> datetime.datetime | None:
    """When the next eviction fits in a sliding one-minute window; None if it fits now.

    ``recent`` are the times of this policy's evictions. A sliding window (rather than
    a token bucket with a burst) keeps the documented promise literally: never more
    than ``maxEvictionsPerMinute`` in any 60 seconds.
    """
    window = sorted(t for t in recent if now - t < RATE_WINDOW)
    if len(window) < per_minute:
        return None
    return window[len(window) - per_minute] + RATE_WINDOW


def backoff(attempt: int, *, base: float = 5.0, cap: float = 300.0) -> datetime.timedelta:
    """Delay before retry ``attempt`` (1, 2, ...) of a refused eviction: 5s, 10s, ... 300s."""
    exponent = min(max(attempt, 1) - 1, 32)
    return datetime.timedelta(seconds=min(cap, base * (2**exponent)))


def eviction_decision(
    pod: Mapping[str, Any],
    *,
    findings: Collection[planning.AttributedFinding],
    policy: policy_model.Policy,
    since: datetime.datetime,
    now: datetime.datetime,
    recent_evictions: Iterable[datetime.datetime],
    operator_namespace: str,
    node_verified: bool | None = None,
) -> Decision:
    """What ``policy`` does about this Pod now: evict, wait until a time, or never.

    ``findings`` are the Pod's attributed findings (all policies; this one's are
    picked); ``since`` is when the operator first observed this Pod violating an
    Enforce-action check of this policy (its own memory, never an annotation).
    ``node_verified``: see :func:`protected`.
    """
    reason = protected(pod, operator_namespace=operator_namespace, node_verified=node_verified)
    if reason is not None:
        return Never(reason=reason)
    namespace = str(_mapping(pod.get("metadata")).get("namespace") or "")
    if excluded(policy, namespace=namespace, operator_namespace=operator_namespace):
        return Never(reason=f"namespace {namespace} is excluded from policy {policy.name}")
    if not policy.enforcing:
        return Never(reason=f"policy {policy.name} is in {policy.mode} mode")
    pols = {policy.name: policy}
    mine = [f for f in findings if f.policy == policy.name]
    enforced = [f for f in mine if is_enforced(f, policies=pols, kind="Pod")]
    if not enforced:
        return Never(reason=f"no Enforce-action violation of policy {policy.name}")
    enforcement = policy.workloads.enforcement
    due = since + datetime.timedelta(seconds=enforcement.grace_period_seconds)
    if now < due:
        return Wait(policy=policy.name, until=due, why="grace period")
    free_at = rate_limit_until(
        recent_evictions, now=now, per_minute=enforcement.max_evictions_per_minute
    )
    if free_at is not None:
        return Wait(policy=policy.name, until=free_at, why="rate limit")
    checks = ", ".join(sorted({f.finding.check for f in enforced}))
    waited = int((now - since).total_seconds())
    message = (
        f"{'dry run: would evict' if enforcement.dry_run else 'Evicting'} this Pod: it violates "
        f"Enforce checks of policy {policy.name} ({checks}) for {waited}s "
        f"(grace period {enforcement.grace_period_seconds}s)"
    )
    return Evict(
        policy=policy.name, dry_run=enforcement.dry_run, message=message[:MAX_EVENT_MESSAGE]
    )


def combine(decisions: Iterable[Decision]) -> Decision:
    """One decision from several policies: any eviction wins, then the earliest wait.

    Each policy's grace period and rate limit are its own: the Pod goes as soon as
    one policy that enforces on it is ready to evict it.
    """
    evicts: list[Evict] = []
    waits: list[Wait] = []
    nevers: list[Never] = []
    for d in decisions:
        if isinstance(d, Evict):
            evicts.append(d)
        elif isinstance(d, Wait):
            waits.append(d)
        else:
            nevers.append(d)
    # A real eviction beats a dry run: dry run in one policy must not shield a Pod
    # from another policy that really enforces.
    if evicts:
        return sorted(evicts, key=lambda e: (e.dry_run, e.policy))[0]
    if waits:
        return min(waits, key=lambda w: (w.until, w.policy))
    if nevers:
        return nevers[0]
    return Never(reason="no policy enforces on this Pod")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
