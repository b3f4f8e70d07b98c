"""The `obstop` command line. Each subcommand lives in obstop.commands.<name> and is imported only when run,
so that `obstop stop` does not pay for Kopf and `obstop run` does not need the test kit (obstop.testing), which
the controller image leaves out: there `sim` and `sandbox` say so in one line (obstop.commands.testkit)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "run": "run the controller (Kopf) against the current Kubernetes context",
    "stop": "send one stop to an obshell agent and optionally wait for its DAG",
    "sim": "serve simulated obshell agents on loopback (for tests and the sandbox; test kit)",
    "sandbox": "the whole loop on loopback: local kube-apiserver + etcd, simulated cluster, controller (test kit)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obstop", description="Stop OceanBase through obshell, from Kubernetes."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        _module(name).configure(sub)
    return parser


def _module(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"obstop.commands.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(_module(args.command).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
