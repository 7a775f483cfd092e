"""The lean list+watch (``k8s.watch.Watcher``) against a real API server.

What the watcher relies on is the API server's behaviour: ``limit``/``continue`` pages,
a watch that starts at a list's ``resourceVersion`` without replaying the list,
bookmarks that carry a newer version, ``410 Gone`` for a version older than the watch
cache, a restart that drops every stream. An emulator would only repeat what its
author believed about these, so these tests watch Pods on the real server (the
``real_api`` fixtures: skipped with the reason when no test cluster is configured).

The consumer (``services.workloads``) replaces everything it knows on ``listed`` and
applies ``changed``; :class:`View` does the same, so the tests check what a consumer
ends up believing against what the API server holds.

Requests are observed, not faked: :class:`RecordingClient` is the kubernetes client
with ``call_api`` noting each URL before sending it to the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import kubernetes
import pytest
import real_api

from kube_guardrails import builders
from kube_guardrails.k8s import watch

ROOT = pathlib.Path(__file__).resolve().parents[2]
PODS = "/api/v1/pods"


class RecordingClient(kubernetes.client.ApiClient):  # type: ignore[misc]
    """The real client; remembers the method and URL of every request it sends."""

    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self.requests: list[tuple[str, str]] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method, url))
        return super().call_api(method, url, *args, **kwargs)

    def pod_requests(self, *, watching: bool) -> list[dict[str, str]]:
        """The query of every cluster-wide Pod LIST (or WATCH) sent so far, in order."""
        out = []
        for method, url in list(self.requests):
            parts = urllib.parse.urlsplit(url)
            query = dict(urllib.parse.parse_qsl(parts.query))
            if (
                method == "GET"
                and parts.path == PODS
                and (query.get("watch") == "true") is watching
            ):
                out.append(query)
        return out


class View:
    """What a consumer believes about the Pods of one namespace, from the callbacks."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.pods: dict[str, dict[str, Any]] = {}
        self.lists = 0
        self.events: list[tuple[str, str | None]] = []

    def listed(self, kind: str, bodies: list[Any], started: float = 0.0) -> None:
        self.lists += 1
        self.pods = {b["metadata"]["name"]: b for b in bodies if self._mine(b)}

    def changed(self, kind: str, event: str, body: dict[str, Any]) -> None:
        if not self._mine(body):
            return
        name = body["metadata"]["name"]
        self.events.append((event, name))
        if event == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = body

    def _mine(self, body: dict[str, Any]) -> bool:
        return bool(body["metadata"].get("namespace") == self.namespace)


async def until(check: Callable[[], Any], *, what: str, timeout: float = 90.0) -> Any:
    """Poll ``check`` while the event loop delivers the watcher's callbacks."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.1)


def create_pod(api: real_api.RealApi, namespace: str, name: str) -> None:
    api.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body={
            "metadata": {"name": name, "labels": {"app": "watched"}},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/app:1"}]},
        },
    )


def server_pods(api: real_api.RealApi, namespace: str) -> set[str]:
    items = api.request("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
    return {p["metadata"]["name"] for p in items}


@pytest.fixture()
def recording(real_api_session: real_api.RealApi) -> Iterator[RecordingClient]:
    rec = RecordingClient(real_api_session.api_client.configuration)
    yield rec
    rec.close()


@pytest.fixture()
async def start(
    recording: RecordingClient, real_namespace: str
) -> AsyncIterator[Callable[..., tuple[watch.Watcher, View]]]:
    """Start a Pod watcher delivering into a :class:`View` of the test's namespace."""
    started: list[watch.Watcher] = []

    def make(**kwargs: Any) -> tuple[watch.Watcher, View]:
        view = View(real_namespace)
        watcher = watch.Watcher(
            api_client=recording,
            kind=watch.POD,
            loop=asyncio.get_running_loop(),
            listed=view.listed,
            changed=view.changed,
            **kwargs,
        )
        watcher.start()
        started.append(watcher)
        return watcher, view

    yield make
    for watcher in started:
        watcher.stop()


