"""Benchmark of the controller on a real control plane, every figure against its baseline from the same run.

    .venv/bin/python tests/bench/bench.py                # all parts, scale 10/100/1000/3000, restart 1000 (~15 min)
    .venv/bin/python tests/bench/bench.py --quick        # small sizes: scale 10/100, restart 100
    .venv/bin/python tests/bench/bench.py --scale 10,100,1000   # without 3,000 (about 7 of the 15 minutes)
    .venv/bin/python tests/bench/bench.py --profile             # and py-spy on the controller (not a dependency)

Everything runs on loopback, each part in its own process so that none steals another's GIL: the obshell
simulator (this file's `sim` sub-command, one 1-server cluster per request), a real control plane (etcd +
kube-apiserver, obstop.testing.controlplane, with its audit log) and the real controller (`obstop run`, DEFAULT
settings). The controller has an identity of its own on the API server, so the audit log tells its calls from
this process's. This process creates the ObStopRequests, watches them, and reads the simulator's records (when
each stop arrived, when each DAG became terminal, every call each agent served, by route).

Parts: detection and submission latency (against SDK-style 3 s and CLI-style 1 s polling loops run at the same
time), Kubernetes API cost (from the audit log, against the status changes a person sees), obshell load on one
agent, scale, and a controller restart with every request in flight. The last line printed is a `key=value ...`
summary. The machine's load average is printed with each part: on 2 shared cores the figures are noisy, compare
the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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
CLI_INTERVAL = 1.0  # obshell's own CLI polls every second
CONTROLLER_USER = "obstop-controller"  # the controller's identity on the API server (a static token)
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
READ_VERBS = ("get", "list")

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
# Pure helpers (tests/bench/test_bench_support.py)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline and not math.isnan(baseline) else math.nan


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


_ID_SEGMENT = re.compile(r"/(?=[^/]*\d{3})[^/]+")  # a segment with 3 digits or more: "v1" is not an id


def route(call: str) -> str:
    """A simulator call ("GET /api/v1/dag/1234") with its ids folded ("GET /api/v1/dag/{id}")."""
    method, _, path = call.partition(" ")
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def visible_changes(max_stage: int) -> int:
    """Distinct status changes a person sees for one stop: Pending, Submitted, each stage, the terminal phase."""
    return 1 + 1 + max_stage + 1


def audit_kind(verb: str, resource: str, subresource: str) -> str:
    return f"{verb} {resource}" + (f"/{subresource}" if subresource else "")


@dataclass
class ApiCost:
    """The controller's calls to the API server, counted once each (a watch by its start)."""

    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    watches: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, events: Iterable[Any], user: str, since: float = 0.0, until: float = math.inf) -> ApiCost:
        """From audit events (obstop.testing.controlplane.AuditEvent) of `user` in [since, until]."""
        cost = cls()
        seen: set[str] = set()
        for event in events:
            if event.user != user or not since <= event.time <= until:
                continue
            if event.audit_id:
                if event.audit_id in seen:  # a watch is logged when it starts and again when it ends
                    continue
                seen.add(event.audit_id)
            kind = audit_kind(event.verb, event.resource, event.subresource)
            if event.verb in WRITE_VERBS:
                cost.writes[kind] += 1
            elif event.verb == "watch":
                cost.watches[kind] += 1
            elif event.verb in READ_VERBS:
                cost.reads[kind] += 1
        return cost

    def per(self, count: int) -> dict[str, float]:
        n = max(1, count)
        return {
            "writes": sum(self.writes.values()) / n,
            "reads": sum(self.reads.values()) / n,
            "watches": sum(self.watches.values()) / n,
        }

    def breakdown(self, count: int) -> str:
        n = max(1, count)
        items = [*self.writes.items(), *self.reads.items(), *self.watches.items()]
        return ", ".join(f"{kind} {c / n:.2f}" for kind, c in sorted(items, key=lambda kv: -kv[1]))


def first_after(times: Iterable[float], moment: float) -> float | None:
    """The earliest of `times` after `moment`, if any."""
    later = [t for t in times if t > moment]
    return min(later) if later else None


def profile_summary(
    lines: Iterable[str], top: int = 12
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """From py-spy's raw (collapsed) stacks, "frame;frame;... count" lines: the share of samples of the
    frames where the time was spent (self, leaf frame), and of each package seen anywhere in the stack."""
    leaves: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaves[_frame(frames[-1])] += count
        for package in {_package(f) for f in frames} - {""} - _ROOT_PACKAGES:
            packages[package] += count
    if not total:
        return [], []
    share = lambda counter: [(k, v / total) for k, v in counter.most_common(top)]  # noqa: E731
    return share(leaves), share(packages)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]+?)(?::\d+)?\)$")


def _path(frame: str) -> str | None:
    """The file of a py-spy frame ("send (httpcore/_async/connection_pool.py:123)"), shortened as py-spy does."""
    match = _FRAME.match(frame.strip())
    if not match:
        return None
    path = match.group("path")
    for marker in ("site-packages/", "/operator/"):
        path = path.split(marker)[-1]
    return re.sub(r"^.*/lib/python[0-9.]+/", "", path)


