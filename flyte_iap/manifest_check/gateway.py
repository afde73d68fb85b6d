"""How GKE's Gateway controller reads Gateways, HTTPRoutes and the GKE policies attached to Services.

Example::

    from flyte_iap.manifest_check.gateway import GatewayTopology
    from flyte_iap.manifest_check.index import Index
    from flyte_iap.manifest_check.loader import load_text

    topology = GatewayTopology(Index(load_text(text, "gateway.yaml")))
    for route in topology.gke_routes:
        for backend in topology.backends(route):
            service = topology.service(backend)
            if service is not None:
                policy = topology.backend_policy(service)  # where IAP is turned on for it

Facts encoded here, with where they come from:

* The policy kinds, their fields and their targets: GoogleCloudPlatform/gke-gateway-api@v1.4.0
  ``apis/networking/v1/gcpbackendpolicy_types.go`` (``spec.default.iap``: ``enabled``,
  ``oauth2ClientSecret.name``, ``clientID``; "If true, the ClientID and Oauth2ClientSecret fields must be
  non-empty"), ``healthcheck_types.go`` and ``gcpgatewaypolicy_types.go`` (``targetRef`` is a
  ``NamespacedPolicyTargetReference``: group, kind, name, optional namespace).
* Route attachment, hostnames and redirects: kubernetes-sigs/gateway-api@v1.4.0 ``apis/v1``
  (``parentRefs`` default to kind Gateway in the route's namespace; ``sectionName`` picks one listener;
  a route without ``hostnames`` takes the listener's; a listener's ``allowedRoutes.namespaces`` decides
  which namespaces' routes attach, ``Same`` by default; a backendRef to another namespace needs a
  ReferenceGrant there, ``apis/v1beta1/referencegrant_types.go``).
* GKE reads IAP and health checks for Gateways from GCPBackendPolicy and HealthCheckPolicy, not from
  BackendConfig ("Do not configure BackendConfig": Google's IAP docs, iap/docs/enabling-kubernetes-howto);
  the policies must be in the namespace of the Service they target, and a GCPGatewayPolicy targets a
  Gateway (GKE docs, kubernetes-engine/docs/how-to/configure-gateway-resources).
* A Gateway takes certificates from ``tls.certificateRefs`` (Secrets only), the
  ``networking.gke.io/pre-shared-certs`` TLS option or the ``networking.gke.io/certmap`` annotation
  (Certificate Manager); the annotation cannot be combined with ``certificateRefs`` (GKE docs,
  kubernetes-engine/docs/how-to/secure-gateway).
  ManagedCertificate is for Ingress only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flyte_iap.manifest_check.index import Index
from flyte_iap.manifest_check.loader import FieldPath, Manifest

GATEWAY_GROUP = "gateway.networking.k8s.io"
GKE_GROUP = "networking.gke.io"
CERTMAP_ANNOTATION = "networking.gke.io/certmap"
PRE_SHARED_CERTS_OPTION = "networking.gke.io/pre-shared-certs"

#: GatewayClasses of GKE's Gateway controller (gatewayclass-capabilities page), by load balancer scope.
EXTERNAL_CLASSES = frozenset(
    {
        "gke-l7-global-external-managed",
        "gke-l7-global-external-managed-mc",
        "gke-l7-regional-external-managed",
        "gke-l7-regional-external-managed-mc",
        "gke-l7-gxlb",
        "gke-l7-gxlb-mc",
    }
)
INTERNAL_CLASSES = frozenset({"gke-l7-rilb", "gke-l7-rilb-mc", "gke-l7-cross-regional-internal-managed-mc"})
GKE_CLASSES = EXTERNAL_CLASSES | INTERNAL_CLASSES

#: Path prefix of Flyte 2's API services (flyteorg/flyte@v2.0.43:charts/flyte-binary/templates/_helpers.tpl,
#: ``flyte-binary.ingress.apiPaths``). The console's ``/v2`` is too common a path to tell Flyte by.
FLYTE2_PATH_PREFIXES = ("/flyteidl2.",)


@dataclass(frozen=True)
class Listener:
    """One entry of a Gateway's ``spec.listeners``."""

    gateway: Manifest
    position: int
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("name") or "")

    @property
    def protocol(self) -> str:
        return str(self.body.get("protocol") or "").upper()

    @property
    def port(self) -> object:
        return self.body.get("port")

    @property
    def hostname(self) -> str | None:
        value = self.body.get("hostname")
        return str(value) if value else None

    @property
    def tls(self) -> Mapping[str, Any]:
        tls = self.body.get("tls")
        return tls if isinstance(tls, Mapping) else {}

    @property
    def field(self) -> FieldPath:
        return ("spec", "listeners", self.position)


