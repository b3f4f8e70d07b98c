"""`obstop sim`: serve simulated obshell agents on loopback until SIGINT/SIGTERM.

Once listening it prints which obshell release it serves (`release <version> <status version> <bits>-bit`), one line per
agent, `agent <ip:port> <zone> <cluster> <url>`, then `ready`, so that a parent process can parse where the agents
are. `--obshell-version X.Y.Z` picks the release to behave as (README.md#obshell-releases-the-simulator-reproduces; default the newest). The password comes from --password or, to keep it out of
the process list, from the environment variable OBSTOP_SIM_PASSWORD.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from typing import TYPE_CHECKING

from obstop.commands import testkit

if TYPE_CHECKING:
    from obstop.testing.obshell_sim import SimulatorConfig

PASSWORD_ENV = "OBSTOP_SIM_PASSWORD"  # noqa: S105 - the name of a variable, not a password


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2886, help="port of the first agent; 0 picks free ports")
    parser.add_argument("--password", help=f"root@sys password of the clusters (default: ${PASSWORD_ENV})")
    parser.add_argument("--zones", type=int, default=3, help="zones per cluster (zone1..zoneN)")
    parser.add_argument("--servers-per-zone", type=int, default=1, help="agents per zone")
    parser.add_argument("--clusters", type=int, default=1, help="independent clusters to serve (load tests)")
    parser.add_argument("--stage-seconds", type=float, default=1.0, help="time per DAG stage")
    parser.add_argument(
        "--obshell-version",
        default=None,
        metavar="X.Y.Z[.W]",
        help="obshell release to behave as, from 4.2.2.0 up (default: the newest; profiles: "
        "4.2.2.0 4.2.3.0 4.2.6.0 4.3.0.0 4.3.1.0 4.4.1.0 4.4.2.0 4.5.0.0)",
    )
    parser.add_argument(
        "--key-bits",
        type=int,
        choices=(512, 1024),
        default=None,
        help="RSA key size (default: the release's, 512 before 4.4.2.0, 1024 from it)",
    )
    parser.add_argument("--tls-cert", help="serve https with this PEM certificate (chain)")
    parser.add_argument("--tls-key", help="private key of --tls-cert")


def main(args: argparse.Namespace) -> int:
    lacking = testkit.missing("sim")
    if lacking:
        print(lacking, file=sys.stderr)
        return 2
    from obstop.testing.obshell_sim import SimulatorConfig, releases

    version = args.obshell_version if args.obshell_version is not None else releases.NEWEST
    try:
        releases.Release.parse(version)
    except ValueError as exc:
        print(f"obstop sim: --obshell-version: {exc}", file=sys.stderr)
        return 2
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    if password is None:
        print(f"obstop sim: give --password or set {PASSWORD_ENV}", file=sys.stderr)
        return 2
    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        config = SimulatorConfig(
            password=password,
            zones=args.zones,
            servers_per_zone=args.servers_per_zone,
            clusters=args.clusters,
            stage_seconds=args.stage_seconds,
            key_bits=args.key_bits,
            host=args.host,
            base_port=args.port,
            ssl_context=ssl_context,
            version=version,
        )
    except ValueError as exc:
        print(f"obstop sim: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"obstop sim: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(config: SimulatorConfig) -> None:
    """Serve until SIGINT/SIGTERM, announcing each agent, then `ready`, on stdout (for a parent process)."""
    from obstop.testing.obshell_sim import ObshellSimulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with ObshellSimulator(config) as sim:
        release = sim.release
        # Which obshell release this is (`inferred`: 4.2.2.0, known from the SDKs only, README.md#obshell-releases-the-simulator-reproduces).
        inferred = " inferred" if release.auth_v1_only else ""
        print(
            f"release {release.version} {release.status_version} {config.rsa_key_bits}-bit{inferred}",
            flush=True,
        )
        for cluster in sim.clusters:
            print(f"cluster {cluster.name} {len(cluster.agents)} agents", flush=True)
            for agent in cluster.agents:
                print(f"agent {agent.address} {agent.zone} {cluster.name} {agent.url}", flush=True)
        print("ready", flush=True)
        await stop.wait()
    print("stopped", flush=True)
