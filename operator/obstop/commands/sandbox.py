"""`obstop sandbox`: the whole loop on loopback, with no cluster and no OceanBase.

Starts a real local control plane (etcd + kube-apiserver, obstop.testing.controlplane) and a simulated 3-zone
obshell cluster, installs the CRD, runs the controller (`obstop run`, a separate process), applies an example
ObStopRequest and prints its status as it moves. Exits 0 once it is Succeeded, 1 if it Failed, 2 on timeout,
3 when the control plane cannot start (the line says what is missing). With --keep it stays up and prints an
`export KUBECONFIG=...`, so you can `kubectl apply` your own requests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

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
    from obstop.testing.controlplane import ControlPlaneUnavailable

    try:
        return _run(args)
    except ControlPlaneUnavailable as exc:
        print(f"obstop sandbox: {exc}", file=sys.stderr)
        return 3


def _run(args: argparse.Namespace) -> int:
    from obstop.testing.stack import Stack, status_line, stop_request

    if args.scope == "GLOBAL" and args.mode == "immediate":
        raise SystemExit(
            "obstop sandbox: obshell refuses an immediate GLOBAL stop; use --mode force or terminate"
        )
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
        return result


def _keep(stack: Stack, say: Callable[[str], None]) -> None:
    agents = [a.address for a in stack.sim.clusters[0].agents]
    say(f"keeping the sandbox up. In another shell:\n  export KUBECONFIG={stack.kubeconfig}")
    say(
        "  kubectl get obstop -w\n"
        f"  kubectl apply -f examples/zone-immediate.yaml   # after setting its address to {agents[0]}\n"
        f"The Secret {stack.namespace}/obshell-root holds the simulated cluster's password. Ctrl-C to stop."
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _printer() -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    return say
