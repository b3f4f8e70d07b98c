"""The whole loop on loopback, for the sandbox and the operator tests.

A real control plane (etcd + kube-apiserver, `obstop.testing.controlplane`) runs as child processes, shared by
several stacks (each in a namespace of its own) or owned by one; a simulated obshell cluster runs in a thread of
this process; the controller runs as a real separate process (`obstop run`), so it can be killed and restarted
like a pod. The test or the sandbox talks to the API server with the official kubernetes client, as kubectl
would. With `proxy=True` the controller reaches the API server through a fault-injecting proxy
(`obstop.testing.apiproxy`).
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml

from obstop.commands.display import status_line as status_line
from obstop.controller.resource import GROUP as GROUP
from obstop.controller.resource import PLURAL as PLURAL
from obstop.controller.resource import VERSION as VERSION
from obstop.controller.resource import manifest as manifest  # the product's own builder
from obstop.testing.apiproxy import FaultProxy
from obstop.testing.controlplane import ADMIN_USER, ControlPlane, die_with_parent, stop_process
from obstop.testing.obshell_sim import NEWEST, SimulatorConfig, SimulatorThread
from obstop.testing.waiting import wait_until

APPROVALS = "obstopapprovals"
SECRET_NAME, SECRET_KEY = "obshell-root", "password"
TERMINAL = ("Succeeded", "Failed", "Cancelled", "Validated")
# Where a Secret's values may go (a contract, read by obstop.controller.agent_policy; of the controller, testing/
# imports only the resource's coordinates and its manifest builder).
ALLOWED_AGENTS = "obshell.oceanbase.com/allowed-agents"


def crd_path() -> Path:
    """The ObStopRequest CRD: deploy/crds/ is its one source of truth, linked here as testing/crds so that a
    wheel carries it too; $OBSTOP_CRD overrides."""
    override = os.environ.get("OBSTOP_CRD")
    if override:
        return Path(override)
    found = sorted((Path(__file__).resolve().parent / "crds").glob("*obstoprequests*.yaml"))
    if not found:
        raise FileNotFoundError(f"no ObStopRequest CRD in {Path(__file__).parent / 'crds'}; set OBSTOP_CRD")
    return found[0]


def approval_crd_path() -> Path:
    """The ObStopApproval CRD, beside the ObStopRequest's."""
    return crd_path().parent / "obshell.oceanbase.com_obstopapprovals.yaml"


def approval_policy_path() -> Path:
    """The admission policy that makes an ObStopApproval name its creator (deploy/policies/, linked here)."""
    return Path(__file__).resolve().parent / "policies" / "obstopapprovals-approver.yaml"


def approval(name: str, request_name: str, approved_by: str, *, request_uid: str = "") -> dict[str, Any]:
    """An ObStopApproval manifest."""
    spec: dict[str, Any] = {"requestName": request_name, "approvedBy": approved_by}
    if request_uid:
        spec["requestUID"] = request_uid
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ObStopApproval",
        "metadata": {"name": name},
        "spec": spec,
    }


