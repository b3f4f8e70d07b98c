"""The controller's own API client (obstop.controller.kubeapi) against the session's real kube-apiserver:
Kopf's credentials, JSON calls, errors by status and reason, a second login after a 401. Nothing is mocked."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest

from obstop.controller.kubeapi import ApiError, KubeApi, in_cluster_server, login
from obstop.testing.controlplane import ADMIN_USER

LOG = logging.getLogger("test")


def _secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}


def _with_token(control_plane: Any, token: str) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=control_plane.url, ca_path=str(control_plane.workdir / "ca.crt"), token=token
    )


async def test_kubeconfig_login_then_reads_writes_and_errors(
    control_plane: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logged in from a kubeconfig with a client certificate (Kopf's reader), it creates, reads and
    merge-patches; a missing object and a second create come back as ApiError with the Status reason."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.write_kubeconfig(tmp_path / "admin.kubeconfig")))
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)  # in case a pod runs the tests
    api = KubeApi(lambda: login(settings=kopf.OperatorSettings(), logger=LOG))
    name = f"kubeapi-{uuid.uuid4().hex[:8]}"
    path = "/api/v1/namespaces/default/secrets"
    try:
        created = await api.create(path, _secret(name))
        assert created["metadata"]["name"] == name
        read = await api.get(f"{path}/{name}")
        assert read["data"] == {"k": "dg=="}  # base64 of "v"
        patched = await api.merge_patch(f"{path}/{name}", {"metadata": {"annotations": {"a": "b"}}})
        assert patched["metadata"]["annotations"] == {"a": "b"}
        assert int(patched["metadata"]["resourceVersion"]) > int(read["metadata"]["resourceVersion"])

        with pytest.raises(ApiError) as again:
            await api.create(path, _secret(name))
        assert (again.value.status, again.value.reason) == (409, "AlreadyExists")
        with pytest.raises(ApiError) as missing:
            await api.get(f"{path}/{name}-missing")
        assert (missing.value.status, missing.value.reason) == (404, "NotFound")
        assert str(missing.value) == "HTTP 404 NotFound"  # the reason, never the server's message
    finally:
        await api.aclose()


async def test_a_refused_token_means_one_login_again(control_plane: Any) -> None:
    """A 401 (a rotated service-account token) makes it log in again once and repeat the call; the new
    credentials are then kept for the calls after."""
    tokens = iter(["not-a-token", control_plane.token(ADMIN_USER)])
    logins: list[str] = []

    def credentials() -> kopf.ConnectionInfo:
        logins.append(token := next(tokens))
        return _with_token(control_plane, token)

    api = KubeApi(credentials)
    try:
        assert (await api.get("/api/v1/namespaces/default"))["metadata"]["name"] == "default"
        assert len(logins) == 2
        await api.get("/api/v1/namespaces/default")
        assert len(logins) == 2
    finally:
        await api.aclose()


async def test_refused_after_logging_in_again_is_an_error(control_plane: Any) -> None:
    logins: list[int] = []

    def credentials() -> kopf.ConnectionInfo:
        logins.append(1)
        return _with_token(control_plane, "still-not-a-token")

    api = KubeApi(credentials)
    try:
        with pytest.raises(ApiError) as refused:
            await api.get("/api/v1/namespaces/default")
        assert refused.value.status == 401 and len(logins) == 2
    finally:
        await api.aclose()


async def test_no_server_is_a_transport_error() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = KubeApi(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="t"), timeout=2)
    try:
        with pytest.raises(httpx.ConnectError):
            await api.get("/api/v1/namespaces/default")
    finally:
        await api.aclose()


def test_the_controller_imports_kopf_without_the_kubernetes_models() -> None:
    """`obstop run` hides the installed kubernetes client while Kopf is imported (about 22 MiB of models Kopf
    would load only to recognise them), and leaves it importable afterwards (kubeapi.login's fallback)."""
    script = (
        "import sys\n"
        "from obstop.commands.run import import_kopf_without_kubernetes_models\n"
        "import_kopf_without_kubernetes_models()\n"
        "import obstop.controller.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))\n"
        "import kubernetes.config\n"
        "print('importable after')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "importable after"], done.stdout


@pytest.mark.parametrize(
    ("environ", "server"),
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "https://10.96.0.1:443"),
        ({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, "https://[fd00::1]:6443"),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, None),
        ({}, None),
    ],
)
def test_in_cluster_server_comes_from_the_kubelets_variables(
    environ: dict[str, str], server: str | None
) -> None:
    assert in_cluster_server(environ) == server
