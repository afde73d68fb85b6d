"""Rules about gRPC through the load balancer: app-protocols, the gRPC paths, TLS to flyteadmin.

Example::

    from flyte_iap.manifest_check import check_text

    check_text(rendering, "flyte-core.yaml")  # IAP024 when gRPC reaches flyteadmin over HTTP/1.1

The facts behind them: the GKE load balancer speaks HTTP/1.1 to a backend unless the Service's
`cloud.google.com/app-protocols` says `HTTP2` for that port (by port *name*), and it speaks
HTTP/2 (and HTTPS) only over TLS. flyteadmin's gRPC port is plaintext (h2c); with
`server.security.secure: true` flyteadmin serves HTTP and gRPC on one TLS port and closes the gRPC
port (see :mod:`flyte_iap.manifest_check.flyte`).
"""

from __future__ import annotations

from collections.abc import Iterator

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check.loader import Manifest
from flyte_iap.manifest_check.registry import ERROR, WARNING, Context, Finding, rule
from flyte_iap.manifest_check.topology import Backend, port_label, service_ports

_SPOKEN = {"HTTP": "HTTP/1.1", "HTTPS": "HTTP/1.1 over TLS (HTTPS)"}


@rule(
    "IAP020",
    "app-protocols-invalid",
    severity=ERROR,
    title="app-protocols annotation that GKE cannot read",
    page="deploy/grpc-backend",
    description="""
        `cloud.google.com/app-protocols` (or the older `service.alpha.kubernetes.io/app-protocols`,
        which wins when both are set) must be a JSON object from Service port name to `HTTP`,
        `HTTPS` or `HTTP2`. Anything else is refused, and the backend falls back to HTTP/1.1.
    """,
    fix="""
        Write JSON in a quoted YAML string, keyed by port name: `cloud.google.com/app-protocols:
        '{"grpc": "HTTP2"}'`, and set only one of the two annotation keys.
    """,
)
def app_protocols_invalid(ctx: Context) -> Iterator[Finding]:
    old, new = gce.APP_PROTOCOLS_ANNOTATIONS
    for service in ctx.index.of_kind("Service"):
        annotation = gce.app_protocols_annotation(service)
        if annotation is None:
            continue
        at = ("metadata", "annotations", annotation.key)
        if annotation.error is not None:
            yield ctx.finding(
                service,
                f"{annotation.key}: {gce.quoted(annotation.raw)} cannot be used: {annotation.error}; "
                "GKE refuses it and speaks HTTP/1.1 to every port.",
                at=at,
            )
        elif (
            old in service.annotations
            and new in service.annotations
            and (service.annotations[old].strip() != service.annotations[new].strip())
        ):
            yield ctx.finding(
                service,
                f"both {old} and {new} are set and differ: GKE reads only {old}, so {new} is ignored.",
                at=("metadata", "annotations", new),
            )


@rule(
    "IAP021",
    "app-protocols-unknown-port",
    severity=ERROR,
    title="app-protocols entry for a port name the Service does not have",
    page="deploy/grpc-backend",
    description="""
        GKE looks app-protocols up by Service port *name* only: a key that is a port number, a
        `targetPort` name, or a misspelled name never matches, and the port it was meant for stays
        HTTP/1.1. An unnamed port cannot get a protocol at all.
    """,
    fix="""
        Key the annotation by the Service port's `name` (flyte-core flyteadmin: `http`, `grpc`;
        flyte-binary: `http`, `grpc`), naming the port first if it has no name.
    """,
)
def app_protocols_unknown_port(ctx: Context) -> Iterator[Finding]:
    for service in ctx.index.of_kind("Service"):
        annotation = gce.app_protocols_annotation(service)
        if annotation is None or annotation.error is not None:
            continue
        ports = service_ports(service)
        names = {str(p.get("name")) for p in ports if p.get("name")}
        for key, protocol in annotation.value.items():
            if key in names:
                continue
            listing = ", ".join(port_label(p) for p in ports) or "none"
            hint = "; port numbers never match, only names" if key.isdigit() else ""
            yield ctx.finding(
                service,
                f"{annotation.key} sets {key!r} to {protocol}, but the Service has no port named {key!r} "
                f"(its ports: {listing}{hint}): the setting never applies.",
                at=("metadata", "annotations", annotation.key),
            )