async def test_the_initial_list_is_paginated_and_the_watch_resumes_from_its_version(
    real_api_session: real_api.RealApi,
    real_namespace: str,
    recording: RecordingClient,
    start: Callable[..., tuple[watch.Watcher, View]],
) -> None:
    api, ns = real_api_session, real_namespace
    names = [f"pod-{i:02d}" for i in range(12)]
    for name in names:
        create_pod(api, ns, name)
    watcher, view = start(page_size=5)
    await until(lambda: view.lists, what="the initial list")
    assert set(view.pods) == set(names)

    pages = recording.pod_requests(watching=False)
    assert len(pages) >= 3, pages  # 12 Pods (at least) in pages of 5
    assert all(q["limit"] == "5" for q in pages)
    assert "continue" not in pages[0]
    assert all(q.get("continue") for q in pages[1:])

    [first_watch] = await until(
        lambda: recording.pod_requests(watching=True), what="the watch request"
    )
    assert first_watch["allowWatchBookmarks"] == "true"
    # The list's version, not "" or "0" (which would replay every Pod as ADDED): at least
    # the version of every Pod listed (one etcd: versions are ordered revisions).
    assert first_watch["resourceVersion"] not in ("", "0")
    listed_versions = [int(p["metadata"]["resourceVersion"]) for p in view.pods.values()]
    assert int(first_watch["resourceVersion"]) >= max(listed_versions)

    create_pod(api, ns, "pod-new")
    api.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/pod-03",
        body={"metadata": {"labels": {"changed": "yes"}}},
        content_type="application/merge-patch+json",
    )
    api.delete(f"/api/v1/namespaces/{ns}/pods/pod-07")
    await until(
        lambda: set(view.pods) == server_pods(api, ns) and "pod-new" in view.pods,
        what="the watch to deliver the create, patch and delete",
    )
    assert view.pods["pod-03"]["metadata"]["labels"]["changed"] == "yes"
    assert ("DELETED", "pod-07") in view.events
    # Nothing listed was replayed: the watch started where the list ended.
    assert not [e for e in view.events if e[0] == "ADDED" and e[1] != "pod-new"]
    assert watcher.lists == 1


