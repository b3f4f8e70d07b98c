"""`helm install`, `upgrade` and `uninstall` of the chart for real: the pinned Helm 4 (server-side apply, strict
field validation) against the session's kube-apiserver, for several value sets. No pods run (there is no
kubelet), so the objects the server stored are checked, and the Deployment's pod template is judged by Pod
Security `restricted` through a server-side dry-run of a Pod in a namespace that enforces it. Nothing is mocked.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_tools import CHART, ROOT, TOOLS, tool

from obstop.testing.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(180)

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "namespaced": ["--set", "watchNamespaces={team-a,team-b}"],
    "extra-env-and-resources": [
        "--set-json",
        'extraEnv=[{"name":"OBSTOP_LOG_LEVEL","value":"DEBUG"},{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]',
        "--set",
        "resources.requests.cpu=100m,resources.limits.memory=1Gi",
    ],
    "pdb": ["--set", "replicas=2,peering.enabled=true,podDisruptionBudget.enabled=true"],
    # OpenShift: the user ids left to the platform; the pod must still meet `restricted`.
    "openshift": ["--set", "runAsFixedUser=false"],
}


def run(name: str, *args: str, kubeconfig: Path, check: bool = True, stdin: str | None = None) -> str:
    """stdout and stderr together: helm says what it refused on stderr."""
    result = tool(name, *args, kubeconfig=kubeconfig, check=check, stdin=stdin)
    return result.stdout + result.stderr


def stored(cp: ControlPlane, namespace: str, release: str) -> dict[str, dict[str, Any]]:
    out = run(
        "kubectl",
        "get",
        "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "json",
        kubeconfig=cp.kubeconfig,
    )
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in json.loads(out)["items"]}


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=list(VALUE_SETS))
def test_install_upgrade_uninstall(control_plane: ControlPlane, values: str, tmp_path: Path) -> None:
    cp = control_plane
    namespace = f"helm-{secrets.token_hex(3)}"
    release = f"obstop-{values}"[:40]
    if values == "namespaced":  # the watched namespaces must exist: the chart puts a Role in each
        for watched in ("team-a", "team-b"):
            run("kubectl", "create", "namespace", watched, kubeconfig=cp.kubeconfig, check=False)
    args = [
        "--namespace",
        namespace,
        "--set",
        "image.repository=registry.invalid/obstop",
        *VALUE_SETS[values],
    ]
    run(
        "helm",
        "install",
        release,
        str(CHART),
        "--create-namespace",
        "--wait=hookOnly",
        *args,
        kubeconfig=cp.kubeconfig,
    )
    objects = stored(cp, namespace, release)
    (deployment,) = [o for k, o in objects.items() if k.startswith("Deployment/")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), names
    if values == "extra-env-and-resources":
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["OBSTOP_LOG_LEVEL"] == "DEBUG" and env["HTTPS_PROXY"] == "http://proxy:3128"
        assert container["resources"]["limits"]["memory"] == "1Gi"
    if values == "pdb":
        assert any(k.startswith("PodDisruptionBudget/") for k in objects)

    _passes_pod_security_restricted(cp, deployment, tmp_path)

    run(
        "helm",
        "upgrade",
        release,
        str(CHART),
        *args,
        "--set",
        "controller.logLevel=WARNING",
        kubeconfig=cp.kubeconfig,
    )
    upgraded = stored(cp, namespace, release)[f"Deployment/{deployment['metadata']['name']}"]
    env = {e["name"]: e.get("value") for e in upgraded["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OBSTOP_LOG_LEVEL"] == ("DEBUG" if values == "extra-env-and-resources" else "WARNING")

    run("helm", "uninstall", release, "--namespace", namespace, kubeconfig=cp.kubeconfig)
    assert stored(cp, namespace, release) == {}
    crd = run(
        "kubectl",
        "get",
        "crd",
        "obstoprequests.obshell.oceanbase.com",
        "-o",
        "name",
        kubeconfig=cp.kubeconfig,
    )
    assert crd.strip() == "customresourcedefinition.apiextensions.k8s.io/obstoprequests.obshell.oceanbase.com"


def _passes_pod_security_restricted(cp: ControlPlane, deployment: dict[str, Any], tmp_path: Path) -> None:
    """A Pod made of the Deployment's template, dry-run (server-side) in a namespace enforcing `restricted`."""
    enforcing = f"restricted-{secrets.token_hex(3)}"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": enforcing, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "controller",
            "namespace": enforcing,
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all([namespace]))
    run("kubectl", "apply", "-f", str(manifest), kubeconfig=cp.kubeconfig)
    manifest.write_text(yaml.safe_dump(pod))
    result = run(
        "kubectl", "apply", "--dry-run=server", "-f", str(manifest), kubeconfig=cp.kubeconfig, check=False
    )
    assert "created (server dry run)" in result, result
    # The check can fail: the same Pod running as root is refused by the same namespace.
    pod["spec"] = {
        **pod["spec"],
        "securityContext": {**pod["spec"].get("securityContext", {}), "runAsNonRoot": False},
    }
    manifest.write_text(yaml.safe_dump(pod))
    refused = run(
        "kubectl", "apply", "--dry-run=server", "-f", str(manifest), kubeconfig=cp.kubeconfig, check=False
    )
    assert 'violates PodSecurity "restricted' in refused, refused


