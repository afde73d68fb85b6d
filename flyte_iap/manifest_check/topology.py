"""How the checked objects connect: Ingress paths -> Service ports -> BackendConfigs, pods, listeners.

Example::

    topology = Topology(Index(manifests))
    for ingress in topology.iap_ingresses:
        for backend in topology.backends(ingress):
            topology.backend_config(backend)  # the BackendConfig GKE applies to that port

Computed once per check and shared by the rules, so each rule stays a short function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check.gateway import GatewayTopology
from flyte_iap.manifest_check.index import Index
from flyte_iap.manifest_check.loader import Manifest


@dataclass(frozen=True)
class Backend:
    """One Service port behind an Ingress path."""

    service: Manifest
    position: int
    port: Mapping[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return id(self.service), self.position

    @property
    def label(self) -> str:
        """``80/http`` style: number and name of the Service port."""
        name = self.port.get("name")
        number = self.port.get("port")
        return f"{number}/{name}" if name else str(number)

    @property
    def field(self) -> tuple[str | int, ...]:
        return ("spec", "ports", self.position)


@dataclass(frozen=True)
class BackendConfigRef:
    """The BackendConfig GKE applies to one Service port: its name and the object (if in the input)."""

    name: str
    config: Manifest | None


def port_label(port: Mapping[str, Any]) -> str:
    name = port.get("name")
    return f"{port.get('port')}/{name}" if name else str(port.get("port"))


def service_ports(service: Manifest) -> list[Mapping[str, Any]]:
    ports = service.spec.get("ports")
    return [p for p in (ports if isinstance(ports, list) else []) if isinstance(p, Mapping)]


def iap_enabled(config: Manifest) -> bool:
    iap = config.spec.get("iap")
    return isinstance(iap, Mapping) and iap.get("enabled") is True


class Topology:
    """Derived relations between the objects of one check."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.ingresses = index.of_kind("Ingress")
        # An Ingress written for GKE that the controller skips only because it sets
        # spec.ingressClassName (IAP003) is checked as GKE will see it once that is fixed, so one run
        # reports every independent finding. (A class annotation naming another controller may be
        # the intent, and the GKE annotations the mistake: such an Ingress is not.)
        self.gce_ingresses = [
            i
            for i in self.ingresses
            if not gce.other_cloud(i)
            and (gce.is_gce_ingress(i) or (gce.meant_for_gce(i) and gce.class_annotation(i) is None))
        ]
        self._routes = {id(i): gce.routes(i) for i in self.ingresses}
        self._components: dict[int, str | None] = {}
        self._backends: dict[int, list[tuple[Backend, list[gce.Route]]]] = {}
        self._route_backends: dict[int, Backend | None] = {}

    def routes(self, ingress: Manifest) -> list[gce.Route]:
        return self._routes[id(ingress)]

    def service(self, route: gce.Route) -> Manifest | None:
        return self.index.find("Service", route.service, route.ingress.namespace)

    def backend(self, route: gce.Route) -> Backend | None:
        """The Service port a route reaches (``None`` if the Service or the port is not in the input)."""
        key = id(route)
        if key not in self._route_backends:
            self._route_backends[key] = self._backend(route)
        return self._route_backends[key]

    def _backend(self, route: gce.Route) -> Backend | None:
        service = self.service(route)
        if service is None:
            return None
        found = gce.service_port(service, route.port)
        if found is None:
            return None
        return Backend(service, found[0], found[1])

    def backends(self, ingress: Manifest) -> list[tuple[Backend, list[gce.Route]]]:
        """Distinct Service ports the Ingress routes to, each with the routes that reach it."""
        key = id(ingress)
        if key not in self._backends:
            out: dict[tuple[int, int], tuple[Backend, list[gce.Route]]] = {}
            for route in self.routes(ingress):
                backend = self.backend(route)
                if backend is not None:
                    out.setdefault(backend.key, (backend, []))[1].append(route)
            self._backends[key] = list(out.values())
        return list(self._backends[key])

    def component(self, service: Manifest) -> str | None:
        key = id(service)
        if key not in self._components:
            self._components[key] = flyte.component(service, self.index)
        return self._components[key]

    @cached_property
    def _flyte_routed(self) -> set[int]:
        """Services some Ingress routes Flyte's paths (``/console``, ``/api``, gRPC, ...) to."""
        routed = set()
        for ingress in self.ingresses:
            for route in self.routes(ingress):
                if flyte.path_kind(route.path) is not None:
                    service = self.service(route)
                    if service is not None:
                        routed.add(id(service))
        return routed

    def is_flyte(self, service: Manifest) -> bool:
        """Whether a Service fronts Flyte: by labels, name or pod image, or by the paths routed to it."""
        return self.component(service) is not None or id(service) in self._flyte_routed

    def serves_flyte(self, service: Manifest) -> bool:
        """Like :meth:`is_flyte`, but false for the flyte-binary's webhook and other non-serving Services."""
        if not self.is_flyte(service):
            return False
        if self.component(service) not in flyte.ADMIN_COMPONENTS:
            return True
        if id(service) in self._flyte_routed:
            return True
        return any(self.flyte_serving_port(service, port) for port in service_ports(service))

    def flyte_serving_port(self, service: Manifest, port: Mapping[str, Any]) -> bool:
        """Whether a port of a Flyte Service is one the charts route to (HTTP, gRPC, console)."""
        component = self.component(service)
        if component in flyte.ADMIN_COMPONENTS:
            listener = flyte.admin_listener(service, port, self.index)
            return listener is not None and listener.role in ("http", "grpc")
        if component == "flyteconsole":
            return "metrics" not in str(port.get("name") or "")
        return component is not None

    def backend_config(self, backend: Backend) -> BackendConfigRef | None:
        """The BackendConfig for a backend port (``None``: no usable annotation or none applies)."""
        annotation = gce.backend_config_annotation(backend.service)
        if annotation is None or annotation.error is not None:
            return None
        name = gce.backend_config_name(annotation.value, backend.port)
        if name is None:
            return None
        return BackendConfigRef(name, self.index.find("BackendConfig", name, backend.service.namespace))

    @cached_property
    def iap_ingresses(self) -> list[Manifest]:
        """GCE Ingresses that must be behind IAP: they serve Flyte, or some backend already has IAP on."""
        out = []
        for ingress in self.gce_ingresses:
            for backend, routes in self.backends(ingress):
                ref = self.backend_config(backend)
                if (
                    self.is_flyte(backend.service)
                    or any(flyte.path_kind(r.path) for r in routes)
                    or (ref is not None and ref.config is not None and iap_enabled(ref.config))
                ):
                    out.append(ingress)
                    break
            else:
                if any(flyte.path_kind(r.path) for r in self.routes(ingress)):
                    out.append(ingress)
        return out

    @cached_property
    def ingress_backend_services(self) -> set[int]:
        """Services some GKE Ingress in the input routes to."""
        return {id(b.service) for i in self.gce_ingresses for b, _ in self.backends(i)}

    @cached_property
    def protected_pods(self) -> dict[tuple[int, tuple[str | int, ...]], str]:
        """Pod templates that must be reached only through IAP, with why (for messages).

        Those behind a Service that serves Flyte, and those behind a GKE Ingress backend whose
        BackendConfig turns IAP on.
        """
        out: dict[tuple[int, tuple[str | int, ...]], str] = {}
        for ingress in self.gce_ingresses:
            for backend, _ in self.backends(ingress):
                ref = self.backend_config(backend)
                if ref is None or ref.config is None or not iap_enabled(ref.config):
                    continue
                for pod in self.index.pods_for(backend.service):
                    out.setdefault(
                        (id(pod.workload), pod.path),
                        f"IAP protects through {ingress.ref} and {backend.service.ref}",
                    )
        for service in self.index.of_kind("Service"):
            if self.serves_flyte(service):
                what = self.component(service) or "Flyte"
                for pod in self.index.pods_for(service):
                    out.setdefault((id(pod.workload), pod.path), f"serve {what}")
        return out

    def is_admin_backend(self, backend: Backend | None, route: gce.Route | None = None) -> bool:
        """Whether a backend is flyteadmin (or the flyte-binary), by identity or by the paths sent to it."""
        if backend is not None and self.component(backend.service) in flyte.ADMIN_COMPONENTS:
            return True
        return route is not None and flyte.path_kind(route.path) in ("admin", "grpc") and backend is not None

    @cached_property
    def gateway(self) -> GatewayTopology:
        """Gateways, HTTPRoutes and GKE's policies (see :mod:`.gateway`)."""
        return GatewayTopology(self.index)
