"""What the emulated server serves: built-in resources and those of CustomResourceDefinitions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class ResourceInfo:
    """One served resource in one version (a CRD with two served versions gives two)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    crd_name: str | None = None  # set for custom resources: the CRD's metadata.name

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are shared by all versions of a resource (no conversion: only apiVersion changes)."""
        return self.group, self.plural

    @property
    def qualified_name(self) -> str:
        """As in the server's messages: `obstoprequests.obshell.oceanbase.com`, or `secrets` for core."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery_entries(self) -> list[dict[str, Any]]:
        main = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries: list[dict[str, Any]] = [main]
        for subresource in sorted(self.subresources):
            entries.append(
                {
                    "name": f"{self.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        return entries


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short_names: Iterable[str] = (),
    categories: Iterable[str] = (),
    subresources: Iterable[str] = (),
) -> ResourceInfo:
    return ResourceInfo(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=tuple(short_names),
        categories=tuple(categories),
        subresources=frozenset(subresources),
    )


# Only what an operator, its tests, kubectl and Helm touch; all stored as plain objects (no controllers).
BUILTIN_RESOURCES: tuple[ResourceInfo, ...] = (
    _builtin(
        "", "v1", "namespaces", "Namespace", namespaced=False, short_names=["ns"], subresources=["status"]
    ),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "configmaps", "ConfigMap", short_names=["cm"]),
    _builtin("", "v1", "events", "Event", short_names=["ev"]),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short_names=["sa"]),
    _builtin(
        "", "v1", "services", "Service", short_names=["svc"], categories=["all"], subresources=["status"]
    ),
    _builtin("", "v1", "pods", "Pod", short_names=["po"], categories=["all"], subresources=["status"]),
    _builtin("events.k8s.io", "v1", "events", "Event", short_names=["ev"]),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=["deploy"],
        categories=["all"],
        subresources=["status"],
    ),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=["crd", "crds"],
        categories=["api-extensions"],
        subresources=["status"],
    ),
)


def resources_of_crd(crd: Mapping[str, Any]) -> list[ResourceInfo]:
    """The resources a CRD serves: one per served version."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    infos: list[ResourceInfo] = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = frozenset(version.get("subresources", {}) or {})
        infos.append(
            ResourceInfo(
                group=group,
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names["kind"].lower(),
                short_names=tuple(names.get("shortNames", ()) or ()),
                categories=tuple(names.get("categories", ()) or ()),
                subresources=subresources,
                printer_columns=tuple(version.get("additionalPrinterColumns", ()) or ()),
                crd_name=crd.get("metadata", {}).get("name"),
            )
        )
    return infos


def crd_status(crd: Mapping[str, Any]) -> dict[str, Any]:
    """The status a real server gives an accepted CRD (what `kubectl wait --for=condition=Established` reads)."""
    spec = crd.get("spec", {})
    names = dict(spec.get("names", {}))
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    conditions = [
        {
            "type": condition_type,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": crd.get("metadata", {}).get("creationTimestamp"),
        }
        for condition_type, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [version["name"] for version in spec.get("versions", []) if version.get("storage")]
    return {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}