def _grpc_targets(ctx: Context) -> list[tuple[Manifest, str | None, str, gce.Route | None]]:
    """For each GCE Ingress that serves flyteadmin: `(ingress, host, gRPC service, route or None)`.

    `route` is the path GCE picks for a call to that gRPC service (`None`: the default backend).
    Computed once per check (three rules read it).
    """
    if "grpc-targets" not in ctx.memo:
        ctx.memo["grpc-targets"] = list(_find_grpc_targets(ctx))
    return ctx.memo["grpc-targets"]  # type: ignore[no-any-return]


def _find_grpc_targets(ctx: Context) -> Iterator[tuple[Manifest, str | None, str, gce.Route | None]]:
    topology = ctx.topology
    for ingress in topology.gce_ingresses:
        routes = topology.routes(ingress)
        default = next((r for r in routes if r.path is None), None)
        for host in gce.hosts(ingress):
            candidates = [r for r in routes if r.path is not None and r.host == host]
            serves_admin = any(
                flyte.path_kind(r.path) in ("admin", "grpc")
                or (
                    (b := topology.backend(r)) is not None
                    and topology.component(b.service) in flyte.ADMIN_COMPONENTS
                )
                for r in candidates
            )
            if not serves_admin or _only_flyte2(ctx, candidates):
                continue
            for service in flyte.GRPC_SERVICES:
                yield ingress, host, service, gce.resolve(candidates, f"/{service}/Call") or default


def _only_flyte2(ctx: Context, routes: list[gce.Route]) -> bool:
    """Whether the Flyte behind these routes is Flyte 2 (flyte.is_flyte2), which has no flyteadmin gRPC
    services: its clients speak Connect, which works over HTTP/1.1 to the backend. True when a
    flyte-binary backend is Flyte 2 and none listens on Flyte 1's ports (8088, 8089)."""
    admin = [
        b
        for r in routes
        if (b := ctx.topology.backend(r)) is not None
        and ctx.topology.component(b.service) in flyte.ADMIN_COMPONENTS
    ]
    flyte1_ports = {flyte.DEFAULT_HTTP_PORT, flyte.DEFAULT_GRPC_PORT}
    return any(flyte.is_flyte2(b.service, ctx.index) for b in admin) and not any(
        b.port.get("port") in flyte1_ports for b in admin
    )


@rule(
    "IAP022",
    "grpc-paths-missing",
    severity=ERROR,
    title="Ingress without flyteadmin's gRPC paths",
    page="deploy/grpc-backend",
    description="""
        The Ingress serves flyteadmin (`/api`, `/console`, ...) but calls to one or more of its gRPC
        services (`/flyteidl.service.AdminService/*`, `AuthMetadataService`, `DataProxyService`,
        `IdentityService`, `SignalService`, `/grpc.health.v1.Health/*`) do not reach flyteadmin:
        they fall to the default backend or to another Service. pyflyte, flytectl and FlyteRemote all
        talk gRPC, so they fail. The paths may be on a second Ingress, which on GKE is a second load
        balancer with another IP.
    """,
    fix="""
        Route every gRPC service (exact path and `/*`) to flyteadmin in the same Ingress as the HTTP
        paths: flyte-binary `ingress.separateGrpcIngress: false`, flyte-core
        `common.ingress.separateGrpcIngress: false`.
    """,
)
def grpc_paths_missing(ctx: Context) -> Iterator[Finding]:
    missing: dict[tuple[int, str | None], tuple[Manifest, list[str], set[str]]] = {}
    for ingress, host, service, route in _grpc_targets(ctx):
        backend = ctx.topology.backend(route) if route is not None else None
        if route is not None and ctx.topology.is_admin_backend(backend, route):
            continue
        if route is not None:
            if backend is None or not ctx.topology.is_flyte(backend.service):
                continue  # a Service we cannot identify (an Istio gateway, ...): cannot tell
            where = f"Service {backend.service.name} (path {route.path})"
        else:
            where = "the default backend"
        entry = missing.setdefault((id(ingress), host), (ingress, [], set()))
        entry[1].append(service.rsplit(".", 1)[-1])
        entry[2].add(where)
    for (_, host), (ingress, services, where) in missing.items():
        elsewhere = [
            other.ref
            for other in ctx.topology.gce_ingresses
            if other is not ingress
            and any(flyte.path_kind(r.path) == "grpc" for r in ctx.topology.routes(other))
        ]
        note = (
            f" {', '.join(elsewhere)} has gRPC paths, but each GKE Ingress is a separate load balancer."
            if elsewhere
            else ""
        )
        on_host = f" for host {host}" if host else ""
        yield ctx.finding(
            ingress,
            f"gRPC calls to {', '.join(services)}{on_host} do not reach flyteadmin: they go to "
            f"{' and '.join(sorted(where))}, so pyflyte, flytectl and FlyteRemote fail.{note}",
            at=gce.rule_field(ingress, host),
        )


