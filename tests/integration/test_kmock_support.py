"""The emulator fixes in kmock_support: namespace paths, metadata, watches, accounting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kmock_support
import pytest
from kmock._internal import parsing


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/namespaces", ("", "v1", "namespaces", None, None, None)),
        ("/api/v1/namespaces/team-a", ("", "v1", "namespaces", None, "team-a", None)),
        ("/api/v1/namespaces/team-a/status", ("", "v1", "namespaces", None, "team-a", "status")),
        ("/api/v1/namespaces/team-a/pods", ("", "v1", "pods", "team-a", None, None)),
        ("/api/v1/namespaces/team-a/pods/p1", ("", "v1", "pods", "team-a", "p1", None)),
        (
            "/api/v1/namespaces/team-a/pods/p1/eviction",
            ("", "v1", "pods", "team-a", "p1", "eviction"),
        ),
        ("/api/v1/pods", ("", "v1", "pods", None, None, None)),
        (
            "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/x",
            ("networking.k8s.io", "v1", "networkpolicies", "a", "x", None),
        ),
        (
            "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies/p/status",
            ("kube-guardrails.io", "v1alpha1", "guardrailpolicies", None, "p", "status"),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parse_path(path: str, expected: tuple[Any, ...]) -> None:
    p = kmock_support.parse_path(path)
    assert (p.group, p.version, p.plural, p.namespace, p.name, p.subresource) == expected


def test_fix_is_installed_by_the_emulator(emulator: kmock_support.GuardrailsEmulator) -> None:
    assert parsing.parse_path is kmock_support.parse_path


async def _json(
    emulator: kmock_support.GuardrailsEmulator, method: str, path: str, **kw: Any
) -> Any:
    async with emulator.request(method, path, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_namespace_lifecycle(emulator: kmock_support.GuardrailsEmulator) -> None:
    status, created = await _json(
        emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "team-a"}}
    )
    assert status == 200
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"].isdigit()
    assert meta["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert created["status"] == {"phase": "Active"}

    status, listed = await _json(emulator, "GET", "/api/v1/namespaces")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["team-a"]

    status, patched = await _json(
        emulator,
        "PATCH",
        "/api/v1/namespaces/team-a",
        json={"metadata": {"labels": {"env": "prod"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched["metadata"]["labels"]["env"] == "prod"
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    status, fetched = await _json(emulator, "GET", "/api/v1/namespaces/team-a")
    assert fetched["metadata"]["labels"]["env"] == "prod"

    status, _ = await _json(emulator, "DELETE", "/api/v1/namespaces/team-a")
    assert status == 200
    status, _ = await _json(emulator, "GET", "/api/v1/namespaces/team-a")
    assert status == 404


async def test_namespaced_objects_still_work(emulator: kmock_support.GuardrailsEmulator) -> None:
    path = "/api/v1/namespaces/team-a/events"
    body = {"metadata": {"generateName": "x."}, "reason": "Test"}
    first = await _json(emulator, "POST", path, json=body)
    second = await _json(emulator, "POST", path, json=dict(body, metadata={"generateName": "x."}))
    assert first[0] == second[0] == 200
    assert first[1]["metadata"]["name"] != second[1]["metadata"]["name"]
    assert first[1]["metadata"]["namespace"] == "team-a"
    assert emulator.names("v1/events", "team-a") == sorted(
        [first[1]["metadata"]["name"], second[1]["metadata"]["name"]]
    )


async def test_generation_bumps_on_spec_changes_only(
    emulator: kmock_support.GuardrailsEmulator,
) -> None:
    base = "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies"
    await _json(emulator, "POST", base, json={"metadata": {"name": "p"}, "spec": {"priority": 1}})
    merge = {"Content-Type": "application/merge-patch+json"}
    _, obj = await _json(
        emulator, "PATCH", f"{base}/p/status", json={"status": {"x": 1}}, headers=merge
    )
    assert obj["metadata"]["generation"] == 1
    _, obj = await _json(
        emulator, "PATCH", f"{base}/p", json={"spec": {"priority": 2}}, headers=merge
    )
    assert obj["metadata"]["generation"] == 2


async def test_namespace_watch_streams_changes(emulator: kmock_support.GuardrailsEmulator) -> None:
    await _json(emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "early"}})
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        async with emulator.get("/api/v1/namespaces", params={"watch": "true"}) as resp:
            async for line in resp.content:
                if line.strip():
                    event = json.loads(line)
                    seen.append((event["type"], event["object"]["metadata"]["name"]))
                    if len(seen) == 2:
                        return

    task = asyncio.create_task(watch())
    while not any(emulator.describe(r) == "WATCH namespaces" for r in emulator):
        await asyncio.sleep(0.01)
    await _json(emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "late"}})
    await asyncio.wait_for(task, timeout=5)
    assert seen == [("ADDED", "early"), ("ADDED", "late")]
    # The server side of a closed watch notices only when it next writes: give it a
    # change to write, so it ends now rather than at server shutdown.
    await _json(emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "after"}})


async def test_request_accounting(emulator: kmock_support.GuardrailsEmulator) -> None:
    await _json(emulator, "GET", "/api/v1/namespaces")
    mark = emulator.mark()
    await _json(emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "a"}})
    await _json(emulator, "GET", "/api/v1/namespaces/a")
    assert emulator.count(emulator.requests_since(mark)) == {
        "POST namespaces": 1,
        "GET namespaces": 1,
    }
    assert [emulator.describe(r) for r in emulator.writes_since(mark)] == ["POST namespaces"]


async def test_user_reactions_still_win_over_the_emulator(
    emulator: kmock_support.GuardrailsEmulator,
) -> None:
    await _json(emulator, "POST", "/api/v1/namespaces", json={"metadata": {"name": "a"}})
    emulator["get /api/v1/namespaces/a"][:1] << 503  # first read fails, later ones pass
    emulator["delete /api/v1/namespaces/a"] << 409
    assert (await _json(emulator, "GET", "/api/v1/namespaces/a"))[0] == 503
    assert (await _json(emulator, "GET", "/api/v1/namespaces/a"))[0] == 200
    assert (await _json(emulator, "DELETE", "/api/v1/namespaces/a"))[0] == 409
    assert (await _json(emulator, "GET", "/api/v1/namespaces/b"))[0] == 404