def test_releases_with_peering_share_kopfs_crds(control_plane: ControlPlane) -> None:
    """Kopf's peering CRDs are kept at uninstall (other operators may use them) and owned by the release that
    made them: a second release, or a re-install under another name, must install without an ownership
    conflict, leaving them alone."""
    cp = control_plane
    peering = [
        "--set",
        "replicas=2,peering.enabled=true",
        "--set",
        "image.repository=registry.invalid/obstop",
    ]
    releases = [(f"peer-a-{secrets.token_hex(2)}", f"ns-a-{secrets.token_hex(3)}")]
    releases.append((f"peer-b-{secrets.token_hex(2)}", f"ns-b-{secrets.token_hex(3)}"))
    for release, namespace in releases:
        run(
            "helm",
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--create-namespace",
            *peering,
            kubeconfig=cp.kubeconfig,
        )
    for release, namespace in releases:
        run("helm", "uninstall", release, "-n", namespace, kubeconfig=cp.kubeconfig)
    crds = run("kubectl", "get", "crd", "-o", "name", kubeconfig=cp.kubeconfig)
    assert "clusterkopfpeerings.kopf.dev" in crds and "kopfpeerings.kopf.dev" in crds
    again = f"peer-c-{secrets.token_hex(2)}"
    run("helm", "install", again, str(CHART), "-n", releases[0][1], *peering, kubeconfig=cp.kubeconfig)
    run("helm", "uninstall", again, "-n", releases[0][1], kubeconfig=cp.kubeconfig)


