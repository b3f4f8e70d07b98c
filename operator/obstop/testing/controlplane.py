"""A real local Kubernetes control plane: etcd and kube-apiserver on loopback, as envtest runs them.

The tests, the sandbox and the benchmark all start it through `ControlPlane`; `./dev control-plane` runs it in the
foreground (`python -m obstop.testing.controlplane --kubeconfig PATH` prints `ready <url>` and serves until
SIGINT/SIGTERM). There is no kube-controller-manager, scheduler or kubelet: what kube-apiserver itself does
(admission with the CRD's schema and CEL rules, RBAC, the status subresource, watches, TokenRequest, Pod Security
on dry-run pods, audit) is real; namespaces never finish deleting and Deployments create no pods
(docs/control-plane.md).

The binaries are found, in order, in `$OBSTOP_CONTROL_PLANE_BIN` (what `./dev` sets after
scripts/build-control-plane), `$KUBEBUILDER_ASSETS` (setup-envtest's folder), and a source checkout's
`.tools/control-plane/<version>/bin`.

Every process is started with a parent-death signal, and its folder carries the owner's pid, so neither a
crashed test run nor a SIGKILLed pytest leaves a running etcd or a data folder behind for long: the next start
removes folders whose owner is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from obstop.testing.waiting import wait_until

ADMIN_USER = "obstop-admin"
_ADMIN_GROUPS = ("system:masters",)
_DIR_PREFIX = "obstop-cp-"
_START_TIMEOUT = 90.0  # a cold start on a busy 2-core machine; a warm one takes 2-4 s
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # Metadata is enough for RBAC and security checks: user, verb, resource, subresource, namespace, name, code.
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneUnavailable(RuntimeError):
    """The binaries are missing, or the processes did not start; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path

    @classmethod
    def find(cls, folders: Sequence[Path] | None = None) -> Binaries:
        """Where kube-apiserver and etcd are (in `folders`, or the default places); ControlPlaneUnavailable, in
        one sentence, when nowhere."""
        if folders is None:
            folders = [
                Path(os.environ[v])
                for v in ("OBSTOP_CONTROL_PLANE_BIN", "KUBEBUILDER_ASSETS")
                if os.environ.get(v)
            ]
            checkout = Path(__file__).resolve().parents[3] / ".tools" / "control-plane"
            folders.extend(sorted(checkout.glob("*/bin"), reverse=True))
        for folder in folders:
            found = cls(folder / "kube-apiserver", folder / "etcd")
            if all(os.access(p, os.X_OK) for p in (found.kube_apiserver, found.etcd)):
                return found
        raise ControlPlaneUnavailable(
            "no kube-apiserver and etcd found: run `./dev setup` in a source checkout (it builds them with Go), "
            "or set KUBEBUILDER_ASSETS to a folder holding both (setup-envtest use 1.37.x)"
        )


@dataclass(frozen=True)
class AuditEvent:
    """One audited call (audit.k8s.io/v1 Event at level Metadata), the fields the tests look at."""

    user: str
    groups: tuple[str, ...]
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    user_agent: str
    uri: str
    time: float = 0.0
    """When the answer went out (stageTimestamp), seconds since the epoch; 0 when the log did not say."""
    stage: str = ""
    """ResponseComplete, or ResponseStarted (a watch's first line: its end is logged again as complete)."""
    audit_id: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> AuditEvent:
        ref = raw.get("objectRef") or {}
        user = raw.get("user") or {}
        return cls(
            user=str(user.get("username", "")),
            groups=tuple(user.get("groups") or ()),
            verb=str(raw.get("verb", "")),
            api_group=str(ref.get("apiGroup", "")),
            resource=str(ref.get("resource", "")),
            subresource=str(ref.get("subresource", "")),
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            code=int((raw.get("responseStatus") or {}).get("code", 0)),
            user_agent=str(raw.get("userAgent", "")),
            uri=str(raw.get("requestURI", "")),
            time=_epoch(raw.get("stageTimestamp")),
            stage=str(raw.get("stage", "")),
            audit_id=str(raw.get("auditID", "")),
        )


def _epoch(stamp: object) -> float:
    """An audit timestamp (RFC 3339 with microseconds, "Z") as seconds since the epoch; 0.0 if not one."""
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