@dataclass(frozen=True)
class BackendRef:
    """One ``backendRefs`` entry of an HTTPRoute rule that names a Service."""

    route: Manifest
    rule: int
    position: int
    name: str
    namespace: str | None
    port: object

    @property
    def field(self) -> FieldPath:
        return ("spec", "rules", self.rule, "backendRefs", self.position)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    """A name-like field as text (``None`` when unset); hostile non-scalars become their repr."""
    return str(value) if value not in (None, "") else None


def gateway_class(gateway: Manifest) -> str | None:
    value = gateway.spec.get("gatewayClassName")
    return str(value) if value else None


def is_gke_gateway(gateway: Manifest) -> bool:
    return gateway_class(gateway) in GKE_CLASSES


def listeners(gateway: Manifest) -> list[Listener]:
    return [
        Listener(gateway, n, item)
        for n, item in enumerate(_list(gateway.spec.get("listeners")))
        if isinstance(item, Mapping)
    ]


def route_hostnames(route: Manifest) -> list[str]:
    return [str(h) for h in _list(route.spec.get("hostnames")) if h]


def hostname_matches(listener_host: str | None, host: str) -> bool:
    """Whether a listener hostname (exact or ``*.suffix``) accepts ``host`` (Gateway API matching)."""
    if listener_host is None:
        return True
    if listener_host == host:
        return True
    if listener_host.startswith("*."):
        suffix = listener_host[1:]
        if host.startswith("*."):
            return host.endswith(suffix)
        return host.endswith(suffix) and len(host) > len(suffix)
    return host.startswith("*.") and listener_host.endswith(host[1:])


def route_paths(route: Manifest, rule: int) -> list[str]:
    """The path values of one rule's matches (``/`` when the rule has no path match)."""
    matches = _list(_map(_list(route.spec.get("rules"))[rule]).get("matches"))
    paths = [str(_map(_map(m).get("path")).get("value") or "/") for m in matches if isinstance(m, Mapping)]
    return paths or ["/"]


def redirects_to_https(route: Manifest, rule: int) -> bool:
    """Whether a rule answers with a RequestRedirect to scheme ``https``."""
    for f in _list(_map(_list(route.spec.get("rules"))[rule]).get("filters")):
        f = _map(f)
        if (
            f.get("type") == "RequestRedirect"
            and str(_map(f.get("requestRedirect")).get("scheme")) == "https"
        ):
            return True
    return False


def is_flyte2_path(path: str) -> bool:
    return any(path.startswith(p) for p in FLYTE2_PATH_PREFIXES)


def target_ref(policy: Manifest) -> tuple[str, str, str, str | None] | None:
    """``(group, kind, name, namespace)`` of a policy's ``spec.targetRef`` (``None`` if unusable)."""
    ref = _map(policy.spec.get("targetRef"))
    name = ref.get("name")
    if not name:
        return None
    namespace = _text(ref.get("namespace")) or policy.namespace
    return str(ref.get("group") or ""), str(ref.get("kind") or ""), str(name), namespace


class _NamespacedLookup:
    """First object per key and namespace, with the index's same-namespace semantics for unset namespaces."""

    def __init__(self) -> None:
        self._exact: dict[tuple[tuple[str, str], str], Manifest] = {}
        self._unset: dict[tuple[str, str], Manifest] = {}
        self._any: dict[tuple[str, str], Manifest] = {}

    def add(self, key: tuple[str, str], namespace: str | None, obj: Manifest) -> None:
        self._any.setdefault(key, obj)
        if namespace is None:
            self._unset.setdefault(key, obj)
        else:
            self._exact.setdefault((key, namespace), obj)

    def get(self, key: tuple[str, str], namespace: str | None) -> Manifest | None:
        if namespace is None:
            return self._any.get(key)
        return self._exact.get((key, namespace)) or self._unset.get(key)


