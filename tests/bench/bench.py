"""Benchmark of the controller against the obvious alternatives (issue 6).

    .venv/bin/python tests/bench/bench.py            # detection, submission, load, scale 10/100/1000
    .venv/bin/python tests/bench/bench.py --quick    # the same, scale 10/100 only

Everything runs on loopback, each part in its own process so that none steals another's GIL: the obshell
simulator (this file's `sim` sub-command), a real control plane (etcd + kube-apiserver, obstop.testing.controlplane)
and the real controller (`obstop run`, default settings). This process creates the ObStopRequests, watches them
through the API server, and reads the simulator's own records (when each stop arrived, when each DAG became
terminal, every call each agent served). The last line printed is a `key=value ...` summary.

kube-apiserver and etcd share the machine's cores with everything else, so figures that go through them
(submission and detection latency, scale) are upper bounds of what a real cluster would show.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin")
GROUP, VERSION, PLURAL = "obshell.oceanbase.com", "v1alpha1", "obstoprequests"
NAMESPACE, SECRET = "default", "obshell-root"
TERMINAL = ("Succeeded", "Failed")
SDK_INTERVAL = 3.0  # the official SDK's wait_dag_succeed polls every 3 s

# Stage timings of a stop DAG (seconds per node), in the 1-5 s range real agents show on an idle cluster;
# each step is stretched by up to +-JITTER at random, so the controller cannot know them in advance.
NODE_SECONDS = {
    "READY": 1.0,
    "Inform all agents to prepare to stop observer": 2.0,
    "Make sure all agents are ready": 2.0,
    "Minor freeze before stop server": 5.0,
    "Advance agents to execute the task": 2.0,
    "Wait for all agents to execute tasks successfully": 4.0,
    "Execute stop sql": 3.0,
    "Inform all agents to end the task": 2.0,
}
JITTER = 0.25


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline and not math.isnan(baseline) else math.nan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.load(response)


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and RSS now/peak (MiB) of a process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields_[11]) + int(fields_[12])) / ticks
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    mib = lambda key: int(status[key].split()[0]) / 1024  # noqa: E731
    return {"cpu": cpu, "rss": mib("VmRSS"), "hwm": mib("VmHWM")}


def wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str]:
    """Lines a child prints up to and including the first one starting with `prefix`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({proc.poll()}) before printing {prefix!r}: {lines[-5:]}")
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    raise TimeoutError(f"no {prefix!r} line within {timeout}s")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ----------------------------------------------------------------------------------------------------------
# The simulator as a process: `bench.py sim` (like `obstop sim`, plus realistic per-node timing)


def serve_sim(args: argparse.Namespace) -> int:
    from obstop.commands.sim import serve
    from obstop.testing.obshell_sim import SimulatorConfig

    config = SimulatorConfig(
        password=os.environ["OBSTOP_SIM_PASSWORD"],
        zones=1,
        servers_per_zone=1,
        clusters=args.clusters,
        stage_seconds=1.0,
        node_seconds=NODE_SECONDS,
        stage_jitter=JITTER,
        seed=args.seed,
        key_bits=args.key_bits,
    )
    asyncio.run(serve(config))
    return 0


# ----------------------------------------------------------------------------------------------------------
# One stack: simulator, API server and controller processes


@dataclass
class Watched:
    """What the watcher saw of one ObStopRequest: first wall-clock time of each phase, and its last status."""

    phases: dict[str, float] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)


