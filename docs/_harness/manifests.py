"""Validation of the YAML a reader copies: manifests, Envoy config, Helm values, IAP settings, client config.

Example::

    problems = validate_file(EXAMPLES / "gke" / "flyte-binary" / "ingress.yaml")
    assert problems == []

Every function returns a list of human-readable problems (empty when the input is right); callers turn
them into a failure that names ``page.md:LINE``. What is checked:

- Kubernetes objects against the Kubernetes JSON schemas of the versions in :data:`K8S_VERSIONS`
  (kubernetes-validate, strict: unknown fields are errors); GKE's BackendConfig, FrontendConfig and
  ManagedCertificate against the schemas kept in ``docs/_schemas/``.
- An ``envoy.yaml`` inside a ConfigMap against Envoy's v3 API (xds-protos), field by field.
- A deployment set (an ``examples/gke/<chart>/`` directory plus the Services the chart renders from the
  matching ``examples/helm/<chart>/`` values): every Ingress backend, Envoy cluster and backend-config
  name must resolve, and ``flyte-iap check`` must report nothing.
- Helm values against the key paths of the documented chart version (``docs/_data/helm-keys-*.txt``).
- ``gcloud iap settings set`` files against ``docs/_schemas/iap-settings.json``.
- flytekit/flytectl configuration through flytekit's own loader.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from . import DOCS, EXAMPLES, REPO
from .report import record

#: GKE's Regular channel default at the time of writing is 1.35, its Stable channel 1.34.
K8S_VERSIONS = ("1.34.0", "1.35.0")
#: The chart version the guide documents; helm commands and values are checked against it.
CHART_VERSION = "v1.16.8"
CHARTS = ("flyte-binary", "flyte-core", "flyte-binary-v2")
#: examples/gke/<chart>/ is deployed together with examples/helm/<chart>/<file> under this release.
DEPLOYMENTS: dict[str, tuple[str, str]] = {
    "flyte-binary": ("flyte-backend", "values-gke-iap.yaml"),
    "flyte-core": ("flyte", "values-gke-iap.yaml"),
    "flyte-binary-v2": ("flyte", "values-gke-iap.yaml"),
}
#: Flyte 2 (docs/flyte2/): flyte-binary chart v2.0.43 from flyteorg/flyte `main`; its values are under
#: examples/helm/flyte-binary-v2/, its manifests under examples/gke/flyte2/.
CHART_VERSIONS = {"flyte-binary-v2": "v2.0.43"}
GKE_DIRS = {"flyte-binary-v2": "flyte2"}
NAMESPACE = "flyte"

_GKE_SCHEMAS = {
    ("cloud.google.com/v1", "BackendConfig"): "backendconfig-v1.json",
    ("networking.gke.io/v1beta1", "FrontendConfig"): "frontendconfig-v1beta1.json",
    ("networking.gke.io/v1", "ManagedCertificate"): "managedcertificate-v1.json",
}


# -- what a YAML text is --------------------------------------------------------------------------


def kind_of(path: Path | None, text: str, docs: list[Any]) -> str:
    """``k8s``, ``helm-values:<chart>``, ``iap-settings`` or ``client-config``; ``unknown`` otherwise."""
    if path is not None:
        try:
            rel = path.resolve().relative_to(EXAMPLES.resolve()).parts
        except ValueError:
            rel = ()
        if rel[:1] == ("gke",):
            return "k8s"
        if rel[:1] == ("helm",) and len(rel) > 2 and rel[1] in CHARTS:
            return f"helm-values:{rel[1]}"
        if rel[:1] == ("gcloud",) and rel[-1].startswith("iap-settings"):
            return "iap-settings"
        if rel[:1] == ("config",):
            return "client-config"
        if rel[:1] == ("ci",) and path.suffix == ".yml":
            return "github-workflow"
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    marker = re.match(r"#\s*(flyte-binary|flyte-core) values\b", first)
    if marker:
        return f"helm-values:{marker.group(1)}"
    objects = [d for d in docs if isinstance(d, dict)]
    if objects and all("apiVersion" in d and "kind" in d for d in objects):
        return "k8s"
    if len(objects) == 1 and ("accessSettings" in objects[0] or "access_settings" in objects[0]):
        return "iap-settings"
    if len(objects) == 1 and "admin" in objects[0]:
        return "client-config"
    return "unknown"


def load_all(text: str) -> tuple[list[Any], list[str]]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None], []
    except yaml.YAMLError as exc:
        return [], [f"not valid YAML: {exc}"]


def validate_text(text: str, path: Path | None = None) -> tuple[str, list[str]]:
    """Validate a YAML text by what it is. Returns ``(kind, problems)``."""
    docs, problems = load_all(text)
    if problems:
        return "invalid", problems
    kind = kind_of(path, text, docs)
    if kind == "k8s":
        problems = [p for d in docs for p in validate_object(d)]
    elif kind.startswith("helm-values:"):
        problems = validate_values(kind.split(":", 1)[1], docs)
    elif kind == "iap-settings":
        problems = validate_iap_settings(docs)
    elif kind == "client-config" and (path is not None and path.name.startswith("flyte2")):
        problems = validate_flyte2_client_config(text)
    elif kind == "client-config":
        problems = validate_client_config(text)
    elif kind == "github-workflow":
        from .workflows import validate_github_workflow

        problems = validate_github_workflow(docs[0] if len(docs) == 1 else None, REPO)
    else:
        problems = [
            "cannot tell what this YAML is: include it from examples/ (the path says what it is) or start "
            "it with a comment `# flyte-binary values` / `# flyte-core values`"
        ]
    return kind, problems


def validate_file(path: Path, record_as: str = "include") -> list[str]:
    """Validate one file under examples/ (and, for a manifest, the deployment set it belongs to)."""
    kind, problems = validate_text(path.read_text(), path)
    record(f"{record_as}:{kind}")
    if not problems and kind == "k8s":
        chart = chart_dir_of(path)
        if chart is not None:
            problems = list(check_deployment_set(chart))
    if not problems and kind.startswith("helm-values:"):
        chart = kind.split(":", 1)[1]
        if path.name == DEPLOYMENTS[chart][1]:
            problems = list(check_deployment_set(chart))
    return problems


def chart_dir_of(path: Path) -> str | None:
    try:
        rel = path.resolve().relative_to((EXAMPLES / "gke").resolve()).parts
    except ValueError:
        return None
    if not rel:
        return None
    by_dir = {GKE_DIRS.get(c, c): c for c in CHARTS}
    return by_dir.get(rel[0])


# -- Kubernetes objects ---------------------------------------------------------------------------


@cache
def _gke_schema(name: str) -> dict[str, Any]:
    return json.loads((DOCS / "_schemas" / name).read_text())


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


def validate_object(obj: Any) -> list[str]:
    """Schema-validate one Kubernetes object (core kinds, GKE CRDs, and an embedded Envoy config)."""
    import jsonschema
    import kubernetes_validate

    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return [f"not a Kubernetes object: {str(obj)[:80]}"]
    label = name_of(obj)
    key = (obj["apiVersion"], obj["kind"])
    if key in _GKE_SCHEMAS:
        validator = jsonschema.Draft202012Validator(_gke_schema(_GKE_SCHEMAS[key]))
        return [
            f"{label}: {'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    problems: list[str] = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return [
                f"{label}: no schema for {key[0]} {key[1]} (add one to docs/_schemas/ or drop the object)"
            ]
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{label}: Kubernetes {version[:4]}: {path or '(top)'}: {exc.message}")
    if obj["kind"] == "ConfigMap":
        for data_key, value in (obj.get("data") or {}).items():
            if data_key.endswith("envoy.yaml"):
                problems += [f"{label} {data_key}: {p}" for p in validate_envoy(value)]
    return problems


def validate_envoy(text: str) -> list[str]:
    """Parse an Envoy bootstrap into Envoy's v3 protobuf messages; unknown fields and types fail."""
    # The typed_config messages this guide uses must be importable for Any to resolve.
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
    from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
        http_connection_manager_pb2,
    )
    from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
    from google.protobuf import json_format

    try:
        config = yaml.safe_load(text)
        json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
    except (yaml.YAMLError, json_format.ParseError) as exc:
        return [f"not a valid Envoy v3 bootstrap: {exc}"]
    return []


