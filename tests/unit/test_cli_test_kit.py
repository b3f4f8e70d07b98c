"""`obstop sim` and `obstop sandbox` need the test kit (obstop.testing); where it is missing (the controller
image) each says so in one line naming the `testing` extra, exits 2, and the other commands are unaffected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from obstop.commands import testkit

# The test kit made unimportable, as in the image (a None entry in sys.modules makes `import` fail).
WITHOUT_KIT = "import sys; sys.modules['obstop.testing'] = None; from obstop.cli import main; sys.exit(main(sys.argv[1:]))"


def obstop_without_kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_KIT, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("args", [("sim", "--password", "pw"), ("sandbox", "--timeout", "1")])
def test_a_test_kit_command_without_the_kit_says_so_in_one_line(args: tuple[str, ...]) -> None:
    done = obstop_without_kit(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"obstop {args[0]}: needs the test kit (the 'testing' extra)"), line
    assert line.endswith("pip install 'ob-stop-operator[testing]' on a workstation"), line


def test_the_product_commands_do_not_need_the_kit() -> None:
    for command in ("run", "stop", "sim", "sandbox"):
        done = obstop_without_kit(command, "--help")
        assert done.returncode == 0, done.stderr
        assert f"usage: obstop {command}" in done.stdout


def test_with_the_kit_nothing_is_missing() -> None:
    assert testkit.missing("sim") is None
