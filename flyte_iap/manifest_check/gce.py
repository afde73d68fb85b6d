"""How the GKE Ingress controller (ingress-gce) reads Ingresses, Services and their annotations.

Example::

    from flyte_iap.manifest_check import gce

    if gce.is_gce_ingress(ingress):
        for route in gce.routes(ingress):
            print(route.host, route.path, route.service, route.port)

Each function mirrors one piece of the controller's behaviour (ingress-gce ``pkg/annotations``,
``pkg/backendconfig``, ``pkg/translator``), so the checks report what GKE will actually do, not what
a manifest seems to say: an Ingress with ``spec.ingressClassName`` and no class annotation is skipped,
``app-protocols`` is looked up by port *name*, ``backend-config`` by port name or number, a health
check comes from a readiness probe only when the probe is a plain ``httpGet`` on the serving port.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flyte_iap.manifest_check.index import PodTemplate
from flyte_iap.manifest_check.loader import FieldPath, Manifest

CLASS_ANNOTATION = "kubernetes.io/ingress.class"
GLOBAL_IP_ANNOTATION = "kubernetes.io/ingress.global-static-ip-name"
REGIONAL_IP_ANNOTATION = "kubernetes.io/ingress.regional-static-ip-name"
ALLOW_HTTP_ANNOTATION = "kubernetes.io/ingress.allow-http"
PRE_SHARED_CERT_ANNOTATION = "ingress.gcp.kubernetes.io/pre-shared-cert"
MANAGED_CERTS_ANNOTATION = "networking.gke.io/managed-certificates"
FRONTEND_CONFIG_ANNOTATION = "networking.gke.io/v1beta1.FrontendConfig"
BACKEND_CONFIG_ANNOTATIONS = ("cloud.google.com/backend-config", "beta.cloud.google.com/backend-config")
# The controller reads the old key first and falls back to the new one.
APP_PROTOCOLS_ANNOTATIONS = ("service.alpha.kubernetes.io/app-protocols", "cloud.google.com/app-protocols")
APP_PROTOCOLS = ("HTTP", "HTTPS", "HTTP2")

#: Values of the class annotation handled by GKE's controllers (external, internal, regional, multi-cluster).
GCE_CLASSES = frozenset({"gce", "gce-internal", "gce-regional-external", "gce-multi-cluster"})

#: The load balancer each GKE class creates: Ingresses compete for a host or an address only within one.
SCOPES = {
    "gce": "external",
    "gce-multi-cluster": "external",
    "gce-internal": "internal",
    "gce-regional-external": "regional-external",
}

#: Classes of other clouds' load-balancer controllers (AWS Load Balancer Controller, Azure Application
#: Gateway and application routing, Alibaba Cloud's ALB). Such an Ingress cannot exist on GKE; a set of
#: manifests holding one was written for another cloud, where IAP does not apply.
OTHER_CLOUD_CLASSES = frozenset(
    {
        "alb",
        "azure/application-gateway",
        "azure-application-gateway",
        "webapprouting.kubernetes.azure.com",
    }
)
#: Annotation prefixes only other clouds' Ingress controllers read.
OTHER_CLOUD_ANNOTATION_PREFIXES = (
    "alb.ingress.kubernetes.io/",
    "service.beta.kubernetes.io/aws-",
    "appgw.ingress.kubernetes.io/",
)

#: Ingress annotations only the GKE controller reads: their presence says "meant for GCE".
GCE_ONLY_ANNOTATIONS = (
    GLOBAL_IP_ANNOTATION,
    REGIONAL_IP_ANNOTATION,
    ALLOW_HTTP_ANNOTATION,
    PRE_SHARED_CERT_ANNOTATION,
    MANAGED_CERTS_ANNOTATION,
    FRONTEND_CONFIG_ANNOTATION,
)

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def class_annotation(ingress: Manifest) -> str | None:
    """The ``kubernetes.io/ingress.class`` annotation (``None`` when absent or empty)."""
    return ingress.annotations.get(CLASS_ANNOTATION) or None


def class_name(ingress: Manifest) -> str | None:
    """``spec.ingressClassName`` (``None`` when absent or null, as Helm renders an unset value)."""
    value = ingress.spec.get("ingressClassName")
    return str(value) if value not in (None, "") else None


def is_gce_ingress(ingress: Manifest) -> bool:
    """Whether a GKE controller handles this Ingress (ingress-gce ``IsGCEIngress`` + multi-cluster)."""
    annotation = class_annotation(ingress)
    if annotation is not None:
        return annotation in GCE_CLASSES
    return class_name(ingress) is None


def scope(ingress: Manifest) -> str:
    """``external``, ``internal`` or ``regional-external``: the kind of load balancer GKE creates."""
    annotation = class_annotation(ingress) or class_name(ingress) or "gce"
    return SCOPES.get(annotation, "external")


def other_cloud(ingress: Manifest) -> bool:
    """Whether the Ingress is for another cloud's load-balancer controller (class or annotations)."""
    for value in (class_annotation(ingress), class_name(ingress)):
        if value is not None and value.lower() in OTHER_CLOUD_CLASSES:
            return True
    return any(k.startswith(OTHER_CLOUD_ANNOTATION_PREFIXES) for k in ingress.annotations)