class Stack:
    def __init__(self, clusters: int, *, env: Mapping[str, str] | None = None, key_bits: int = 1024) -> None:
        self.clusters = clusters
        self.env = dict(env or {})
        self.key_bits = key_bits
        self.password = secrets.token_urlsafe(12)
        self._exit = ExitStack()
        self.watched: dict[str, Watched] = {}
        self._cond = threading.Condition()
        self._stopping = threading.Event()

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._exit.close()

    def _spawn(
        self, argv: list[str], env: Mapping[str, str], log: Path | None = None
    ) -> subprocess.Popen[Any]:
        out: Any = log.open("w") if log else subprocess.PIPE
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT if log else None, text=True
        )
        self._exit.callback(stop_process, proc)
        return proc

    def _start(self) -> None:
        workdir = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="obstop-bench-")))
        self.workdir = workdir
        sim = self._spawn(
            [
                sys.executable,
                __file__,
                "sim",
                "--clusters",
                str(self.clusters),
                "--key-bits",
                str(self.key_bits),
            ],
            {"OBSTOP_SIM_PASSWORD": self.password},
        )
        from obstop.testing.controlplane import ControlPlane
        from obstop.testing.stack import crd_path

        control_plane = self._exit.enter_context(ControlPlane())
        self.control_plane = control_plane
        kubeconfig = control_plane.kubeconfig
        applied = subprocess.run(
            [str(TOOLS / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "-f", str(crd_path())],
            capture_output=True,
            text=True,
        )
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply of the CRD failed: {applied.stderr}")
        subprocess.run(
            [
                str(TOOLS / "kubectl"),
                "--kubeconfig",
                str(kubeconfig),
                "wait",
                "--for=condition=Established",
                "crd/obstoprequests.obshell.oceanbase.com",
                "--timeout=60s",
            ],
            check=True,
            capture_output=True,
        )
        self.agents = [line.split()[1] for line in wait_line(sim, "ready", 600) if line.startswith("agent ")]
        self.sim_url = f"http://{self.agents[0]}/__sim__"
        self.kubeconfig = kubeconfig
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api_client.configuration.connection_pool_maxsize = 16
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        import base64

        client.CoreV1Api(api_client).create_namespaced_secret(
            NAMESPACE,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                # Its owner lets it go to the simulator's agents, all on loopback (docs/security.md).
                "metadata": {
                    "name": SECRET,
                    "annotations": {"obshell.oceanbase.com/allowed-agents": "127.0.0.1:*"},
                },
                "data": {"password": base64.b64encode(self.password.encode()).decode()},
            },
        )
        watcher = threading.Thread(target=self._watch, name="watch", daemon=True)
        watcher.start()
        self.health_port = free_port()
        env = {
            "KUBECONFIG": str(kubeconfig),
            "OBSTOP_HEALTH_PORT": str(self.health_port),
            "OBSTOP_NAMESPACES": NAMESPACE,
            **self.env,
        }
        self.controller = self._spawn(
            [sys.executable, "-m", "obstop.cli", "run"], env, log=workdir / "controller.log"
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.controller.poll() is not None:
                    raise RuntimeError("the controller did not become healthy") from None
                time.sleep(0.1)
        profile = os.environ.get("OBSTOP_BENCH_PROFILE")
        if profile:  # sample the controller for the whole run (py-spy, installed by hand: not a dependency)
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.controller.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "50",
                    "--nonblocking",
                    "-o",
                    profile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # py-spy writes its profile on SIGINT (stop_process sends SIGTERM, which would lose it).
            self._exit.callback(lambda: (spy.send_signal(signal.SIGINT), spy.wait(30)))
        time.sleep(1.0)  # let Kopf finish its first LIST/WATCH before anything is created

    def _watch(self) -> None:
        from kubernetes import watch

        version = ""
        while not self._stopping.is_set():
            stream = watch.Watch()
            try:
                kwargs: dict[str, Any] = {"timeout_seconds": 60}
                if version:
                    kwargs["resource_version"] = version
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, **kwargs
                ):
                    seen = time.time()
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    status = obj.get("status") or {}
                    with self._cond:
                        entry = self.watched.setdefault(obj["metadata"]["name"], Watched())
                        entry.status = status
                        phase = status.get("phase")
                        if phase and phase not in entry.phases:
                            entry.phases[phase] = seen
                            self._cond.notify_all()
            except Exception:  # a dropped stream: watch again from where we were
                if self._stopping.is_set():
                    return
                time.sleep(0.1)

    def create(self, name: str, agent: str, *, terminate: bool) -> float:
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ObStopRequest",
            "metadata": {"name": name},
            "spec": {
                "obshell": {"address": agent, "passwordSecretRef": {"name": SECRET, "key": "password"}},
                "scope": {"type": "GLOBAL", "target": []},
                "force": not terminate,
                "terminate": terminate,
                "forcePassDag": [],
            },
        }
        started = time.time()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
        return started

    def wait_terminal(self, names: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(any(p in self.watched.get(n, Watched()).phases for p in TERMINAL) for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    done = sum(
                        any(p in self.watched.get(n, Watched()).phases for p in TERMINAL) for n in names
                    )
                    raise TimeoutError(f"{done}/{len(names)} requests terminal after {timeout}s")
                self._cond.wait(min(left, 1.0))

    def terminal_time(self, name: str) -> float:
        phases = self.watched[name].phases
        return min(phases[p] for p in TERMINAL if p in phases)

    def sim_state(self) -> dict[str, dict[str, Any]]:
        """Per agent address: its DAGs by generic id, and how many calls it served."""
        state = get_json(f"{self.sim_url}/state")
        return {agent["address"]: agent for cluster in state["clusters"] for agent in cluster["agents"]}

    def controller_stats(self) -> dict[str, float]:
        return proc_stats(self.controller.pid)


# ----------------------------------------------------------------------------------------------------------
# Figures 1 and 2: detection and submission latency, against an SDK-style 3 s polling loop


async def baseline_loop(agents: Sequence[str], password: str, spacing: float) -> list[dict[str, float]]:
    """What the official SDK does: POST the stop, then GET the DAG every 3 s until it is finished."""
    from obstop.obshell import ObshellClient, Scope, ScopeType, StopParams

    async def one(index: int, agent: str) -> dict[str, float]:
        await asyncio.sleep(index * spacing)
        async with ObshellClient(f"http://{agent}", password) as client:
            asked = time.time()
            dag = await client.stop(
                StopParams(scope=Scope(type=ScopeType.GLOBAL), force=index % 2 == 0, terminate=index % 2 == 1)
            )
            while not dag.finished:
                await asyncio.sleep(SDK_INTERVAL)
                dag = await client.get_dag(dag.id)
            return {"asked": asked, "seen": time.time(), "dag": float(dag.id)}

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(agents))))


