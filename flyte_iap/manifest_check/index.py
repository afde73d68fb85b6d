"""The object index: find manifests by kind, name and namespace, and the pods a Service selects.

Example::

    index = Index(load_text(text, "rendered.yaml"))
    service = index.find("Service", "flyteadmin", namespace="flyte")
    for workload, pod in index.pods_for(service):
        ...

A manifest without ``metadata.namespace`` is applied into whatever namespace ``kubectl -n`` or
``helm -n`` names, so it matches a reference from any namespace (and an object in any namespace
matches a reference from it): checking a user's files must not invent cross-namespace mistakes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flyte_iap.manifest_check.loader import FieldPath, Manifest

#: kind -> the API groups in which that kind means what these checks expect.
KIND_GROUPS: dict[str, frozenset[str]] = {
    "Service": frozenset({""}),
    "Secret": frozenset({""}),
    "ConfigMap": frozenset({""}),
    "Pod": frozenset({""}),
    "Namespace": frozenset({""}),
    "Ingress": frozenset({"networking.k8s.io", "extensions"}),
    "Deployment": frozenset({"apps", "extensions"}),
    "StatefulSet": frozenset({"apps"}),
    "DaemonSet": frozenset({"apps", "extensions"}),
    "ReplicaSet": frozenset({"apps", "extensions"}),
    "BackendConfig": frozenset({"cloud.google.com"}),
    "FrontendConfig": frozenset({"networking.gke.io"}),
    "ManagedCertificate": frozenset({"networking.gke.io"}),
    "Gateway": frozenset({"gateway.networking.k8s.io"}),
    "HTTPRoute": frozenset({"gateway.networking.k8s.io"}),
    "ReferenceGrant": frozenset({"gateway.networking.k8s.io"}),
    "GCPBackendPolicy": frozenset({"networking.gke.io"}),
    "HealthCheckPolicy": frozenset({"networking.gke.io"}),
    "GCPGatewayPolicy": frozenset({"networking.gke.io"}),
}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod")


def same_namespace(a: str | None, b: str | None) -> bool:
    """Whether objects in namespaces ``a`` and ``b`` can refer to each other (``None`` = unset)."""
    return a is None or b is None or a == b


@dataclass(frozen=True)
class PodTemplate:
    """The pod a workload runs: its labels and spec, and where they sit in the workload's manifest."""

    workload: Manifest
    path: FieldPath

    @property
    def labels(self) -> Mapping[str, str]:
        labels = self.workload.get(*self.path, "metadata", "labels")
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.workload.get(*self.path, "spec")
        return spec if isinstance(spec, Mapping) else {}

    def containers(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """``(position, container)`` for each regular container."""
        containers = self.spec.get("containers")
        for position, container in enumerate(containers if isinstance(containers, list) else []):
            if isinstance(container, Mapping):
                yield position, container

    def container_path(self, position: int, *rest: str | int) -> FieldPath:
        return (*self.path, "spec", "containers", position, *rest)


def identity(obj: Manifest) -> tuple[str, str, str, str] | None:
    """What makes two manifests the same object for ``kubectl apply`` (``None``: no name to tell)."""
    name = obj.metadata.get("name")
    if not name:
        return None
    return obj.kind, obj.group, obj.namespace or "", str(name)


class Index:
    """Manifests by kind, for lookups by name and namespace.

    An object defined more than once in the input (the same kind, namespace and name) is looked up
    as its last definition, the one ``kubectl apply`` leaves in the cluster; ``duplicates`` lists the
    earlier definitions with the one that replaces them.
    """

    def __init__(self, manifests: Iterable[Manifest]) -> None:
        self.objects: list[Manifest] = list(manifests)
        self._by_kind: dict[str, list[Manifest]] = defaultdict(list)
        self.duplicates: list[tuple[Manifest, Manifest]] = []
        last: dict[tuple[str, str, str, str], Manifest] = {}
        for obj in self.objects:
            key = identity(obj)
            if key is not None:
                earlier = last.get(key)
                if earlier is not None:
                    self.duplicates.append((earlier, obj))
                last[key] = obj
        replaced = {id(earlier) for earlier, _ in self.duplicates}
        # Lookups by name and by pod label are hashed: a check must stay linear in the input's size.
        self._by_name: dict[tuple[str, str], list[Manifest]] = defaultdict(list)
        self._templates_by_label: dict[tuple[str, str], list[tuple[PodTemplate, Mapping[str, str]]]] = (
            defaultdict(list)
        )
        self._pods: dict[int, list[PodTemplate]] = {}
        self._names: dict[tuple[str, str | None], list[str]] = {}
        for obj in self.objects:
            if id(obj) in replaced:
                continue
            groups = KIND_GROUPS.get(obj.kind)
            if groups is not None and obj.group in groups:
                self._by_kind[obj.kind].append(obj)
                self._by_name[(obj.kind, obj.name)].append(obj)
        for kind in WORKLOAD_KINDS:
            for workload in self._by_kind.get(kind, ()):
                template = PodTemplate(workload, () if kind == "Pod" else ("spec", "template"))
                labels = template.labels
                for pair in labels.items():
                    self._templates_by_label[pair].append((template, labels))

    def of_kind(self, kind: str) -> list[Manifest]:
        """Every object of ``kind`` (in the API groups of :data:`KIND_GROUPS`), in input order."""
        return list(self._by_kind.get(kind, ()))

    def find(self, kind: str, name: str, namespace: str | None) -> Manifest | None:
        """The object of ``kind`` named ``name`` that an object in ``namespace`` can refer to."""
        for obj in self._by_name.get((kind, name), ()):
            if same_namespace(obj.namespace, namespace):
                return obj
        return None

    def names(self, kind: str, namespace: str | None) -> list[str]:
        """The distinct names of the objects of ``kind`` that an object in ``namespace`` can refer to."""
        key = (kind, namespace)
        if key not in self._names:
            found = (o.name for o in self._by_kind.get(kind, ()) if same_namespace(o.namespace, namespace))
            self._names[key] = list(dict.fromkeys(found))
        return self._names[key]

    def has_any(self, kind: str, namespace: str | None) -> bool:
        """Whether the input holds any object of ``kind`` that ``namespace`` can see."""
        return any(same_namespace(o.namespace, namespace) for o in self._by_kind.get(kind, ()))

    def pods_for(self, service: Manifest) -> list[PodTemplate]:
        """The pod templates (of Deployments, StatefulSets, ...) that ``service``'s selector matches."""
        key = id(service)
        if key not in self._pods:
            self._pods[key] = self._select(service)
        return list(self._pods[key])

    def _select(self, service: Manifest) -> list[PodTemplate]:
        selector = service.spec.get("selector")
        if not isinstance(selector, Mapping) or not selector:
            return []
        wanted = {str(k): str(v) for k, v in selector.items()}
        # Candidates carry the selector's first label; the others are checked on each.
        first = next(iter(wanted.items()))
        return [
            template
            for template, labels in self._templates_by_label.get(first, ())
            if same_namespace(template.workload.namespace, service.namespace)
            and all(labels.get(k) == v for k, v in wanted.items())
        ]
