"""Rules for Flyte behind GKE's Gateway API: Gateways, HTTPRoutes, GCPBackendPolicy, HealthCheckPolicy.

Example::

    from flyte_iap.manifest_check import check_paths

    check_paths(["gateway/"])  # IAP060 if a route reaches Flyte without an IAP policy

Only Gateways of GKE's classes (:data:`~flyte_iap.manifest_check.gateway.GKE_CLASSES`) are judged; the
semantics are in :mod:`flyte_iap.manifest_check.gateway`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check import gateway as gw
from flyte_iap.manifest_check.index import same_namespace
from flyte_iap.manifest_check.loader import Manifest
from flyte_iap.manifest_check.registry import ERROR, WARNING, Context, Finding, rule
from flyte_iap.manifest_check.topology import iap_enabled as backendconfig_iap
from flyte_iap.manifest_check.topology import service_ports

_PAGE = "deploy/gateway-api"


def _needs_iap(ctx: Context, service: Manifest, refs: list[gw.BackendRef]) -> bool:
    """Whether a Service behind a GKE Gateway must be behind IAP: it fronts Flyte or gets Flyte's API paths.

    Only the API services' own paths (``/flyteidl.service.*``, ``/flyteidl2.*``) tell Flyte by path:
    ``/api`` or ``/console`` on a Gateway shared with other apps say nothing about whose they are.
    """
    if ctx.topology.is_flyte(service):
        return True
    for ref in refs:
        for path in gw.route_paths(ref.route, ref.rule):
            if flyte.path_kind(path) == "grpc" or gw.is_flyte2_path(path):
                return True
    return False


def _protected(ctx: Context) -> list[tuple[Manifest, list[gw.BackendRef]]]:
    """Services behind GKE Gateways that are (or must be) behind IAP."""
    topo = ctx.topology.gateway
    if "protected" not in topo.memo:
        topo.memo["protected"] = [
            (service, refs)
            for service, refs in topo.gke_services()
            if _needs_iap(ctx, service, refs) or gw.iap_enabled(topo.backend_policy(service))
        ]
    return topo.memo["protected"]


def _what(ctx: Context, service: Manifest) -> str:
    component = ctx.topology.component(service)
    return f"Flyte ({component})" if component is not None else "Flyte"


@rule(
    "IAP060",
    "gateway-route-without-iap",
    severity=ERROR,
    title="Gateway route to Flyte without IAP",
    page=_PAGE,
    description="""
        An HTTPRoute on a GKE Gateway sends requests to a Service that fronts Flyte (by its labels, name or
        pods, or by the Flyte paths routed to it), and no GCPBackendPolicy with `iap.enabled: true`
        targets that Service. A Gateway turns IAP on per backend service through GCPBackendPolicy only, so
        these requests reach Flyte without Identity-Aware Proxy. With `--partial` a Service with no policy in
        the input is not reported.
    """,
    fix="""
        Apply a GCPBackendPolicy whose `targetRef` is the Service (`group: ""`, `kind: Service`) with
        `spec.default.iap.enabled: true`, `clientID` and `oauth2ClientSecret.name`.
    """,
)
def gateway_route_without_iap(ctx: Context) -> Iterator[Finding]:
    topo = ctx.topology.gateway
    for service, refs in topo.gke_services():
        if not _needs_iap(ctx, service, refs):
            continue
        policy = topo.backend_policy(service)
        if gw.iap_enabled(policy):
            continue
        what = _what(ctx, service)
        if policy is not None:
            yield ctx.finding(
                policy,
                f"this GCPBackendPolicy targets Service {service.name}, which serves {what}, but does not "
                "set iap.enabled: true, so requests through the Gateway reach it without IAP.",
                at=("spec", "default", "iap"),
            )
        elif not ctx.partial:
            ref = refs[0]
            yield ctx.finding(
                ref.route,
                f"this route sends requests to Service {service.name}, which serves {what}, and no "
                "GCPBackendPolicy with iap.enabled: true targets that Service: they reach it without IAP.",
                at=ref.field,
            )


@rule(
    "IAP061",
    "gateway-iap-incomplete",
    severity=ERROR,
    title="GCPBackendPolicy enables IAP without its OAuth client",
    page=_PAGE,
    description="""
        `spec.default.iap.enabled: true` needs both `clientID` and `oauth2ClientSecret.name` (GKE's
        GCPBackendPolicy API: "If true, the ClientID and Oauth2ClientSecret fields must be non-empty").
        Without them GKE does not turn IAP on for the backend. The Secret is read from the policy's
        namespace (the reference has no namespace field): a Secret of that name only in another namespace
        is reported too.
    """,
    fix="""
        Set `iap.clientID` to the OAuth client ID and `iap.oauth2ClientSecret.name` to the Secret that holds
        its client secret, in the policy's namespace.
    """,
)
def gateway_iap_incomplete(ctx: Context) -> Iterator[Finding]:
    for policy in ctx.topology.gateway.backend_policies:
        iap = gw.iap_block(policy)
        if iap.get("enabled") is not True:
            continue
        secret = iap.get("oauth2ClientSecret")
        missing = []
        if not iap.get("clientID"):
            missing.append("clientID")
        if not (isinstance(secret, Mapping) and secret.get("name")):
            missing.append("oauth2ClientSecret.name")
        if not missing and policy.namespace is not None:
            # The Secret is read from the policy's namespace (gke-gateway-api@v1.4.0:
            # apis/networking/v1/gcpbackendpolicy_types.go, Oauth2ClientSecret has no namespace).
            name = str(secret["name"])  # type: ignore[index]
            elsewhere = sorted(
                str(o.namespace)
                for o in ctx.index.of_kind("Secret")
                if o.name == name and o.namespace and o.namespace != policy.namespace
            )
            if elsewhere and ctx.index.find("Secret", name, policy.namespace) is None:
                yield ctx.finding(
                    policy,
                    f"iap.oauth2ClientSecret names Secret {name}, which the input has only in namespace "
                    f"{', '.join(elsewhere)}; GKE reads it from {policy.namespace} only, so IAP is not "
                    "turned on for this backend.",
                    at=("spec", "default", "iap", "oauth2ClientSecret", "name"),
                )
        if missing:
            yield ctx.finding(
                policy,
                f"iap.enabled is true but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: GKE needs the OAuth client to turn IAP "
                "on for this backend.",
                at=("spec", "default", "iap"),
            )


@rule(
    "IAP062",
    "backendconfig-ignored-by-gateway",
    severity=WARNING,
    title="BackendConfig on a Service that only a Gateway reaches",
    page=_PAGE,
    description="""
        The Service carries a `cloud.google.com/backend-config` annotation, but only HTTPRoutes on GKE
        Gateways reach it (no GKE Ingress does). "You cannot use a FrontendConfig or a BackendConfig to
        configure a Gateway" (GKE's Gateway policy documentation): the BackendConfig's
        IAP, health check and timeout settings have no effect there. An error when that BackendConfig turns
        IAP on and no GCPBackendPolicy does: the Service looks protected and is not.
    """,
    fix="""
        Move the settings to a GCPBackendPolicy (IAP, timeout, connection draining) and a HealthCheckPolicy
        (health check) that target the Service, and remove the annotation.
    """,
)
def backendconfig_ignored_by_gateway(ctx: Context) -> Iterator[Finding]:
    topology = ctx.topology
    via_ingress = {
        id(backend.service) for ingress in topology.gce_ingresses for backend, _ in topology.backends(ingress)
    }
    for service, _ in topology.gateway.gke_services():
        annotation = gce.backend_config_annotation(service)
        if annotation is None or id(service) in via_ingress:
            continue
        names: set[str] = set()
        if annotation.error is None and annotation.value is not None:
            default, ports = annotation.value
            names = {n for n in (default, *ports.values()) if n}
        configs = [c for n in sorted(names) if (c := ctx.index.find("BackendConfig", n, service.namespace))]
        iap_in_config = any(backendconfig_iap(c) for c in configs)
        unprotected = iap_in_config and not gw.iap_enabled(topology.gateway.backend_policy(service))
        detail = (
            " Its BackendConfig turns IAP on, and no GCPBackendPolicy does: requests through the Gateway "
            "reach the Service without IAP."
            if unprotected
            else ""
        )
        yield ctx.finding(
            service,
            f"{annotation.key} is set, but only Gateway routes reach this Service, and GKE's Gateway "
            f"controller ignores BackendConfig.{detail}",
            at=("metadata", "annotations", annotation.key),
            severity=ERROR if unprotected else WARNING,
        )


@rule(
    "IAP063",
    "gateway-reference-missing",
    severity=ERROR,
    title="Gateway route or policy refers to an object that is not in the input",
    page=_PAGE,
    description="""
        An HTTPRoute on a GKE Gateway sends requests to a Service, or a GCPBackendPolicy or
        HealthCheckPolicy targets a Service (a GCPGatewayPolicy a Gateway), that the checked manifests do
        not contain. A policy whose target does not exist is never applied: IAP or the health check it
        carries is silently missing. A policy must also be in its target's namespace, and target a Service
        (a GCPGatewayPolicy: a Gateway), without `sectionName` (GKE's policies apply to a whole Service);
        otherwise it is an error. A missing object is reported as an error when the input has other objects
        of that kind in the namespace (a likely misspelling), as a warning otherwise; not reported with
        `--partial`. A route is also reported when it names a port the Service does not have (an error), or
        (a warning) when it sends requests to a Service in another namespace and no ReferenceGrant in the
        input allows it (the Gateway refuses the reference), or when no listener of the Gateway it names
        admits its namespace (`allowedRoutes.namespaces`, `Same` by default), so it is not attached.
    """,
    fix="""
        Correct the name in `targetRef` or `backendRefs`, or check the manifest that defines the object
        together with these. Remove `targetRef.sectionName` (split the Service to give ports different
        policies). For a Service in another namespace, add a ReferenceGrant there `from` the
        route's kind and namespace `to` the Service; for a refused route, widen the listener's
        `allowedRoutes.namespaces` (or label the route's Namespace to match its selector).
    """,
)
def gateway_reference_missing(ctx: Context) -> Iterator[Finding | None]:
    topo = ctx.topology.gateway
    for route in topo.gke_routes:
        reported: set[str] = set()
        for ref in topo.backends(route):
            if ref.name in reported:
                continue
            service = topo.service(ref)
            if service is not None:
                numbers = [p.get("port") for p in service_ports(service)]
                if ref.port is not None and ref.port not in numbers:
                    reported.add(ref.name)
                    # kubernetes-sigs/gateway-api@v1.4.0: apis/v1/object_reference_types.go (port is the
                    # Service port), apis/v1/httproute_types.go (an invalid backendRef answers 500).
                    yield ctx.finding(
                        route,
                        f"this route sends requests to port {ref.port} of Service {ref.name}, which has no "
                        f"such port (its ports: {', '.join(map(str, numbers)) or 'none'}): the Gateway "
                        "refuses the reference and the rule answers 500.",
                        at=(*ref.field, "port"),
                        severity=ERROR,
                    )
                    continue
                if not ctx.partial and not topo.granted(ref):
                    reported.add(ref.name)
                    # kubernetes-sigs/gateway-api@v1.4.0:apis/v1/httproute_types.go: an invalid backendRef
                    # answers 500.
                    yield ctx.finding(
                        route,
                        f"this route sends requests to Service {ref.name} in namespace {ref.namespace}, and "
                        f"no ReferenceGrant there allows HTTPRoutes from {route.namespace}: the Gateway "
                        "refuses the reference and the rule answers 500.",
                        at=(*ref.field, "namespace"),
                        severity=ERROR if ctx.strict else WARNING,
                    )
                continue
            reported.add(ref.name)
            yield ctx.missing(
                route, (*ref.field, "name"), "Service", ref.name,
                f"this route sends requests to Service {ref.name}, which is not in the input",
            )  # fmt: skip
    for route in topo.routes:
        for gateway in (g for g in topo.refused.get(id(route), ()) if gw.is_gke_gateway(g)):
            yield ctx.finding(
                route,
                f"no listener of Gateway {gateway.name} ({gateway.namespace}) admits routes from namespace "
                f"{route.namespace} (listeners' allowedRoutes.namespaces): the route is not attached there.",
                at=("spec", "parentRefs"),
                severity=WARNING,
            )
    expected = [(p, "Service", "") for p in (*topo.backend_policies, *topo.health_policies)]
    expected += [(p, "Gateway", gw.GATEWAY_GROUP) for p in topo.gateway_policies]
    for policy, kind, group in expected:
        raw_target = policy.spec.get("targetRef")
        if isinstance(raw_target, Mapping) and "sectionName" in raw_target:
            # GoogleCloudPlatform/gke-gateway-api@v1.4.0:apis/networking/v1/gcpbackendpolicy_types.go and
            # healthcheck_types.go: targetRef is a NamespacedPolicyTargetReference (group, kind, name,
            # namespace), so a policy cannot pick one port of a Service.
            yield ctx.finding(
                policy,
                f"targetRef.sectionName is not a field of {policy.kind} (its targetRef has group, kind, "
                "name, namespace): kubectl apply's default strict validation refuses the policy, so what it "
                "sets is not applied; without validation the field is dropped and the policy covers every "
                "port.",
                at=("spec", "targetRef", "sectionName"),
                severity=ERROR,
            )
        target = gw.target_ref(policy)
        if target is None:
            continue
        t_group, t_kind, name, namespace = target
        if (t_group, t_kind) != (group, kind):
            if policy.kind == "GCPGatewayPolicy" or t_kind != "ServiceImport":
                yield ctx.finding(
                    policy,
                    f"targetRef names {t_kind or 'no kind'} (group {t_group or 'core'!r}); a {policy.kind} "
                    f"applies to a {kind} (group {group or 'core'!r}), so GKE does not apply it.",
                    at=("spec", "targetRef"),
                    severity=ERROR,
                )
            continue
        if namespace != policy.namespace and policy.namespace is not None:
            yield ctx.finding(
                policy,
                f"targetRef names namespace {namespace}; GKE applies a {policy.kind} only to a {kind} in the "
                f"policy's own namespace ({policy.namespace}).",
                at=("spec", "targetRef", "namespace"),
                severity=ERROR,
            )
            continue
        if topo.find(kind, name, namespace) is None:
            yield ctx.missing(
                policy, ("spec", "targetRef", "name"), kind, name,
                f"this {policy.kind} targets {kind} {name}, which is not in the input: it applies to nothing",
            )  # fmt: skip


def _serving_gateways(ctx: Context) -> list[tuple[Manifest, list[tuple[Manifest, str | None]]]]:
    """GKE Gateways with routes to protected Services, and those routes (with the listener they pick)."""
    topo = ctx.topology.gateway
    if "serving" not in topo.memo:
        topo.memo["serving"] = list(_find_serving_gateways(ctx))
    return topo.memo["serving"]


def _find_serving_gateways(ctx: Context) -> Iterator[tuple[Manifest, list[tuple[Manifest, str | None]]]]:
    protected = {id(s) for s, _ in _protected(ctx)}
    topo = ctx.topology.gateway
    for gateway in topo.gateways:
        if not gw.is_gke_gateway(gateway):
            continue
        routes = [
            (route, section)
            for route, section in topo.attached(gateway)
            if any((s := topo.service(b)) is not None and id(s) in protected for b in topo.backends(route))
        ]
        if routes:
            yield gateway, routes


@rule(
    "IAP064",
    "gateway-no-https",
    severity=ERROR,
    title="Gateway in front of Flyte without an HTTPS listener",
    page=_PAGE,
    description="""
        A GKE Gateway routes to Flyte (or to a backend with IAP on) but has no listener with
        `protocol: HTTPS`. IAP works only behind an HTTPS load balancer: without one, sign-in and the
        clients' tokens have no TLS to travel in.
    """,
    fix="""
        Add a listener `protocol: HTTPS`, `port: 443` with a certificate (a Certificate Manager map through
        the `networking.gke.io/certmap` annotation, `tls.certificateRefs` to a Secret, or the
        `networking.gke.io/pre-shared-certs` TLS option), and attach the routes to it.
    """,
)
def gateway_no_https(ctx: Context) -> Iterator[Finding]:
    for gateway, _ in _serving_gateways(ctx):
        if not any(listener.protocol == "HTTPS" for listener in gw.listeners(gateway)):
            yield ctx.finding(
                gateway,
                f"this Gateway (class {gw.gateway_class(gateway)}) routes to Flyte but has no HTTPS "
                "listener.",
                at=("spec", "listeners"),
            )


@rule(
    "IAP065",
    "gateway-http-not-redirected",
    severity=WARNING,
    title="Flyte served over plain HTTP through a Gateway",
    page=_PAGE,
    description="""
        A route that forwards to Flyte is attached to an HTTP listener of a GKE Gateway that also has an
        HTTPS listener (by `sectionName`, or by naming no listener, which attaches it to all of them).
        Browsers and clients that use `http://` then talk to Flyte through IAP without TLS: cookies and
        tokens travel in clear text.
    """,
    fix="""
        Attach the routes that forward to Flyte to the HTTPS listener only (`parentRefs[].sectionName`),
        and attach to the HTTP listener a route whose rule has a `RequestRedirect` filter with
        `scheme: https`.
    """,
)
def gateway_http_not_redirected(ctx: Context) -> Iterator[Finding]:
    protected = {id(s) for s, _ in _protected(ctx)}
    topo = ctx.topology.gateway
    for gateway, routes in _serving_gateways(ctx):
        http = {listener.name: listener for listener in gw.listeners(gateway) if listener.protocol == "HTTP"}
        if not http or not any(listener.protocol == "HTTPS" for listener in gw.listeners(gateway)):
            continue  # no HTTPS to redirect to: IAP064
        reported: set[int] = set()
        for route, section in routes:
            if (section is not None and section not in http) or id(route) in reported:
                continue
            for ref in topo.backends(route):
                service = topo.service(ref)
                if service is None or id(service) not in protected or gw.redirects_to_https(route, ref.rule):
                    continue
                names = section or ", ".join(sorted(http))
                yield ctx.finding(
                    route,
                    f"this route is attached to the HTTP listener {names} of Gateway {gateway.name} and "
                    f"forwards to Service {service.name} instead of redirecting to HTTPS.",
                    at=("spec", "parentRefs"),
                )
                reported.add(id(route))
                break


@rule(
    "IAP066",
    "gateway-certificate",
    severity=ERROR,
    title="Gateway HTTPS listener without a usable certificate for the route's hosts",
    page=_PAGE,
    description="""
        An HTTPS listener of a GKE Gateway that serves Flyte has no certificate (no `tls.certificateRefs`,
        no `networking.gke.io/pre-shared-certs` option, no `networking.gke.io/certmap` annotation on the
        Gateway); or it combines the certmap annotation with `certificateRefs`, which GKE treats as an
        error; or it refers to something other than a Secret (a ManagedCertificate works only with
        Ingress); or a route on it names hostnames the listener's `hostname` does not cover, so the route
        is not attached for them. A ManagedCertificate in the input that no Ingress uses, next to a
        Gateway, is reported too (not with `--partial`): the Gateway never serves it.
    """,
    fix="""
        Give the listener one certificate source: for Certificate Manager, the annotation
        `networking.gke.io/certmap: <map>` on the Gateway and no `certificateRefs`; otherwise
        `certificateRefs` to `kind: Secret` objects or the `networking.gke.io/pre-shared-certs` option.
        Make the listener `hostname` cover every route hostname (or leave it unset).
    """,
)
def gateway_certificate(ctx: Context) -> Iterator[Finding]:
    topo = ctx.topology.gateway
    for gateway, routes in _serving_gateways(ctx):
        certmap = gateway.annotations.get(gw.CERTMAP_ANNOTATION)
        for listener in gw.listeners(gateway):
            if listener.protocol != "HTTPS":
                continue
            raw_refs = listener.tls.get("certificateRefs")
            refs = [r for r in (raw_refs if isinstance(raw_refs, list) else []) if isinstance(r, Mapping)]
            options = listener.tls.get("options")
            pre_shared = isinstance(options, Mapping) and options.get(gw.PRE_SHARED_CERTS_OPTION)
            if certmap and refs:
                yield ctx.finding(
                    gateway,
                    f"listener {listener.name} sets tls.certificateRefs and the Gateway has the "
                    f"{gw.CERTMAP_ANNOTATION} annotation: GKE refuses the combination.",
                    at=(*listener.field, "tls", "certificateRefs"),
                )
            for n, ref in enumerate(refs):
                kind = str(ref.get("kind") or "Secret")
                if kind != "Secret" or str(ref.get("group") or "") != "":
                    yield ctx.finding(
                        gateway,
                        f"listener {listener.name} refers to a {kind} certificate; GKE's Gateway accepts "
                        "only Secrets in certificateRefs (ManagedCertificate is for Ingress).",
                        at=(*listener.field, "tls", "certificateRefs", n),
                    )
            if not (certmap or refs or pre_shared):
                yield ctx.finding(
                    gateway,
                    f"HTTPS listener {listener.name} has no certificate: no tls.certificateRefs, no "
                    f"{gw.PRE_SHARED_CERTS_OPTION} option and no {gw.CERTMAP_ANNOTATION} annotation.",
                    at=listener.field,
                )
            for route, section in routes:
                if section not in (None, listener.name):
                    continue
                # A route with several parents (an internal and an external Gateway) lists the hostnames
                # of all of them; a hostname is missed only when no HTTPS listener of any parent takes it.
                outside = [
                    h
                    for h in gw.route_hostnames(route)
                    if not gw.hostname_matches(listener.hostname, h) and not _served_elsewhere(topo, route, h)
                ]
                if outside and section == listener.name:
                    yield ctx.finding(
                        route,
                        f"hostnames {', '.join(outside)} are not covered by hostname {listener.hostname} of "
                        f"HTTPS listener {listener.name}: the route is not served there for them.",
                        at=("spec", "hostnames"),
                    )
    if not ctx.partial and any(gw.is_gke_gateway(g) for g in topo.gateways):
        used = {
            name.strip()
            for ingress in ctx.topology.gce_ingresses
            for name in ingress.annotations.get(gce.MANAGED_CERTS_ANNOTATION, "").split(",")
        }
        for cert in ctx.index.of_kind("ManagedCertificate"):
            if cert.name not in used:
                yield ctx.finding(
                    cert,
                    "no GKE Ingress uses this ManagedCertificate, and a Gateway cannot: GKE's Gateway takes "
                    "certificates from Certificate Manager, Secrets or pre-shared certificates only.",
                    at=("spec", "domains"),
                    severity=WARNING,
                )


def _served_elsewhere(topo: gw.GatewayTopology, route: Manifest, host: str) -> bool:
    """Whether an HTTPS listener of any of the route's GKE parent Gateways takes ``host``."""
    for gateway, section in topo.parents(route):
        if gateway is None or not gw.is_gke_gateway(gateway):
            continue
        for listener in gw.listeners(gateway):
            if listener.protocol != "HTTPS" or section not in (None, listener.name):
                continue
            if gw.hostname_matches(listener.hostname, host):
                return True
    return False


@rule(
    "IAP067",
    "gateway-bypass-service",
    severity=ERROR,
    title="Service behind an IAP Gateway also reachable around it",
    page=_PAGE,
    description="""
        A Service that a GKE Gateway protects with IAP (or that serves Flyte through one) has
        `type: LoadBalancer` or `externalIPs`, or another Service selecting the same pods does. That address
        reaches the pods without passing the Gateway or IAP. (A Flyte Service of type LoadBalancer is
        reported as IAP001 instead.)
    """,
    fix="""
        Make every Service that selects these pods `type: ClusterIP` and without `externalIPs`; expose the
        workload only through the Gateway.
    """,
)
def gateway_bypass_service(ctx: Context) -> Iterator[Finding]:
    exposed_services = [
        s
        for s in ctx.index.of_kind("Service")
        if s.spec.get("type") == "LoadBalancer" or s.spec.get("externalIPs")
    ]
    if not exposed_services:
        return
    reported: set[int] = set()
    for service, _ in _protected(ctx):
        for other in _same_pods(ctx, service, exposed_services):
            if id(other) in reported or ctx.topology.serves_flyte(other):
                continue
            exposed = other.spec.get("type") == "LoadBalancer"
            if not exposed and not other.spec.get("externalIPs"):
                continue
            reported.add(id(other))
            how = "has type LoadBalancer" if exposed else "lists externalIPs"
            if other is service:
                what = "this Service is behind IAP on a GKE Gateway"
            else:
                what = (
                    f"this Service selects the pods of Service {service.name}, which is behind IAP on a GKE "
                    "Gateway,"
                )
            yield ctx.finding(
                other,
                f"{what} and {how}: that address reaches the pods without IAP.",
                at=("spec", "type") if exposed else ("spec", "externalIPs"),
            )


def _same_pods(ctx: Context, service: Manifest, candidates: list[Manifest]) -> list[Manifest]:
    """The Service itself and those of ``candidates`` that select (some of) its pods."""
    pods = {id(p.workload) for p in ctx.index.pods_for(service)}
    selector = service.spec.get("selector")
    wanted = {str(k): str(v) for k, v in selector.items()} if isinstance(selector, Mapping) else {}
    out = [service]
    for other in candidates:
        if other is service or not same_namespace(other.namespace, service.namespace):
            continue
        if pods and pods & {id(p.workload) for p in ctx.index.pods_for(other)}:
            out.append(other)
            continue
        theirs = other.spec.get("selector")
        if (
            not pods
            and wanted
            and isinstance(theirs, Mapping)
            and theirs
            and {str(k): str(v) for k, v in theirs.items()}.items() <= wanted.items()
        ):
            out.append(other)
    return out


@rule(
    "IAP068",
    "gateway-no-health-check",
    severity=WARNING,
    title="Flyte behind a Gateway without a HealthCheckPolicy",
    page=_PAGE,
    description="""
        A Service that serves Flyte through a GKE Gateway has no HealthCheckPolicy, so GKE chooses the load
        balancer's health check without knowing Flyte's health endpoint (`/healthz` for Flyte 2's
        flyte-binary, `/healthcheck` for flyteadmin). GKE documents health checks for Gateways only through
        HealthCheckPolicy (a BackendConfig cannot configure a Gateway). A check that Flyte does not answer
        with 200 marks every endpoint unhealthy, and the load balancer answers 502/503. Not reported with
        `--partial`.
    """,
    fix="""
        Apply a HealthCheckPolicy that targets the Service with `config.type: HTTP` and
        `httpHealthCheck.requestPath` set to the component's health path (`/healthz` for Flyte 2's
        flyte-binary) and `portSpecification: USE_SERVING_PORT`.
    """,
)
def gateway_no_health_check(ctx: Context) -> Iterator[Finding]:
    if ctx.partial:
        return
    topo = ctx.topology.gateway
    for service, refs in topo.gke_services():
        if not _needs_iap(ctx, service, refs) or topo.health_policy(service) is not None:
            continue
        yield ctx.finding(
            refs[0].route,
            f"no HealthCheckPolicy targets Service {service.name}, which serves {_what(ctx, service)} "
            "through this route: GKE picks the health check without knowing Flyte's health path.",
            at=refs[0].field,
        )


@rule(
    "IAP069",
    "gateway-grpc-over-http1",
    severity=ERROR,
    title="Flyte 1 gRPC through a Gateway that speaks HTTP/1.1 to the backend",
    page=_PAGE,
    description="""
        An HTTPRoute on a GKE Gateway sends flyteadmin's gRPC paths (`/flyteidl.service.*`) to a Service port
        without an `appProtocol` that asks for HTTP/2. Google's Application Load Balancers talk HTTP/1.1 to
        backends unless told otherwise, and gRPC needs HTTP/2, so pyflyte and flytectl fail. Flyte 2's
        Connect protocol does not have this problem: it works over HTTP/1.1.
    """,
    fix="""
        Serve Flyte 2 through the Gateway (its API works over HTTP/1.1), or keep Flyte 1 behind the GKE
        Ingress with HTTP/2 and TLS to the backend, as the Ingress guide does.
    """,
)
def gateway_grpc_over_http1(ctx: Context) -> Iterator[Finding]:
    # "the connection from the load balancer proxy to your application uses HTTP/1.1 by default"
    # (GKE docs, kubernetes-engine/docs/how-to/ingress-http2). Whether GKE's Gateway honours
    # appProtocol HTTP2 or kubernetes.io/h2c is not established here, so a port that sets any is not judged.
    topo = ctx.topology.gateway
    for route in topo.gke_routes:
        for ref in topo.backends(route):
            if not any(flyte.path_kind(p) == "grpc" for p in gw.route_paths(route, ref.rule)):
                continue
            service = topo.service(ref)
            found = gce.service_port(service, ref.port) if service is not None else None
            if found is None or found[1].get("appProtocol"):
                continue
            yield ctx.finding(
                route,
                f"this route sends flyteadmin's gRPC paths to port {ref.port} of Service {ref.name}, which "
                "sets no appProtocol: the load balancer speaks HTTP/1.1 to it, and gRPC needs HTTP/2.",
                at=ref.field,
            )
