"""ob-stop-operator: stop OceanBase clusters, zones or servers from Kubernetes through the obshell agent."""

__version__ = "0.1.0"