def meant_for_gce(ingress: Manifest) -> bool:
    """Whether the Ingress was written for GKE: GKE-only annotations, or a GCE class name."""
    if any(key in ingress.annotations for key in GCE_ONLY_ANNOTATIONS):
        return True
    name = class_name(ingress)
    return name is not None and name in GCE_CLASSES


def allow_http(ingress: Manifest) -> bool:
    """``kubernetes.io/ingress.allow-http`` as the controller parses it (Go ``ParseBool``, default true)."""
    value = ingress.annotations.get(ALLOW_HTTP_ANNOTATION)
    return value is None or value not in _FALSE


def static_ip(ingress: Manifest) -> tuple[str, str] | None:
    """``(annotation, address name)`` of the reserved IP the Ingress asks for, if any."""
    for key in (GLOBAL_IP_ANNOTATION, REGIONAL_IP_ANNOTATION):
        value = ingress.annotations.get(key, "").strip()
        if value:
            return key, value
    return None


def split_annotation(value: str) -> list[str]:
    """A comma-separated annotation value as a list (the controller's ``SplitAnnotation``)."""
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Route:
    """One path of an Ingress (or its default backend: ``path is None``) and the Service port behind it."""

    ingress: Manifest
    host: str | None
    path: str | None
    path_type: str | None
    service: str
    port: int | str | None
    field: FieldPath

    @property
    def patterns(self) -> list[str]:
        """The GCE URL-map path patterns this path becomes (``Prefix /api`` -> ``/api``, ``/api/*``)."""
        if self.path is None:
            return []
        path = self.path or "/"
        if self.path_type == "Prefix":
            stem = path.rstrip("/")
            return ["/*"] if not stem else [stem, stem + "/*"]
        return [path]

    def matches(self, request_path: str) -> int:
        """Length of the longest pattern matching ``request_path`` (-1: no match); longest wins in GCE."""
        best = -1
        for pattern in self.patterns:
            if pattern.endswith("/*"):
                if request_path.startswith(pattern[:-1]):
                    best = max(best, len(pattern))
            elif request_path == pattern:
                best = max(best, len(pattern))
        return best


def _backend(backend: Any) -> tuple[str, int | str | None] | None:
    if not isinstance(backend, Mapping):
        return None
    service = backend.get("service")
    if isinstance(service, Mapping) and service.get("name"):
        port = service.get("port")
        ref: int | str | None = None
        if isinstance(port, Mapping):
            if port.get("number") is not None:
                ref = _int_or_str(port["number"])
            elif port.get("name"):
                ref = str(port["name"])
        return str(service["name"]), ref
    if backend.get("serviceName"):
        return str(backend["serviceName"]), _int_or_str(backend.get("servicePort"))
    return None


def _int_or_str(value: Any) -> int | str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


def routes(ingress: Manifest) -> list[Route]:
    """Every Service backend of the Ingress: the default backend first, then each rule's paths."""
    out: list[Route] = []
    for key in ("defaultBackend", "backend"):
        target = _backend(ingress.spec.get(key))
        if target is not None:
            out.append(Route(ingress, None, None, None, target[0], target[1], ("spec", key)))
    rules = ingress.spec.get("rules")
    for r_pos, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, Mapping):
            continue
        host = str(rule["host"]).strip().lower() if rule.get("host") else None
        http = rule.get("http")
        paths = http.get("paths") if isinstance(http, Mapping) else None
        for p_pos, item in enumerate(paths if isinstance(paths, list) else []):
            if not isinstance(item, Mapping):
                continue
            target = _backend(item.get("backend"))
            if target is None:
                continue
            path = str(item.get("path") or "/")
            path_type = str(item["pathType"]) if item.get("pathType") else None
            field_path: FieldPath = ("spec", "rules", r_pos, "http", "paths", p_pos)
            out.append(Route(ingress, host, path, path_type, target[0], target[1], field_path))
    return out