# -- deployment sets ------------------------------------------------------------------------------


def chart_services(chart: str, release: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Services the chart renders for these values: names, labels, annotations and the spec fields
    GKE's ingress and the cross-reference checks read, per the chart templates on flyteorg/flyte master
    (flyte-binary templates/service/{http,grpc}.yaml and _helpers.tpl; flyte-core
    templates/admin/service.yaml and templates/console/service.yaml). ``tpl`` in values is not rendered.

    Args:
        chart: ``flyte-binary`` or ``flyte-core``.
        release: the Helm release name.
        values: the values file, as a mapping.

    Returns:
        The Service objects, in the order the chart renders them.
    """

    def get(*keys: str, default: Any = None) -> Any:
        node: Any = values
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return default if node is None else node

    def svc(
        name: str,
        annotations: dict[str, str],
        ports: list[dict[str, Any]],
        typ: str,
        labels: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm", **(labels or {})},
        }
        if annotations:
            meta["annotations"] = annotations
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"type": typ, **(spec or {}), "ports": ports},
        }

    if chart == "flyte-binary-v2":
        return _flyte2_services(release, get, svc)
    if chart == "flyte-binary":
        name = get("fullnameOverride") or (
            release if "flyte-binary" in release else f"{release}-flyte-binary"
        )
        typ = get("service", "type", default="ClusterIP")
        exposed = typ in ("NodePort", "LoadBalancer")
        # Both Service templates write the annotation maps one after the other in this order, so a key
        # set in a later map wins (the YAML parser keeps the last duplicate).
        common = {
            **get("commonAnnotations", default={}),
            **get("service", "annotations", default={}),
            **get("service", "commonAnnotations", default={}),
        }
        labels = {**get("commonLabels", default={}), **get("service", "labels", default={})}
        spec: dict[str, Any] = {}
        if exposed:
            spec["externalTrafficPolicy"] = str(get("service", "externalTrafficPolicy", default="Cluster"))
        if typ == "LoadBalancer" and get("service", "loadBalancerSourceRanges"):
            spec["loadBalancerSourceRanges"] = list(get("service", "loadBalancerSourceRanges"))
        if typ == "LoadBalancer" and get("service", "loadBalancerIP"):
            spec["loadBalancerIP"] = get("service", "loadBalancerIP")
        if typ == "ClusterIP" and get("service", "clusterIP"):
            spec["clusterIP"] = get("service", "clusterIP")

        def port(port_name: str, default: int) -> dict[str, Any]:
            out: dict[str, Any] = {
                "name": port_name,
                "port": int(get("service", "ports", port_name) or default),
                "targetPort": port_name,
            }
            node_port = get("service", "nodePorts", port_name)
            if exposed and node_port:
                out["nodePort"] = int(node_port)
            return out

        separate = get("ingress", "separateGrpcIngress", default=True)
        http_ports = [port("http", 8088)] + ([] if separate else [port("grpc", 8089)])
        http_ports += list(get("service", "extraPorts", default=[]))
        out = [
            svc(
                f"{name}-http",
                {**common, **get("service", "httpAnnotations", default={})},
                http_ports,
                typ,
                labels,
                spec,
            )
        ]
        if separate:
            out.append(
                svc(
                    f"{name}-grpc",
                    {**common, **get("service", "grpcAnnotations", default={})},
                    [port("grpc", 8089)],
                    typ,
                    labels,
                    spec,
                )
            )
        return out
    admin_ports = [
        {"name": "http", "port": 80, "targetPort": 8088, "protocol": "TCP"},
        {"name": "grpc", "port": 81, "targetPort": 8089, "protocol": "TCP"},
        {"name": "redoc", "port": 87, "targetPort": 8087, "protocol": "TCP"},
        {"name": "http-metrics", "port": 10254, "protocol": "TCP"},
    ]
    return [
        svc(
            "flyteadmin",
            get("flyteadmin", "service", "annotations") or {},
            admin_ports,
            get("flyteadmin", "service", "type", default="ClusterIP"),
        ),
        svc(
            "flyteconsole",
            get("flyteconsole", "service", "annotations") or {},
            [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            get("flyteconsole", "service", "type", default="ClusterIP"),
        ),
    ]


def _flyte2_services(release: str, get: Any, svc: Any) -> list[dict[str, Any]]:
    """The API and console Services of flyte-binary v2 (flyteorg/flyte@v2.0.43:charts/flyte-binary/
    templates/service/http.yaml, templates/console/service.yaml, _helpers.tpl): the API Service takes
    commonAnnotations, service.commonAnnotations and service.httpAnnotations, the console Service only
    commonAnnotations; the API port defaults to 8090 (``flyte-binary.service.http.port``)."""
    name = get("fullnameOverride") or (release if "flyte-binary" in release else f"{release}-flyte-binary")
    chart_label = {"helm.sh/chart": "flyte-binary-v2.0.43", "app.kubernetes.io/name": "flyte-binary"}
    common = get("commonAnnotations", default={})
    api_annotations = {
        **common,
        **get("service", "commonAnnotations", default={}),
        **get("service", "httpAnnotations", default={}),
    }
    labels = {**chart_label, **get("commonLabels", default={}), **get("service", "labels", default={})}
    api_port = {"name": "http", "port": int(get("service", "ports", "http") or 8090), "targetPort": "http"}
    console_port = {
        "name": "http",
        "port": int(get("console", "service", "port", default=80)),
        "targetPort": "http",
        "protocol": "TCP",
    }
    console_labels = {
        **chart_label,
        "app.kubernetes.io/component": "console",
        **get("commonLabels", default={}),
    }
    return [
        svc(f"{name}-http", api_annotations, [api_port], get("service", "type", default="ClusterIP"), labels),
        svc(
            f"{name}-console",
            common,
            [console_port],
            get("console", "service", "type", default="ClusterIP"),
            console_labels,
        ),
    ]


def deployment_set(chart: str) -> tuple[list[dict[str, Any]], str]:
    """The objects of ``examples/gke/<chart>/`` plus the chart's rendered Services, and their YAML."""
    release, values_file = DEPLOYMENTS[chart]
    objects: list[dict[str, Any]] = []
    for f in sorted((EXAMPLES / "gke" / GKE_DIRS.get(chart, chart)).glob("*.yaml")):
        objects += [d for d in yaml.safe_load_all(f.read_text()) if d]
    values = yaml.safe_load((EXAMPLES / "helm" / chart / values_file).read_text()) or {}
    objects += chart_services(chart, release, values)
    return objects, yaml.safe_dump_all(objects, sort_keys=False)


@cache
def check_deployment_set(chart: str) -> tuple[str, ...]:
    """Cross-references inside a deployment set, then ``flyte-iap check`` on it (once per process)."""
    objects, text = deployment_set(chart)
    problems = list(cross_references(objects))
    problems += run_flyte_iap_check(
        text, f"examples/gke/{GKE_DIRS.get(chart, chart)}/ + the {chart} chart's Services"
    )
    return tuple(problems)


def cross_references(objects: list[dict[str, Any]]) -> Iterable[str]:
    services = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] == "Service"
    }
    by_kind = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}

    def port_of(svc: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any] | None:
        for p in svc["spec"].get("ports", []):
            if ("name" in ref and p.get("name") == ref["name"]) or (
                "number" in ref and p.get("port") == ref["number"]
            ):
                return p
        return None

    for o in objects:
        ns = o["metadata"].get("namespace")
        ann = o["metadata"].get("annotations") or {}
        if o["kind"] == "Ingress":
            for rule in o["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    backend = path["backend"]["service"]
                    target = services.get((ns, backend["name"]))
                    if target is None:
                        yield f"{name_of(o)}: path {path['path']} -> Service {backend['name']}, which is not in the set"
                    elif port_of(target, backend["port"]) is None:
                        yield f"{name_of(o)}: path {path['path']} -> {backend['name']} port {backend['port']}, which the Service lacks"
            for annotation, kind in (
                ("networking.gke.io/managed-certificates", "ManagedCertificate"),
                ("networking.gke.io/v1beta1.FrontendConfig", "FrontendConfig"),
            ):
                for ref in filter(None, (ann.get(annotation) or "").split(",")):
                    if (kind, ns, ref.strip()) not in by_kind:
                        yield f"{name_of(o)}: {annotation} names {kind} {ref}, which is not in the set"
        if o["kind"] == "Service":
            port_names = {p.get("name") for p in o["spec"].get("ports", [])}
            for annotation in (
                "cloud.google.com/backend-config",
                "cloud.google.com/app-protocols",
                "cloud.google.com/neg",
            ):
                if annotation not in ann:
                    continue
                try:
                    value = json.loads(ann[annotation])
                except json.JSONDecodeError:
                    yield f"{name_of(o)}: {annotation} is not JSON: {ann[annotation]!r}"
                    continue
                if annotation == "cloud.google.com/backend-config":
                    refs = list((value.get("ports") or {}).items()) + (
                        [("default", value["default"])] if "default" in value else []
                    )
                    numbers = {str(p.get("port")) for p in o["spec"].get("ports", [])}
                    for port, ref in refs:
                        if (
                            port != "default"
                            and port not in port_names | numbers
                            and not _shared_port(o, port, objects)
                        ):
                            yield f"{name_of(o)}: backend-config names port {port}, which the Service lacks"
                        if ("BackendConfig", ns, ref) not in by_kind:
                            yield f"{name_of(o)}: backend-config names BackendConfig {ref}, which is not in the set"
                if annotation == "cloud.google.com/app-protocols":
                    for port in value:
                        if port not in port_names:
                            yield f"{name_of(o)}: app-protocols names port {port}, which the Service lacks"
        if o["kind"] == "ConfigMap":
            for data_key, body in (o.get("data") or {}).items():
                if data_key.endswith("envoy.yaml"):
                    yield from _envoy_upstreams(o, yaml.safe_load(body), services)


def _shared_port(service: dict[str, Any], port: str, objects: list[dict[str, Any]]) -> bool:
    """Whether another Service with the same backend-config annotation has this port: one map shared by
    several Services (flyte-binary v2's commonAnnotations), whose other entries GKE ignores."""
    key = "cloud.google.com/backend-config"
    value = (service["metadata"].get("annotations") or {}).get(key)
    for other in objects:
        if other is service or other["kind"] != "Service":
            continue
        if (other["metadata"].get("annotations") or {}).get(key) != value:
            continue
        ports = other["spec"].get("ports", [])
        if port in {str(p.get("name")) for p in ports} | {str(p.get("port")) for p in ports}:
            return True
    return False


def _envoy_upstreams(
    cm: dict[str, Any], config: dict[str, Any], services: dict[tuple[Any, str], dict[str, Any]]
) -> Iterable[str]:
    for cluster in config.get("static_resources", {}).get("clusters", []):
        for group in cluster.get("load_assignment", {}).get("endpoints", []):
            for lb in group.get("lb_endpoints", []):
                sock = lb["endpoint"]["address"]["socket_address"]
                m = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", sock["address"])
                if not m:
                    yield f"{name_of(cm)}: cluster {cluster['name']} address {sock['address']} is not <service>.<namespace>.svc.cluster.local"
                    continue
                target = services.get((m.group(2), m.group(1)))
                if target is None:
                    yield f"{name_of(cm)}: cluster {cluster['name']} -> Service {m.group(1)}.{m.group(2)}, which is not in the set"
                elif not any(p.get("port") == sock["port_value"] for p in target["spec"]["ports"]):
                    yield f"{name_of(cm)}: cluster {cluster['name']} -> {m.group(1)} port {sock['port_value']}, which the Service lacks"


def run_flyte_iap_check(text: str, label: str) -> list[str]:
    """``flyte_iap.manifest_check.check_text`` on ``text``: any finding (error or warning) is a problem.

    Until the checker exists this records that it was not run; once ``flyte_iap.manifest_check``
    imports, an error from it or a finding fails.
    """
    try:
        from flyte_iap.manifest_check import check_text
    except ImportError:
        record("checker:not available yet (no flyte_iap.manifest_check)")
        return []
    findings = check_text(text, label)
    if findings:
        return [f"flyte-iap check on {label}:"] + [
            f"  {f.rule} {f.severity} {f.object}: {f.message} (fix: {f.fix})" for f in findings
        ]
    record("checker:ran on every manifest set, zero findings")
    return []


# -- Helm values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartKeys:
    """The value keys of one chart, from ``docs/_data/helm-keys-<chart>.txt``.

    ``exact`` maps a key path to its type (``string``, ``bool``, ``int`` or ``list``); ``free`` maps the
    path of a free-form map (written ``path.*`` in the file) to ``object``: the value there must be a
    mapping and nothing below it is checked. ``parents`` holds every path that has known keys below it.
    """

    exact: dict[str, str]
    free: dict[str, str]
    parents: frozenset[str]

    def children(self, parent: str) -> list[str]:
        """The known key paths directly below ``parent`` (``""`` for the top level)."""
        depth = parent.count(".") + 1 if parent else 0
        return sorted(
            {
                ".".join(k.split(".")[: depth + 1])
                for k in (*self.exact, *self.free)
                if (not parent or k.startswith(parent + ".")) and k.count(".") >= depth
            }
        )


_TYPES = {"string", "bool", "int", "list"}


@cache
def chart_keys(chart: str) -> ChartKeys:
    exact: dict[str, str] = {}
    free: dict[str, str] = {}
    source = DOCS / "_data" / f"helm-keys-{chart}.txt"
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        path, typ = line.split()
        if path.endswith(".*") and typ == "object":
            free[path[:-2]] = typ
        elif typ in _TYPES and "*" not in path:
            exact[path] = typ
        else:
            # An object key without `.*` would accept any misspelling below it: say which it is.
            raise ValueError(f"{source.name}:{number}: {line!r}: write `path type` or `path.* object`")
    parents = frozenset(
        ".".join(k.split(".")[:i]) for k in (*exact, *free) for i in range(1, k.count(".") + 1)
    )
    return ChartKeys(exact, free, parents)


def _type_problem(path: str, typ: str, value: Any) -> str | None:
    if value is None:
        return None
    if typ == "bool" and not isinstance(value, bool):
        return f"{path}: the chart expects true or false, not {value!r}"
    if typ == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"{path}: the chart expects a number, not {value!r}"
    if typ == "object" and not isinstance(value, dict):
        return f"{path}: the chart expects a mapping, not {value!r}"
    if typ == "list" and not isinstance(value, list):
        return f"{path}: the chart expects a list, not {value!r}"
    if typ == "string" and isinstance(value, dict | list):
        return f"{path}: the chart expects a single value, not {type(value).__name__} {value!r}"
    return None


def validate_values(chart: str, docs: list[Any]) -> list[str]:
    """Every key path must be a key of the chart or lie below one of its free-form maps.

    Args:
        chart: ``flyte-binary`` or ``flyte-core``.
        docs: the YAML documents of the values file (one mapping).

    Returns:
        One problem per unknown key (with the nearest known key as a hint) or value of the wrong type.
    """
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return ["a Helm values file is one YAML mapping"]
    keys = chart_keys(chart)
    problems: list[str] = []

    def walk(node: dict[Any, Any], parent: str) -> None:
        for key, value in node.items():
            path = f"{parent}.{key}" if parent else str(key)
            if path in keys.exact:
                problems.extend(filter(None, [_type_problem(path, keys.exact[path], value)]))
            elif path in keys.free:
                problems.extend(filter(None, [_type_problem(path, "object", value)]))
                # A free-form map may still have a few typed keys (flyteconnector.enabled).
                for child, child_value in (value if isinstance(value, dict) else {}).items():
                    child_path = f"{path}.{child}"
                    if child_path in keys.exact:
                        typ = keys.exact[child_path]
                        problems.extend(filter(None, [_type_problem(child_path, typ, child_value)]))
            elif path in keys.parents:
                if isinstance(value, dict):
                    walk(value, path)
                elif value is not None:
                    problems.append(f"{path}: the chart expects a mapping here, not {value!r}")
            else:
                siblings = keys.children(parent)
                close = difflib.get_close_matches(path, siblings, n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]}?)" if close else ""
                version = CHART_VERSIONS.get(chart, CHART_VERSION)
                problems.append(f"{path}: not a value of the {chart} chart {version}{hint}")

    walk(docs[0], "")
    return problems


