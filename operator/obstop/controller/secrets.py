"""Reading the password (and CA bundle) Secret named by a request, in the request's namespace only.

A Secret is read whole, as the API server's JSON (its annotations decide where its values may go: agent_policy),
and a value is decoded only once that is settled, as SecretStr so that it cannot leak through a repr or a log
line.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from pydantic import SecretStr

from obstop.controller.kubeapi import ApiError, KubeApi

# With etcd down, kube-apiserver accepts a read and answers nothing for a minute or more: give up sooner, and
# retry with back-off like any other transient fault.
API_TIMEOUT_SECONDS = 15.0


class SecretUnavailable(Exception):
    """The Secret or its key cannot be read now; may resolve once someone creates it (a transient fault)."""


@dataclass(frozen=True)
class SecretData:
    """A Secret as read: where it is, its annotations, and its (still encoded) values."""

    namespace: str
    name: str
    annotations: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def value(self, key: str) -> SecretStr:
        if key not in self.data:
            raise SecretUnavailable(f"Secret {self.ref} has no key {key!r}")
        try:
            return SecretStr(base64.b64decode(self.data[key], validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            raise SecretUnavailable(f"Secret {self.ref} key {key!r} is not UTF-8 text") from None


class SecretReader:
    def __init__(self, api: KubeApi) -> None:
        self._api = api

    async def read(self, namespace: str, name: str) -> SecretData:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}"
        try:
            secret = await self._api.get(path, within=API_TIMEOUT_SECONDS)
        except ApiError as exc:
            if exc.status == 404:
                raise SecretUnavailable(f"Secret {namespace}/{name} not found") from None
            if exc.status == 403:
                raise SecretUnavailable(f"not allowed to read Secret {namespace}/{name} (RBAC)") from None
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: HTTP {exc.status}") from None
        except Exception as exc:  # no answer: the API server may be restarting
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: {type(exc).__name__}") from None
        metadata = secret.get("metadata") or {}
        return SecretData(
            namespace, name, dict(metadata.get("annotations") or {}), dict(secret.get("data") or {})
        )