def _frame(frame: str) -> str:
    """ "send (httpcore/_async/connection_pool.py:123)" -> "send (httpcore/_async/connection_pool.py)"."""
    match = _FRAME.match(frame.strip())
    return f"{match.group('func')} ({_path(frame)})" if match else frame.strip()


def _package(frame: str) -> str:
    """The package (top folder) of a frame's file, "obstop/<sub>" for ours, or the bare module's name."""
    path = _path(frame)
    if not path or path.startswith("<"):
        return ""
    parts = path.split("/")
    if parts[0] == "obstop" and len(parts) > 2:
        return f"obstop/{parts[1]}"
    if len(parts) == 1 and path in OUR_FILES:  # py-spy names some of ours by file alone
        return OUR_FILES[path]
    return parts[0].removesuffix(".py")


# Our modules by bare file name -> their package ("operation.py" -> "obstop/controller"); the first one wins.
OUR_FILES: dict[str, str] = {}
for _file in sorted((ROOT / "operator" / "obstop").glob("*/**/*.py")):
    OUR_FILES.setdefault(_file.name, "obstop/" + _file.relative_to(ROOT / "operator" / "obstop").parts[0])
# Packages under every sample (the event loop, the command line): no information in their share.
_ROOT_PACKAGES = frozenset({"asyncio", "obstop", "obstop/commands", "runpy"})


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ----------------------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 120) -> Any:
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


