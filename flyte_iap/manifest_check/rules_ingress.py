"""Rules about how Flyte is exposed: Service types, Ingress classes, hosts, IPs, paths, backends.

Example::

    from pathlib import Path

    from flyte_iap.manifest_check import check_text

    check_text(Path("service.yaml").read_text(), "service.yaml")  # IAP001 if flyteadmin is a LoadBalancer
"""

from __future__ import annotations

from collections.abc import Iterator

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check.loader import Manifest
from flyte_iap.manifest_check.registry import ERROR, WARNING, Context, Finding, rule
from flyte_iap.manifest_check.topology import port_label, service_ports

_INTERNAL_LB = ("networking.gke.io/load-balancer-type", "cloud.google.com/load-balancer-type")


@rule(
    "IAP001",
    "service-load-balancer",
    severity=ERROR,
    title="Service of type LoadBalancer (or with externalIPs) in front of Flyte or an IAP-protected workload",
    page="deploy/ingress",
    description="""
        A Service has `type: LoadBalancer` or `externalIPs`, and fronts flyteadmin, flyteconsole or the
        flyte-binary (by its labels, its name, its pods' image, or the Flyte paths an Ingress sends to
        it), or selects pods that IAP protects through a GKE Ingress. GKE gives it an address of its
        own, and requests to that address reach the pods without passing Identity-Aware Proxy: IAP only
        guards the Ingress's load balancer. Any Service counts, not only the one the Ingress uses.
    """,
    fix="""
        Set `spec.type: ClusterIP` (`NodePort` if the Service does not use container-native load
        balancing) and expose
        Flyte only through the GCE Ingress. Helm: flyte-binary `service.type`, flyte-core
        `flyteadmin.service.type` / `flyteconsole.service.type`.
    """,
    generic_fix="""
        Set `spec.type: ClusterIP` and drop `externalIPs` (or delete this Service), so that the pods are
        reached only through the IAP-protected Ingress.
    """,
)
def service_load_balancer(ctx: Context) -> Iterator[Finding]:
    topology = ctx.topology
    for service in ctx.index.of_kind("Service"):
        load_balancer = service.spec.get("type") == "LoadBalancer"
        external_ips = bool(service.spec.get("externalIPs"))
        if not (load_balancer or external_ips):
            continue
        if topology.serves_flyte(service):
            what = f"this Service fronts {topology.component(service) or 'Flyte'}"
            flyte_owned, reached = True, "Flyte"
        else:
            why = _protected_reason(ctx, service)
            if why is None:
                continue
            what = f"this Service selects pods that {why}"
            flyte_owned, reached = False, "them"
        if load_balancer:
            internal = any(service.annotations.get(k, "").lower() == "internal" for k in _INTERNAL_LB)
            scope = "an internal" if internal else "a public"
            yield ctx.finding(
                service,
                f"{what} and has type LoadBalancer: GKE gives it {scope} IP of its own, and requests to "
                f"that IP reach {reached} without passing IAP.",
                at=("spec", "type"),
                flyte=flyte_owned,
            )
        else:
            yield ctx.finding(
                service,
                f"{what} and lists externalIPs: traffic to those addresses reaches {reached} without "
                "passing IAP.",
                at=("spec", "externalIPs"),
                flyte=flyte_owned,
            )


def _protected_reason(ctx: Context, service: Manifest) -> str | None:
    protected = ctx.topology.protected_pods
    if not protected:
        return None
    for pod in ctx.index.pods_for(service):
        why = protected.get((id(pod.workload), pod.path))
        if why is not None:
            return f"{why} ({pod.workload.ref})"
    return None


@rule(
    "IAP007",
    "node-port-around-iap",
    severity=WARNING,
    title="NodePort Service, not used by the Ingress, in front of an IAP-protected workload",
    page="deploy/ingress",
    description="""
        A Service of `type: NodePort` selects pods that serve Flyte or that IAP protects through a GKE
        Ingress, and no GKE Ingress in the input routes to it. A NodePort is open on every node's IP:
        whoever can reach a node (from the VPC, or from anywhere when a firewall rule allows the
        node port range on nodes with public IPs) reaches the pods without passing IAP. A NodePort
        Service that the Ingress itself uses (without container-native load balancing) is not reported.
    """,
    fix="""
        Make the Service `type: ClusterIP` (or delete it), and reach the pods only through the
        IAP-protected Ingress; for access from inside the cluster a ClusterIP Service is enough.
    """,
)
def node_port_around_iap(ctx: Context) -> Iterator[Finding]:
    topology = ctx.topology
    for service in ctx.index.of_kind("Service"):
        if service.spec.get("type") != "NodePort" or id(service) in topology.ingress_backend_services:
            continue
        why = _protected_reason(ctx, service)
        if why is None:
            continue
        ports = ", ".join(
            f"{p.get('nodePort')}" if p.get("nodePort") else port_label(p) for p in service_ports(service)
        )
        yield ctx.finding(
            service,
            f"this NodePort Service selects pods that {why}, and no GKE Ingress routes to it: every "
            f"node's IP answers on its node port ({ports or 'none'}) without IAP.",
            at=("spec", "type"),
        )


