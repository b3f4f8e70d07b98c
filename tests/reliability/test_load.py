"""Load: many requests at once against one real `obstop run`, each on its own simulated cluster, plus
deliberately conflicting pairs on one cluster, with faults injected on some agents (5xx bursts, lost answers,
answers slower than the timeout) and every watch cut once. The API server is the session's real
kube-apiserver + etcd; the controller reaches it through the fault proxy (which cuts the watches). Expected:
every request reaches its terminal phase, no cluster is stopped twice, a conflicting second stop fails with
the lock explained, and the controller's memory stays bounded. Figures are printed (run with -s) for the
README; they include the real server's round trips, so they differ from the emulated server's.

The default run is small; the `slow` one (OBSTOP_SLOW=1) is the big one.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from reliability_support import proxy_of

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import GROUP, PLURAL, TERMINAL, VERSION, Stack, stop_request
from obstop.testing.waiting import wait_until

STOP_ROUTE = "/api/v1/ob/stop"
# A failed minor freeze does not pass the sub-DAGs: the agents stay locked (fact sheet §3.4).
FREEZE = "Minor freeze before stop server"


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def phases(stack: Stack) -> dict[str, dict[str, Any]]:
    items = stack.custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL)["items"]
    return {item["metadata"]["name"]: item.get("status") or {} for item in items}


def inject_faults(stack: Stack, clusters: range) -> Counter[str]:
    injected: Counter[str] = Counter()
    for index in clusters:
        agent = stack.agent(index)
        kind = index % 10
        if kind == 1:
            stack.sim.faults.error_burst(2, agent=agent)
            injected["5xx burst"] += 1
        elif kind == 4:
            stack.sim.faults.drop_responses(agent=agent, times=1)
            injected["stop answer dropped"] += 1
        elif kind == 7:
            stack.sim.faults.delay(4, route=STOP_ROUTE, agent=agent, method="POST", times=1)
            injected["stop answer after the timeout"] += 1
    return injected


def run_load(control_plane: ControlPlane, singles: int, pairs: int, zones: int, timeout: float) -> None:
    clusters = singles + pairs
    stack = Stack(control_plane=control_plane, proxy=True, clusters=clusters, zones=zones, stage_seconds=0.2)
    with stack as s:
        proc = s.start_controller()
        wait_until(lambda: "Activity 'startup' succeeded" in s.controller_logs(), what="controller started")
        memory_at_start = rss_kib(proc.pid)
        injected = inject_faults(s, range(singles))
        for index in range(singles, clusters):  # the first stop of each pair dies leaving the agents locked
            s.sim.faults.fail_stop(FREEZE, "Sim.Freeze.Failed", "minor freeze timeout", agent=s.agent(index))

        started = time.monotonic()
        half = singles // 2
        for index in range(half):
            s.create(stop_request(f"load-{index}", s.agent(index), force=True))
        for index in range(singles, clusters):
            s.create(stop_request(f"first-{index}", s.agent(index), terminate=True))
        for index in range(half, singles):
            s.create(stop_request(f"load-{index}", s.agent(index), force=True))
        created = time.monotonic()
        wait_until(lambda: len(phases(s)) == clusters, what="all created")
        proxy = proxy_of(s)
        wait_until(
            lambda: proxy.recorded(verb="watch", resource=PLURAL), what="the controller watches requests"
        )
        cut = proxy.cut_watches()
        assert cut >= 1

        def firsts_done() -> bool:
            now = phases(s)
            return all(now[f"first-{i}"].get("phase") in TERMINAL for i in range(singles, clusters))

        wait_until(firsts_done, timeout=timeout, what="first stops of the pairs")
        for index in range(singles, clusters):  # the conflicting second stop, other agent of the same cluster
            s.create(stop_request(f"second-{index}", s.agent(index, index=zones - 1), force=True))

        def all_done() -> bool:
            return all(status.get("phase") in TERMINAL for status in phases(s).values())

        wait_until(all_done, timeout=timeout, what="every request terminal")
        elapsed = time.monotonic() - started
        memory_at_end = rss_kib(proc.pid)
        assert proc.poll() is None, "the controller died"
        final = phases(s)

        # Every single request succeeded, on its own cluster, with exactly one stop landed.
        landed = Counter(r.cluster for r in s.sim.stops() if r.landed)
        for index in range(singles):
            status = final[f"load-{index}"]
            assert status["phase"] == "Succeeded", (index, status)
            assert landed[s.sim.clusters[index].name] == 1, index
        # Each pair: the first failed where it was made to, leaving the agents locked; the second is refused by
        # its pre-check before any POST, naming the lock holder and the forcePassDag to use.
        for index in range(singles, clusters):
            first, second = final[f"first-{index}"], final[f"second-{index}"]
            assert first["phase"] == "Failed" and first["reason"] == "Sim.Freeze.Failed", first
            assert second["phase"] == "Failed" and second["reason"] == "LocksHeld", second
            assert f'forcePassDag: ["{first["dag"]["id"]}"]' in second["message"], second["message"]
            assert "dag" not in second and "Nothing was sent" in second["message"]
            assert landed[s.sim.clusters[index].name] == 1  # the first's; the second never POSTed
        assert sum(landed.values()) == singles + pairs

        growth = memory_at_end["VmRSS"] - memory_at_start["VmRSS"]
        attempts = [int(status.get("attempts") or 0) for status in final.values()]
        print(
            f"\nLOAD {singles} requests on {singles} clusters ({zones} zone(s) each) + {pairs} conflicting pairs; "
            f"faults: {dict(injected)}, every open watch cut once ({cut} streams); real kube-apiserver + etcd\n"
            f"  created in {created - started:.1f}s; all terminal after {elapsed:.1f}s "
            f"({(singles + 2 * pairs) / elapsed:.1f} requests/s)\n"
            f"  stops landed {sum(landed.values())} (= requests); retried requests "
            f"{sum(1 for a in attempts if a)}, max attempts {max(attempts)}\n"
            f"  controller RSS {memory_at_start['VmRSS'] / 1024:.0f} MiB at start, "
            f"{memory_at_end['VmRSS'] / 1024:.0f} MiB at the end, peak {memory_at_end['VmHWM'] / 1024:.0f} MiB "
            f"(+{growth / 1024:.1f} MiB, {growth / (singles + 2 * pairs):.0f} KiB per request)"
        )
        # Bounded: well under what a leak of every response or body would cost.
        assert growth < 64 * 1024 + 200 * (singles + 2 * pairs), growth


@pytest.mark.timeout(300)
def test_load_100_requests_with_faults_and_conflicts(control_plane: ControlPlane) -> None:
    run_load(control_plane, singles=100, pairs=5, zones=1, timeout=180)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_400_requests_on_3_zone_clusters(control_plane: ControlPlane) -> None:
    run_load(control_plane, singles=400, pairs=20, zones=3, timeout=600)