def stop_process(proc: subprocess.Popen[Any], *, kill: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child: ours, this checkout's operator/ first on PYTHONPATH, then `extra`."""
    paths = [str(ROOT / "operator"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **extra}


def py_spy() -> str | None:
    return os.environ.get("OBSTOP_PY_SPY") or shutil.which("py-spy")


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
        stage_seconds=1.0 * args.node_scale,
        node_seconds={k: v * args.node_scale for k, v in NODE_SECONDS.items()},
        stage_jitter=JITTER,
        seed=args.seed,
        key_bits=args.key_bits,
    )
    asyncio.run(serve(config))
    return 0


# ----------------------------------------------------------------------------------------------------------
# One stack: simulator, control plane and controller processes


@dataclass
class Watched:
    """What the watcher saw of one ObStopRequest: first wall-clock time of each phase, the distinct
    (phase, progress) states in order, and its last status."""

    phases: dict[str, float] = field(default_factory=dict)
    states: list[tuple[str, str]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


class Stack:
    def __init__(
        self,
        clusters: int,
        *,
        env: Mapping[str, str] | None = None,
        key_bits: int = 1024,
        node_scale: float = 1.0,
        profile: Path | None = None,
    ) -> None:
        self.clusters = clusters
        self.env = dict(env or {})
        self.key_bits = key_bits
        self.node_scale = node_scale
        self.profile = profile
        self.password = secrets.token_urlsafe(12)
        self._exit = ExitStack()
        self.watched: dict[str, Watched] = {}
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._spy: subprocess.Popen[Any] | None = None

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.stop_profile()
        self._exit.close()

    def _spawn(
        self, argv: list[str], env: Mapping[str, str], log: Path | None = None
    ) -> subprocess.Popen[Any]:
        out: Any = log.open("a") if log else subprocess.PIPE
        proc = subprocess.Popen(
            argv, env=child_env(env), stdout=out, stderr=subprocess.STDOUT if log else None, text=True
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
                "--node-scale",
                str(self.node_scale),
            ],
            {"OBSTOP_SIM_PASSWORD": self.password},
        )
        self.sim = sim
        from obstop.testing.controlplane import ControlPlane
        from obstop.testing.stack import crd_path

        control_plane = self._exit.enter_context(ControlPlane(users={CONTROLLER_USER: ("system:masters",)}))
        self.control_plane = control_plane
        kubeconfig = control_plane.kubeconfig
        self.controller_kubeconfig = control_plane.write_kubeconfig(
            workdir / "controller.kubeconfig", user=CONTROLLER_USER
        )
        kubectl = [str(TOOLS / "kubectl"), "--kubeconfig", str(kubeconfig)]
        applied = subprocess.run([*kubectl, "apply", "-f", str(crd_path())], capture_output=True, text=True)
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply of the CRD failed: {applied.stderr}")
        subprocess.run(
            [
                *kubectl,
                "wait",
                "--for=condition=Established",
                "crd/obstoprequests.obshell.oceanbase.com",
                "--timeout=60s",
            ],
            check=True,
            capture_output=True,
        )
        self.agents = [line.split()[1] for line in wait_line(sim, "ready", 900) if line.startswith("agent ")]
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
        self.start_controller()
        time.sleep(1.0)  # let Kopf finish its first LIST/WATCH before anything is created

    # -- the controller

    def start_controller(self) -> float:
        """Start `obstop run` (default settings but for self.env) and wait until /healthz answers; the
        moment it was started."""
        self.health_port = free_port()
        env = {
            "KUBECONFIG": str(self.controller_kubeconfig),
            "OBSTOP_HEALTH_PORT": str(self.health_port),
            "OBSTOP_NAMESPACES": NAMESPACE,
            **self.env,
        }
        started = time.time()
        self.controller = self._spawn(
            [sys.executable, "-m", "obstop.cli", "run"], env, log=self.workdir / "controller.log"
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                get_json(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.controller.poll() is not None:
                    raise RuntimeError(
                        f"the controller did not become healthy: {self.controller_log()}"
                    ) from None
                time.sleep(0.05)
        if self.profile is not None:
            self.start_profile(self.profile)
        return started

    def kill_controller(self) -> None:
        self.stop_profile()
        stop_process(self.controller, kill=True)

    def controller_log(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "controller.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def start_profile(self, out: Path) -> None:
        """Sample the controller with py-spy until stop_profile (collapsed stacks, py-spy's raw format)."""
        spy = py_spy()
        if spy is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy (or set OBSTOP_PY_SPY)")
        self._spy = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.controller.pid),
                "--format",
                "raw",
                "--rate",
                "50",
                "--nonblocking",  # not pausing the controller for each sample: its figures stay its own
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_profile(self) -> None:
        spy, self._spy = self._spy, None
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()

    # -- what the processes spent

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the controller, kube-apiserver and etcd (those running)."""
        pids = {**self.control_plane.pids()}
        if self.controller.poll() is None:
            pids["controller"] = self.controller.pid
        return {name: proc_stats(pid)["cpu"] for name, pid in pids.items()}

    def controller_stats(self) -> dict[str, float]:
        return proc_stats(self.controller.pid)

    def audit(self) -> list[Any]:
        return self.control_plane.audit_events()

    # -- the resources

    def _watch(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

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
                        state = (str(phase or ""), str(status.get("progress") or ""))
                        if phase and (not entry.states or entry.states[-1] != state):
                            entry.states.append(state)
                        if phase and phase not in entry.phases:
                            entry.phases[phase] = seen
                        self._cond.notify_all()
            except ApiException as exc:
                if self._stopping.is_set():
                    return
                if exc.status == 410:
                    version = ""  # too old: list again
                time.sleep(0.1)
            except Exception:  # a dropped stream: watch again from where we were
                if self._stopping.is_set():
                    return
                time.sleep(0.1)

    def create(self, name: str, agent: str, *, terminate: bool) -> float:
        from obstop.testing.stack import stop_request

        manifest = stop_request(name, agent, force=not terminate, terminate=terminate, secret=SECRET)
        started = time.time()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
        return started

    def create_many(self, names: Sequence[str], threads: int = 16) -> float:
        """Create names[i] against agents[i], all at once from `threads` client threads; the time it took."""
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda i: self.create(names[i], self.agents[i], terminate=i % 2 == 1), range(len(names))
                )
            )
        return time.time() - started

    def wait_for(self, names: Sequence[str], done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                count = sum(bool(done(self.watched.get(n, Watched()))) for n in names)
                if count == len(names):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count}/{len(names)} requests {what} after {timeout:.0f}s")
                self._cond.wait(min(left, 1.0))

    def wait_terminal(self, names: Sequence[str], timeout: float) -> None:
        self.wait_for(names, lambda w: any(p in w.phases for p in TERMINAL), timeout, "terminal")

    def terminal_time(self, name: str) -> float:
        phases = self.watched[name].phases
        return min(phases[p] for p in TERMINAL if p in phases)

    def sim_state(self) -> dict[str, dict[str, Any]]:
        """Per agent address: its DAGs by generic id, and how many calls it served."""
        state = get_json(f"{self.sim_url}/state")
        return {agent["address"]: agent for cluster in state["clusters"] for agent in cluster["agents"]}

    def sim_load(self) -> dict[str, dict[str, Any]]:
        """Per agent address: the time and route of every call it served."""
        return dict(get_json(f"{self.sim_url}/load"))

    def stops(self) -> dict[str, list[dict[str, Any]]]:
        """Per agent address: every stop POST it received."""
        by_agent: dict[str, list[dict[str, Any]]] = {}
        for stop in get_json(f"{self.sim_url}/stops")["stops"]:
            by_agent.setdefault(stop["agent"], []).append(stop)
        return by_agent


DAG_POLL = "GET /api/v1/task/dag/{id}"


def polls_by_order(load: Mapping[str, Mapping[str, Any]], agents: Sequence[str], first: int = 10) -> str:
    """The DAG polls per request of the first `first` requests created and of the others: what a cold
    controller pays while it learns is in the first ones."""
    polls = [sum(route(p) == DAG_POLL for p in load[a]["paths"]) for a in agents]
    head, rest = polls[:first], polls[first:]
    text = f"first {len(head)}: {statistics.mean(head):.2f}" if head else ""
    return text + (f", the other {len(rest)}: {statistics.mean(rest):.2f}" if rest else "")


def call_mix(load: Mapping[str, Mapping[str, Any]], agents: Sequence[str]) -> str:
    """The calls per request by route, over `agents`."""
    routes: Counter[str] = Counter(route(p) for a in agents for p in load[a]["paths"])
    n = max(1, len(agents))
    return ", ".join(f"{r} {c / n:.2f}" for r, c in routes.most_common())


# ----------------------------------------------------------------------------------------------------------
# Parts 1-3: detection and submission latency, against polling loops; Kubernetes API cost


async def baseline_loop(
    agents: Sequence[str], password: str, spacing: float, interval: float
) -> list[dict[str, float]]:
    """What the SDK (interval 3 s) or obshell's CLI (1 s) do: POST the stop, then GET the DAG every `interval`
    seconds until it is finished."""
    from obstop.obshell import ObshellClient, Scope, ScopeType, StopParams

    async def one(index: int, agent: str) -> dict[str, float]:
        await asyncio.sleep(index * spacing)
        async with ObshellClient(f"http://{agent}", password) as client:
            asked = time.time()
            # The official SDK reads the agent's /api/v1/info before its first authenticated call, to choose the
            # auth version and check the identity (obshell-sdk-python obshell/auth/password.py `_check`,
            # obshell/client.py `__confirm_auth_version`): so does this loop.
            await client.info()
            dag = await client.stop(
                StopParams(scope=Scope(type=ScopeType.GLOBAL), force=index % 2 == 0, terminate=index % 2 == 1)
            )
            while not dag.finished:
                await asyncio.sleep(interval)
                dag = await client.get_dag(dag.id)
            return {"asked": asked, "seen": time.time()}

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(agents))))


def latency(
    count: int, spacing: float, env: Mapping[str, str], label: str, dump: Path | None = None
) -> dict[str, float]:
    settings = " ".join(f"{k}={v}" for k, v in env.items()) or "DEFAULT settings"
    print(
        f"\n== {label}: {count} requests, one every {spacing}s, beside {count} SDK-style 3 s loops and "
        f"{count} CLI-style 1 s loops on clusters of their own; controller with {settings} "
        f"(load {load_average()}) ==",
        flush=True,
    )
    with Stack(4 * count, env=env) as stack:
        ours, sdk, cli = (
            stack.agents[:count],
            stack.agents[count : 2 * count],
            stack.agents[2 * count : 3 * count],
        )
        warm = stack.agents[3 * count :]
        results: dict[str, list[dict[str, float]]] = {}

        async def baselines() -> None:
            three, one = await asyncio.gather(
                baseline_loop(sdk, stack.password, spacing, SDK_INTERVAL),
                baseline_loop(cli, stack.password, spacing, CLI_INTERVAL),
            )
            results.update(sdk=three, cli=one)

        baseline = threading.Thread(target=lambda: asyncio.run(baselines()), daemon=True)
        baseline.start()
        created: dict[str, float] = {}

        def create_spaced(prefix: str, agents: Sequence[str]) -> list[str]:
            """One request per agent, `spacing` seconds apart, alternating force and terminate."""
            batch = [f"{prefix}-{i}" for i in range(len(agents))]
            for index, agent in enumerate(agents):
                target = time.monotonic() + spacing
                created[batch[index]] = stack.create(batch[index], agent, terminate=index % 2 == 1)
                time.sleep(max(0.0, target - time.monotonic()))
            stack.wait_terminal(batch, timeout=300)
            return batch

        names = create_spaced("lat", ours)
        baseline.join(300)
        # The same again on the now warm controller (it knows the nodes' times from the first batch).
        warm_start = time.time()
        warm_names = create_spaced("warm", warm)
        state, load, stops = stack.sim_state(), stack.sim_load(), stack.stops()
        audit = stack.audit()
    if dump is not None:  # for a closer look: each agent's DAGs (their nodes' times) and calls (their times)
        batches = {"cold": ours, "warm": warm, "sdk3": sdk, "cli1": cli}
        dump.write_text(json.dumps({"batches": batches, "state": state, "load": load, "created": created}))

    submit, detect, calls, visible, seen_states = [], [], [], [], []
    warm_submit, warm_detect, warm_calls = [], [], []
    for batch, agents in ((names, ours), (warm_names, warm)):
        for name, agent in zip(batch, agents, strict=True):
            watched = stack.watched[name]
            assert watched.status["phase"] == "Succeeded", (name, watched.status.get("message"))
            dag = next(d for d in state[agent]["dags"] if d["id"] == watched.status["dag"]["id"])
            if batch is warm_names:
                warm_submit.append(stops[agent][0]["time"] - created[name])
                warm_detect.append(stack.terminal_time(name) - dag["terminalAt"])
                warm_calls.append(state[agent]["requests"])
                continue
            submit.append(stops[agent][0]["time"] - created[name])
            detect.append(stack.terminal_time(name) - dag["terminalAt"])
            calls.append(state[agent]["requests"])
            visible.append(visible_changes(int(watched.status["dag"]["maxStage"])))
            seen_states.append(len(watched.states))

    def loop_figures(agents: Sequence[str], runs: Sequence[dict[str, float]]) -> dict[str, float]:
        det, sub = [], []
        for agent, run in zip(agents, runs, strict=True):
            dag = next(d for d in state[agent]["dags"] if d["name"] == "Stop OB")
            sub.append(stops[agent][0]["time"] - run["asked"])
            det.append(run["seen"] - dag["terminalAt"])
        return {
            "detect_p50": percentile(det, 50),
            "detect_p95": percentile(det, 95),
            "calls": statistics.mean(state[a]["requests"] for a in agents),
            "submit_p50": percentile(sub, 50),
            "submit_p99": percentile(sub, 99),
        }

    s3, s1 = loop_figures(sdk, results["sdk"]), loop_figures(cli, results["cli"])
    cost = ApiCost.of(audit, CONTROLLER_USER, since=min(created.values()), until=warm_start)
    per = cost.per(count)
    f: dict[str, float] = {
        "detect_p50": percentile(detect, 50),
        "detect_p95": percentile(detect, 95),
        "sdk_detect_p95": s3["detect_p95"],
        "cli_detect_p95": s1["detect_p95"],
        "calls": statistics.mean(calls),
        "sdk_calls": s3["calls"],
        "cli_calls": s1["calls"],
        "submit_first": submit[0],
        "submit_p50": percentile(submit, 50),
        "submit_p99": percentile(submit, 99),
        "submit_warm_p99": percentile(submit[1:], 99),
        "post_p50": s3["submit_p50"],
        "post_p99": s3["submit_p99"],
        "writes": per["writes"],
        "reads": per["reads"],
        "watches": per["watches"],
        "visible": statistics.mean(visible),
        "seen_states": statistics.mean(seen_states),
        "warm_detect_p95": percentile(warm_detect, 95),
        "warm_calls": statistics.mean(warm_calls),
        "warm_submit_p50": percentile(warm_submit, 50),
        "warm_submit_p99": percentile(warm_submit, 99),
    }
    print(
        f"1. detection p50 {f['detect_p50']:.3f}s p95 {f['detect_p95']:.3f}s | 3 s loop p50 "
        f"{s3['detect_p50']:.3f}s p95 {s3['detect_p95']:.3f}s | 1 s loop p50 {s1['detect_p50']:.3f}s p95 "
        f"{s1['detect_p95']:.3f}s | p95 {ratio(f['detect_p95'], s3['detect_p95']):.2f}x the 3 s loop, "
        f"{ratio(f['detect_p95'], s1['detect_p95']):.2f}x the 1 s loop (targets <= 0.5s "
        f"{mark(f['detect_p95'] <= 0.5)}, <= 0.2x {mark(ratio(f['detect_p95'], s3['detect_p95']) <= 0.2)}, "
        f"<= 0.6x {mark(ratio(f['detect_p95'], s1['detect_p95']) <= 0.6)})"
    )
    print(
        f"1. obshell calls per request {f['calls']:.2f} | 3 s loop {s3['calls']:.2f} | 1 s loop "
        f"{s1['calls']:.2f} | {ratio(f['calls'], s3['calls']):.2f}x the 3 s loop (target <= 1x "
        f"{mark(f['calls'] <= s3['calls'])})"
    )
    print(
        f"1. warm controller (the same {count} requests again, once it has followed the first): detection p95 "
        f"{f['warm_detect_p95']:.3f}s ({ratio(f['warm_detect_p95'], s3['detect_p95']):.2f}x the 3 s loop, "
        f"{ratio(f['warm_detect_p95'], s1['detect_p95']):.2f}x the 1 s loop); obshell calls per request "
        f"{f['warm_calls']:.2f}, {ratio(f['warm_calls'], s3['calls']):.2f}x the 3 s loop; submission p50 "
        f"{f['warm_submit_p50'] * 1000:.0f}ms p99 {f['warm_submit_p99'] * 1000:.0f}ms"
    )
    print(f"   controller's calls by route: {call_mix(load, ours)}")
    print(f"   warm controller's calls by route: {call_mix(load, warm)}")
    print(f"   3 s loop's calls by route:   {call_mix(load, sdk)}")
    print(
        f"   DAG polls per request in the order created: cold controller {polls_by_order(load, ours)}; warm "
        f"{polls_by_order(load, warm)}; 3 s loop {polls_by_order(load, sdk)}"
    )
    print(
        f"2. submission p50 {f['submit_p50'] * 1000:.0f}ms p99 {f['submit_p99'] * 1000:.0f}ms (without the "
        f"first: p99 {f['submit_warm_p99'] * 1000:.0f}ms) | direct POST p50 {s3['submit_p50'] * 1000:.0f}ms "
        f"p99 {s3['submit_p99'] * 1000:.0f}ms | p50 {ratio(f['submit_p50'], s3['submit_p50']):.1f}x "
        f"(targets p50 <= 50ms {mark(f['submit_p50'] <= 0.05)}, p99 <= 250ms {mark(f['submit_p99'] <= 0.25)})"
    )
    print(f"2. submission of the first request, cold controller: {f['submit_first'] * 1000:.0f}ms")
    print(
        f"3. Kubernetes API per request: {f['writes']:.2f} writes | status changes a person sees "
        f"{f['visible']:.2f} (Pending, Submitted, each stage, terminal; a watcher saw {f['seen_states']:.2f} "
        f"distinct phase/progress states) | {ratio(f['writes'], f['visible']):.2f}x (target <= 1.2x "
        f"{mark(ratio(f['writes'], f['visible']) <= 1.2)}); {f['reads']:.2f} reads, {f['watches']:.3f} watches"
    )
    print(f"   by call: {cost.breakdown(count)}")
    print("   " + trail(audit, load, names[1], ours[1], created[names[1]]))
    return f


def trail(audit: Sequence[Any], load: Mapping[str, Any], name: str, agent: str, created: float) -> str:
    """One request's life as the API server and its agent saw it: the controller's writes to it and its
    obshell calls, as milliseconds after its creation."""
    rows = [
        (e.time, audit_kind(e.verb, e.resource, e.subresource))
        for e in audit
        if e.user == CONTROLLER_USER and e.name == name and e.verb in WRITE_VERBS
    ]
    rows += [
        (t, "obshell " + route(p)) for t, p in zip(load[agent]["times"], load[agent]["paths"], strict=True)
    ]
    rows.sort()
    return f"{name}: " + "; ".join(f"+{(t - created) * 1000:.0f}ms {what}" for t, what in rows)


# ----------------------------------------------------------------------------------------------------------
# Part 4 (old figure): obshell load on one agent


def load_part(count: int) -> dict[str, float]:
    print(
        f"\n== obshell load: {count} requests against ONE agent, default bounds (load {load_average()}) ==",
        flush=True,
    )
    from obstop.controller.settings import Settings

    defaults = Settings()
    with Stack(1) as stack:
        names = [f"load-{i}" for i in range(count)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: stack.create(n, stack.agents[0], terminate=False), names))
        stack.wait_terminal(names, timeout=300)
        served = stack.sim_load()[stack.agents[0]]
    times = sorted(served["times"])
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    sdk_rps = count / SDK_INTERVAL  # N SDK loops each GET once per 3 s
    print(
        f"peak {peak}/s to one agent (N SDK loops: {sdk_rps:.1f}/s, ratio {ratio(peak, sdk_rps):.2f}x; bound "
        f"OBSTOP_AGENT_RATE={defaults.agent_rate:g}), at most {served['peakInFlight']} calls in flight (bound "
        f"OBSTOP_AGENT_CONCURRENCY={defaults.agent_concurrency}), {len(times)} calls in all"
    )
    return {"peak_rps": peak, "peak_in_flight": served["peakInFlight"]}


# ----------------------------------------------------------------------------------------------------------
# Part 5: scale


def scale(count: int, profile: Path | None) -> dict[str, float]:
    print(
        f"\n== scale: {count} requests created together, one cluster each (load {load_average()}) ==",
        flush=True,
    )
    with Stack(count, profile=profile) as stack:
        idle = stack.controller_stats()
        cpu0 = stack.cpu()
        names = [f"scale-{i}" for i in range(count)]
        started = time.time()
        created = stack.create_many(names)
        stack.wait_terminal(names, timeout=max(300, count * 0.2))
        total = max(stack.terminal_time(n) for n in names) - started
        busy = stack.controller_stats()
        cpu1 = stack.cpu()
        stack.stop_profile()
        succeeded = sum(stack.watched[n].status.get("phase") == "Succeeded" for n in names)
        state = stack.sim_state()
        calls = statistics.mean(state[a]["requests"] for a in stack.agents)
        cost = ApiCost.of(stack.audit(), CONTROLLER_USER, since=started)
    spent = {k: (cpu1[k] - cpu0.get(k, 0.0)) / count for k in cpu1}
    per = cost.per(count)
    f = {
        "total_s": total,
        "create_s": created,
        "per_s": count / total,
        "cpu": spent["controller"],
        "apiserver_cpu": spent.get("kube-apiserver", math.nan),
        "etcd_cpu": spent.get("etcd", math.nan),
        "peak_rss": busy["hwm"],
        "idle_rss": idle["rss"],
        "succeeded": succeeded,
        "calls": calls,
        "writes": per["writes"],
        "reads": per["reads"],
    }
    print(
        f"{succeeded}/{count} Succeeded in {total:.1f}s (creating took {created:.1f}s): {f['per_s']:.1f} req/s; "
        f"CPU per request: controller {f['cpu'] * 1000:.1f}ms, kube-apiserver {f['apiserver_cpu'] * 1000:.1f}ms, "
        f"etcd {f['etcd_cpu'] * 1000:.1f}ms; controller RSS idle {f['idle_rss']:.0f} MiB peak "
        f"{f['peak_rss']:.0f} MiB; {calls:.2f} obshell calls, {f['writes']:.2f} API writes, {f['reads']:.2f} "
        f"API reads per request"
    )
    return f


def scale_table(results: Mapping[int, Mapping[str, float]]) -> None:
    sizes = sorted(results)
    base_n = sizes[0]
    base = results[base_n]
    print(
        f"\n     N  total_s  req/s  ctl_cpu_ms  api_cpu_ms  etcd_cpu_ms  peak_rss  idle_rss  writes/req  "
        f"growth per request vs N={base_n}: time  ctl_cpu  api_cpu  rss_above_idle"
    )
    for n in sizes:
        f = results[n]
        rss_growth = ratio(
            (f["peak_rss"] - f["idle_rss"]) / n, (base["peak_rss"] - base["idle_rss"]) / base_n
        )
        print(
            f"{n:6d} {f['total_s']:8.1f} {f['per_s']:6.1f} {f['cpu'] * 1000:11.1f} "
            f"{f['apiserver_cpu'] * 1000:11.1f} {f['etcd_cpu'] * 1000:12.1f} {f['peak_rss']:8.0f}M "
            f"{f['idle_rss']:8.0f}M {f['writes']:11.2f}  x{ratio(f['total_s'] / n, base['total_s'] / base_n):.2f}"
            f"  x{ratio(f['cpu'], base['cpu']):.2f}  x{ratio(f['apiserver_cpu'], base['apiserver_cpu']):.2f}  "
            f"x{rss_growth:.2f}"
        )


# ----------------------------------------------------------------------------------------------------------
# Part 6: restart with every request in flight


def restart(count: int, node_scale: float) -> dict[str, float]:
    print(
        f"\n== restart: {count} requests in flight (DAGs {node_scale:g}x longer), controller SIGKILLed and "
        f"started again (load {load_average()}) ==",
        flush=True,
    )
    with Stack(count, node_scale=node_scale) as stack:
        names = [f"restart-{i}" for i in range(count)]
        stack.create_many(names)
        stack.wait_for(
            names, lambda w: (w.status.get("dag") or {}).get("id"), max(300, count * 0.5), "submitted"
        )
        in_flight = [n for n in names if not any(p in stack.watched[n].phases for p in TERMINAL)]
        stack.kill_controller()
        killed = time.time()
        started = stack.start_controller()
        healthy = time.time()
        stack.wait_terminal(names, timeout=max(600, count * 1.0))
        cpu1 = stack.cpu()
        audit, load, stops = stack.audit(), stack.sim_load(), stack.stops()
        succeeded = sum(stack.watched[n].status.get("phase") == "Succeeded" for n in names)
    index = {n: i for i, n in enumerate(names)}
    status_writes: dict[str, list[float]] = {}
    for e in audit:
        if e.user == CONTROLLER_USER and e.resource == PLURAL and e.subresource == "status":
            status_writes.setdefault(e.name, []).append(e.time)
    followed, wrote_again, spent = [], [], []
    routes: Counter[str] = Counter()
    for name in in_flight:
        agent = stack.agents[index[name]]
        calls = [
            (t, p) for t, p in zip(load[agent]["times"], load[agent]["paths"], strict=True) if t > killed
        ]
        # Followed again: the new controller has looked at the DAG (a status write follows only a change).
        polled = next((t for t, p in calls if route(p).startswith("GET /api/v1/task/dag/")), None)
        if polled is not None:
            followed.append(polled - started)
            window = [p for t, p in calls if t <= polled]
            spent.append(len(window))
            routes.update(route(p) for p in window)
        wrote = first_after(status_writes.get(name, []), killed)
        if wrote is not None:
            wrote_again.append(wrote - started)
    second = sum(len(v) > 1 for v in stops.values())
    n = max(1, len(in_flight))
    f = {
        "in_flight": len(in_flight),
        "startup_s": healthy - started,
        "followed_p50": percentile(followed, 50),
        "followed_max": max(followed) if followed else math.nan,
        "status_max": max(wrote_again) if wrote_again else math.nan,
        "calls": statistics.mean(spent) if spent else math.nan,
        "second_stops": second,
        "succeeded": succeeded,
        "cpu": cpu1["controller"] / count,  # the new controller's, its start included
    }
    print(
        f"{f['in_flight']} in flight at the kill; new controller healthy {f['startup_s']:.1f}s after its start; "
        f"every request followed again (its DAG read from the agent) within {f['followed_max']:.1f}s of the "
        f"start (p50 {f['followed_p50']:.1f}s; {len(followed)}/{len(in_flight)}; first status write within "
        f"{f['status_max']:.1f}s); baseline: at most poll_max_seconds={default_poll_max():g}s between two polls "
        f"without a restart"
    )
    print(
        f"obshell calls per request from the kill to its first poll: {f['calls']:.2f} (baseline without a "
        f"restart: 1, the poll), by route: " + ", ".join(f"{r} {c / n:.2f}" for r, c in routes.most_common())
    )
    print(
        f"second stops: {second} (target 0 {mark(second == 0)}); {succeeded}/{count} Succeeded; controller CPU "
        f"per request, the new process's start included, {f['cpu'] * 1000:.1f}ms"
    )
    return f


def default_poll_max() -> float:
    from obstop.controller.settings import Settings

    return Settings().poll_max_seconds


# ----------------------------------------------------------------------------------------------------------
# Profile


def report_profile(path: Path, count: int) -> list[tuple[str, float]]:
    if not path.exists():
        print(f"\n== profile: py-spy wrote nothing to {path} ==")
        return []
    leaves, packages = profile_summary(path.read_text().splitlines())
    print(f"\n== profile of the controller at scale {count} (py-spy, {path}) ==")
    print("self time, by frame: " + "; ".join(f"{k} {v:.0%}" for k, v in leaves))
    print("in the stack, by package: " + "; ".join(f"{k} {v:.0%}" for k, v in packages))
    return packages


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
    sim.add_argument("--node-scale", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="small sizes: scale 10,100, restart 100")
    parser.add_argument("--latency-requests", type=int, default=None, help="default 40 (--quick 10)")
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between latency requests")
    parser.add_argument("--scale", default=None, help="comma-separated sizes (default 10,100,1000,3000)")
    parser.add_argument("--restart", type=int, default=None, help="requests in flight (default 1000)")
    parser.add_argument("--restart-node-scale", type=float, default=6.0, help="DAGs this much longer")
    parser.add_argument(
        "--tuned", action="append", default=[], metavar="VAR=VALUE", help="a tuned latency row"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy on the controller at the largest scale"
    )
    parser.add_argument("--only", choices=["latency", "load", "scale", "restart"], action="append")
    parser.add_argument(
        "--dump", type=Path, default=None, help="write the latency part's DAGs and calls to this JSON file"
    )
    args = parser.parse_args(argv)
    if args.command == "sim":
        return serve_sim(args)
    sizes = [int(s) for s in (args.scale or ("10,100" if args.quick else "10,100,1000,3000")).split(",")]
    restart_count = args.restart or (100 if args.quick else 1000)
    requests = args.latency_requests or (10 if args.quick else 40)
    parts = set(args.only or ["latency", "load", "scale", "restart"])
    summary: dict[str, str] = {"load_start": load_average().replace(" ", "/")}
    print(
        f"bench.py {' '.join(sys.argv[1:])}: load average {load_average()}, {os.cpu_count()} cores",
        flush=True,
    )
    if "latency" in parts:
        f = latency(requests, args.spacing, {}, "detection, submission and API cost", args.dump)
        summary.update(
            detect_p95_s=f"{f['detect_p95']:.3f}",
            detect_p95_sdk3_s=f"{f['sdk_detect_p95']:.3f}",
            detect_p95_cli1_s=f"{f['cli_detect_p95']:.3f}",
            detect_ratio_sdk3=f"{ratio(f['detect_p95'], f['sdk_detect_p95']):.2f}",
            detect_ratio_cli1=f"{ratio(f['detect_p95'], f['cli_detect_p95']):.2f}",
            calls_per_request=f"{f['calls']:.2f}",
            calls_per_request_sdk3=f"{f['sdk_calls']:.2f}",
            calls_per_request_cli1=f"{f['cli_calls']:.2f}",
            submit_p50_ms=f"{f['submit_p50'] * 1000:.0f}",
            submit_p99_ms=f"{f['submit_p99'] * 1000:.0f}",
            submit_first_ms=f"{f['submit_first'] * 1000:.0f}",
            detect_p95_warm_s=f"{f['warm_detect_p95']:.3f}",
            calls_per_request_warm=f"{f['warm_calls']:.2f}",
            api_writes_per_request=f"{f['writes']:.2f}",
            visible_changes=f"{f['visible']:.2f}",
            api_write_ratio=f"{ratio(f['writes'], f['visible']):.2f}",
            api_reads_per_request=f"{f['reads']:.2f}",
            api_watches_per_request=f"{f['watches']:.3f}",
        )
        for tuned in args.tuned:
            key, _, value = tuned.partition("=")
            t = latency(requests, args.spacing, {key: value}, f"tuned row ({tuned}; does not count)")
            summary[f"tuned_{key}_{value}"] = (
                f"detect_p95:{t['detect_p95']:.3f},calls:{t['calls']:.2f},writes:{t['writes']:.2f}"
            )
    if "load" in parts:
        f = load_part(20)
        summary.update(agent_peak_rps=f"{f['peak_rps']:.0f}", agent_peak_in_flight=f"{f['peak_in_flight']}")
    if "scale" in parts:
        results: dict[int, dict[str, float]] = {}
        profiled = max((n for n in sizes if n <= 1000), default=sizes[-1]) if args.profile else None
        profile_path = Path(tempfile.gettempdir()) / f"obstop-bench-profile-{profiled}.txt"
        for n in sizes:
            try:
                results[n] = scale(n, profile_path if n == profiled else None)
            except (TimeoutError, RuntimeError) as exc:
                print(f"scale {n} did not finish: {exc}", flush=True)
                summary[f"scale{n}"] = "unfinished"
                continue
            f = results[n]
            summary.update(
                {
                    f"scale{n}_s": f"{f['total_s']:.1f}",
                    f"scale{n}_rps": f"{f['per_s']:.1f}",
                    f"scale{n}_cpu_ms": f"{f['cpu'] * 1000:.1f}",
                    f"scale{n}_apiserver_cpu_ms": f"{f['apiserver_cpu'] * 1000:.1f}",
                    f"scale{n}_etcd_cpu_ms": f"{f['etcd_cpu'] * 1000:.1f}",
                    f"scale{n}_rss_mib": f"{f['peak_rss']:.0f}",
                    f"scale{n}_writes": f"{f['writes']:.2f}",
                    f"scale{n}_ok": f"{f['succeeded']:.0f}",
                }
            )
        if results:
            scale_table(results)
            summary["idle_rss_mib"] = f"{results[min(results)]['idle_rss']:.0f}"
        if profiled is not None:
            report_profile(profile_path, profiled)
    if "restart" in parts:
        f = restart(restart_count, args.restart_node_scale)
        summary.update(
            {
                f"restart{restart_count}_followed_s": f"{f['followed_max']:.1f}",
                f"restart{restart_count}_calls": f"{f['calls']:.2f}",
                f"restart{restart_count}_second_stops": f"{f['second_stops']:.0f}",
            }
        )
    summary["load_end"] = load_average().replace(" ", "/")
    print(" ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "operator"))
    sys.exit(main())