def stop_request(
    name: str,
    address: str,
    *,
    scope: str = "GLOBAL",
    targets: Sequence[str] = (),
    force: bool = False,
    terminate: bool = False,
    force_pass_dag: Sequence[str] = (),
    deadline: int | None = None,
    secret: str = SECRET_NAME,
    key: str = SECRET_KEY,
    dry_run: bool = False,
    approval: str | None = None,
) -> dict[str, Any]:
    """An ObStopRequest manifest with every spec field written out (the CRD's defaults too)."""
    spec: dict[str, Any] = {
        "obshell": {"address": address, "passwordSecretRef": {"name": secret, "key": key}},
        "scope": {"type": scope, "target": list(targets)},
        "force": force,
        "terminate": terminate,
        "forcePassDag": list(force_pass_dag),
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if dry_run:
        spec["dryRun"] = True
    if approval is not None:
        spec["approval"] = approval
    return manifest(name, spec)


def minimal_request(name: str, **spec: Any) -> dict[str, Any]:
    """A valid ZONE stop with only the required spec fields (no defaults written), top-level spec keys replaced
    by `spec`: what admission tests vary one field at a time."""
    required: dict[str, Any] = {
        "obshell": {"address": "10.0.0.1:2886", "passwordSecretRef": {"name": SECRET_NAME}},
        "scope": {"type": "ZONE", "target": ["zone1"]},
    }
    return manifest(name, {**required, **spec})


class StackObserver(Protocol):
    """Told about every Stack's life, once registered in `Stack.observers` (tests/conftest.py's password guard is
    one): `starting` before anything is set up, `started` once the stack is up, `stopping` before it is torn
    down, `stopped` after. An exception from `stopping` still tears the stack down; one from `stopped` (a
    pytest.fail, say) goes to the `with` statement."""

    def starting(self, stack: Stack) -> None: ...
    def started(self, stack: Stack) -> None: ...
    def stopping(self, stack: Stack) -> None: ...
    def stopped(self, stack: Stack) -> None: ...


class Stack:
    observers: ClassVar[list[StackObserver]] = []

    def __init__(
        self,
        *,
        password: str | None = None,
        zones: int = 3,
        servers_per_zone: int = 1,
        clusters: int = 1,
        stage_seconds: float = 0.3,
        namespace: str | None = None,
        workdir: Path | None = None,
        controller_env: Mapping[str, str] | None = None,
        control_plane: ControlPlane | None = None,
        kubeconfig: Path | None = None,
        proxy: bool = False,
        obshell_version: str | None = None,
    ) -> None:
        """The API server is `control_plane` (shared: the stack then works in a fresh namespace of its own and
        the controller watches only that), or any cluster's `kubeconfig` (tests/e2e), or else a control plane
        that this stack starts and stops. `proxy` puts a FaultProxy between the controller and the server.
        `obshell_version` makes the simulated agents answer as that obshell release (default: the newest)."""
        # A fresh random password per stack: tests can then assert it never shows up in logs or status.
        self.password = password or secrets.token_urlsafe(12)
        shared = control_plane is not None or kubeconfig is not None
        self.namespace = namespace or (f"obstop-{secrets.token_hex(4)}" if shared else "default")
        # A shared API server holds other stacks' requests: watch only our own namespace.
        self.watch_namespace = shared
        self.sim_config = SimulatorConfig(
            password=self.password,
            zones=zones,
            servers_per_zone=servers_per_zone,
            clusters=clusters,
            stage_seconds=stage_seconds,
            version=obshell_version or NEWEST,
        )
        self._workdir_arg = workdir
        self._real_kubeconfig = kubeconfig
        self.control_plane: ControlPlane | None = control_plane
        self._want_proxy = proxy
        self.proxy: FaultProxy | None = None
        self.controller_env = dict(controller_env or {})
        self._exit = ExitStack()
        self.controller: subprocess.Popen[bytes] | None = None
        self._controller_runs = 0

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> Stack:
        for observer in self.observers:
            observer.starting(self)
        try:
            self.workdir = self._workdir_arg or Path(
                self._exit.enter_context(tempfile.TemporaryDirectory(prefix="obstop-"))
            )
            if self._real_kubeconfig is not None:
                self.kubeconfig = self._real_kubeconfig
            else:
                if self.control_plane is None:
                    self.control_plane = self._exit.enter_context(ControlPlane())
                self.kubeconfig = self.control_plane.kubeconfig
            self.controller_kubeconfig = self.kubeconfig
            if self._want_proxy:
                cp = self.control_plane
                if cp is None:
                    raise ValueError("the fault proxy needs a local control plane (its admin token)")
                self.proxy = self._exit.enter_context(FaultProxy(cp.url, cp.workdir / "ca.crt"))
                self.controller_kubeconfig = cp.write_kubeconfig(
                    self.workdir / "controller.kubeconfig", user=ADMIN_USER, server=self.proxy.url
                )
            self.sim = self._exit.enter_context(SimulatorThread(self.sim_config))
            self._exit.callback(self.stop_controller)
            self.k8s = self._client()
            self.install_crd()
            self.ensure_namespace(self.namespace)
            self.put_secret(self.namespace, SECRET_NAME, {SECRET_KEY: self.password})
        except BaseException:
            self._exit.close()
            raise
        for observer in self.observers:
            observer.started(self)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for observer in self.observers:
                observer.stopping(self)
        finally:
            self._exit.close()
        for observer in self.observers:
            observer.stopped(self)

    def agent(self, cluster: int = 0, index: int = 0) -> str:
        return str(self.sim.clusters[cluster].agents[index].address)

    # ----------------------------------------------------------------------------------------------
    # The controller process

    def start_controller(
        self, *args: str, env: Mapping[str, str] | None = None, kubeconfig: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `obstop run` against the API server (through the proxy, if any), as the admin or as the
        identity of `kubeconfig` (e.g. the chart's ServiceAccount token); output in controller-N.log."""
        if self.controller is not None and self.controller.poll() is None:
            raise RuntimeError("the controller is already running")
        self._controller_runs += 1
        log = self.workdir / f"controller-{self._controller_runs}.log"
        full_env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.controller_kubeconfig),
            "OBSTOP_HEALTH_PORT": "0",
            "OBSTOP_POLL_MIN_SECONDS": "0.05",
            "OBSTOP_RETRY_INITIAL_SECONDS": "0.2",
            "OBSTOP_RETRY_MAX_SECONDS": "2",
            "OBSTOP_LOOKUP_GRACE_SECONDS": "0.5",
            "OBSTOP_STALL_SECONDS": "3",
            "OBSTOP_OBSHELL_TIMEOUT_SECONDS": "3",
            "OBSTOP_APPROVAL_POLL_SECONDS": "0.3",
            **self.controller_env,
            **(env or {}),
        }
        if self.watch_namespace and "--namespace" not in args:
            args = ("--namespace", self.namespace, *args)
        with log.open("ab") as out:
            self.controller = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "obstop.cli", "run", *args],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # a SIGKILLed test run leaves no controller behind
            )
        return self.controller

    def stop_controller(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        proc, self.controller = self.controller, None
        stop_process(proc, kill=kill, timeout=timeout)

    def controller_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("controller-*.log")))

    # ----------------------------------------------------------------------------------------------
    # Kubernetes objects

    def _client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.k8s)

    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.k8s)

    def install_crd(self) -> None:
        from kubernetes import client

        api = client.ApiextensionsV1Api(self.k8s)
        for path in (crd_path(), approval_crd_path()):
            crd = yaml.safe_load(path.read_text())
            try:
                api.create_custom_resource_definition(crd)
            except client.exceptions.ApiException as exc:
                if exc.status != 409:
                    raise
                current = api.read_custom_resource_definition(crd["metadata"]["name"])
                crd["metadata"]["resourceVersion"] = (
                    current.metadata.resource_version if current.metadata else None
                )
                api.replace_custom_resource_definition(crd["metadata"]["name"], crd)
        refusals: list[client.exceptions.ApiException] = []

        def served() -> bool:  # a real server takes a moment before it serves a new CRD
            try:
                self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, APPROVALS)
            except client.exceptions.ApiException as exc:
                refusals.append(exc)
                return False
            return True

        try:
            wait_until(served, 10, "the API server serves the new CRD", interval=0.05)
        except TimeoutError:
            raise refusals[-1] from None

    def install_approval_policy(self) -> None:
        """The ValidatingAdmissionPolicy of deploy/policies/ and its binding. Cluster-scoped: not installed by
        default (a chart installed later into the same API server makes its own, named after its release)."""
        from kubernetes import client

        api = client.AdmissionregistrationV1Api(self.k8s)
        for doc in yaml.safe_load_all(approval_policy_path().read_text()):
            create = (
                api.create_validating_admission_policy
                if doc["kind"] == "ValidatingAdmissionPolicy"
                else api.create_validating_admission_policy_binding
            )
            try:
                create(doc)
            except client.exceptions.ApiException as exc:
                if exc.status != 409:
                    raise

    def ensure_namespace(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def put_secret(
        self,
        namespace: str,
        name: str,
        string_data: Mapping[str, str],
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Create or replace a Secret. Unless `annotations` says otherwise, its owner lets its values go to
        every agent of this stack's simulator (obshell.oceanbase.com/allowed-agents, docs/security.md)."""
        from kubernetes.client.exceptions import ApiException

        if annotations is None:
            agents = [a.address for c in self.sim.clusters for a in c.agents]
            annotations = {ALLOWED_AGENTS: ",".join(agents)}
        data = {k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "annotations": dict(annotations)},
            "type": "Opaque",
            "data": data,
        }
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def create(self, manifest: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURAL, dict(manifest)
        )
        return result

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace or self.namespace, PLURAL, name
        )
        return result

    def delete(self, name: str, namespace: str | None = None) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace or self.namespace, PLURAL, name)

    def events(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(namespace or self.namespace).items
        return [
            {"type": e.type, "reason": e.reason, "message": e.message}
            for e in items
            if e.involved_object is not None and e.involved_object.name == name
        ]

    def wait_for_events(
        self,
        name: str,
        condition: Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 10.0,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """The object's events once `condition` holds for them. Kopf posts events from a queue of its own,
        after the status write that a test usually waits for, so a test reading them at once can race."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(name, namespace)
            if condition(events):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"events of {name}: condition not met within {timeout}s; seen: {events}")
            time.sleep(0.05)

    def watch(
        self, name: str, *, timeout: float, namespace: str | None = None, interval: float = 0.05
    ) -> Iterator[dict[str, Any]]:
        """Yield the object's status each time it changes, until `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        last: Any = object()
        while time.monotonic() < deadline:
            status = self.get(name, namespace).get("status") or {}
            if status != last:
                last = status
                yield status
            time.sleep(interval)

    def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda s: s.get("phase") in TERMINAL,
        *,
        timeout: float = 30.0,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """The first status that satisfies `predicate`; TimeoutError (with the last status and logs) otherwise."""
        status: dict[str, Any] = {}

        def satisfied() -> bool:
            nonlocal status
            status = self.get(name, namespace).get("status") or {}
            return predicate(status)

        try:
            wait_until(satisfied, timeout, name, interval=0.05)
        except TimeoutError:
            tail = "\n".join(self.controller_logs().splitlines()[-40:])
            raise TimeoutError(
                f"{name}: condition not met in {timeout}s; last status {status}\ncontroller log tail:\n{tail}"
            ) from None
        return status
