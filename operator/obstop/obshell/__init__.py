"""The obshell agent client: authentication (hybrid RSA+AES), requests, DTOs, generic ids, errors.

A library with no knowledge of Kubernetes or Kopf.

Source citations in comments: `ob/...` paths are files of obshell itself, https://github.com/oceanbase/obshell
(master; `@hash` a commit); `obshell-sdk-python ...` is https://github.com/oceanbase/obshell-sdk-python.
"""

from obstop.obshell.address import AgentEndpoint, InvalidAddress, parse_endpoint
from obstop.obshell.client import KeyCache, ObshellClient, parse_envelope
from obstop.obshell.errors import (
    InvalidGenericId,
    ObshellApiError,
    ObshellError,
    ObshellProtocolError,
    ObshellTransportError,
)
from obstop.obshell.ids import GenericId, IdKind, agent_dag_id
from obstop.obshell.models import (
    AgentInfo,
    AgentStatus,
    DagDetail,
    DagOperator,
    DagState,
    NodeDetail,
    ObAgent,
    ObClusterInfo,
    ObInfo,
    ObServer,
    Scope,
    ScopeType,
    StopParams,
    TaskDetail,
)

__all__ = [
    "AgentEndpoint",
    "AgentInfo",
    "AgentStatus",
    "DagDetail",
    "DagOperator",
    "DagState",
    "GenericId",
    "IdKind",
    "InvalidAddress",
    "InvalidGenericId",
    "KeyCache",
    "NodeDetail",
    "ObAgent",
    "ObClusterInfo",
    "ObInfo",
    "ObServer",
    "ObshellApiError",
    "ObshellClient",
    "ObshellError",
    "ObshellProtocolError",
    "ObshellTransportError",
    "Scope",
    "ScopeType",
    "StopParams",
    "TaskDetail",
    "agent_dag_id",
    "parse_endpoint",
    "parse_envelope",
]