def test_the_documented_crd_upgrade_keeps_later_installs_working(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """docs/install.md and NOTES.txt: `helm show crds CHART | kubectl apply --server-side --field-manager=helm
    --force-conflicts -f -` upgrades a CRD that Helm 4 installed, and a later `helm install` still works. Helm 4
    applies crds/ server-side as manager "helm" at every install: an upgrade applied under kubectl's own manager
    made the next install fail ("conflict with \"kubectl\": .spec.versions"); --force-conflicts takes back
    fields some other manager may hold."""
    cp = control_plane
    namespace = f"crd-{secrets.token_hex(3)}"
    chart = tmp_path / "chart"
    subprocess.run(["cp", "-rL", str(CHART), str(chart)], check=True)
    image = ("--set", "image.repository=registry.invalid/obstop")
    run(
        "helm",
        "install",
        "crd-upgrade",
        str(chart),
        "-n",
        namespace,
        "--create-namespace",
        *image,
        kubeconfig=cp.kubeconfig,
    )
    crd_file = next((chart / "crds").glob("*.yaml"))
    original_text = crd_file.read_text()
    crd = yaml.safe_load(original_text)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] += " (upgraded)"
    crd_file.write_text(yaml.safe_dump(crd))
    show = tool("helm", "show", "crds", str(chart), kubeconfig=cp.kubeconfig).stdout
    apply = ("kubectl", "apply", "--server-side", "--field-manager=helm")
    try:
        run(*apply, "--force-conflicts", "-f", "-", stdin=show, kubeconfig=cp.kubeconfig)
        stored_crd = json.loads(
            run("kubectl", "get", "crd", crd["metadata"]["name"], "-o", "json", kubeconfig=cp.kubeconfig)
        )
        assert stored_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"].endswith(
            "(upgraded)"
        )
        # Another release of the upgraded chart installs; so does a release named like a YAML boolean.
        for release in ("after-upgrade", "y"):
            run("helm", "install", release, str(chart), "-n", namespace, *image, kubeconfig=cp.kubeconfig)
            run("helm", "uninstall", release, "-n", namespace, kubeconfig=cp.kubeconfig)
    finally:
        crd_file.write_text(original_text)
        run(*apply, "--force-conflicts", "-f", str(crd_file), kubeconfig=cp.kubeconfig)
        run("helm", "uninstall", "crd-upgrade", "-n", namespace, kubeconfig=cp.kubeconfig, check=False)


def test_a_release_name_that_makes_an_invalid_service_name_is_refused_up_front(
    control_plane: ControlPlane,
) -> None:
    """Helm accepts release names that start with a digit; a Service name must start with a letter. The install
    failed half-way on the server; it now fails before anything is created, saying what to change."""
    cp = control_plane
    namespace = f"digits-{secrets.token_hex(3)}"
    out = run(
        "helm", "install", "1stop", str(CHART), "-n", namespace, "--create-namespace",
        "--set", "image.repository=registry.invalid/obstop", kubeconfig=cp.kubeconfig, check=False,
    )  # fmt: skip
    assert "must start with a letter" in out and "fullnameOverride" in out, out
    assert stored(cp, namespace, "1stop") == {}
    ok = (
        "helm",
        "install",
        "1stop",
        str(CHART),
        "-n",
        namespace,
        "--create-namespace",
        "--set",
        "fullnameOverride=stop-1",
    )
    run(*ok, "--set", "image.repository=registry.invalid/obstop", kubeconfig=cp.kubeconfig)
    assert "Service/stop-1" in stored(cp, namespace, "1stop")
    run("helm", "uninstall", "1stop", "-n", namespace, kubeconfig=cp.kubeconfig)


def test_the_install_docs_secret_command_stores_the_password_exactly(control_plane: ControlPlane) -> None:
    """docs/install.md's Secret command, run as written (the typed `read` replaced by the variable it sets):
    the stored value is the password, with no trailing newline (obshell would refuse it for good)."""
    docs = (ROOT / "docs" / "install.md").read_text()
    start = docs.index('printf %s "$OB_PASSWORD"')
    command = docs[start : docs.index("/dev/stdin", start) + len("/dev/stdin")].replace("\\\n", " ")
    namespace = f"docs-{secrets.token_hex(3)}"
    run("kubectl", "create", "namespace", namespace, kubeconfig=control_plane.kubeconfig)
    command = command.replace(
        "kubectl -n ops", f"{TOOLS / 'kubectl'} --kubeconfig {control_plane.kubeconfig} -n {namespace}"
    )
    password = "docs-" + secrets.token_urlsafe(12)
    subprocess.run(
        ["bash", "-c", command], env={**os.environ, "OB_PASSWORD": password}, check=True, capture_output=True
    )
    stored = run(
        "kubectl", "get", "secret", "obshell-root", "-n", namespace, "-o", "jsonpath={.data.password}",
        kubeconfig=control_plane.kubeconfig,
    )  # fmt: skip
    assert base64.b64decode(stored).decode() == password
