"""`python -m obstop.testing.kube --port P --kubeconfig PATH`: the emulated API server as a process."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import yaml

from obstop.testing.kube.server import EmulatedApiServer


async def serve(host: str, port: int, kubeconfig: Path | None, manifests: list[Path]) -> None:
    server = EmulatedApiServer()
    url = await server.start(host, port)
    try:
        for manifest_path in manifests:
            for document in yaml.safe_load_all(manifest_path.read_text()):
                if document:
                    server.apply(document)
        if kubeconfig is not None:
            server.write_kubeconfig(kubeconfig)
        print(f"ready {url}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m obstop.testing.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the `ready` line)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the server here")
    parser.add_argument(
        "--manifest", type=Path, action="append", default=[], help="objects to create at start"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.kubeconfig, args.manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
