"""Does a live admission object differ from the one :func:`build` wants? (pure)

One rule for everyone who compares: the operator before it writes (so a restart or a
resync writes nothing) and ``kube-guardrails plan`` when it reports ``update`` versus
``unchanged``. A difference is what the operator would write back:

- our labels (``managed-by``, ``policy``) with our values; other labels are someone
  else's and do not count;
- our ownerReference (apiVersion, kind, name, uid, controller), when the desired object
  has one; other owners do not count;
- the ``spec``, compared key by key where a key the desired object does not set counts
  only if its live value is neither empty nor the API server's default for that key
  (:data:`SERVER_DEFAULTS`): an added validation or ``auditAnnotations`` entry is a
  difference, ``failurePolicy: Fail`` filled in by the server is not. Lists must be
  equal element by element (order matters: validations are evaluated in order).

Everything outside ``metadata.labels``, ``metadata.ownerReferences`` and ``spec`` is
ignored: ``resourceVersion``, ``uid``, ``creationTimestamp``, ``generation``,
``managedFields``, annotations and ``status`` (type checking) are the server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What admissionregistration.k8s.io/v1 fills in when a key is left out (its defaulting:
# ``matchPolicy`` of matchConstraints and of a binding's matchResources, ``scope`` of a
# resource rule, ``failurePolicy`` of a policy). Empty ``namespaceSelector`` /
# ``objectSelector`` maps, the other defaults, are covered by "empty is absent".
SERVER_DEFAULTS: Mapping[str, Any] = {
    "matchPolicy": "Equivalent",
    "scope": "*",
    "failurePolicy": "Fail",
}
OWNER_KEYS = ("apiVersion", "kind", "name", "uid", "controller")


def changed(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when writing ``desired`` over ``live`` would change something we set."""
    live_meta = live.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    labels = live_meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in (want_meta.get("labels") or {}).items()):
        return True
    live_refs = [r for r in live_meta.get("ownerReferences") or [] if isinstance(r, Mapping)]
    for ref in want_meta.get("ownerReferences") or []:
        if not any(all(r.get(k) == ref.get(k) for k in OWNER_KEYS) for r in live_refs):
            return True
    return not _same(live.get("spec"), desired.get("spec"))


def _absent(key: str, value: Any) -> bool:
    """Is a live value under a key we do not set as good as missing?"""
    return value is None or value == {} or value == [] or SERVER_DEFAULTS.get(key) == value


def _same(live: Any, want: Any) -> bool:
    if isinstance(want, Mapping) and isinstance(live, Mapping):
        for key in set(live) | set(want):
            if key not in want:
                if not _absent(key, live[key]):
                    return False
            elif not _same(live.get(key), want[key]):
                return False
        return True
    if isinstance(want, list) and isinstance(live, list):
        return len(live) == len(want) and all(
            _same(lv, wv) for lv, wv in zip(live, want, strict=True)
        )
    if want in ({}, []) and live is None:
        return True
    return bool(live == want)
