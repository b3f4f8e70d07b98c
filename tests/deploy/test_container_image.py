"""The container image, as far as it can be checked without a container engine (none runs here).

The Dockerfile is read as text and held to the chart (user, command, port); the wheel the builder stage makes
is built for real with pip from the files the build context holds (.dockerignore: the product, not the test kit),
and its console script is run from it: `run` and `stop` work, `sim` and `sandbox` say in one line what they need.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
Render = Callable[..., list[dict[str, Any]]]


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", text)
    result: list[list[tuple[str, str]]] = [[]]
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            result.append([])
        result[-1].append((instruction.upper(), rest.strip()))
    return result


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == name]


def controller_container(render: Render) -> dict[str, Any]:
    deployment = next(doc for doc in render() if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    return {"pod": pod, "container": pod["containers"][0]}


def test_dockerfile_is_multi_stage_with_a_pinned_base() -> None:
    preamble, *built = stages()
    assert len(built) == 2, "a builder stage and a final stage"
    (base_arg,) = instructions(preamble, "ARG")
    name, _, image = base_arg.partition("=")
    assert name == "PYTHON_IMAGE"
    # A full patch version (or a digest), never a floating tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    assert instructions(built[0], "FROM") == ["${PYTHON_IMAGE} AS builder"]
    assert instructions(built[1], "FROM") == ["${PYTHON_IMAGE}"]


def test_builder_makes_the_wheel_and_the_final_stage_copies_only_the_venv() -> None:
    builder, final = stages()[1:]
    (build,) = instructions(builder, "RUN")
    assert "pip wheel --no-deps" in build
    assert "python -m venv /opt/venv" in build
    assert instructions(final, "COPY") == ["--from=builder /opt/venv /opt/venv"]
    # The final stage's only RUN adds the passwd entry of the numeric user; no compilers, no sources.
    (run,) = instructions(final, "RUN")
    assert "useradd --uid 65532" in run
    assert not any("pip" in line for line in instructions(final, "RUN"))


def test_image_user_command_and_port_match_the_chart(render: Render) -> None:
    final = stages()[-1]
    (user,) = instructions(final, "USER")
    uid, _, gid = user.partition(":")
    (entrypoint,) = instructions(final, "ENTRYPOINT")
    (cmd,) = instructions(final, "CMD")
    (expose,) = instructions(final, "EXPOSE")
    chart = controller_container(render)
    security = chart["container"]["securityContext"]
    assert int(uid) == security["runAsUser"] == chart["pod"]["securityContext"]["runAsUser"] == 65532
    assert int(gid) == security["runAsGroup"]
    assert json.loads(entrypoint) == chart["container"]["command"] == ["obstop"]
    assert json.loads(cmd) == chart["container"]["args"] == ["run"]
    assert int(expose) == chart["container"]["ports"][0]["containerPort"]
    env = dict(line.split("=", 1) for line in " ".join(instructions(final, "ENV")).split())
    assert env["PATH"].startswith("/opt/venv/bin:"), "the console script is found through PATH"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only"


def test_image_labels_follow_the_oci_annotations() -> None:
    labels = " ".join(instructions(stages()[-1], "LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_the_context_to_what_the_wheel_is_built_from() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!pyproject.toml", "!README.md", "!operator/"}
    assert "operator/obstop/testing/" in lines, "the test kit stays out of the image"
    copied = {rest.split()[0] for rest in instructions(stages()[1], "COPY")}
    assert copied == {"pyproject.toml", "operator"}


@pytest.mark.slow
def test_the_wheel_builds_from_the_build_context_and_its_console_script_runs(tmp_path: Path) -> None:
    """pip builds the wheel in its isolated build environment (it fetches the pinned setuptools from the
    package index, as the image build does); then `obstop --help` runs from that wheel."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(ROOT / "operator", context / "operator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(context / "operator" / "obstop" / "testing")  # .dockerignore: the test kit is not sent
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0 and re.search(
        r"No matching distribution|NewConnectionError|Could not fetch", built.stderr
    ):
        pytest.skip(
            f"the package index is unreachable, so pip cannot fetch the build backend: {built.stderr[-300:]}"
        )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("ob_stop_operator-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "obstop/cli.py" in names and "obstop/py.typed" in names
    assert not any(name.startswith(("tests/", "operator/", "obstop/testing/")) for name in names)
    assert "obstop/controller/main.py" in names and "obstop/obshell/client.py" in names
    assert re.search(r"^obstop = obstop\.cli:main$", entry_points, re.MULTILINE)
    project = _pyproject()["project"]
    requires = {
        line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
    }
    assert set(project["dependencies"]) <= requires, "the image gets exactly the pinned runtime dependencies"

    # A pure-Python wheel is importable as a zip: run the console script's function from it, not from the
    # editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(wheel)}
    script = (
        "import sys, obstop, obstop.cli; "
        "assert obstop.__file__.startswith(sys.argv[1]), obstop.__file__; "
        "sys.argv = ['obstop', *sys.argv[2:]]; sys.exit(obstop.cli.main())"
    )

    def obstop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, str(wheel), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    for args in (["--help"], ["stop", "--help"], ["run", "--help"]):
        done = obstop(*args)
        assert done.returncode == 0, done.stderr
        assert "usage: obstop" in done.stdout
    assert "--health-port" in done.stdout
    # The test kit's commands, without it: one line naming the extra, no traceback.
    for args in (["sim", "--password", "pw"], ["sandbox"]):
        done = obstop(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"obstop {args[0]}: needs the test kit" in done.stderr
        assert "pip install 'ob-stop-operator[testing]'" in done.stderr, done.stderr


def _pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)
