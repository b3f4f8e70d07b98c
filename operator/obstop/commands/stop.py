"""`obstop stop`: send one stop to an obshell agent, print the DAG, and with --wait follow it to the end.

Useful on its own to check connectivity and credentials from inside a cluster. The password comes from an
environment variable or a file, never from the command line (it would show in `ps`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

PASSWORD_ENV = "OBSTOP_PASSWORD"  # noqa: S105 - the name of a variable, not a password
WAIT_RETRIES = 30  # transient poll failures tolerated in a row (an agent restarting)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", required=True, help="agent: HOST[:PORT] (default port 2886) or an http(s) URL"
    )
    parser.add_argument("--scope", required=True, choices=["GLOBAL", "ZONE", "SERVER"], type=str.upper)
    parser.add_argument(
        "--target", action="append", default=[], help="zone name or agent ip:port; repeatable"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="kill the observers (no minor freeze)")
    mode.add_argument("--terminate", action="store_true", help="minor freeze, then kill")
    parser.add_argument(
        "--force-pass-dag", action="append", default=[], metavar="ID", help="DAG id to force-pass"
    )
    parser.add_argument("--wait", action="store_true", help="follow the DAG until it finishes")
    parser.add_argument(
        "--password-env",
        default=PASSWORD_ENV,
        help=f"variable holding the root@sys password ({PASSWORD_ENV})",
    )
    parser.add_argument(
        "--password-file", type=Path, help="file holding the root@sys password (instead of the variable)"
    )
    parser.add_argument(
        "--agent-password", action="store_true", help="the password is the agent's, not root@sys"
    )
    parser.add_argument("--cacert", help="CA bundle to verify an https agent")
    parser.add_argument("--insecure", action="store_true", help="do not verify an https agent's certificate")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call (default 10)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls with --wait (default 1)"
    )


def read_password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text: str = args.password_file.read_text()
            return text.rstrip("\r\n")
        except OSError as exc:
            raise SystemExit(f"obstop stop: cannot read password file: {exc.strerror}") from None
    value = os.environ.get(args.password_env)
    if value is None:
        raise SystemExit(f"obstop stop: set ${args.password_env} or pass --password-file")
    return value


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args, read_password(args)))


async def _run(args: argparse.Namespace, password: str) -> int:
    from obstop.obshell import InvalidAddress, ObshellClient, ObshellError, Scope, ScopeType, StopParams

    params = StopParams(
        scope=Scope(type=ScopeType(args.scope), target=args.target),
        force=args.force,
        terminate=args.terminate,
        force_pass_dag=args.force_pass_dag,
    )
    verify: bool | str = False if args.insecure else (args.cacert or True)
    try:
        client = ObshellClient(
            args.address, password, agent_password=args.agent_password, timeout=args.timeout, verify=verify
        )
    except InvalidAddress as exc:
        print(f"obstop stop: {exc}", file=sys.stderr)
        return 2
    async with client:
        try:
            dag = await client.stop(params)
            print(
                f"submitted: DAG {dag.id} {dag.name!r} state={dag.state.value} stage={dag.stage}/{dag.max_stage}"
            )
            if not args.wait:
                return 0
            seen = None
            failures = 0
            while True:
                try:
                    dag = await client.get_dag(dag.id, details=True)
                    failures = 0
                except ObshellError as exc:
                    failures += 1
                    if not exc.transient or failures > WAIT_RETRIES:
                        raise
                    print(f"retrying: {exc}", file=sys.stderr)
                    await asyncio.sleep(args.interval)
                    continue
                node = dag.current_node.name if dag.current_node else ""
                line = f"DAG {dag.id} {dag.state.value} {dag.stage}/{dag.max_stage} {node}".rstrip()
                if line != seen:
                    print(line, flush=True)
                    seen = line
                if dag.finished:
                    break
                await asyncio.sleep(args.interval)
        except ObshellError as exc:
            print(f"obstop stop: {exc}", file=sys.stderr)
            return 1
    if dag.succeeded:
        print(f"succeeded: DAG {dag.id} ({dag.operator.value})")
        return 0
    failed = dag.failed_node.name if dag.failed_node else "?"
    print(f"failed: DAG {dag.id} at {failed!r}: {dag.failure_log() or dag.operator.value}", file=sys.stderr)
    return 1
