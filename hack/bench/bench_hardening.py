#!/usr/bin/env python3
"""Namespace hardening through the real operator, against the kmock API emulator.

What runs: the real operator (kopf + our handlers, services and k8s gateway, started
through ``kopf.testing.KopfRunner`` exactly as the integration tests do) against the
in-process kmock emulator (``tests/integration/kmock_support.py``). No cluster needed.

What is measured, for a burst of N new namespaces (default 1000) selected by one
GuardrailPolicy:

- latency per namespace: from the emulator storing the Namespace to the emulator
  storing the later of its NetworkPolicy and LimitRange (p50, p90, p99, max);
- API requests per namespace hardened, by verb and resource (everything the operator
  sent during the burst, divided by N: creates, events, status patches);
- a no-op resync (four LISTs, then every namespace re-checked) and a restart with
  everything in place: requests made, which must include zero writes;
- for scale, the same burst through a bare watch-and-create controller (an aiohttp
  watch on namespaces that POSTs the same two objects, nothing else) on the same
  emulator, and the ratio of the two p99s.

The emulator is a Python test double, not an API server: absolute latencies are the
emulator's and this machine's, and it gets slower as it holds more objects (it scans
its store on every request). The ratio to the bare controller and the request counts
are the meaningful figures.

    hack/bench/bench_hardening.py --namespaces 1000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import aiohttp  # noqa: E402
import kmock  # noqa: E402
import kmock_support  # noqa: E402
import operator_support  # noqa: E402
from kmock._internal import enums, rendering  # noqa: E402
from kopf.testing import KopfRunner  # noqa: E402

from kube_guardrails import builders  # noqa: E402
from kube_guardrails.handlers import main as operator_main  # noqa: E402

POLICY_PATH = "/apis/kube-guardrails.io/v1alpha1/guardrailpolicies"

# kopf's CLI runner (click) swaps sys.stdout while the operator runs: print to the real one.
_OUT = os.fdopen(os.dup(1), "w", buffering=1)


def say(*parts: object) -> None:
    print(*parts, file=_OUT)


class TimingEmulator(kmock_support.GuardrailsEmulator):
    """Records when each Namespace, NetworkPolicy and LimitRange was stored."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.stored: dict[tuple[str, str], float] = {}

    async def _handle(self, request: rendering.Request) -> Any:
        response = await super()._handle(request)
        if request.action == enums.action.CREATE and request.resource is not None:
            plural = request.resource.plural or ""
            meta = (request.data or {}).get("metadata") or {}
            where = meta.get("name") if plural == "namespaces" else request.namespace
            if where and plural in ("namespaces", "networkpolicies", "limitranges"):
                self.stored.setdefault((plural, where), time.perf_counter())
        return response

    def latencies(self, names: list[str]) -> list[float]:
        out = []
        for name in names:
            start = self.stored.get(("namespaces", name))
            np = self.stored.get(("networkpolicies", name))
            lr = self.stored.get(("limitranges", name))
            if start is not None and np is not None and lr is not None:
                out.append(max(np, lr) - start)
        return out


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, kopf {version('kopf')}, "
        f"kubernetes {version('kubernetes')}, kmock {version('kmock')}"
    )


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000

    return (
        f"p50 {pct(0.50):.1f} ms, p90 {pct(0.90):.1f} ms, p99 {pct(0.99):.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms, mean {statistics.fmean(ordered) * 1000:.1f} ms"
    )


async def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def paced(
    api: kmock_support.GuardrailsEmulator, names: list[str], labels: dict[str, str], rate: float
) -> None:
    """Create the namespaces one by one at ``rate`` per second (no burst, no queueing)."""
    start = time.perf_counter()
    for i, name in enumerate(names):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = {"metadata": {"name": name, "labels": labels}}
        async with api.post("/api/v1/namespaces", json=body) as resp:
            assert resp.status == 200, await resp.text()