@rule(
    "IAP023",
    "grpc-paths-wrong-port",
    severity=ERROR,
    title="gRPC paths sent to a flyteadmin port that does not serve gRPC",
    page="deploy/grpc-backend",
    description="""
        The gRPC paths reach flyteadmin on a port that cannot answer them. With `secure: false` gRPC is
        served only on the gRPC port (8089; flyte-core Service port 81), and the HTTP port (8088; port 80)
        is an HTTP/1 gateway. With `secure: true` the single TLS port (8088) serves both, and the gRPC
        port is closed. Reported only when the flyteadmin configuration in the input tells which is the
        case.
    """,
    fix="""
        Send the gRPC paths to the port that serves gRPC: the gRPC port with `secure: false`, the HTTP
        port with `secure: true` (flyte-core's Ingress switches to port 80 by itself when
        `configmap.adminServer.server.security.secure` is true). Behind a GKE load balancer gRPC also
        needs HTTP2 and TLS, i.e. `secure: true`.
    """,
)
def grpc_paths_wrong_port(ctx: Context) -> Iterator[Finding]:
    reported: set[tuple[int, tuple[int, int]]] = set()
    for ingress, _, _, route in _grpc_targets(ctx):
        backend = ctx.topology.backend(route) if route is not None else None
        if route is None or backend is None or (id(ingress), backend.key) in reported:
            continue
        listener = _wrong_grpc_listener(ctx, backend)
        if listener is None:
            continue
        reported.add((id(ingress), backend.key))
        setting = listener.config.secure_setting
        source = f"; server.security.secure is set in {setting.where()}" if setting is not None else ""
        yield ctx.finding(
            ingress,
            f"gRPC paths such as {route.path} go to port {backend.label} of Service {backend.service.name}, "
            f"and {listener.describe()}{source}.",
            at=(*route.field, "backend"),
        )


def _wrong_grpc_listener(ctx: Context, backend: Backend) -> flyte.Listener | None:
    """The flyteadmin listener behind ``backend`` if it cannot serve gRPC (as far as the input tells)."""
    listener = flyte.admin_listener(backend.service, backend.port, ctx.index)
    if listener is None:
        return None
    wrong = (
        (listener.role == "http" and listener.config.secure is False)
        or (listener.role == "grpc" and listener.config.secure is True)
        or listener.role == "other"
    )
    return listener if wrong else None


