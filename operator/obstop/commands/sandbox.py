"""`obstop sandbox`: the whole loop on loopback, with no cluster and no OceanBase.

Starts a real local control plane (etcd + kube-apiserver, obstop.testing.controlplane) and a simulated 3-zone
obshell cluster, installs the CRD, runs the controller (`obstop run`, a separate process), applies an example
ObStopRequest and prints its status as it moves. Exits 0 once it is Succeeded, 1 if it Failed, 2 on timeout,
3 when the control plane cannot start (the line says what is missing). With --keep it stays up and prints an
`export KUBECONFIG=...`, so you can `kubectl apply` your own requests.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from obstop.commands import testkit

if TYPE_CHECKING:
    from obstop.testing.stack import Stack


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scope", choices=["GLOBAL", "ZONE", "SERVER"], default="GLOBAL", type=str.upper)
    parser.add_argument("--mode", choices=["force", "terminate", "immediate"], default="force")
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--servers-per-zone", type=int, default=1)
    parser.add_argument("--stage-seconds", type=float, default=0.5, help="simulated seconds per DAG stage")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument(
        "--keep", action="store_true", help="stay up after the example and print a kubeconfig"
    )


def main(args: argparse.Namespace) -> int:
    lacking = testkit.missing("sandbox")
    if lacking:
        print(lacking, file=sys.stderr)
        return 2
    from obstop.testing.controlplane import ControlPlaneUnavailable

    try:
        return _run(args)
    except ControlPlaneUnavailable as exc:
        print(f"obstop sandbox: {exc}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    from obstop.commands.display import status_line
    from obstop.testing.stack import Stack, stop_request

    if args.scope == "GLOBAL" and args.mode == "immediate":
        raise SystemExit(
            "obstop sandbox: obshell refuses an immediate GLOBAL stop; use --mode force or terminate"
        )
    # `kill -USR1 <pid>` prints every thread's stack: what a sandbox that does not stop is waiting for.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    say = _printer()
    say(
        f"starting: local control plane (etcd + kube-apiserver), {args.zones}x{args.servers_per_zone} "
        "simulated obshell agents"
    )
    with Stack(
        zones=args.zones, servers_per_zone=args.servers_per_zone, stage_seconds=args.stage_seconds
    ) as stack:
        agents = [a.address for a in stack.sim.clusters[0].agents]
        server = stack.control_plane.url if stack.control_plane else "-"
        say(f"control plane {server}; agents {', '.join(agents)}")
        stack.start_controller()
        say("controller started (obstop run); applying the example request")
        targets = {"GLOBAL": [], "ZONE": ["zone1"], "SERVER": [agents[-1]]}[args.scope]
        name = f"sandbox-{args.scope.lower()}-{args.mode}"
        manifest = stop_request(
            name,
            agents[0],
            scope=args.scope,
            targets=targets,
            force=args.mode == "force",
            terminate=args.mode == "terminate",
        )
        stack.create(manifest)
        result = 2
        last: dict[str, object] = {}
        for status in stack.watch(name, timeout=args.timeout):
            if not status:  # created, not yet seen by the controller
                continue
            last = status
            say(status_line(name, status))
            if status.get("phase") == "Succeeded":
                result = 0
                break
            if status.get("phase") == "Failed":
                result = 1
                break
        if result == 2:
            say(f"timed out after {args.timeout:.0f}s in phase {last.get('phase', '-')}")
        stops = stack.sim.stops()
        say(f"obshell received {len(stops)} stop request(s)")
        if args.keep:
            _keep(stack, say)
        say("stopping: the controller, the simulated agents, the control plane")
        stopping = time.monotonic()
    say(f"stopped in {time.monotonic() - stopping:.1f}s")
    return result


# The request the --keep hint suggests: one the simulated cluster accepts whatever the sandbox's own stop left
# stopped (a forced GLOBAL stop of stopped observers succeeds; a ZONE or non-forced stop needs the receiving
# agent's observer up), sent to a simulated agent on loopback. The examples/ files name agents the sandbox does
# not run (10.0.0.11, [fd00::11]): applied as they are, they would only fail with AgentNotAllowed.
HINT_REQUEST = "try-global-force"


def keep_hint(kubeconfig: object, namespace: str, agents: list[str]) -> str:
    """What --keep prints: commands to paste as they are (no file to edit, none needed from a checkout)."""
    import yaml

    from obstop.testing.stack import stop_request

    manifest = stop_request(HINT_REQUEST, agents[0], scope="GLOBAL", force=True)
    return (
        f"keeping the sandbox up. In another shell:\n  export KUBECONFIG={kubeconfig}\n"
        f"  kubectl -n {namespace} get obstop -w\n"
        f"and to send another stop (every simulated agent, all observers killed again):\n"
        f"kubectl -n {namespace} apply -f - <<'EOF'\n{yaml.safe_dump(manifest, sort_keys=False)}EOF\n"
        f"The Secret {namespace}/obshell-root holds the simulated cluster's password and allows its agents "
        f"({', '.join(agents)}). Ctrl-C to stop."
    )


def _keep(stack: Stack, say: Callable[[str], None]) -> None:
    agents = [a.address for a in stack.sim.clusters[0].agents]
    stop = threading.Event()
    # Handlers of its own, as Go's signal.Notify installs them for kubectl and kube-apiserver: a shell's
    # background job (`./dev sandbox --keep &` in a script) starts with SIGINT ignored, and Python then raises
    # no KeyboardInterrupt, so Ctrl-C or `kill -INT` would never stop it. SIGTERM stops it the same way.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    say(keep_hint(stack.kubeconfig, stack.namespace, agents))
    while not stop.wait(1):
        pass
    # A second Ctrl-C while it stops interrupts the shutdown (each step is bounded anyway: obstop.testing.stack).
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _printer() -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    return say
