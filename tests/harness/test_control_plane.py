"""The local control plane and the API fault proxy themselves: real etcd + kube-apiserver processes, the
`./dev control-plane` contract, the build script's answer on a machine without Go, and the proxy's faults on
real requests. Nothing is mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from obstop.testing.apiproxy import Call, FaultProxy
from obstop.testing.controlplane import Binaries, ControlPlane, ControlPlaneUnavailable

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin")

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; /proc tells it apart.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_starts_serves_rbac_and_audits_then_leaves_nothing_behind() -> None:
    with pytest.raises(RuntimeError, match="failing test"), ControlPlane(users={"alice": ["devs"]}) as cp:
        pids = [p.popen.pid for p in (cp._etcd, cp._apiserver) if p is not None and p.popen is not None]
        workdir = cp.workdir
        version = subprocess.run(
            [str(TOOLS / "kubectl"), "--kubeconfig", str(cp.kubeconfig), "version", "-o", "yaml"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert yaml.safe_load(version.stdout)["serverVersion"]["gitVersion"] == "v1.37.2"
        with cp.http(user="alice") as alice:  # RBAC is on: a user with no binding is refused
            assert alice.get(f"{cp.url}/api/v1/namespaces/default/secrets").status_code == 403
        with cp.http() as admin:
            assert admin.get(f"{cp.url}/api/v1/namespaces/default/secrets").status_code == 200
        refused = [e for e in cp.audit_events() if e.user == "alice" and e.resource == "secrets"]
        assert [(e.verb, e.namespace, e.code) for e in refused] == [("list", "default", 403)]
        assert "devs" in refused[0].groups
        raise RuntimeError("failing test")
    assert not workdir.exists()
    assert pids and not any(_alive(pid) for pid in pids)


def test_dev_control_plane_prints_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The contract: `./dev control-plane --kubeconfig PATH` prints `ready <url>`, serves until SIGTERM."""
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "obstop.testing.controlplane", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready https://127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
        url = line.split()[1]
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == url
        got = subprocess.run(
            [
                str(TOOLS / "kubectl"),
                "--kubeconfig",
                str(kubeconfig),
                "get",
                "namespace",
                "default",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
        )
        assert got.stdout.strip() == "namespace/default", got.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/readyz", verify=False, timeout=2)  # noqa: S501 - only checking it is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_without_binaries_the_answer_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneUnavailable) as missing:
        Binaries.find([tmp_path])
    assert "KUBEBUILDER_ASSETS" in str(missing.value) and "\n" not in str(missing.value)


def test_build_script_without_go_says_what_to_install(tmp_path: Path) -> None:
    """A machine with neither Go nor $KUBEBUILDER_ASSETS: one clear sentence, exit 1, no build attempted."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "awk", "cat", "sha256sum", "cut", "dirname", "env"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (bare / tool).symlink_to(found)
    result = subprocess.run(
        [str(bare / "bash"), str(ROOT / "scripts" / "build-control-plane"), str(tmp_path / "dest")],
        env={"PATH": str(bare)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "needs Go" in line and "KUBEBUILDER_ASSETS" in line


def test_call_names_requests_as_rbac_does() -> None:
    parse = Call.parse
    assert parse("GET", "/api/v1/namespaces/ns/secrets/root", "") == Call(
        "GET", "get", "", "secrets", "", "ns", "root"
    )
    assert parse(
        "GET", "/apis/obshell.oceanbase.com/v1alpha1/namespaces/ns/obstoprequests", "watch=true"
    ) == Call("GET", "watch", "obshell.oceanbase.com", "obstoprequests", "", "ns", "")
    assert parse(
        "PATCH", "/apis/obshell.oceanbase.com/v1alpha1/namespaces/ns/obstoprequests/a/status", ""
    ) == Call("PATCH", "patch", "obshell.oceanbase.com", "obstoprequests", "status", "ns", "a")
    assert parse("GET", "/api/v1/namespaces", "").verb == "list"
    assert parse("GET", "/api/v1/namespaces/ns", "") == Call("GET", "get", "", "namespaces", "", "", "ns")
    assert parse("POST", "/api/v1/namespaces/ns/events", "").verb == "create"


def test_proxy_forwards_the_token_identity_and_injects_faults(control_plane: ControlPlane) -> None:
    with FaultProxy(control_plane.url, control_plane.workdir / "ca.crt") as proxy:
        token = {"Authorization": f"Bearer {control_plane.token('obstop-admin')}"}
        with httpx.Client(base_url=proxy.url, headers=token, timeout=10) as client:
            assert client.get("/api/v1/namespaces/default").status_code == 200
            proxy.inject(503, verb="get", resource="namespaces", times=2)
            codes = [client.get("/api/v1/namespaces/default").status_code for _ in range(3)]
            assert codes == [503, 503, 200]
            refused = client.get(
                "/api/v1/namespaces/kube-system/secrets", headers={"Authorization": "Bearer x"}
            )
            assert refused.status_code == 401  # the server, not the proxy, judges the credentials
            proxy.watch_error(500, "etcdserver: internal", resource="namespaces")
            event = client.get("/api/v1/namespaces", params={"watch": "true"}).json()
            assert event["type"] == "ERROR" and event["object"]["code"] == 500
        assert [c.status for c in proxy.recorded(resource="namespaces", verb="get")] == [200, 503, 503, 200]


def test_a_port_taken_before_kube_apiserver_binds_it_starts_both_again_on_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race is made certain: the first ports handed out include one a socket of this test listens on, so the
    real kube-apiserver fails to bind it ("address already in use"); the control plane starts again."""
    import socket

    from obstop.testing import controlplane

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real, calls = controlplane._free_ports, []

    def first_with_a_taken_port(count: int) -> list[int]:
        ports = real(count)
        calls.append(ports)
        return [*ports[:-1], taken.getsockname()[1]] if len(calls) == 1 else ports

    monkeypatch.setattr(controlplane, "_free_ports", first_with_a_taken_port)
    try:
        with ControlPlane() as cp, cp.http() as admin:
            assert len(calls) == 2
            assert cp.url.endswith(f":{calls[1][-1]}")
            assert admin.get(f"{cp.url}/api/v1/namespaces/default").status_code == 200
    finally:
        taken.close()