@rule(
    "IAP002",
    "non-gce-ingress",
    severity=WARNING,
    title="Flyte served by an Ingress that GKE does not handle",
    page="deploy/ingress",
    description="""
        An Ingress whose class is not a GKE one (`nginx`, `traefik`, ...) and which carries no
        GKE-only annotation routes to Flyte. IAP protects only Google Cloud load balancers, so this second
        way in bypasses it. (An Ingress that was clearly written for GKE but is not picked up is IAP003.)
        Ingresses for other clouds' load balancers (class `alb`, `azure/application-gateway`, or their
        controllers' annotations) are not reported: such manifests are not deployed on GKE.
    """,
    fix="""
        Serve Flyte only through the GCE Ingress and delete this one, or keep its controller unreachable
        from outside. If this controller is itself behind the IAP-protected load balancer, silence the
        warning on the object with the annotation `flyte-iap/ignore: IAP002`.
    """,
)
def non_gce_ingress(ctx: Context) -> Iterator[Finding]:
    topology = ctx.topology
    for ingress in ctx.index.of_kind("Ingress"):
        if gce.is_gce_ingress(ingress) or gce.meant_for_gce(ingress) or gce.other_cloud(ingress):
            continue  # another cloud's load balancer (class alb, ...): these manifests are not for GKE
        flyte_routes = [
            r
            for r in topology.routes(ingress)
            if flyte.path_kind(r.path) or ((s := topology.service(r)) is not None and topology.is_flyte(s))
        ]
        if not flyte_routes:
            continue
        controller = gce.class_annotation(ingress) or gce.class_name(ingress)
        at = ("spec", "ingressClassName") if gce.class_name(ingress) else ("metadata", "annotations")
        yield ctx.finding(
            ingress,
            f"this Ingress (class {controller}) routes {flyte_routes[0].path or 'its default backend'} to "
            f"{flyte_routes[0].service}; IAP protects only GKE's load balancers, so Flyte is reachable "
            "through it without IAP.",
            at=at,
        )