# -- IAP settings and client configuration --------------------------------------------------------


def validate_iap_settings(docs: list[Any]) -> list[str]:
    import jsonschema

    if len(docs) != 1:
        return ["an IAP settings file is one YAML mapping"]
    if "access_settings" in docs[0]:
        # gcloud keeps snake_case keys as unknown fields instead of parsing them into the message;
        # camelCase is what `gcloud iap settings set --help` shows for YAML.
        return ["write the IAP settings keys in camelCase (accessSettings.oauthSettings.programmaticClients)"]
    validator = jsonschema.Draft202012Validator(_gke_schema("iap-settings.json"))
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in validator.iter_errors(docs[0])
    ]


# admin.* keys flytectl understands (flyteidl clients/go/admin config) and flytekit reads a subset of.
ADMIN_KEYS = {
    "endpoint",
    "insecure",
    "insecureSkipVerify",
    "caCertFilePath",
    "maxBackoffDelay",
    "perRetryTimeout",
    "maxRetries",
    "maxMessageSizeBytes",
    "authType",
    "tokenRefreshWindow",
    "useAuth",
    "clientId",
    "clientSecretLocation",
    "clientSecretEnvVar",
    "scopes",
    "useAudienceFromAdmin",
    "audience",
    "authorizationServerUrl",
    "tokenUrl",
    "authorizationHeader",
    "pkceConfig",
    "deviceFlowConfig",
    "command",
    "proxyCommand",
    "defaultServiceConfig",
    "httpProxyURL",
}


