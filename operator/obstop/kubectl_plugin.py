"""`kubectl obstop`: ObStopRequests from the command line (installed as the `kubectl-obstop` console script, so
kubectl finds it as a plugin). It talks to the API server only, with the caller's own kubeconfig and rights:
what it can do is what `kubectl` could do with the same identity.

    kubectl obstop create NAME --address ADDR --secret SECRET [--scope ZONE --target zone1] [--mode force] [--wait]
    kubectl obstop watch NAME          # a line per change; exit 0 Succeeded, 1 Failed, 3 Cancelled, 2 timeout
    kubectl obstop status NAME         # phase, message and the per-agent table
    kubectl obstop cancel NAME         # the obshell.oceanbase.com/cancel annotation
    kubectl obstop precheck NAME --address ADDR --secret SECRET ...   # a dry run: report, stop nothing
    kubectl obstop approve NAME [--comment TEXT]   # an ObStopApproval in your own name (needs the approve role)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from obstop.commands.display import agents_table, status_line
from obstop.controller.approvals import APPROVAL_KIND, APPROVAL_PLURAL
from obstop.controller.resource import (
    CANCEL_ANNOTATION,
    GROUP,
    PLURAL,
    VERSION,
    InvalidSpec,
    manifest,
    parse_spec,
)

EXIT = {"Succeeded": 0, "Validated": 0, "Failed": 1, "Cancelled": 3}
TIMED_OUT = 2


class PluginError(Exception):
    """A one-line reason to exit non-zero."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl obstop", description="Stop OceanBase through ObStopRequests."
    )
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create an ObStopRequest from flags")
    precheck = commands.add_parser("precheck", help="a dry run: pre-check against the agent, stop nothing")
    for made in (create, precheck):
        _request_flags(made)
    create.add_argument(
        "--approval", choices=("Automatic", "Manual"), help="Manual: wait for an ObStopApproval"
    )
    create.add_argument("--wait", action="store_true", help="then watch it, as `watch` does")

    watch = commands.add_parser("watch", help="print a line each time the request's status changes")
    watch.add_argument("name")
    watch.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")

    status = commands.add_parser("status", help="phase, message and the per-agent table")
    status.add_argument("name")

    cancel = commands.add_parser(
        "cancel", help="cancel the request's stop (annotation obshell.oceanbase.com/cancel)"
    )
    cancel.add_argument("name")

    approve = commands.add_parser(
        "approve", help="approve a request waiting in AwaitingApproval, in your own name"
    )
    approve.add_argument("name")
    approve.add_argument("--comment", default="", help="why (a change ticket, a window)")
    return parser


def _request_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument(
        "--address", required=True, help="the obshell agent, host:port or http(s)://host:port"
    )
    parser.add_argument("--secret", required=True, help="the Secret holding the root@sys password")
    parser.add_argument("--key", default="password", help="the Secret's key (default: password)")
    parser.add_argument("--scope", choices=("GLOBAL", "ZONE", "SERVER"), default="GLOBAL")
    parser.add_argument("--target", action="append", default=[], help="a zone or agent address (repeatable)")
    parser.add_argument("--mode", choices=("immediate", "force", "terminate"), default="immediate")
    parser.add_argument(
        "--force-pass-dag", action="append", default=[], help="a DAG id to force-pass (repeatable)"
    )
    parser.add_argument("--deadline", type=int, help="activeDeadlineSeconds")
    parser.add_argument("--deadline-action", choices=("Report", "Cancel"), help="what the deadline does")
    parser.add_argument("--not-after", help="refuse to begin after this RFC 3339 time")
    parser.add_argument(
        "--print", action="store_true", help="print the manifest (JSON) instead of creating it"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="when watching: seconds (default 600)")