def hosts(ingress: Manifest) -> list[str | None]:
    """The distinct hosts of the Ingress's rules (``None`` for a rule without host), in order."""
    seen: dict[str | None, None] = {}
    rules = ingress.spec.get("rules")
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, Mapping):
            seen[str(rule["host"]).strip().lower() if rule.get("host") else None] = None
    return list(seen)


def rule_field(ingress: Manifest, host: str | None) -> FieldPath:
    """Path of the first rule of the Ingress for ``host`` (``spec.rules`` if there is none)."""
    rules = ingress.spec.get("rules")
    for position, rule in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(rule, Mapping):
            rule_host = str(rule["host"]).strip().lower() if rule.get("host") else None
            if rule_host == host:
                return ("spec", "rules", position)
    return ("spec", "rules")


def resolve(candidates: Sequence[Route], request_path: str) -> Route | None:
    """The route GCE picks for ``request_path`` among one host's routes (longest pattern wins)."""
    best: Route | None = None
    best_len = -1
    for route in candidates:
        length = route.matches(request_path)
        if length > best_len:
            best, best_len = route, length
    return best


def invalid_path_reason(route: Route) -> str | None:
    """Why GCE's URL map would refuse this path (``None`` if it is fine)."""
    if route.path is None or route.path_type in ("Prefix", "Exact"):
        return None
    path = route.path
    if not path.startswith("/"):
        return "a GCE path must start with /"
    if "?" in path or "#" in path:
        return "a GCE path cannot contain ? or #"
    star = path.find("*")
    if star != -1 and (star != len(path) - 1 or not path.endswith("/*")):
        return "the only wildcard GCE accepts is a trailing /* (no regular expressions, no * elsewhere)"
    return None


def service_port(service: Manifest, ref: int | str | None) -> tuple[int, Mapping[str, Any]] | None:
    """``(position, port)`` of the Service port an Ingress backend names (by number or by name)."""
    ports = service.spec.get("ports")
    for position, port in enumerate(ports if isinstance(ports, list) else []):
        if not isinstance(port, Mapping):
            continue
        if isinstance(ref, int) and _int_or_str(port.get("port")) == ref:
            return position, port
        if isinstance(ref, str) and port.get("name") == ref:
            return position, port
    return None


def target_port(port: Mapping[str, Any]) -> int | str | None:
    """A Service port's ``targetPort`` (defaults to ``port``)."""
    target = _int_or_str(port.get("targetPort"))
    return target if target is not None else _int_or_str(port.get("port"))


@dataclass(frozen=True)
class AnnotationValue:
    """A JSON annotation: which key held it, its raw text, and the parsed value or why it is refused."""

    key: str
    raw: str
    value: Any = None
    error: str | None = None


def quoted(raw: str, limit: int = 80) -> str:
    """An annotation value for a message: ``repr`` of it, shortened with ``...`` past ``limit`` characters."""
    return repr(raw) if len(raw) <= limit else repr(raw[:limit]) + "..."


def backend_config_annotation(service: Manifest) -> AnnotationValue | None:
    """The Service's backend-config annotation, parsed as the controller does (GA key wins over beta).

    ``value`` is ``(default, {port name or number: BackendConfig name})``.
    """
    if "backend-config" not in service.memo:
        service.memo["backend-config"] = _backend_config_annotation(service)
    return service.memo["backend-config"]  # type: ignore[no-any-return]


def _backend_config_annotation(service: Manifest) -> AnnotationValue | None:
    for key in BACKEND_CONFIG_ANNOTATIONS:
        if key in service.annotations:
            raw = service.annotations[key]
            try:
                return AnnotationValue(key, raw, _parse_backend_configs(raw))
            except ValueError as exc:
                return AnnotationValue(key, raw, error=str(exc))
    return None


def _lookup(data: Mapping[str, Any], field_name: str) -> Any:
    # Go's encoding/json matches struct fields case-insensitively.
    for key, value in data.items():
        if key == field_name:
            return value
    for key, value in data.items():
        if isinstance(key, str) and key.lower() == field_name:
            return value
    return None