def validate_client_config(text: str) -> list[str]:
    """Load the file with flytekit's config loader, as pyflyte and FlyteRemote do."""
    import tempfile

    docs, problems = load_all(text)
    if problems:
        return problems
    admin = (docs[0] or {}).get("admin") or {}
    problems = [f"admin.{k}: not a flytectl/flytekit admin setting" for k in admin if k not in ADMIN_KEYS]
    from flytekit.configuration import Config

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        platform = Config.auto(config_file=f.name).platform
    except Exception as exc:  # flytekit raises several types for bad files
        return [*problems, f"flytekit cannot load it: {exc!r}"]
    finally:
        Path(f.name).unlink()
    if "endpoint" in admin and not platform.endpoint:
        problems.append("flytekit read no admin.endpoint")
    if "proxyCommand" in admin and list(platform.proxy_command or []) != list(admin["proxyCommand"]):
        problems.append(f"flytekit read proxyCommand as {platform.proxy_command!r}")
    return problems


#: The keys the flyte SDK 2.12.1 reads (flyte wheel: flyte/config/_internal.py).
FLYTE2_KEYS = {
    "admin": {
        "endpoint",
        "insecure",
        "insecureSkipVerify",
        "caCertFilePath",
        "httpProxyURL",
        "disableKeyring",
        "command",
        "proxyCommand",
        "clientId",
        "clientSecretLocation",
        "clientSecretEnvVar",
        "scopes",
        "authType",
    },
    "console": {"endpoint"},
    "task": {"org", "project", "domain"},
}


