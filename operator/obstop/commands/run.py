"""`obstop run`: the controller. Settings come from OBSTOP_* variables; flags given here override them."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        help="namespace to watch; repeatable (default: all, or $OBSTOP_NAMESPACES)",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument(
        "--health-port", type=int, help="port of /healthz and /metrics (0 disables; default 8080)"
    )
    parser.add_argument(
        "--peering", help="Kopf peering name: run several replicas, one active (default: standalone)"
    )


def import_kopf_without_kubernetes_models() -> None:
    """Import Kopf with the kubernetes client hidden, when nothing has imported that yet.

    kopf/_cogs/helpers/thirdparty.py imports `kubernetes.client` whenever it is installed (the kubectl plugin
    needs it), only to recognise the client's model objects handed to kopf.adopt() and the like; the
    controller hands none and calls the API through httpx (controller/kubeapi.py). Its models are about 22 MiB
    of an idle controller's 99 (docs/benchmark.md). Hidden only while Kopf is imported: a kubeconfig that needs
    the client's login (kubeapi.login) imports it later as usual.
    """
    hidden = ("kubernetes", "kubernetes_asyncio")
    if any(name in sys.modules for name in hidden):
        return
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" mark
    try:
        import kopf  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


def main(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import_kopf_without_kubernetes_models()
    import kopf

    from obstop.controller.main import registry
    from obstop.controller.settings import Settings, SettingsError

    try:
        settings = Settings.from_env().override(
            namespaces=tuple(args.namespaces) if args.namespaces else None,
            log_level=args.log_level,
            log_format=args.log_format,
            health_port=args.health_port,
            peering=args.peering,
        )
    except SettingsError as exc:
        raise SystemExit(f"obstop run: {exc}") from None
    kopf.configure(
        debug=settings.log_level == "DEBUG",
        verbose=settings.log_level == "DEBUG",
        quiet=settings.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=settings.log_format == "text",  # "[namespace/name]" before each object message
        log_refkey="k8s",
    )
    if settings.log_level != "DEBUG":  # one line per HTTP call (or per socket event) is noise above DEBUG
        for noisy in ("httpx", "httpcore", "kubernetes", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            registry=registry,
            memo=kopf.Memo(settings=settings),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=not settings.peering,
            peering_name=settings.peering or None,
        )
    )
    return 0