def latency(count: int, spacing: float, env: Mapping[str, str]) -> dict[str, float]:
    settings = " ".join(f"{k}={v}" for k, v in env.items()) or "default settings"
    print(
        f"\n== detection and submission latency: {count} requests, one every {spacing}s; controller with "
        f"{settings} ==",
        flush=True,
    )
    with Stack(2 * count, env=env) as stack:
        ours, theirs = stack.agents[:count], stack.agents[count:]
        results: list[dict[str, float]] = []
        baseline = threading.Thread(
            target=lambda: results.extend(asyncio.run(baseline_loop(theirs, stack.password, spacing))),
            daemon=True,
        )
        baseline.start()
        created: dict[str, float] = {}
        for index, agent in enumerate(ours):
            target = time.monotonic() + spacing
            name = f"lat-{index}"
            created[name] = stack.create(name, agent, terminate=index % 2 == 1)
            time.sleep(max(0.0, target - time.monotonic()))
        stack.wait_terminal(list(created), timeout=300)
        baseline.join(300)
        state = stack.sim_state()
        stops = {s["agent"]: s for s in get_json(f"{stack.sim_url}/stops")["stops"]}

    submit, detect, calls = [], [], []
    for index, agent in enumerate(ours):
        name = f"lat-{index}"
        watched = stack.watched[name]
        dag_id = watched.status["dag"]["id"]
        dag = next(d for d in state[agent]["dags"] if d["id"] == dag_id)
        submit.append(stops[agent]["time"] - created[name])
        detect.append(stack.terminal_time(name) - dag["terminalAt"])
        calls.append(state[agent]["requests"])
        assert watched.status["phase"] == "Succeeded", (name, watched.status.get("message"))
    base_submit, base_detect, base_calls = [], [], []
    for agent, result in zip(theirs, results, strict=True):
        dag = next(d for d in state[agent]["dags"] if d["name"] == "Stop OB")
        base_submit.append(stops[agent]["time"] - result["asked"])
        base_detect.append(result["seen"] - dag["terminalAt"])
        base_calls.append(state[agent]["requests"])
    figures = {
        "detect_p50": percentile(detect, 50),
        "detect_p95": percentile(detect, 95),
        "base_detect_p50": percentile(base_detect, 50),
        "base_detect_p95": percentile(base_detect, 95),
        "calls_per_request": statistics.mean(calls),
        "base_calls_per_request": statistics.mean(base_calls),
        "submit_p50": percentile(submit, 50),
        "submit_p99": percentile(submit, 99),
        "base_submit_p50": percentile(base_submit, 50),
        "base_submit_p99": percentile(base_submit, 99),
    }
    f = figures
    print(
        f"detection  p50 {f['detect_p50']:.3f}s p95 {f['detect_p95']:.3f}s | SDK 3s loop p50 "
        f"{f['base_detect_p50']:.3f}s p95 {f['base_detect_p95']:.3f}s | ratio p95 "
        f"{ratio(f['detect_p95'], f['base_detect_p95']):.2f}x (target <= 1s and <= 0.33x)"
    )
    print(
        f"obshell calls per request {f['calls_per_request']:.2f} | SDK loop {f['base_calls_per_request']:.2f} "
        f"| ratio {ratio(f['calls_per_request'], f['base_calls_per_request']):.2f}x (target <= 1x)"
    )
    print(
        f"submission p50 {f['submit_p50'] * 1000:.0f}ms p99 {f['submit_p99'] * 1000:.0f}ms | direct POST p50 "
        f"{f['base_submit_p50'] * 1000:.0f}ms p99 {f['base_submit_p99'] * 1000:.0f}ms | ratio p50 "
        f"{ratio(f['submit_p50'], f['base_submit_p50']):.1f}x (target p50 <= 100ms, p99 <= 500ms)"
    )
    return figures