async def burst(
    api: kmock_support.GuardrailsEmulator,
    names: list[str],
    labels: dict[str, str],
    concurrency: int,
) -> None:
    """Create the namespaces as fast as the client allows (bounded concurrency)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with semaphore:
            body = {"metadata": {"name": name, "labels": labels}}
            async with api.post("/api/v1/namespaces", json=body) as resp:
                assert resp.status == 200, await resp.text()

    await asyncio.gather(*(one(n) for n in names))


@contextlib.asynccontextmanager
async def running_operator() -> AsyncIterator[Any]:
    modules = operator_main.handler_modules(operator_main.settings_from_env())
    args = ["run", "--standalone", "--all-namespaces", "--quiet"]
    for module in [operator_main.__name__, *modules, operator_support.__name__]:
        args += ["-m", module]
    before = len(operator_support.MEMOS)
    runner = KopfRunner(args, timeout=60)
    runner.__enter__()
    try:
        await wait_for(lambda: len(operator_support.MEMOS) > before, timeout=30, what="startup")
        memo = operator_support.MEMOS[-1]
        await wait_for(lambda: memo.get("runtime") is not None, timeout=30, what="memo")
        yield memo
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)


async def caught_up(memo: Any, timeout: float) -> None:
    await wait_for(lambda: memo.runtime.queue.started, timeout=timeout, what="caches synced")
    start = memo.runtime.hardening.published
    await wait_for(
        lambda: (
            memo.runtime.queue.busy == 0
            and memo.runtime.hardening.published >= start + 2
            and not memo.runtime.status.pending()
        ),
        timeout=timeout,
        what="operator caught up",
    )


def per_namespace(counts: collections.Counter[str], n: int) -> str:
    return ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(counts.items())) or "none"


def operator_requests(
    emulator: kmock_support.GuardrailsEmulator, mark: int, user_agent_prefix: str = ""
) -> collections.Counter[str]:
    """Requests since ``mark`` that the operator sent (not the benchmark's own)."""
    out: collections.Counter[str] = collections.Counter()
    for r in emulator.requests_since(mark):
        agent = str(r.headers.get("User-Agent", ""))
        if agent.startswith("kmock/"):  # the benchmark's own client
            continue
        if user_agent_prefix and not agent.startswith(user_agent_prefix):
            continue
        out[emulator.describe(r)] += 1
    return out


# ------------------------------------------------------------------- bare controller


def bare_controller(url: str, stop: threading.Event, ready: threading.Event) -> None:
    """Watch namespaces; POST the same NetworkPolicy and LimitRange; nothing else."""
    from kube_guardrails.model import policy as policy_model

    pol = policy_model.parse({"metadata": {"name": "bare"}, "spec": {}})

    async def main() -> None:
        async with aiohttp.ClientSession(
            base_url=url, headers={"User-Agent": "bare-controller"}
        ) as session:
            tasks: set[asyncio.Task[None]] = set()

            async def harden(ns: str) -> None:
                np = builders.build_network_policy(ns, pol)
                lr = builders.build_limit_range(ns, pol)
                await asyncio.gather(
                    session.post(
                        f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", json=np
                    ),
                    session.post(f"/api/v1/namespaces/{ns}/limitranges", json=lr),
                )

            async with session.get(
                "/api/v1/namespaces",
                params={"watch": "true"},
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                ready.set()
                async for line in resp.content:
                    if stop.is_set():
                        break
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    meta = event["object"]["metadata"]
                    if (
                        event["type"] == "ADDED"
                        and (meta.get("labels") or {}).get("bench") == "bare"
                    ):
                        task = asyncio.create_task(harden(meta["name"]))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


# ------------------------------------------------------------------------------ main


async def run(n: int, concurrency: int, rate: float, with_bare: bool) -> None:
    say(f"machine: {machine()}")
    say(f"namespaces: {n}, client concurrency: {concurrency}")
    async with TimingEmulator() as emulator, kmock.Server(emulator):
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = kmock_support.write_kubeconfig(
                pathlib.Path(tmp) / "kubeconfig", server=str(emulator.url)
            )
            os.environ.update(
                KUBECONFIG=str(kubeconfig),
                KUBE_GUARDRAILS_CONTEXT="kmock",
                KUBE_GUARDRAILS_WORKLOADS="false",
                KUBE_GUARDRAILS_STATUS_INTERVAL_SECONDS="1",
                KUBE_GUARDRAILS_RESYNC_SECONDS="3600",
            )
            policy = {
                "apiVersion": "kube-guardrails.io/v1alpha1",
                "kind": "GuardrailPolicy",
                "metadata": {"name": "bench"},
                "spec": {"namespaceSelector": {"matchLabels": {"bench": "operator"}}},
            }
            async with emulator.post(POLICY_PATH, json=policy) as resp:
                assert resp.status == 200
            names = [f"bench-{i:05d}" for i in range(n)]

            async with running_operator() as memo:
                await caught_up(memo, timeout=60)
                mark = emulator.mark()
                started = time.perf_counter()
                await burst(emulator, names, {"bench": "operator"}, concurrency)
                await wait_for(
                    lambda: len(emulator.latencies(names)) == n, timeout=600, what="hardening"
                )
                elapsed = time.perf_counter() - started
                await caught_up(memo, timeout=120)
                lat = emulator.latencies(names)
                burst_counts = operator_requests(emulator, mark)
                say("\n== burst through the operator ==")
                say(f"hardened {len(lat)}/{n} in {elapsed:.2f} s ({n / elapsed:.0f} namespaces/s)")
                say(f"latency per namespace: {percentiles(lat)}")
                writes = {
                    k: v for k, v in burst_counts.items() if not k.startswith(("GET", "WATCH"))
                }
                per_ns = per_namespace(collections.Counter(writes), n)
                say(f"writes per namespace hardened: {per_ns}")
                reads = {k: v for k, v in burst_counts.items() if k.startswith(("GET", "WATCH"))}
                say(f"reads during the burst (total): {dict(sorted(reads.items())) or 'none'}")
                say(f"status writes (total, batched): {memo.runtime.status.writes}")

                if rate > 0:
                    paced_names = [f"paced-{i:05d}" for i in range(max(n // 5, 1))]
                    await paced(emulator, paced_names, {"bench": "operator"}, rate)
                    await wait_for(
                        lambda: len(emulator.latencies(paced_names)) == len(paced_names),
                        timeout=600,
                        what="paced hardening",
                    )
                    await caught_up(memo, timeout=120)
                    say(f"\n== {len(paced_names)} more namespaces, paced at {rate:g}/s ==")
                    say(f"latency per namespace: {percentiles(emulator.latencies(paced_names))}")

                mark = emulator.mark()
                resync_started = time.perf_counter()
                await asyncio.to_thread(memo.runtime.hardening.relist)
                memo.runtime.queue.add_many(memo.runtime.inventory.namespace_names())
                await caught_up(memo, timeout=120)
                resync_time = time.perf_counter() - resync_started
                resync_counts = operator_requests(emulator, mark)
                say("\n== no-op resync (re-list, then every namespace re-checked) ==")
                say(
                    f"namespaces re-checked: {len(memo.runtime.inventory.namespace_names())} "
                    f"in {resync_time:.2f} s (includes two status recount rounds)"
                )
                say(f"requests: {dict(resync_counts) or 'none'}")
                resync_writes = sum(
                    v for k, v in resync_counts.items() if not k.startswith(("GET", "WATCH"))
                )
                say(f"writes: {resync_writes} (target 0)")

            mark = emulator.mark()
            async with running_operator() as memo:
                await caught_up(memo, timeout=120)
            restart_counts = operator_requests(emulator, mark)
            restart_writes = sum(
                v for k, v in restart_counts.items() if not k.startswith(("GET", "WATCH"))
            )
            say("\n== restart with everything in place ==")
            say(f"requests: {dict(sorted(restart_counts.items()))}")
            say(f"writes: {restart_writes} (target 0)")

            if with_bare:
                stop, ready = threading.Event(), threading.Event()
                thread = threading.Thread(
                    target=bare_controller, args=(str(emulator.url), stop, ready), daemon=True
                )
                thread.start()
                await wait_for(ready.is_set, timeout=10, what="bare controller")
                bare_names = [f"bare-{i:05d}" for i in range(n)]
                started = time.perf_counter()
                await burst(emulator, bare_names, {"bench": "bare"}, concurrency)
                await wait_for(
                    lambda: len(emulator.latencies(bare_names)) == n,
                    timeout=600,
                    what="bare hardening",
                )
                bare_elapsed = time.perf_counter() - started
                bare_lat = emulator.latencies(bare_names)
                say("\n== the same burst through a bare watch-and-create controller ==")
                say("(note: the emulator now holds twice the objects, which slows it down)")
                say(f"hardened {len(bare_lat)}/{n} in {bare_elapsed:.2f} s")
                say(f"latency per namespace: {percentiles(bare_lat)}")
                if rate > 0:
                    paced_bare = [f"paced-bare-{i:05d}" for i in range(max(n // 5, 1))]
                    await paced(emulator, paced_bare, {"bench": "bare"}, rate)
                    await wait_for(
                        lambda: len(emulator.latencies(paced_bare)) == len(paced_bare),
                        timeout=600,
                        what="paced bare hardening",
                    )
                    say(f"paced at {rate:g}/s: {percentiles(emulator.latencies(paced_bare))}")
                stop.set()
                op_p99 = sorted(lat)[int(0.99 * (len(lat) - 1))]
                bare_p99 = sorted(bare_lat)[int(0.99 * (len(bare_lat) - 1))]
                say(f"burst p99 ratio operator/bare: {op_p99 / bare_p99:.2f}")
                # The bare controller's watch stays open until the next namespace event.
                async with emulator.post(
                    "/api/v1/namespaces", json={"metadata": {"name": "bench-end"}}
                ) as resp:
                    assert resp.status == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", "-n", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="concurrent namespace creations by the benchmark client",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="namespaces/s for the paced phase (n/5 namespaces; 0 skips it)",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare controller")
    args = parser.parse_args()
    from kube_guardrails import logs

    logs.configure(fmt="console", level="warning")
    asyncio.run(run(args.namespaces, args.concurrency, args.rate, not args.no_bare))


if __name__ == "__main__":
    main()