@dataclass
class _Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - our own binaries and arguments
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        proc, self.popen = self.popen, None
        stop_process(proc, kill=kill, timeout=timeout)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on random loopback ports, with RBAC, service-account keys and an audit log.

    `with ControlPlane() as cp:` starts both and writes `cp.kubeconfig` (the admin, a client certificate in
    group system:masters); leaving the block stops both and removes their folder. Must be entered from a
    thread that outlives it (the processes die with the thread that started them).
    """

    users: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Extra identities served by a static token file: user name -> groups. `token(user)` gives the token."""
    extra_args: Sequence[str] = ()
    """More kube-apiserver flags."""
    binaries: Binaries | None = None
    """Where kube-apiserver and etcd are; found by `Binaries.find()` when None."""

    def __post_init__(self) -> None:
        self.workdir = Path()
        self.kubeconfig = Path()
        self.url = ""
        self._tokens: dict[str, str] = {}
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> ControlPlane:
        binaries = self.binaries or Binaries.find()
        _remove_orphans()
        self.workdir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX))
        try:
            (self.workdir / "owner.pid").write_text(str(os.getpid()))
            self._prepare_files()
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                try:
                    self._start_on_free_ports(binaries)
                    break
                except ControlPlaneUnavailable as exc:
                    # A port found free was taken before etcd or kube-apiserver bound it (another process on
                    # loopback binding port 0 meanwhile): start both again on other ports.
                    if "address already in use" not in str(exc) or attempt == _PORT_ATTEMPTS:
                        raise
                    for proc in (self._apiserver, self._etcd):
                        if proc is not None:
                            proc.stop()
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
            self.kubeconfig = self.write_kubeconfig(self.workdir / "admin.kubeconfig")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_on_free_ports(self, binaries: Binaries) -> None:
        etcd_client, etcd_peer, secure = _free_ports(3)
        self._etcd = _Process(
            "etcd", self._etcd_argv(binaries.etcd, etcd_client, etcd_peer), self.workdir / "etcd.log"
        )
        self._apiserver = _Process(
            "kube-apiserver",
            self._apiserver_argv(binaries.kube_apiserver, etcd_client, secure),
            self.workdir / "kube-apiserver.log",
        )
        self.url = f"https://127.0.0.1:{secure}"
        self._etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.start_etcd()
        self.start_apiserver()

    def __exit__(self, *exc: object) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        if self.workdir != Path() and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start_etcd(self) -> None:
        assert self._etcd is not None
        self._etcd.start()
        self._wait(self._etcd, lambda c: c.get(f"{self._etcd_url}/health").json().get("health") == "true")

    def start_apiserver(self) -> None:
        assert self._apiserver is not None
        self._apiserver.start()

        def ready(client: httpx.Client) -> bool:
            # /readyz covers the post-start hooks (RBAC bootstrap roles, CRD informers); the default namespace
            # is created a moment later by the bootstrap controller.
            return (
                client.get(f"{self.url}/readyz").status_code == 200
                and client.get(f"{self.url}/api/v1/namespaces/default").status_code == 200
            )

        self._wait(self._apiserver, ready)

    def pids(self) -> dict[str, int]:
        """The process ids of the running pieces ("etcd", "kube-apiserver"), e.g. to read their CPU time."""
        return {
            p.name: p.popen.pid
            for p in (self._etcd, self._apiserver)
            if p is not None and p.popen is not None and p.running()
        }

    def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver (a crash); `start_apiserver()` brings it back on the same port."""
        assert self._apiserver is not None
        self._apiserver.stop(kill=True)

    def kill_etcd(self) -> None:
        """SIGKILL etcd; its data stays, `start_etcd()` brings it back on the same ports."""
        assert self._etcd is not None
        self._etcd.stop(kill=True)

    def _wait(self, proc: _Process, ready: Any) -> None:
        with self.http() as client:

            def answers() -> bool:
                if not proc.running():
                    raise ControlPlaneUnavailable(f"{proc.name} exited at start:\n{proc.tail()}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    return bool(ready(client))
                return False

            try:
                wait_until(answers, _START_TIMEOUT, f"{proc.name} ready", interval=0.1)
            except TimeoutError:
                raise ControlPlaneUnavailable(
                    f"{proc.name} not ready in {_START_TIMEOUT:.0f}s:\n{proc.tail()}"
                ) from None

    # ----------------------------------------------------------------------------------------------
    # Identities and kubeconfigs

    def token(self, user: str) -> str:
        """The static bearer token of `user` (ADMIN_USER or one of `users`)."""
        return self._tokens[user]

    def http(self, *, user: str | None = None, timeout: float = 10.0) -> httpx.Client:
        """An httpx client for the API server: the admin's certificate, or `user`'s token."""
        context = ssl.create_default_context(cafile=str(self.workdir / "ca.crt"))
        if user is None:
            context.load_cert_chain(self.workdir / "admin.crt", self.workdir / "admin.key")
            return httpx.Client(verify=context, timeout=timeout)
        return httpx.Client(
            verify=context, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=timeout
        )

    def write_kubeconfig(
        self, path: Path, *, user: str | None = None, token: str | None = None, server: str | None = None
    ) -> Path:
        """A kubeconfig for the admin (client certificate), for `user` (static token) or for any `token` (a
        ServiceAccount's, from TokenRequest). `server` points it elsewhere, e.g. at a fault-injecting proxy
        (plain http, so only a token identity can pass through)."""
        if user is not None:
            token = self.token(user)
        credentials: dict[str, str]
        if token is not None:
            credentials = {"token": token}
        else:
            credentials = {
                "client-certificate": str(self.workdir / "admin.crt"),
                "client-key": str(self.workdir / "admin.key"),
            }
        target = server or self.url
        cluster: dict[str, str] = {"server": target}
        if target.startswith("https://"):
            cluster["certificate-authority"] = str(self.workdir / "ca.crt")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "user", "user": credentials}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # ----------------------------------------------------------------------------------------------
    # The audit log

    def audit_events(self) -> list[AuditEvent]:
        """Every call audited so far (the log is written before each answer goes out)."""
        events = []
        with contextlib.suppress(FileNotFoundError), (self.workdir / "audit.log").open() as log:
            for line in log:
                if line.endswith("\n"):  # a line still being written is read next time
                    events.append(AuditEvent.parse(json.loads(line)))
        return events

    def logs(self) -> str:
        """The tails of both processes' logs, for failure messages."""
        parts = [f"--- {p.name}\n{p.tail(40)}" for p in (self._etcd, self._apiserver) if p is not None]
        return "\n".join(parts)

    # ----------------------------------------------------------------------------------------------
    # Files and command lines

    def _prepare_files(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        ca = _Certificate.authority("obstop-local-ca")
        ca.write(self.workdir / "ca")
        _Certificate.issued(ca, "kube-apiserver", server=True).write(self.workdir / "serving")
        _Certificate.issued(ca, ADMIN_USER, organizations=_ADMIN_GROUPS).write(self.workdir / "admin")
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(
            signing.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self._tokens = {user: secrets.token_urlsafe(24) for user in (ADMIN_USER, *self.users)}
        groups = {ADMIN_USER: _ADMIN_GROUPS, **self.users}
        rows = [f'{token},{user},{user},"{",".join(groups[user])}"' for user, token in self._tokens.items()]
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n")
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(_AUDIT_POLICY))

    def _etcd_argv(self, etcd: Path, client: int, peer: int) -> list[str]:
        peer_url = f"http://127.0.0.1:{peer}"
        return [
            str(etcd),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",  # tests only: a process kill keeps the data, an OS crash would not
            "--log-level=warn",
        ]

    def _apiserver_argv(self, apiserver: Path, etcd_client: int, secure: int) -> list[str]:
        d = self.workdir
        # The flags controller-runtime's envtest passes (pkg/internal/testing/controlplane/apiserver.go), plus a
        # static token file (identities that can pass through a plain-http proxy) and the audit log.
        return [
            str(apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--cert-dir={d / 'certs'}",
            f"--tls-cert-file={d / 'serving.crt'}",
            f"--tls-private-key-file={d / 'serving.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--secure-port={secure}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # the default one refuses a loopback advertise address
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--audit-policy-file={d / 'audit-policy.yaml'}",
            f"--audit-log-path={d / 'audit.log'}",
            "--audit-log-mode=blocking",
            *self.extra_args,
        ]


# --------------------------------------------------------------------------------------------------
# Certificates


@dataclass
class _Certificate:
    key: Any
    cert: Any

    @classmethod
    def authority(cls, name: str) -> _Certificate:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, _sha256())
        )
        return cls(key, cert)

    @classmethod
    def issued(
        cls, ca: _Certificate, name: str, *, server: bool = False, organizations: Sequence[str] = ()
    ) -> _Certificate:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, o) for o in organizations]
        subject = x509.Name([*attributes, x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
        builder = _builder(subject, ca.cert.subject, key.public_key())
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return cls(key, builder.sign(ca.key, _sha256()))

    def write(self, stem: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        stem.with_suffix(".crt").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key = stem.with_suffix(".key")
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key.chmod(0o600)


def _builder(subject: Any, issuer: Any, public_key: Any) -> Any:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
    )


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


# --------------------------------------------------------------------------------------------------
# Processes and folders


def stop_process(proc: subprocess.Popen[Any] | None, *, kill: bool = False, timeout: float = 10.0) -> None:
    """SIGTERM (or SIGKILL) a child and reap it; SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# Resolved once in the parent: loading a library between fork and exec of a threaded process could deadlock.
try:
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, the context managers still clean up
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PORT_ATTEMPTS = 3


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _remove_orphans() -> None:
    """Folders of control planes whose owner process is gone (a SIGKILLed test run)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        try:
            owner = int((folder / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev control-plane",
        description="Run etcd + kube-apiserver on loopback until SIGINT/SIGTERM; print `ready <url>`.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write the admin kubeconfig")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with ControlPlane() as cp:
            # It names the certificates in the control plane's folder: valid while this process runs.
            cp.write_kubeconfig(args.kubeconfig)
            print(f"ready {cp.url}", flush=True)
            stop.wait()
    except ControlPlaneUnavailable as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
