"""For tests that drive Controller.step by hand: the one stand-in they need.

The Secret reader is the only part of a step that would need a Kubernetes API server; everything between the
step and the agent stays real (HTTP on loopback to the simulator, or to a fake agent)."""

from __future__ import annotations

import base64

from obstop.controller.agent_policy import ALLOWED_AGENTS
from obstop.controller.secrets import SecretData


class StaticSecrets:
    """Stands in for SecretReader: every Secret holds `password`, released to loopback agents."""

    def __init__(self, password: str) -> None:
        self._encoded = base64.b64encode(password.encode()).decode()

    def __repr__(self) -> str:
        return "StaticSecrets(password=***)"

    async def read(self, namespace: str, name: str) -> SecretData:
        return SecretData(namespace, name, {ALLOWED_AGENTS: "127.0.0.0/8:*"}, {"password": self._encoded})