def _grpc_backends(ctx: Context) -> dict[tuple[int, int], tuple[Backend, Manifest, str]]:
    """Service ports that receive gRPC calls through a GCE Ingress, with one Ingress and path for messages."""
    out: dict[tuple[int, int], tuple[Backend, Manifest, str]] = {}
    for ingress, _, _, route in _grpc_targets(ctx):
        backend = ctx.topology.backend(route) if route is not None else None
        if route is None or backend is None:
            continue
        if ctx.topology.is_flyte(backend.service) and not ctx.topology.is_admin_backend(backend, route):
            continue  # gRPC reaching flyteconsole is IAP022's finding, whatever the protocol
        out.setdefault(backend.key, (backend, ingress, route.path or "/"))
    return out


@rule(
    "IAP024",
    "grpc-port-not-http2",
    severity=ERROR,
    title="gRPC reaches its backend over HTTP/1.1 (app-protocols not HTTP2)",
    page="deploy/grpc-backend",
    description="""
        The Service port that an Ingress's gRPC paths lead to is not `HTTP2` in the Service's
        app-protocols annotation (or has no name, so it cannot be). The load balancer then speaks
        HTTP/1.1 to it and every gRPC call fails.
    """,
    fix="""
        Annotate the Service with `cloud.google.com/app-protocols: '{"PORT-NAME": "HTTP2"}'` for that
        port. HTTP2 backends must serve TLS: for flyteadmin that means `secure: true` with a
        certificate, and gRPC on the HTTP port (IAP023, IAP025).
    """,
)
def grpc_port_not_http2(ctx: Context) -> Iterator[Finding]:
    for backend, ingress, path in _grpc_backends(ctx).values():
        annotation = gce.app_protocols_annotation(backend.service)
        if annotation is not None and annotation.error is not None:
            continue  # IAP020
        if _wrong_grpc_listener(ctx, backend) is not None:
            continue  # IAP023: the port is wrong, whatever its protocol
        protocol = gce.app_protocol(backend.service, backend.port)
        if protocol == "HTTP2":
            continue
        if not backend.port.get("name"):
            detail = "the port has no name, and app-protocols can only name ports"
            at: tuple[str | int, ...] = backend.field
        else:
            detail = (
                f"app-protocols gives {backend.port.get('name')!r} {protocol}"
                if annotation
                else ("the Service has no app-protocols annotation")
            )
            at = ("metadata", "annotations", annotation.key) if annotation else backend.field
        yield ctx.finding(
            backend.service,
            f"{ingress.ref} sends gRPC ({path}) to port {backend.label}, but {detail}: the load "
            f"balancer speaks {_SPOKEN[protocol]} to it and gRPC calls fail.",
            at=at,
        )