def _parse_backend_configs(raw: str) -> tuple[str, dict[str, str]]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("it is not JSON") from None
    except RecursionError:
        raise ValueError("it is JSON nested too deeply to be a BackendConfig reference") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("it is JSON but not an object")
    default = _lookup(data, "default")
    ports = _lookup(data, "ports")
    if default is not None and not isinstance(default, str):
        raise ValueError('"default" must be a BackendConfig name (a string)')
    if ports is not None and (
        not isinstance(ports, dict) or not all(isinstance(v, str) for v in ports.values())
    ):
        raise ValueError('"ports" must map port names or numbers to BackendConfig names')
    if not default and not ports:
        raise ValueError('it names no BackendConfig (neither "default" nor "ports")')
    return default or "", dict(ports or {})


def backend_config_name(configs: tuple[str, dict[str, str]], port: Mapping[str, Any]) -> str | None:
    """The BackendConfig applied to one Service port: by port name, then number, then the default."""
    default, ports = configs
    name = port.get("name")
    if name and str(name) in ports:
        return ports[str(name)]
    number = _int_or_str(port.get("port"))
    if number is not None and str(number) in ports:
        return ports[str(number)]
    return default or None


def app_protocols_annotation(service: Manifest) -> AnnotationValue | None:
    """The Service's app-protocols annotation (``{port name: HTTP|HTTPS|HTTP2}``), parsed."""
    if "app-protocols" not in service.memo:
        service.memo["app-protocols"] = _app_protocols_annotation(service)
    return service.memo["app-protocols"]  # type: ignore[no-any-return]


def _app_protocols_annotation(service: Manifest) -> AnnotationValue | None:
    for key in APP_PROTOCOLS_ANNOTATIONS:
        if key in service.annotations:
            raw = service.annotations[key]
            try:
                data = json.loads(raw)
            except ValueError:
                return AnnotationValue(key, raw, error="it is not JSON")
            except RecursionError:
                return AnnotationValue(key, raw, error="it is JSON nested too deeply")
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                return AnnotationValue(key, raw, error="it must be a JSON object of port name to protocol")
            bad = sorted({v for v in data.values() if v not in APP_PROTOCOLS})
            if bad:
                return AnnotationValue(
                    key, raw, error=f"{', '.join(bad)} is not one of {', '.join(APP_PROTOCOLS)}"
                )
            return AnnotationValue(key, raw, data)
    return None


def app_protocol(service: Manifest, port: Mapping[str, Any]) -> str:
    """The protocol the load balancer speaks to this Service port (``HTTP`` unless annotated)."""
    annotation = app_protocols_annotation(service)
    if annotation is None or annotation.error is not None:
        return "HTTP"
    return str(annotation.value.get(str(port.get("name") or ""), "HTTP"))


def readiness_probe(
    pods: Sequence[PodTemplate], port: Mapping[str, Any], protocol: str
) -> PodTemplate | None:
    """The pod whose readiness probe GKE would turn into this backend's health check, if any.

    Mirrors ingress-gce ``getHTTPProbe``: a plain ``httpGet`` probe (no host, no headers but Host)
    whose scheme matches the protocol (HTTPS for HTTP2), on the container port the Service targets.
    """
    wanted = target_port(port)
    scheme = "HTTPS" if protocol == "HTTP2" else protocol
    for pod in pods:
        for _, container in pod.containers():
            probe = container.get("readinessProbe")
            http_get = probe.get("httpGet") if isinstance(probe, Mapping) else None
            if not isinstance(http_get, Mapping) or http_get.get("host"):
                continue
            headers = http_get.get("httpHeaders") or []
            if not (
                len(headers) == 0
                or (
                    len(headers) == 1 and isinstance(headers[0], Mapping) and headers[0].get("name") == "Host"
                )
            ):
                continue
            if str(http_get.get("scheme") or "HTTP").upper() != scheme:
                continue
            probe_port = _int_or_str(http_get.get("port"))
            ports = container.get("ports")
            for declared in ports if isinstance(ports, list) else []:
                if not isinstance(declared, Mapping):
                    continue
                number = _int_or_str(declared.get("containerPort"))
                name = declared.get("name")
                if (
                    (isinstance(wanted, int) and wanted == number)
                    or (isinstance(wanted, str) and wanted == name)
                ) and (
                    (isinstance(probe_port, int) and probe_port == number)
                    or (isinstance(probe_port, str) and probe_port == name)
                ):
                    return pod
    return None
