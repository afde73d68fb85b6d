"""Rules about the backend side of IAP: BackendConfig annotations and objects, OAuth secrets, health checks.

Example::

    from flyte_iap.manifest_check import check_paths

    [f.rule for f in check_paths(["examples/gke"])]  # e.g. ["IAP013"]: a Flyte backend without IAP
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from flyte_iap.manifest_check import flyte, gce
from flyte_iap.manifest_check.index import PodTemplate, same_namespace
from flyte_iap.manifest_check.loader import Manifest
from flyte_iap.manifest_check.registry import ERROR, WARNING, Context, Finding, rule
from flyte_iap.manifest_check.topology import Backend, iap_enabled, port_label, service_ports

_OAUTH_KEYS = ("client_id", "client_secret")


def _annotation_at(key: str) -> tuple[str, ...]:
    return ("metadata", "annotations", key)


@rule(
    "IAP010",
    "backend-config-invalid",
    severity=ERROR,
    title="backend-config annotation that GKE cannot read",
    page="deploy/backendconfig",
    description="""
        `cloud.google.com/backend-config` (or `beta.cloud.google.com/backend-config`) must be a JSON
        object naming BackendConfigs: `{"default": "NAME"}` and/or `{"ports": {"PORT": "NAME"}}`.
        A bare name (as in some tutorials), other JSON, or an object naming nothing is refused by the GKE
        controller, so no BackendConfig, and therefore no IAP, applies to the Service.
    """,
    fix="""
        Write the value as JSON in a quoted YAML string, e.g.
        `cloud.google.com/backend-config: '{"default": "flyte-iap"}'`.
    """,
)
def backend_config_invalid(ctx: Context) -> Iterator[Finding]:
    for service in ctx.index.of_kind("Service"):
        annotation = gce.backend_config_annotation(service)
        if annotation is not None and annotation.error is not None:
            yield ctx.finding(
                service,
                f"{annotation.key}: {gce.quoted(annotation.raw)} cannot be used: {annotation.error}. "
                "GKE applies no BackendConfig to this Service, so IAP is not turned on for it.",
                at=_annotation_at(annotation.key),
            )


@rule(
    "IAP011",
    "backend-config-missing",
    severity=WARNING,
    title="backend-config names a BackendConfig that is not in the input",
    page="deploy/backendconfig",
    description="""
        The Service's backend-config annotation names a BackendConfig that the checked manifests do not
        contain (BackendConfigs must be in the Service's namespace). A warning (objects applied
        separately are normal; `--strict` makes it an error) that suggests a name only when one in the
        input is a likely misspelling; not reported with `--partial`.
    """,
    fix="""
        Correct the name in the annotation, or create the BackendConfig in the Service's namespace and
        check it together with the Service.
    """,
)
def backend_config_missing(ctx: Context) -> Iterator[Finding | None]:
    for service in ctx.index.of_kind("Service"):
        annotation = gce.backend_config_annotation(service)
        if annotation is None or annotation.error is not None:
            continue
        default, ports = annotation.value
        for name in dict.fromkeys([default, *ports.values()]):
            if name and ctx.index.find("BackendConfig", name, service.namespace) is None:
                yield ctx.missing(
                    service,
                    _annotation_at(annotation.key),
                    "BackendConfig",
                    name,
                    f"{annotation.key} names BackendConfig {name}, which is not in the input",
                )


@rule(
    "IAP012",
    "backend-config-unknown-port",
    severity=ERROR,
    title='backend-config "ports" entry for a port the Service does not have',
    page="deploy/backendconfig",
    description="""
        The `ports` map of the backend-config annotation is keyed by Service port name or Service port
        number (not `targetPort`). A key that matches no port never applies, so the port it was meant
        for gets the `default` BackendConfig, or none (and no IAP). A map shared by several Services
        (flyte-binary v2 can only annotate its console Service through `commonAnnotations`) may hold
        keys for the others' ports: a key is reported only when no Service with the same map has it.
    """,
    fix="""
        Key the map by the Service port's name or number (flyte-core flyteadmin: `http`/`80`,
        `grpc`/`81`; flyte-binary: `http`, `grpc`), or use `{"default": "NAME"}`.
    """,
    generic_fix="""
        Key the map by the Service port's name or number (not its targetPort), or use
        `{"default": "NAME"}`.
    """,
)
def backend_config_unknown_port(ctx: Context) -> Iterator[Finding]:
    services = list(ctx.index.of_kind("Service"))
    for service in services:
        annotation = gce.backend_config_annotation(service)
        if annotation is None or annotation.error is not None:
            continue
        ports = service_ports(service)
        known = {str(p.get("name")) for p in ports if p.get("name")} | {str(p.get("port")) for p in ports}
        for key, name in annotation.value[1].items():
            if key in known or _shared_entry_applies(service, annotation.value, key, services):
                continue
            listing = ", ".join(port_label(p) for p in ports) or "none"
            hint = ""
            if any(str(gce.target_port(p)) == key for p in ports):
                hint = f"; {key} is a targetPort, the map needs the Service port"
            yield ctx.finding(
                service,
                f"{annotation.key} maps port {key!r} to {name}, but the Service has no port named or "
                f"numbered {key!r} (its ports: {listing}{hint}); that entry never applies.",
                at=_annotation_at(annotation.key),
                flyte=ctx.topology.is_flyte(service),
            )


def _shared_entry_applies(service: Manifest, value: Any, key: str, services: list[Manifest]) -> bool:
    """Whether another Service of the namespace carries the same annotation and has port ``key``: one
    map shared by several Services (a chart's ``commonAnnotations``, which flyte-binary v2 gives its
    console Service as its only annotations), each entry meant for one of them. GKE looks a port up
    by name, then number, then ``default``, and ignores the other keys
    (kubernetes/ingress-gce@v1.41.1:pkg/backendconfig/utils.go, ``BackendConfigName``)."""
    for other in services:
        if other is service or other.namespace != service.namespace:
            continue
        annotation = gce.backend_config_annotation(other)
        if annotation is None or annotation.error is not None or annotation.value != value:
            continue
        ports = service_ports(other)
        if key in {str(p.get("name")) for p in ports if p.get("name")} | {str(p.get("port")) for p in ports}:
            return True
    return False


def _iap_backends(ctx: Context) -> Iterator[tuple[Manifest, Backend]]:
    """`(ingress, backend)` for every backend port of an Ingress that must be behind IAP."""
    for ingress in ctx.topology.iap_ingresses:
        for backend, _ in ctx.topology.backends(ingress):
            yield ingress, backend


@rule(
    "IAP013",
    "backend-without-iap",
    severity=ERROR,
    title="Backend of an IAP-protected Ingress with no BackendConfig (IAP off)",
    page="deploy/backendconfig",
    description="""
        A GKE Ingress serves Flyte (or has other backends with IAP on), but no BackendConfig applies to
        one of its Service ports: the Service has no backend-config annotation, or the annotation's
        `ports` map leaves that port out and there is no `default`. IAP is turned on per backend
        service, through a BackendConfig, so that path is open to anyone who can reach the load balancer.
        An error for a Flyte backend; a warning for any other backend, since an Ingress may mix IAP and
        public backends by design (a public health or webhook path next to protected ones).
    """,
    fix="""
        Create a BackendConfig with `iap: {enabled: true}` and annotate the Service with
        `cloud.google.com/backend-config: '{"default": "NAME"}'`. Helm: flyte-binary
        `service.commonAnnotations`; flyte-core `flyteadmin.service.annotations` and
        `flyteconsole.service.annotations`.
    """,
    generic_fix="""
        If the backend must be private, create a BackendConfig with `iap: {enabled: true}` and annotate
        the Service with `cloud.google.com/backend-config: '{"default": "NAME"}'`. If it is public on
        purpose, say so on the Service with the annotation `flyte-iap/ignore: IAP013`.
    """,
)
def backend_without_iap(ctx: Context) -> Iterator[Finding]:
    uncovered: dict[int, tuple[Manifest, Manifest, list[str]]] = {}
    for ingress, backend in _iap_backends(ctx):
        annotation = gce.backend_config_annotation(backend.service)
        if annotation is not None and annotation.error is not None:
            continue  # IAP010
        if ctx.topology.backend_config(backend) is None:
            entry = uncovered.setdefault(id(backend.service), (backend.service, ingress, []))
            if backend.label not in entry[2]:
                entry[2].append(backend.label)
    for service, ingress, ports in uncovered.values():
        plural = "s" if len(ports) > 1 else ""
        is_flyte = ctx.topology.is_flyte(service)
        what = ctx.topology.component(service) or "Flyte" if is_flyte else "this backend"
        yield ctx.finding(
            service,
            f"{ingress.ref} sends traffic to port{plural} {', '.join(ports)} of this Service, but no "
            f"BackendConfig applies to {'them' if plural else 'it'}: IAP is not turned on, and anyone who "
            f"can reach the load balancer reaches {what}.",
            at=("metadata", "annotations") if service.annotations else ("metadata",),
            severity=ERROR if is_flyte else WARNING,
            flyte=is_flyte,
        )


def _flyte_backends(ctx: Context) -> Iterator[tuple[Manifest | None, Backend]]:
    """IAP backends, plus the serving ports of Flyte Services when no Ingress in the input routes them."""
    seen = set()
    for ingress, backend in _iap_backends(ctx):
        seen.add(backend.key)
        yield ingress, backend
    # Services that only GKE Gateway routes reach take no BackendConfig (rules_gateway: IAP062).
    gateway_only = {id(s) for s, _ in ctx.topology.gateway.gke_services()}
    for service in ctx.index.of_kind("Service"):
        if ctx.topology.component(service) is None or id(service) in gateway_only:
            continue
        for position, port in enumerate(service.spec.get("ports") or []):
            if not isinstance(port, Mapping) or (id(service), position) in seen:
                continue
            if ctx.topology.flyte_serving_port(service, port):
                yield None, Backend(service, position, port)


@rule(
    "IAP014",
    "iap-not-enabled",
    severity=ERROR,
    title="BackendConfig of an IAP-protected backend without iap.enabled: true",
    page="deploy/backendconfig",
    description="""
        The BackendConfig that GKE applies to a Flyte backend (or to another backend of an IAP-protected
        Ingress) has no `iap` section, or `iap.enabled` is not `true`. The load balancer then
        forwards requests without asking IAP. An error for a Flyte backend; a warning for another
        backend of an Ingress that mixes IAP and public backends (which may be on purpose).
    """,
    generic_fix="""
        If the backend must be private, add `iap: {enabled: true}` to the BackendConfig's spec; if it
        is public on purpose, annotate the BackendConfig with `flyte-iap/ignore: IAP014`.
    """,
    fix="""
        Add `iap: {enabled: true}` to the BackendConfig's spec (with `oauthclientCredentials` when
        you use your own OAuth client).
    """,
)
def iap_not_enabled(ctx: Context) -> Iterator[Finding]:
    # Flyte's backends first: a BackendConfig shared by a Flyte and another backend is an error.
    backends = sorted(_flyte_backends(ctx), key=lambda item: not ctx.topology.is_flyte(item[1].service))
    reported: set[int] = set()
    for _, backend in backends:
        ref = ctx.topology.backend_config(backend)
        if ref is None or ref.config is None or iap_enabled(ref.config) or id(ref.config) in reported:
            continue
        reported.add(id(ref.config))
        config = ref.config
        iap = config.spec.get("iap")
        if not isinstance(iap, Mapping):
            problem, at = "has no iap section", ("spec",)
        else:
            problem, at = f"has iap.enabled: {iap.get('enabled')!r}", ("spec", "iap", "enabled")
        is_flyte = ctx.topology.is_flyte(backend.service)
        if is_flyte:
            serves = f", which serves {ctx.topology.component(backend.service) or 'Flyte'},"
        else:
            serves = ", a backend of an Ingress where other backends have IAP on,"
        yield ctx.finding(
            config,
            f"this BackendConfig applies to port {backend.label} of {backend.service.ref}{serves} but it "
            f"{problem}: the load balancer lets requests through without IAP.",
            at=at,
            severity=ERROR if is_flyte else WARNING,
            flyte=is_flyte,
        )


@rule(
    "IAP015",
    "oauth-secret-keys",
    severity=ERROR,
    title="IAP OAuth client Secret without client_id / client_secret",
    page="deploy/oauth-clients",
    description="""
        `iap.oauthclientCredentials.secretName` must name a Secret, in the BackendConfig's namespace,
        with the keys `client_id` and `client_secret` (in `data` or `stringData`). Otherwise the
        GKE controller refuses the BackendConfig and IAP is not configured; a Secret of that name only in
        another namespace is reported too. A Secret that is not in the input at all is not reported: such
        Secrets are usually created outside the manifests (`kubectl create secret`, External Secrets).
    """,
    fix="""
        Create the Secret with both keys in the BackendConfig's namespace, e.g. `kubectl create secret
        generic NAME -n NAMESPACE --from-literal=client_id=... --from-literal=client_secret=...`, or leave out
        `oauthclientCredentials` to use the Google-managed OAuth client.
    """,
)
def oauth_secret_keys(ctx: Context) -> Iterator[Finding]:
    for config in ctx.index.of_kind("BackendConfig"):
        iap = config.spec.get("iap")
        if not isinstance(iap, Mapping) or iap.get("enabled") is not True:
            continue
        credentials = iap.get("oauthclientCredentials")
        if credentials is None:
            continue
        secret_name = credentials.get("secretName") if isinstance(credentials, Mapping) else None
        if not secret_name:
            yield ctx.finding(
                config,
                "iap.oauthclientCredentials has no secretName: the controller cannot read the OAuth client.",
                at=("spec", "iap", "oauthclientCredentials"),
            )
            continue
        secret = ctx.index.find("Secret", str(secret_name), config.namespace)
        if secret is None:
            # The controller reads the Secret from the BackendConfig's namespace only
            # (kubernetes/ingress-gce@v1.41.1:pkg/backendconfig/validation.go, Secrets(beConfig.Namespace)).
            elsewhere = sorted(
                str(o.namespace)
                for o in ctx.index.of_kind("Secret")
                if o.name == str(secret_name) and o.namespace
            )
            if elsewhere and _named_by_a_service(ctx, config):
                yield ctx.finding(
                    config,
                    f"iap.oauthclientCredentials names Secret {secret_name}, which the input has only in "
                    f"namespace {', '.join(elsewhere)}; GKE reads it from {config.namespace} only, so the "
                    "controller refuses the BackendConfig and IAP is not configured.",
                    at=("spec", "iap", "oauthclientCredentials", "secretName"),
                )
            continue
        keys = set(secret.string_data())
        missing = [k for k in _OAUTH_KEYS if k not in keys]
        if missing:
            at = ("stringData",) if "stringData" in secret.body else ("data",)
            yield ctx.finding(
                secret,
                f"{config.ref} takes its IAP OAuth client from this Secret, which lacks "
                f"{' and '.join(missing)}: the GKE controller refuses the BackendConfig, so IAP is not "
                "configured.",
                at=at,
            )


def _named_by_a_service(ctx: Context, config: Manifest) -> bool:
    """Whether a Service that can refer to ``config`` names it in its backend-config annotation."""
    for service in ctx.index.of_kind("Service"):
        if not same_namespace(service.namespace, config.namespace):
            continue
        annotation = gce.backend_config_annotation(service)
        if annotation is not None and annotation.value is not None:
            default, ports = annotation.value
            if config.name == default or config.name in ports.values():
                return True
    return False


@rule(
    "IAP016",
    "iap-with-cdn",
    severity=ERROR,
    title="BackendConfig enables both IAP and Cloud CDN",
    page="deploy/backendconfig",
    description="""
        The GKE controller refuses a BackendConfig with both `iap.enabled` and `cdn.enabled`
        ("iap and cdn cannot be enabled at the same time"), so none of its settings, IAP included, apply.
    """,
    fix="Turn Cloud CDN off (`cdn.enabled: false`, or no `cdn` section) in the BackendConfig.",
)
def iap_with_cdn(ctx: Context) -> Iterator[Finding]:
    for config in ctx.index.of_kind("BackendConfig"):
        cdn = config.spec.get("cdn")
        if iap_enabled(config) and isinstance(cdn, Mapping) and cdn.get("enabled") is True:
            yield ctx.finding(
                config,
                "iap.enabled and cdn.enabled are both true: the GKE controller refuses this BackendConfig.",
                at=("spec", "cdn", "enabled"),
            )


@rule(
    "IAP017",
    "iap-on-regional-external",
    severity=ERROR,
    title="IAP BackendConfig behind a regional external Ingress",
    page="deploy/backendconfig",
    description="""
        The GKE controller refuses a BackendConfig with `iap.enabled: true` for the backends of a
        `gce-regional-external` Ingress ("IAP configuration is not supported", kubernetes/ingress-gce@v1.41.1:
        `pkg/backendconfig/validation.go`, `validateIAP`, for service ports of that class since v1.26.0), so
        the backend is not configured and IAP does not protect it.
    """,
    fix="""
        Serve the IAP-protected backends through a global external Ingress (class `gce`), or through a
        GKE Gateway with a GCPBackendPolicy that turns IAP on.
    """,
)
def iap_on_regional_external(ctx: Context) -> Iterator[Finding]:
    reported: set[int] = set()
    for ingress in ctx.topology.gce_ingresses:
        if gce.scope(ingress) != "regional-external":
            continue
        for backend, _ in ctx.topology.backends(ingress):
            ref = ctx.topology.backend_config(backend)
            if ref is None or ref.config is None or not iap_enabled(ref.config) or id(ref.config) in reported:
                continue
            reported.add(id(ref.config))
            yield ctx.finding(
                ref.config,
                f"{ingress.ref} (class gce-regional-external) routes to {backend.service.ref}, whose "
                "BackendConfig turns IAP on: the GKE controller refuses IAP for a regional external "
                "Ingress, so this backend is not configured.",
                at=("spec", "iap", "enabled"),
            )


def _probe_summary(pods: list[PodTemplate], target: int | str | None, protocol: str) -> str:
    """What the selected pods have instead of a usable readiness probe, in a few words."""
    for pod in pods:
        for _, container in pod.containers():
            probe = container.get("readinessProbe")
            if not isinstance(probe, Mapping):
                continue
            where = f"{pod.workload.ref} container {container.get('name')}"
            for handler in ("exec", "tcpSocket", "grpc"):
                if handler in probe:
                    return f"{where} has a readiness probe of type {handler}"
            http_get = probe.get("httpGet")
            if isinstance(http_get, Mapping):
                scheme = str(http_get.get("scheme") or "HTTP").upper()
                wanted = "HTTPS" if protocol in ("HTTP2", "HTTPS") else "HTTP"
                if scheme != wanted:
                    return f"{where} has an httpGet readiness probe with scheme {scheme}, not {wanted}"
                return (
                    f"{where} has an httpGet readiness probe on port {http_get.get('port')}, not on {target}"
                )
    names = ", ".join(dict.fromkeys(p.workload.ref for p in pods))
    return f"{names} {'has' if len(pods) == 1 else 'have'} no readiness probe"


def _health_check_path(config: Manifest) -> Any:
    health = config.spec.get("healthCheck")
    return health.get("requestPath") if isinstance(health, Mapping) else None


@rule(
    "IAP040",
    "no-health-check",
    severity=ERROR,
    title="Backend without a health check GKE can use",
    page="deploy/backendconfig",
    description="""
        GKE derives a backend's health check from the pods' readiness probe only when it is an `httpGet`
        probe (scheme HTTPS for an HTTPS or HTTP2 backend) on the port the Service targets. Without such
        a probe and without a BackendConfig `healthCheck.requestPath`, the load balancer probes `GET /`
        on the serving port, which is not a health endpoint of Flyte's servers (flyteadmin answers on
        `/healthcheck`, flyteconsole under `/console`). flyte-core's flyteadmin has only `exec` probes,
        and its backend then shows UNHEALTHY, so the load balancer answers 502 (flyteorg/flyte#3730).
        Checked only when the pods are in the input; a warning for backends that are not Flyte's.
    """,
    fix="""
        Add `healthCheck` to the backend's BackendConfig, e.g. `{type: HTTP, requestPath: /healthcheck,
        port: 8088}` for flyteadmin (`type: HTTP2` or `HTTPS` when flyteadmin serves TLS) and
        `requestPath: /console` on port 8080 for flyteconsole, or give the container an `httpGet`
        readiness probe on the serving port.
    """,
    generic_fix="""
        Add `healthCheck` (`type`, `requestPath`, `port` of the container) to the backend's
        BackendConfig, or give the container an `httpGet` readiness probe on the serving port.
    """,
)
def no_health_check(ctx: Context) -> Iterator[Finding]:
    pending: dict[int, tuple[Manifest, list[str], list[str], bool]] = {}
    for _, backend in _iap_backends(ctx):
        pods = ctx.index.pods_for(backend.service)
        if not pods:
            continue
        ref = ctx.topology.backend_config(backend)
        if ref is not None:
            if ref.config is None:
                continue  # IAP011: cannot tell what it sets
            if _health_check_path(ref.config):
                continue
        protocol = gce.app_protocol(backend.service, backend.port)
        if gce.readiness_probe(pods, backend.port, protocol) is not None:
            continue
        target = gce.target_port(backend.port)
        entry = pending.setdefault(
            id(backend.service), (backend.service, [], [], ctx.topology.is_flyte(backend.service))
        )
        entry[1].append(f"{backend.label} (targetPort {target}, {protocol})")
        entry[2].append(_probe_summary(pods, target, protocol))
    for service, ports, reasons, is_flyte in pending.values():
        if is_flyte:
            consequence = (
                "so the load balancer probes GET / on the serving port, which is not a Flyte health "
                "endpoint: the backend shows UNHEALTHY and the load balancer answers 502."
            )
        else:
            consequence = (
                "so the load balancer probes GET / on the serving port: the backend is healthy only if it "
                "answers that with 200."
            )
        yield ctx.finding(
            service,
            f"no health check GKE can use for port {', '.join(ports)}: {'; '.join(dict.fromkeys(reasons))}, "
            f"and no BackendConfig healthCheck.requestPath is set, {consequence}",
            at=("spec", "ports"),
            severity=ERROR if is_flyte else WARNING,
            flyte=is_flyte,
        )


_GRPC_PROBE = re.compile(r"grpc_health_probe\b(?P<args>[^;&|\n]*)")
_ADDR = re.compile(r"-addr[= ](?:\S*?):(?P<port>\d+)")
_PLAIN_URL = re.compile(r"http://[^/\s:'\"]+:(?P<port>\d+)")


def _probe_problems(probe: Mapping[str, Any], config: flyte.ServerConfig) -> list[str]:
    """Why a probe of a flyteadmin container fails once ``secure: true`` (empty: it can pass)."""
    problems = []
    http_get = probe.get("httpGet")
    if isinstance(http_get, Mapping):
        port = http_get.get("port")
        scheme = str(http_get.get("scheme") or "HTTP").upper()
        if port in (config.grpc_port, "grpc"):
            problems.append(f"httpGet on port {port}, which is closed")
        elif port in (config.http_port, "http") and scheme != "HTTPS":
            problems.append(f"httpGet with scheme {scheme} on port {port}, which serves TLS")
    exec_ = probe.get("exec")
    command = exec_.get("command") if isinstance(exec_, Mapping) else None
    text = " ".join(str(c) for c in command) if isinstance(command, list) else ""
    for match in _GRPC_PROBE.finditer(text):
        addr = _ADDR.search(match.group("args"))
        if addr is None:
            continue
        port = int(addr.group("port"))
        if port == config.grpc_port:
            problems.append(f"grpc_health_probe on port {port}, which is closed")
        elif port == config.http_port and "-tls" not in match.group("args"):
            problems.append(f"grpc_health_probe without -tls on port {port}, which serves TLS")
    for match in _PLAIN_URL.finditer(text):
        port = int(match.group("port"))
        if port in (config.http_port, config.grpc_port):
            state = "serves TLS" if port == config.http_port else "is closed"
            problems.append(f"a plain http:// request to port {port}, which {state}")
    return problems


@rule(
    "IAP041",
    "probe-after-secure",
    severity=ERROR,
    title="flyteadmin probe that fails once secure: true",
    page="deploy/grpc-backend",
    description="""
        flyteadmin (or the flyte-binary) runs with `server.security.secure: true`, which closes the gRPC
        port and turns the HTTP port into TLS, but a readiness or liveness probe still checks the old
        way: plain `http://` or an `httpGet` without `scheme: HTTPS` on the HTTP port, or anything on the
        gRPC port (flyte-core's default probes call `grpc_health_probe -addr=:8089`). The pod never
        becomes ready (or keeps restarting), and the load balancer has no backend.
    """,
    fix="""
        Change the probes with TLS: `httpGet: {path: /healthcheck, port: http, scheme: HTTPS}` (flyte-binary
        `deployment.readinessProbe` / `livenessProbe`; flyte-core `flyteadmin.readinessProbe` /
        `livenessProbe`, YAML strings the chart renders verbatim, with `port: 8088`), or
        `curl -k https://...:8088/healthcheck` and
        `grpc_health_probe -tls -tls-no-verify -addr=:8088` in exec probes.
    """,
)
def probe_after_secure(ctx: Context) -> Iterator[Finding]:
    for pod, position, config in flyte.flyte_containers(ctx.index):
        if config.secure is not True:
            continue
        container = dict(pod.containers())[position]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind)
            if not isinstance(probe, Mapping):
                continue
            problems = _probe_problems(probe, config)
            if problems:
                setting = config.secure_setting
                where = f" (set in {setting.where()})" if setting is not None else ""
                yield ctx.finding(
                    pod.workload,
                    f"container {container.get('name')} runs with secure: true{where}, but its {kind} uses "
                    f"{'; '.join(dict.fromkeys(problems))}: the probe fails.",
                    at=pod.container_path(position, kind),
                )
