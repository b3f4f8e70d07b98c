"""The emulated Kubernetes API server that Kopf, the `kubernetes` client and kubectl talk to in tests.

In an event loop::

    async with EmulatedApiServer() as server:
        server.write_kubeconfig(tmp_path / "kubeconfig")

From synchronous tests (e.g. with `kopf.testing.KopfRunner`, which blocks)::

    with ApiServerThread() as api:
        os.environ["KUBECONFIG"] = str(api.kubeconfig)  # before anything imports `kubernetes`

As a separate process: `python -m obstop.testing.kube --port P --kubeconfig PATH` (prints `ready <url>`).
"""

from obstop.testing.kube.calls import ApiCall, CallLog, Fault, Faults
from obstop.testing.kube.errors import ApiError
from obstop.testing.kube.resources import ResourceInfo
from obstop.testing.kube.server import EmulatedApiServer, write_kubeconfig
from obstop.testing.kube.store import Admitter, Store
from obstop.testing.kube.thread import ApiServerThread

__all__ = [
    "Admitter",
    "ApiCall",
    "ApiError",
    "ApiServerThread",
    "CallLog",
    "EmulatedApiServer",
    "Fault",
    "Faults",
    "ResourceInfo",
    "Store",
    "write_kubeconfig",
]