# ----------------------------------------------------------------------------------------------------------
# Figure 3: scale


def scale(count: int) -> dict[str, float]:
    print(f"\n== scale: {count} requests created together, one cluster each ==", flush=True)
    with Stack(count) as stack:
        idle = stack.controller_stats()
        names = [f"scale-{i}" for i in range(count)]
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: stack.create(names[i], stack.agents[i], terminate=i % 2 == 1), range(count)
                )
            )
        created = time.time() - started
        stack.wait_terminal(names, timeout=max(300, count * 1.0))
        total = max(stack.terminal_time(n) for n in names) - started
        busy = stack.controller_stats()
        succeeded = sum(stack.watched[n].status.get("phase") == "Succeeded" for n in names)
        state = stack.sim_state()
        calls = statistics.mean(state[a]["requests"] for a in stack.agents)
    figures = {
        "total_s": total,
        "create_s": created,
        "per_s": count / total,
        "cpu_per_request": (busy["cpu"] - idle["cpu"]) / count,
        "peak_rss_mib": busy["hwm"],
        "idle_rss_mib": idle["rss"],
        "succeeded": succeeded,
        "calls_per_request": calls,
    }
    f = figures
    print(
        f"{succeeded}/{count} Succeeded in {total:.1f}s (creating took {created:.1f}s): {f['per_s']:.1f} req/s, "
        f"controller CPU {f['cpu_per_request'] * 1000:.1f}ms/request, RSS idle {f['idle_rss_mib']:.0f} MiB "
        f"peak {f['peak_rss_mib']:.0f} MiB, {calls:.1f} obshell calls/request"
    )
    return figures


# ----------------------------------------------------------------------------------------------------------
# Figure 4: load on one agent


def load(count: int, concurrency: int, rate: float | None) -> dict[str, float]:
    bound = f"OBSTOP_AGENT_CONCURRENCY={concurrency}" + (f" OBSTOP_AGENT_RATE={rate}" if rate else "")
    print(f"\n== obshell load: {count} requests against ONE agent, {bound} ==", flush=True)
    env = {"OBSTOP_AGENT_CONCURRENCY": str(concurrency)}
    if rate:
        env["OBSTOP_AGENT_RATE"] = str(rate)
    with Stack(1, env=env) as stack:
        names = [f"load-{i}" for i in range(count)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: stack.create(n, stack.agents[0], terminate=False), names))
        stack.wait_terminal(names, timeout=300)
        served = get_json(f"{stack.sim_url}/load")[stack.agents[0]]
    times = sorted(served["times"])
    window = 1.0
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        peak = max(peak, i - j + 1)
    figures = {"peak_rps": peak / window, "peak_in_flight": served["peakInFlight"], "calls": len(times)}
    sdk_rps = count / SDK_INTERVAL  # N SDK loops each GET once per 3 s
    print(
        f"peak {peak}/s to one agent (N SDK loops: {sdk_rps:.1f}/s, ratio {ratio(peak, sdk_rps):.2f}x), "
        f"at most {served['peakInFlight']} calls in flight (bound {concurrency}), {len(times)} calls in all"
    )
    return figures