def validate_flyte2_client_config(text: str) -> list[str]:
    """A Flyte 2 config (examples/config/flyte2*.yaml): only keys the flyte SDK reads, the auth that
    works behind IAP (ExternalCommand + command, never proxyCommand), then the SDK's own loader."""
    docs, problems = load_all(text)
    if problems:
        return problems
    data = docs[0] if len(docs) == 1 and isinstance(docs[0], dict) else {}
    for section, values in data.items():
        known = FLYTE2_KEYS.get(section)
        if known is None or not isinstance(values, dict):
            problems.append(f"{section}: not a section the flyte SDK reads")
            continue
        problems += [f"{section}.{k}: not a flyte SDK setting" for k in values if k not in known]
    admin = data.get("admin") or {}
    if admin.get("authType") != "ExternalCommand" or not admin.get("command"):
        problems.append("behind IAP the flyte SDK needs authType: ExternalCommand with admin.command")
    if "proxyCommand" in admin:
        problems.append("admin.proxyCommand is broken in flyte 2.12.1: use authType ExternalCommand")
    if admin.get("insecure") is True:
        problems.append("insecure: true turns the flyte SDK's auth off: IAP would get no token")
    try:
        from flyte.config._config import PlatformConfig
    except ImportError:
        record("flyte2-config:keys only (the flyte SDK is not installed)")
        return problems
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        platform = PlatformConfig.auto(f.name)
    finally:
        Path(f.name).unlink()
    if platform.auth_mode != "ExternalCommand" or list(platform.command or []) != list(
        admin.get("command") or []
    ):
        problems.append(f"the flyte SDK read auth {platform.auth_mode!r} with command {platform.command!r}")
    record("flyte2-config:loaded by the flyte SDK")
    return problems


# -- copies of example files ----------------------------------------------------------------------


@cache
def _example_lines() -> dict[str, list[str]]:
    out = {}
    for f in EXAMPLES.rglob("*"):
        if f.is_file():
            lines = [ln.strip() for ln in f.read_text(errors="replace").splitlines()]
            out[str(f.relative_to(REPO))] = [ln for ln in lines if ln and not ln.startswith("#")]
    return out


def copied_from_examples(text: str, run: int = 4) -> str | None:
    """The examples/ file that ``text`` copies ``run`` or more consecutive lines of, if any."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) < run:
        return None
    windows = {tuple(lines[i : i + run]) for i in range(len(lines) - run + 1)}
    for name, ex in _example_lines().items():
        for i in range(len(ex) - run + 1):
            if tuple(ex[i : i + run]) in windows:
                return name
    return None
