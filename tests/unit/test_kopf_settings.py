"""kopf settings and handler filters that keep the per-event cost low."""

from __future__ import annotations

import kopf

from kube_guardrails.handlers import admission, main


class _Queue:
    def __init__(self, started: bool) -> None:
        self.started = started


class _Runtime:
    """The attribute of ``handlers.runtime.Runtime`` the filter reads."""

    def __init__(self, *, queue: _Queue) -> None:
        self.queue = queue


def test_no_diff_base_is_computed_or_stored() -> None:
    settings = kopf.OperatorSettings()
    main.configure_kopf(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, main.NoDiffBaseStorage)
    body = kopf.Body({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"a": 1}})
    assert storage.build(body=body) is None
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=None)
    assert not patch  # nothing is ever written to the objects


def test_event_handlers_run_for_deletions_and_until_started() -> None:
    started = kopf.Memo(runtime=_Runtime(queue=_Queue(True)))
    waiting = kopf.Memo(runtime=_Runtime(queue=_Queue(False)))
    flt = admission.deletion_or_first
    assert flt(type="DELETED", memo=started)
    assert not flt(type="ADDED", memo=started)
    assert not flt(type="MODIFIED", memo=started)
    assert not flt(type=None, memo=started)
    assert flt(type="ADDED", memo=waiting)
    assert flt(type=None, memo=waiting)
    assert flt(type="MODIFIED", memo=kopf.Memo())  # before start-up built the queue
