"""Settings from the environment and the controller's own check of a spec."""

from __future__ import annotations

import pytest

from obstop.controller.resource import InvalidSpec, parse_spec
from obstop.controller.settings import Settings, SettingsError


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {"OBSTOP_NAMESPACES": "a, b", "OBSTOP_POLL_MAX_SECONDS": "3", "OBSTOP_LOG_FORMAT": "json"}
    )
    assert settings.namespaces == ("a", "b")
    assert settings.poll_max_seconds == 3.0
    assert settings.log_format == "json"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OBSTOP_POLL_MAX_SECONDS": "soon"}, "OBSTOP_POLL_MAX_SECONDS='soon' is not a valid float"),
        ({"OBSTOP_LOG_FORMAT": "xml"}, "text or json"),
        ({"OBSTOP_POLL_MIN_SECONDS": "20"}, "must not exceed"),
        ({"OBSTOP_AGENT_CONCURRENCY": "0"}, "at least 1"),
        ({"OBSTOP_STEPS_IN_FLIGHT": "0"}, "at least 1"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


GOOD = {
    "obshell": {"address": "10.0.0.1:2886", "passwordSecretRef": {"name": "s"}},
    "scope": {"type": "GLOBAL"},
    "force": True,
}


def test_valid_spec_becomes_stop_params() -> None:
    spec = parse_spec(GOOD | {"forcePassDag": ["22130706433028869"]})
    assert spec.obshell.password_secret_ref.key == "password"
    assert spec.stop_params().to_wire() == {
        "scope": {"type": "GLOBAL", "target": []},
        "force": True,
        "terminate": False,
        "forcePassDag": {"id": ["22130706433028869"]},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"force": False}, "GLOBAL stop needs force or terminate"),
        ({"terminate": True}, "force and terminate cannot both be set"),
        ({"scope": {"type": "ZONE"}}, "at least one zone"),
        ({"scope": {"type": "SERVER", "target": ["10.0.0.1:99999"]}}, "port"),
        ({"scope": {"type": "ZONE", "target": ["z1", "z1"]}}, "duplicate"),
        ({"scope": {"type": "CLUSTER"}}, "spec.scope.type"),
        ({"obshell": {"address": "ftp://x", "passwordSecretRef": {"name": "s"}}}, "scheme"),
        ({"forcePassDag": ["9x"]}, "Invalid ID"),
    ],
)
def test_invalid_spec_is_explained(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(GOOD | change)