@rule(
    "IAP025",
    "backend-tls-mismatch",
    severity=ERROR,
    title="Load balancer protocol does not match what flyteadmin serves",
    page="deploy/grpc-backend",
    description="""
        The load balancer speaks HTTPS or HTTP2 (both over TLS) to a flyteadmin port that serves
        plaintext: the gRPC port (h2c, or closed with `secure: true`), or the HTTP port with
        `secure: false`. Or it speaks plain HTTP to the HTTP port while flyteadmin serves TLS there
        (`secure: true`). Either way the connection fails and clients get 502. Reported only for
        ports a GKE Ingress routes to, and only when the flyteadmin configuration in the input tells
        whether TLS is on; when the input has no Ingress at all (a chart rendering checked alone), any
        port named in app-protocols is checked and reported as a warning ("if a GKE Ingress routes
        here").
    """,
    fix="""
        For gRPC through GKE, turn TLS on in flyteadmin (`server.security.secure: true` and a
        certificate; a self-signed one is accepted by the load balancer), send all paths to the HTTP
        port, and mark that port `HTTP2` in app-protocols.
    """,
)
def backend_tls_mismatch(ctx: Context) -> Iterator[Finding]:
    topology = ctx.topology
    routed: dict[tuple[int, int], Backend] = {}
    for ingress in topology.gce_ingresses:
        for backend, _ in topology.backends(ingress):
            routed.setdefault(backend.key, backend)
    grpc_backends = _grpc_backends(ctx)
    candidates = dict(routed)
    if not topology.ingresses:
        for service in ctx.index.of_kind("Service"):
            annotation = gce.app_protocols_annotation(service)
            if annotation is None or annotation.error is not None:
                continue
            for position, port in enumerate(service.spec.get("ports") or []):
                if isinstance(port, dict) and str(port.get("name")) in annotation.value:
                    candidates.setdefault((id(service), position), Backend(service, position, port))
    for key, backend in candidates.items():
        listener = flyte.admin_listener(backend.service, backend.port, ctx.index)
        if listener is None or (key in grpc_backends and _wrong_grpc_listener(ctx, backend) is not None):
            continue  # not flyteadmin, or IAP023 already says the gRPC paths go to the wrong port
        protocol = gce.app_protocol(backend.service, backend.port)
        annotation = gce.app_protocols_annotation(backend.service)
        at = ("metadata", "annotations", annotation.key) if annotation is not None else backend.field
        # With no Ingress in the input (a chart rendering checked alone, perhaps exposed through a
        # mesh gateway), whether a GKE load balancer ever speaks to the port is unknown.
        routed_here = key in routed
        prefix = "" if routed_here else "if a GKE Ingress routes here, "
        severity = ERROR if routed_here else WARNING
        if protocol in ("HTTPS", "HTTP2") and listener.tls is False:
            yield ctx.finding(
                backend.service,
                f"{prefix}the load balancer speaks {protocol} (TLS) to port {backend.label}, but "
                f"{listener.describe()}: the TLS handshake fails and requests get 502.",
                at=at,
                severity=severity,
            )
        elif protocol == "HTTP" and listener.tls is True and key not in grpc_backends:
            yield ctx.finding(
                backend.service,
                f"{prefix}the load balancer speaks plain HTTP/1.1 to port {backend.label}, but "
                f"{listener.describe()}: requests get 502.",
                at=at,
                severity=severity,
            )


@rule(
    "IAP026",
    "internal-admin-endpoint",
    severity=ERROR,
    title="Flyte component configured to call flyteadmin on a port that does not serve it",
    page="deploy/grpc-backend",
    description="""
        A Flyte component's `admin.endpoint` (flytepropeller, the scheduler, or the flyte-binary calling
        itself) points at a flyteadmin port that cannot answer it: the gRPC port after
        `secure: true` closed it, the TLS port with `insecure: true`, or the HTTP/1 gateway with
        `secure: false`. Turning TLS on for the load balancer then breaks workflow execution inside the
        cluster.
    """,
    fix="""
        With `secure: true` point `admin.endpoint` at the TLS port (flyte-core `flyteadmin:80`,
        flyte-binary `localhost:8088`) with `insecure: false` and `insecureSkipVerify: true` (or
        `caCertFilePath`); with `secure: false` use the gRPC port (`flyteadmin:81`,
        `localhost:8089`) with `insecure: true`.
    """,
)
def internal_admin_endpoint(ctx: Context) -> Iterator[Finding]:
    reported: set[tuple[int, str]] = set()
    for pod, position, config in flyte.flyte_containers(ctx.index):
        setting = config.admin_endpoint
        if setting is None or (id(setting.source), setting.key) in reported:
            continue
        found = flyte.endpoint_listener(pod, position, config, ctx.index)
        if found is None:
            continue
        listener, _ = found
        secure = listener.config.secure
        if listener.role == "grpc" and secure is True:
            problem = "the gRPC port, which secure: true closes"
        elif listener.role == "http" and secure is True and config.admin_insecure:
            problem = "flyteadmin's TLS port, but admin.insecure: true makes the client speak plaintext"
        elif listener.role == "http" and secure is False:
            problem = "flyteadmin's HTTP/1 gateway, which does not serve gRPC"
        else:
            continue
        reported.add((id(setting.source), setting.key))
        yield ctx.finding(
            setting.source,
            f"admin.endpoint {setting.value} ({setting.key}), used by {pod.workload.ref}, is {problem}: it "
            "cannot reach flyteadmin.",
            line=setting.line,
        )