# ----------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    sim = sub.add_parser("sim", help="(internal) serve the simulated clusters")
    sim.add_argument("--clusters", type=int, required=True)
    sim.add_argument("--seed", type=int, default=6)
    sim.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="scale 10 and 100 only")
    parser.add_argument("--latency-requests", type=int, default=40)
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between latency requests")
    parser.add_argument("--scale", default=None, help="comma-separated sizes (default 10,100,1000)")
    parser.add_argument("--only", choices=["latency", "load", "scale"], action="append")
    args = parser.parse_args(argv)
    if args.command == "sim":
        return serve_sim(args)
    sizes = [int(s) for s in (args.scale or ("10,100" if args.quick else "10,100,1000")).split(",")]
    parts = set(args.only or ["latency", "load", "scale"])
    summary: dict[str, str] = {}
    if "latency" in parts:
        # With the default 5 s bound on status staleness, then with 10 s (fewer calls; the end is still caught).
        relaxed = latency(args.latency_requests, args.spacing, {"OBSTOP_POLL_MAX_SECONDS": "10"})
        summary.update(
            calls_per_request_pollmax10=f"{relaxed['calls_per_request']:.2f}",
            detect_p95_pollmax10_s=f"{relaxed['detect_p95']:.3f}",
        )
        f = latency(args.latency_requests, args.spacing, {})
        summary.update(
            detect_p95_s=f"{f['detect_p95']:.3f}",
            detect_p95_sdk_s=f"{f['base_detect_p95']:.3f}",
            detect_ratio=f"{ratio(f['detect_p95'], f['base_detect_p95']):.2f}",
            calls_per_request=f"{f['calls_per_request']:.2f}",
            calls_per_request_sdk=f"{f['base_calls_per_request']:.2f}",
            submit_p50_ms=f"{f['submit_p50'] * 1000:.0f}",
            submit_p99_ms=f"{f['submit_p99'] * 1000:.0f}",
        )
    if "load" in parts:
        f = load(20, 4, 20.0)
        summary.update(agent_peak_rps=f"{f['peak_rps']:.0f}", agent_peak_in_flight=f"{f['peak_in_flight']}")
    if "scale" in parts:
        results = {n: scale(n) for n in sizes}
        first = results[sizes[0]]
        print(
            f"\n   N   total_s  req/s  cpu_ms/req  peak_rss  idle_rss  (growth per request vs N={sizes[0]})"
        )
        for n, f in results.items():
            growth = ratio(f["total_s"] / n, first["total_s"] / sizes[0])
            print(
                f"{n:5d} {f['total_s']:8.1f} {f['per_s']:6.1f} {f['cpu_per_request'] * 1000:10.1f} "
                f"{f['peak_rss_mib']:8.0f}M {f['idle_rss_mib']:8.0f}M  time/req x{growth:.2f} cpu/req "
                f"x{ratio(f['cpu_per_request'], first['cpu_per_request']):.2f}"
            )
            summary.update(
                {
                    f"scale{n}_s": f"{f['total_s']:.1f}",
                    f"scale{n}_rps": f"{f['per_s']:.1f}",
                    f"scale{n}_cpu_ms": f"{f['cpu_per_request'] * 1000:.1f}",
                    f"scale{n}_rss_mib": f"{f['peak_rss_mib']:.0f}",
                }
            )
        summary["idle_rss_mib"] = f"{first['idle_rss_mib']:.0f}"
    print(" ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "operator"))
    sys.exit(main())