async def test_a_bookmark_moves_the_resume_version_without_reporting_a_change(
    real_api_session: real_api.RealApi,
    real_namespace: str,
    recording: RecordingClient,
    start: Callable[..., tuple[watch.Watcher, View]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API server sends a bookmark shortly before a watch's ``timeoutSeconds``.

    The bookmark carries the watch cache's version, which moves when other objects are
    written and the cache hears of it (a consistent list asks etcd for progress). So
    the test writes ConfigMaps, not Pods: no Pod event can move the version.
    """
    api, ns = real_api_session, real_namespace
    monkeypatch.setattr(watch, "WATCH_TIMEOUT_SECONDS", 6)
    watcher, view = start()
    await until(lambda: view.lists, what="the initial list")
    [first] = await until(lambda: recording.pod_requests(watching=True), what="the watch")
    n = 0

    def resumed() -> list[dict[str, str]] | None:
        nonlocal n
        n += 1
        api.request(
            "POST", f"/api/v1/namespaces/{ns}/configmaps", body={"metadata": {"name": f"cm-{n}"}}
        )
        api.request("GET", PODS, query={"limit": "1"})  # consistent: the cache catches up
        watches = recording.pod_requests(watching=True)
        moved = [q for q in watches[1:] if q["resourceVersion"] != first["resourceVersion"]]
        return moved or None

    [after, *_] = await until(resumed, what="a watch resumed from a bookmark's version")
    # One etcd: versions are its revisions, so a later one is a larger number.
    assert int(after["resourceVersion"]) > int(first["resourceVersion"])
    assert view.events == []  # the bookmark was not delivered as a change
    assert watcher.lists == 1  # resumed, not relisted


async def test_a_stream_cut_midway_resumes_from_the_last_event_without_replay(
    real_api_session: real_api.RealApi,
    real_namespace: str,
    recording: RecordingClient,
    start: Callable[..., tuple[watch.Watcher, View]],
) -> None:
    """A connection cut while a watch is open (a load balancer, a proxy): the next watch
    starts at the last event's version (nothing delivered twice), and at once."""
    api, ns = real_api_session, real_namespace
    watcher, view = start()
    await until(lambda: recording.pod_requests(watching=True), what="the watch")
    create_pod(api, ns, "before-cut")
    await until(lambda: "before-cut" in view.pods, what="the ADDED event")
    version = int(view.pods["before-cut"]["metadata"]["resourceVersion"])
    watcher._response.shutdown()  # the socket dies under the reading thread
    [_, resumed, *_] = await until(
        lambda: recording.pod_requests(watching=True)[1:] and recording.pod_requests(watching=True),
        what="the watch opened again",
    )
    assert int(resumed["resourceVersion"]) >= version
    create_pod(api, ns, "after-cut")
    await until(lambda: "after-cut" in view.pods, what="events after the cut")
    assert view.events == [("ADDED", "before-cut"), ("ADDED", "after-cut")]
    assert watcher.lists == 1


def _shared_control_plane(api: real_api.RealApi) -> tuple[pathlib.Path, pathlib.Path, int]:
    """(state directory, cluster script, etcd client port) of ``../shared/kube``, or skip.

    Restarting an API server is only done to the one this session started for itself:
    ``KUBE_TEST_DIR`` and ``KUBE_TEST_PORT`` set, the client talking to that port.
    """
    directory, port = os.environ.get("KUBE_TEST_DIR"), os.environ.get("KUBE_TEST_PORT")
    if not directory or not port:
        pytest.skip("needs ../shared/kube's control plane (KUBE_TEST_DIR, KUBE_TEST_PORT)")
    if not (pathlib.Path(directory) / "apiserver.pid").exists():
        pytest.skip(f"no API server pid in {directory}")
    host = urllib.parse.urlsplit(api.api_client.configuration.host)
    if host.port != int(port):
        pytest.skip(f"the kube context is not the control plane of KUBE_TEST_PORT={port}")
    candidates = [os.environ.get("KUBE_TEST_CLUSTER", "")] + [
        str(p / "shared" / "kube" / "cluster") for p in ROOT.parents
    ]
    script = next((pathlib.Path(c) for c in candidates if c and pathlib.Path(c).exists()), None)
    if script is None:
        pytest.skip("../shared/kube/cluster not found (set KUBE_TEST_CLUSTER to its path)")
    return pathlib.Path(directory), script, int(port) + 10000


def _etcd_delete(etcd_port: int, key: str) -> int:
    """Delete a key in etcd itself (its JSON gateway): a write no API server watched."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{etcd_port}/v3/kv/deleterange", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response).get("deleted") or 0)


async def _create_when_ready(
    api: real_api.RealApi, namespace: str, name: str, *, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            create_pod(api, namespace, name)
            return
        except Exception as e:  # ApiError 403/5xx or a refused connection while starting
            if time.monotonic() > deadline:
                raise AssertionError(f"the restarted API server never accepted a Pod: {e}") from e
            await asyncio.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_an_api_server_restart_with_deletions_meanwhile_relists_and_converges(
    real_api_session: real_api.RealApi,
    real_namespace: str,
    start: Callable[..., tuple[watch.Watcher, View]],
) -> None:
    """Backoff through an outage, ``410 Gone`` after it, and a relist that drops deletions.

    While the API server is down, two Pods are deleted in etcd directly, as another API
    server of an HA control plane would: no stream ever carries their DELETED event.
    The restarted server's watch cache starts at etcd's revision, newer than the
    watcher's version, so resuming is refused with 410 (the same "too old resource
    version" a long outage gives) and the watcher lists again; the consumer replaces
    what it knew and the two Pods are gone from it.
    """
    api, ns = real_api_session, real_namespace
    directory, script, etcd_port = _shared_control_plane(api)
    names = [f"pod-{i}" for i in range(6)]
    for name in names:
        create_pod(api, ns, name)
    watcher, view = start(page_size=4)
    await until(lambda: view.lists and set(view.pods) == set(names), what="the initial list")

    pid = int((directory / "apiserver.pid").read_text().strip())
    # SIGKILL, a crash: a SIGTERM'd API server drains for about a minute first.
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not _alive(pid), what="the API server to stop", timeout=60)
    for gone in ("pod-1", "pod-4"):
        assert _etcd_delete(etcd_port, f"/registry/pods/{ns}/{gone}") == 1
    await until(lambda: watcher.restarts >= 1, what="the watcher to notice the outage")

    env = {**os.environ, "KUBE_TEST_DIR": str(directory)}
    up = await asyncio.to_thread(
        subprocess.run, [str(script), "up"], env=env, capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr[-2000:]
    # A freshly started API server answers 403 "not yet ready to handle request" until
    # its admission informers (NamespaceLifecycle) have synced: retry the create until
    # it is accepted, so neither this test nor the ones after it see a half-ready server.
    await _create_when_ready(api, ns, "pod-after")

    expected = {*names, "pod-after"} - {"pod-1", "pod-4"}
    await until(
        lambda: set(view.pods) == expected,
        what=f"the watcher to converge on {sorted(expected)}",
        timeout=180,
    )
    assert server_pods(api, ns) == expected
    assert watcher.lists >= 2  # relisted after 410, not resumed
    assert not [e for e in view.events if e[1] in ("pod-1", "pod-4")]  # dropped by the relist


async def test_a_field_selector_limits_list_and_watch_to_our_name(
    real_api_session: real_api.RealApi, real_namespace: str, recording: RecordingClient
) -> None:
    """Hardening watches only the objects with our fixed names (``watch.managed_kind``):
    the API server filters by ``metadata.name`` on the LIST and on the WATCH."""
    api, ns = real_api_session, real_namespace
    ours = "kube-guardrails-test-limits"

    def limit_range(name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]},
        }

    api.request("POST", f"/api/v1/namespaces/{ns}/limitranges", body=limit_range(ours))
    api.request("POST", f"/api/v1/namespaces/{ns}/limitranges", body=limit_range("theirs"))
    seen: list[tuple[str, str]] = []
    listed: list[str] = []
    kind = watch.managed_kind(builders.Kind("v1", "LimitRange", "limitranges", ours))
    watcher = watch.Watcher(
        api_client=recording,
        kind=kind,
        loop=asyncio.get_running_loop(),
        listed=lambda _k, bodies, _s: listed.extend(
            b["metadata"]["name"] for b in bodies if b["metadata"]["namespace"] == ns
        ),
        changed=lambda _k, event, body: (
            seen.append((event, body["metadata"]["name"]))
            if body["metadata"]["namespace"] == ns
            else None
        ),
    )
    watcher.start()
    try:
        await until(lambda: watcher.lists, what="the initial list")
        assert listed == [ours]
        api.request("DELETE", f"/api/v1/namespaces/{ns}/limitranges/theirs")
        api.request("DELETE", f"/api/v1/namespaces/{ns}/limitranges/{ours}")
        await until(lambda: ("DELETED", ours) in seen, what="our object's deletion")
        assert all(name == ours for _, name in seen)
    finally:
        watcher.stop()