def from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ObStopRequest the flags describe, checked as the controller checks a spec (a clear error, not a 422)."""
    spec: dict[str, Any] = {
        "obshell": {"address": args.address, "passwordSecretRef": {"name": args.secret, "key": args.key}},
        "scope": {"type": args.scope, "target": list(args.target)},
        "force": args.mode == "force",
        "terminate": args.mode == "terminate",
        "forcePassDag": list(args.force_pass_dag),
    }
    if args.deadline is not None:
        spec["activeDeadlineSeconds"] = args.deadline
    if args.deadline_action:
        spec["deadlineAction"] = args.deadline_action
    if args.not_after:
        spec["notAfter"] = args.not_after
    if args.command == "precheck":
        spec["dryRun"] = True
    elif args.approval:
        spec["approval"] = args.approval
    try:
        parse_spec(spec)
    except InvalidSpec as exc:
        raise PluginError(str(exc)) from None
    return manifest(args.name, spec)


class Requests:
    """ObStopRequests of one namespace through the kubernetes client."""

    def __init__(self, args: argparse.Namespace) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=args.kubeconfig, context=args.context)  # type: ignore[no-untyped-call]
            contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise PluginError(f"no usable kubeconfig: {exc}") from None
        if args.context:
            active = next((c for c in contexts if c["name"] == args.context), active)
        self.namespace = args.namespace or (active or {}).get("context", {}).get("namespace") or "default"
        self.api = client.CustomObjectsApi()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(GROUP, VERSION, self.namespace, PLURAL, *args, **kwargs)
        except ApiException as exc:
            raise PluginError(f"{what}: {_api_reason(exc)}") from None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._call("create", self.api.create_namespaced_custom_object, body)
        return created

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(f"get {name}", self.api.get_namespaced_custom_object, name)
        return found

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        self._call(
            f"annotate {name}",
            self.api.patch_namespaced_custom_object,
            name,
            body,
            _content_type="application/merge-patch+json",
        )

    def whoami(self) -> str:
        """The caller's user name as the API server knows it (SelfSubjectReview, as `kubectl auth whoami`)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
        except ApiException as exc:
            raise PluginError(f"who am I: {_api_reason(exc)}") from None
        name = review.status.user_info.username if review.status and review.status.user_info else None
        if not name:
            raise PluginError("who am I: the API server named no user")
        return str(name)

    def approve(self, name: str, comment: str) -> dict[str, Any]:
        """An ObStopApproval of request `name` in the caller's own name (the chart's admission policy refuses
        any other name), bound to the request's uid."""
        from kubernetes.client.exceptions import ApiException

        uid = self.get(name)["metadata"]["uid"]
        spec: dict[str, Any] = {"requestName": name, "requestUID": uid, "approvedBy": self.whoami()}
        if comment:
            spec["comment"] = comment
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": APPROVAL_KIND,
            "metadata": {"generateName": f"{name[:50]}-approved-"},
            "spec": spec,
        }
        try:
            created: dict[str, Any] = self.api.create_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, self.namespace, APPROVAL_PLURAL, body
            )
        except ApiException as exc:
            raise PluginError(f"approve {name}: {_api_reason(exc)}") from None
        return created

    def statuses(self, name: str, timeout: float, interval: float = 0.5) -> Iterator[dict[str, Any]]:
        """The request's status each time it changes, until `timeout` seconds pass."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            status = self.get(name).get("status") or {}
            if status != last:
                last = status
                yield status
            time.sleep(interval)


def _api_reason(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return f"HTTP {exc.status}: {body.get('message') or exc.reason}"
    except ValueError:
        return f"HTTP {exc.status}: {exc.reason}"


def watch(requests: Requests, name: str, timeout: float) -> int:
    for status in requests.statuses(name, timeout):
        if not status:
            continue
        print(status_line(name, status), flush=True)
        phase = status.get("phase")
        if phase in EXIT:
            return EXIT[phase]
    print(f"{name}: not finished after {timeout:.0f}s", file=sys.stderr)
    return TIMED_OUT


def run(args: argparse.Namespace) -> int:
    if args.command in ("create", "precheck") and args.print:
        print(json.dumps(from_flags(args), indent=2))
        return 0
    requests = Requests(args)
    if args.command in ("create", "precheck"):
        created = requests.create(from_flags(args))
        print(f"obstoprequest.{GROUP}/{created['metadata']['name']} created in {requests.namespace}")
        wait = args.command == "precheck" or args.wait
        return watch(requests, args.name, args.timeout) if wait else 0
    if args.command == "watch":
        return watch(requests, args.name, args.timeout)
    if args.command == "cancel":
        requests.annotate(args.name, {CANCEL_ANNOTATION: "true"})
        print(f"obstoprequest.{GROUP}/{args.name} cancel asked for (the controller acts at its next step)")
        return 0
    if args.command == "approve":
        approval = requests.approve(args.name, args.comment)
        who = approval["spec"]["approvedBy"]
        print(f"obstopapproval.{GROUP}/{approval['metadata']['name']} created: {args.name} approved by {who}")
        return 0
    status = requests.get(args.name).get("status") or {}
    print(
        f"phase: {status.get('phase', '-')}  reason: {status.get('reason', '-')}  progress: {status.get('progress', '-')}"
    )
    print(f"message: {status.get('message', '')}")
    if status.get("agents"):
        print(agents_table(status["agents"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as exc:
        print(f"kubectl obstop {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