@rule(
    "IAP003",
    "ingress-class-ignored",
    severity=ERROR,
    title="Ingress meant for GKE that the GKE controller skips",
    page="deploy/ingress",
    description="""
        The Ingress was written for GKE (GKE-only annotations such as a static IP, managed certificates or
        a FrontendConfig, or `ingressClassName: gce`) but the GKE Ingress controller will not serve it.
        The controller does not read `spec.ingressClassName`: an Ingress that sets it and has no
        `kubernetes.io/ingress.class` annotation is skipped, so no load balancer is ever created.
        A class annotation naming another controller has the same effect, and the API server refuses an
        Ingress that sets both the annotation and `spec.ingressClassName`.
    """,
    fix="""
        Remove `spec.ingressClassName` and set the annotation `kubernetes.io/ingress.class: gce`
        (`gce-internal` for an internal load balancer). Helm: leave flyte-binary
        `ingress.ingressClassName` and flyte-core `common.ingress.ingressClassName` unset and put the
        class in the Ingress annotations.
    """,
    generic_fix="""
        Remove `spec.ingressClassName` and set the annotation `kubernetes.io/ingress.class: gce`
        (`gce-internal` for an internal load balancer).
    """,
)
def ingress_class_ignored(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.index.of_kind("Ingress"):
        annotation = gce.class_annotation(ingress)
        name = gce.class_name(ingress)
        meant = gce.meant_for_gce(ingress) or (annotation in gce.GCE_CLASSES)
        if not meant:
            continue
        flyte_owned = _serves_flyte(ctx, ingress)
        if annotation is not None and name is not None:
            yield ctx.finding(
                ingress,
                f"both the annotation kubernetes.io/ingress.class: {annotation} and spec.ingressClassName: "
                f"{name} are set: the API server refuses such an Ingress.",
                flyte=flyte_owned,
                at=("spec", "ingressClassName"),
            )
        elif annotation is None and name is not None:
            yield ctx.finding(
                ingress,
                f"spec.ingressClassName: {name} with no kubernetes.io/ingress.class annotation: the GKE "
                "Ingress controller skips Ingresses that set spec.ingressClassName, so no load balancer "
                "(and no IAP) is created for it.",
                flyte=flyte_owned,
                at=("spec", "ingressClassName"),
            )
        elif annotation is not None and annotation not in gce.GCE_CLASSES:
            used = ", ".join(k for k in gce.GCE_ONLY_ANNOTATIONS if k in ingress.annotations)
            yield ctx.finding(
                ingress,
                f"kubernetes.io/ingress.class is {annotation}, so GKE skips this Ingress and its GKE "
                f"annotations ({used}) have no effect.",
                flyte=flyte_owned,
                at=("metadata", "annotations", gce.CLASS_ANNOTATION),
            )


@rule(
    "IAP004",
    "shared-host-or-ip",
    severity=ERROR,
    title="Two GKE Ingresses of one scope share a host or a static IP",
    page="deploy/ingress",
    description="""
        Each GKE Ingress becomes a load balancer of its own, with its own IP address. Two Ingresses of
        the same scope (external `gce`, internal `gce-internal`, regional `gce-regional-external`) that
        name the same reserved address cannot both get it, and two that serve the same host cannot both
        be where DNS points. An external and an internal Ingress for one host (split-horizon DNS) are
        not reported, nor is one object defined twice (IAP006). This is what splitting Flyte's HTTP and
        gRPC paths over two Ingresses (`separateGrpcIngress: true`, meant for nginx) does on GKE.
    """,
    fix="""
        Put all of Flyte's paths, HTTP and gRPC, in one Ingress: flyte-binary
        `ingress.separateGrpcIngress: false`, flyte-core `common.ingress.separateGrpcIngress: false`.
        Give any other Ingress its own host and address.
    """,
    generic_fix="""
        Put all paths of a host in one Ingress, or give each Ingress its own host and address.
    """,
)
def shared_host_or_ip(ctx: Context) -> Iterator[Finding]:
    # Only Ingresses of one load-balancer scope compete: an external and an internal Ingress for the
    # same host (split-horizon DNS) are two load balancers on purpose.
    seen_ip: dict[tuple[str, str, str], Manifest] = {}
    seen_host: dict[tuple[str, str], Manifest] = {}
    for ingress in ctx.topology.gce_ingresses:
        scope = gce.scope(ingress)
        flyte_owned = _serves_flyte(ctx, ingress)
        address = gce.static_ip(ingress)
        if address is not None:
            first = seen_ip.setdefault((scope, *address), ingress)
            if first is not ingress:
                yield ctx.finding(
                    ingress,
                    f"{address[0]}: {address[1]} is also used by {first.ref} "
                    f"({first.file}:{first.line}): each GKE Ingress is a separate load balancer, and the "
                    "address can be bound to only one of them.",
                    at=("metadata", "annotations", address[0]),
                    flyte=flyte_owned or _serves_flyte(ctx, first),
                )
        for host in gce.hosts(ingress):
            if host is None:
                continue
            first = seen_host.setdefault((scope, host), ingress)
            if first is not ingress:
                yield ctx.finding(
                    ingress,
                    f"host {host} is also served by {first.ref} ({first.file}:{first.line}), an "
                    f"{scope} load balancer too: each GKE Ingress is a separate load balancer with its own "
                    "IP, and DNS for the host can point at only one, so the other's paths are unreachable.",
                    at=("spec", "rules"),
                    flyte=flyte_owned or _serves_flyte(ctx, first),
                )


def _serves_flyte(ctx: Context, ingress: Manifest) -> bool:
    """Whether an Ingress routes Flyte's paths or to a Flyte Service."""
    topology = ctx.topology
    return any(
        flyte.path_kind(r.path) or ((s := topology.service(r)) is not None and topology.is_flyte(s))
        for r in topology.routes(ingress)
    )


@rule(
    "IAP006",
    "defined-twice",
    severity=WARNING,
    title="Object defined twice in the input",
    page="deploy/ingress",
    description="""
        The same object (kind, namespace and name) is defined more than once in the checked files.
        `kubectl apply` keeps only the last definition, so the earlier one never takes effect; the
        other rules check the last one. This is also what checking a tree of alternatives at once
        looks like (`flyte-iap check examples/`, where one folder per deployment holds a variant):
        check each folder alone, or pass `--per-dir`.
    """,
    fix="""
        Keep one definition. If the files are alternative deployments, check each one apart (`flyte-iap
        check --per-dir DIR` checks every directory on its own).
    """,
)
def defined_twice(ctx: Context) -> Iterator[Finding]:
    for earlier, later in ctx.index.duplicates:
        yield ctx.finding(
            earlier,
            f"{earlier.ref} is defined twice: here and at {later.file}:{later.line}; kubectl apply keeps "
            "the later definition, so this one never takes effect.",
            at=("metadata", "name"),
        )


@rule(
    "IAP005",
    "gce-invalid-path",
    severity=ERROR,
    title="Ingress path the GKE load balancer cannot express",
    page="deploy/ingress",
    description="""
        GKE turns each Ingress path into a URL-map path rule. Those accept exact paths and one trailing
        `/*` wildcard only: no regular expressions (nginx's `/api(/|$)(.*)`), no `*` elsewhere, no
        `?` or `#`. Google Cloud refuses the URL map, and the whole Ingress stays without a working
        load balancer.
    """,
    fix="""
        Use exact paths plus `/path/*` (the Flyte charts' `ImplementationSpecific` paths already have
        this form), or `pathType: Prefix`.
    """,
)
def gce_invalid_path(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.gce_ingresses:
        for route in ctx.topology.routes(ingress):
            reason = gce.invalid_path_reason(route)
            if reason is not None:
                yield ctx.finding(ingress, f"path {route.path!r}: {reason}.", at=(*route.field, "path"))


@rule(
    "IAP050",
    "ingress-service-missing",
    severity=WARNING,
    title="Ingress routes to a Service that is not in the input",
    page="deploy/ingress",
    description="""
        A GKE Ingress sends a path to a Service that the checked manifests do not contain. A warning
        (objects applied separately are normal; `--strict` makes it an error) that suggests a name only
        when one in the input is a likely misspelling; not reported with `--partial`.
    """,
    fix="""
        Correct the Service name in the Ingress backend, or check the manifest that defines the Service
        together with the Ingress.
    """,
)
def ingress_service_missing(ctx: Context) -> Iterator[Finding | None]:
    for ingress in ctx.topology.gce_ingresses:
        reported: set[str] = set()
        for route in ctx.topology.routes(ingress):
            if route.service in reported or ctx.topology.service(route) is not None:
                continue
            reported.add(route.service)
            yield ctx.missing(
                ingress,
                (*route.field, "backend"),
                "Service",
                route.service,
                f"{route.path or 'the default backend'} goes to Service {route.service}, which is not in "
                "the input",
            )


@rule(
    "IAP051",
    "ingress-service-port-missing",
    severity=ERROR,
    title="Ingress routes to a port the Service does not have",
    page="deploy/ingress",
    description="""
        A GKE Ingress backend names a Service port (by number or by name) that the Service does not
        define. The controller cannot build that backend and the Ingress does not sync. Numbers are the
        Service's `port`, not its `targetPort`.
    """,
    fix="""
        Use one of the Service's ports in the Ingress backend (`port.number` for the Service port
        number, `port.name` for its name).
    """,
)
def ingress_service_port_missing(ctx: Context) -> Iterator[Finding]:
    for ingress in ctx.topology.gce_ingresses:
        reported: set[tuple[str, object]] = set()
        for route in ctx.topology.routes(ingress):
            service = ctx.topology.service(route)
            if service is None or gce.service_port(service, route.port) is not None:
                continue
            if (route.service, route.port) in reported:
                continue
            reported.add((route.service, route.port))
            ports = ", ".join(port_label(p) for p in service_ports(service)) or "none"
            hint = ""
            if isinstance(route.port, int) and any(
                gce.target_port(p) == route.port for p in service_ports(service)
            ):
                hint = f" ({route.port} is a targetPort; the Ingress needs the Service port)"
            yield ctx.finding(
                ingress,
                f"{route.path or 'the default backend'} goes to port {route.port} of Service {service.name}, "
                f"which has no such port (its ports: {ports}){hint}.",
                at=(*route.field, "backend"),
            )