class GatewayTopology:
    """Gateways, the routes attached to them and the policies that apply to their backends."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.gateways = index.of_kind("Gateway")
        self.routes = index.of_kind("HTTPRoute")
        self.backend_policies = index.of_kind("GCPBackendPolicy")
        self.health_policies = index.of_kind("HealthCheckPolicy")
        self.gateway_policies = index.of_kind("GCPGatewayPolicy")
        has_gke_objects = bool(self.backend_policies or self.health_policies or self.gateway_policies)
        # Lookups by name and namespace, so a large input costs one pass per kind, not one per reference.
        self._objects = _NamespacedLookup()
        for kind, objects in (("Gateway", self.gateways), ("Service", index.of_kind("Service"))):
            for obj in objects:
                self._objects.add((kind, obj.name), obj.namespace, obj)
        self._targets = _NamespacedLookup()
        for kind, policies in (
            ("GCPBackendPolicy", self.backend_policies),
            ("HealthCheckPolicy", self.health_policies),
        ):
            for policy in policies:
                ref = target_ref(policy)
                if ref is not None and ref[:2] == ("", "Service"):
                    self._targets.add((kind, ref[2]), ref[3], policy)
        self._gke_services: list[tuple[Manifest, list[BackendRef]]] | None = None
        self._backends: dict[int, list[BackendRef]] = {}
        self._grants: set[tuple[str | None, str, str]] | None = None
        #: Results the rules share within one check (keyed by the rule module's own names).
        self.memo: dict[str, Any] = {}
        #: Gateways in the input that a route names but none of whose listeners admit it.
        self.refused: dict[int, list[Manifest]] = defaultdict(list)
        self._parents = {id(r): list(self._resolve_parents(r)) for r in self.routes}
        self._attached: dict[int, list[tuple[Manifest, str | None]]] = defaultdict(list)
        for route in self.routes:
            for parent, section in self._parents[id(route)]:
                if parent is not None:
                    self._attached[id(parent)].append((route, section))
        # A route whose Gateway is applied elsewhere is GKE's when the input holds GKE's policy kinds.
        self.gke_routes = [
            r
            for r in self.routes
            if any(g is not None and is_gke_gateway(g) for g, _ in self._parents[id(r)])
            or (has_gke_objects and self._parents[id(r)] and all(g is None for g, _ in self._parents[id(r)]))
        ]

    def _resolve_parents(self, route: Manifest) -> Iterator[tuple[Manifest | None, str | None]]:
        for ref in _list(route.spec.get("parentRefs")):
            ref = _map(ref)
            if (
                str(ref.get("kind") or "Gateway") != "Gateway"
                or str(ref.get("group") or GATEWAY_GROUP) != GATEWAY_GROUP
            ):
                continue
            namespace = _text(ref.get("namespace")) or route.namespace
            gateway = self.find("Gateway", str(ref.get("name") or ""), namespace)
            section = str(ref["sectionName"]) if ref.get("sectionName") else None
            port = ref.get("port")
            if gateway is None:
                yield gateway, section
                continue
            # parentRefs[].sectionName / port pick listeners; each listener's allowedRoutes (default:
            # routes of the Gateway's own namespace) decides whether it takes this route at all.
            every = listeners(gateway)
            picked = [
                listener
                for listener in every
                if (section is None or listener.name == section) and (port is None or listener.port == port)
            ]
            if section is not None and not picked:
                yield gateway, section  # a listener that does not exist: left to the rules that name it
                continue
            admitted = [listener for listener in picked if self._admits(listener, route)]
            if picked and not admitted:
                self.refused[id(route)].append(gateway)
            if section is None and port is None and len(admitted) == len(every):
                yield gateway, None
            else:
                yield from ((gateway, listener.name) for listener in admitted)

    def _admits(self, listener: Listener, route: Manifest) -> bool:
        """Whether the listener's ``allowedRoutes.namespaces`` takes routes from the route's namespace."""
        namespaces = _map(_map(listener.body.get("allowedRoutes")).get("namespaces"))
        source = str(namespaces.get("from") or "Same")
        if source == "All" or route.namespace is None or listener.gateway.namespace is None:
            return True
        if source == "Same":
            return route.namespace == listener.gateway.namespace
        if source == "Selector":
            namespace = self.index.find("Namespace", route.namespace, None)
            selector = _map(namespaces.get("selector"))
            if namespace is None or selector.get("matchExpressions"):
                return True  # labels not in the input, or a selector not judged here: assume it admits
            wanted = _map(selector.get("matchLabels"))
            return all(namespace.labels.get(str(k)) == str(v) for k, v in wanted.items())
        return True

    def granted(self, backend: BackendRef) -> bool:
        """Whether a route may use a Service in another namespace: a ReferenceGrant there allows it.

        kubernetes-sigs/gateway-api@v1.4.0:apis/v1beta1/referencegrant_types.go (``from`` group, kind and
        namespace of the referring object; ``to`` group, kind and optional name of the target).
        """
        route = backend.route
        if backend.namespace is None or route.namespace is None or backend.namespace == route.namespace:
            return True
        if self._grants is None:
            # One pass over the grants: (grant namespace or None, from namespace, Service name or "").
            self._grants = set()
            for grant in self.index.of_kind("ReferenceGrant"):
                sources = [
                    str(f.get("namespace") or "")
                    for f in map(_map, _list(grant.spec.get("from")))
                    if str(f.get("group") or "") == GATEWAY_GROUP and str(f.get("kind") or "") == "HTTPRoute"
                ]
                targets = [
                    str(t.get("name") or "")
                    for t in map(_map, _list(grant.spec.get("to")))
                    if str(t.get("group") or "") == "" and str(t.get("kind") or "") == "Service"
                ]
                self._grants.update((grant.namespace, f, t) for f in sources for t in targets)
        return any(
            (ns, route.namespace, name) in self._grants
            for ns in (backend.namespace, None)
            for name in (backend.name, "")
        )

    def find(self, kind: str, name: str, namespace: str | None) -> Manifest | None:
        """The Gateway or Service named ``name`` that an object in ``namespace`` can refer to."""
        return self._objects.get((kind, name), namespace)

    def parents(self, route: Manifest) -> list[tuple[Manifest | None, str | None]]:
        """``(Gateway or None if not in the input, sectionName)`` for each Gateway parentRef."""
        return self._parents[id(route)]

    def attached(self, gateway: Manifest) -> list[tuple[Manifest, str | None]]:
        """Routes attached to a Gateway, with the listener name they pick (``None``: all listeners)."""
        return self._attached.get(id(gateway), [])

    def backends(self, route: Manifest) -> list[BackendRef]:
        """The Service references of a route's rules, in order."""
        if id(route) not in self._backends:
            self._backends[id(route)] = self._read_backends(route)
        return self._backends[id(route)]

    def _read_backends(self, route: Manifest) -> list[BackendRef]:
        out = []
        for n, rule in enumerate(_list(route.spec.get("rules"))):
            for m, ref in enumerate(_list(_map(rule).get("backendRefs"))):
                ref = _map(ref)
                if str(ref.get("kind") or "Service") != "Service" or str(ref.get("group") or "") != "":
                    continue
                if not ref.get("name"):
                    continue
                out.append(
                    BackendRef(
                        route,
                        n,
                        m,
                        str(ref["name"]),
                        _text(ref.get("namespace")) or route.namespace,
                        ref.get("port"),
                    )
                )
        return out

    def service(self, backend: BackendRef) -> Manifest | None:
        return self.find("Service", backend.name, backend.namespace)

    def _targeting(self, kind: str, service: Manifest) -> Manifest | None:
        return self._targets.get((kind, service.name), service.namespace)

    def backend_policy(self, service: Manifest) -> Manifest | None:
        """The GCPBackendPolicy that targets a Service (the first, if several do)."""
        return self._targeting("GCPBackendPolicy", service)

    def health_policy(self, service: Manifest) -> Manifest | None:
        """The HealthCheckPolicy that targets a Service (the first, if several do)."""
        return self._targeting("HealthCheckPolicy", service)

    def gke_services(self) -> list[tuple[Manifest, list[BackendRef]]]:
        """Services that routes on GKE Gateways send traffic to, each with the references that reach it."""
        if self._gke_services is None:
            out: dict[int, tuple[Manifest, list[BackendRef]]] = {}
            for route in self.gke_routes:
                for backend in self.backends(route):
                    service = self.service(backend)
                    if service is not None:
                        out.setdefault(id(service), (service, []))[1].append(backend)
            self._gke_services = list(out.values())
        return self._gke_services


def iap_block(policy: Manifest) -> Mapping[str, Any]:
    return _map(_map(policy.spec.get("default")).get("iap"))


def iap_enabled(policy: Manifest | None) -> bool:
    return policy is not None and iap_block(policy).get("enabled") is True
