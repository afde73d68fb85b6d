"""What the Flyte charts deploy, and how flyteadmin listens, read from the manifests themselves.

Example::

    from flyte_iap.manifest_check import flyte

    flyte.component(service, index)  # "flyteadmin", "flyteconsole", "flyte-binary" or None
    listener = flyte.admin_listener(service, port, index)
    listener.role, listener.config.secure  # ("grpc", False): plaintext h2c on 8089

Facts encoded here (flyteorg/flyte, branch ``master``, charts v1.16):

* flyteadmin (and the flyte-binary, which embeds it) reads ``server.httpPort`` (8088),
  ``server.grpc.port`` (8089) and ``server.security.secure`` (false) from the YAML files named by its
  ``--config`` glob. With ``secure: false`` it serves plaintext HTTP/1 on the HTTP port and plaintext
  gRPC (h2c) on the gRPC port. With ``secure: true`` it opens one TLS listener on the HTTP port only
  (HTTP/2 via ALPN, gRPC and HTTP together) and the gRPC port is closed.
* flyte-core names its Services ``flyteadmin`` and ``flyteconsole``; the flyte-binary chart labels
  everything ``app.kubernetes.io/name: flyte-binary`` and names container ports ``http``/``grpc``.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyte_iap.manifest_check import gce
from flyte_iap.manifest_check.index import Index, PodTemplate
from flyte_iap.manifest_check.loader import FieldPath, Manifest

#: The gRPC services clients call through the Ingress (the charts route each as exact path and ``/*``).
GRPC_SERVICES = (
    "flyteidl.service.AdminService",
    "flyteidl.service.AuthMetadataService",
    "flyteidl.service.DataProxyService",
    "flyteidl.service.IdentityService",
    "flyteidl.service.SignalService",
    "grpc.health.v1.Health",
)
ADMIN_HTTP_PATHS = (
    "/api",
    "/healthcheck",
    "/v1",
    "/.well-known",
    "/login",
    "/logout",
    "/callback",
    "/me",
    "/config",
    "/oauth2",
)
CONSOLE_PATHS = ("/console",)

ADMIN_COMPONENTS = ("flyteadmin", "flyte-binary")
COMPONENTS = ("flyteadmin", "flyteconsole", "flyte-binary")

DEFAULT_HTTP_PORT = 8088
DEFAULT_GRPC_PORT = 8089
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"})


def path_kind(path: str | None) -> str | None:
    """``"grpc"``, ``"admin"`` or ``"console"`` for a path Flyte's charts route, else ``None``."""
    if not path:
        return None
    return _path_kind(path)


_GRPC_PATHS = frozenset("/" + s for s in GRPC_SERVICES)


@functools.lru_cache(maxsize=4096)
def _path_kind(path: str) -> str | None:
    # Paths repeat across Ingresses (/, /api, /console/*...): cached by value.
    first = "/" + path.lstrip("/").split("/", 1)[0]
    if first.startswith("/flyteidl.service.") or first in _GRPC_PATHS:
        return "grpc"
    if first in ADMIN_HTTP_PATHS:
        return "admin"
    if first in CONSOLE_PATHS:
        return "console"
    return None


#: Flyte 2's one API port (flyteorg/flyte@v2.0.43:charts/flyte-binary/values.yaml
#: ``flyte-core-components.runs.server.port``; ``flytestdlib/app/app.go`` serves HTTP/1.1 and h2c there).
FLYTE2_API_PORT = 8090
FLYTE2_IMAGE = "flyte-binary-v2"


def is_flyte2(service: Manifest, index: Index) -> bool:
    """Whether a Service fronts the Flyte 2 backend (chart flyte-binary v2), which serves Connect, gRPC
    and HTTP on one plain-HTTP port and has no flyteadmin gRPC services: its pods run the
    ``flyte-binary-v2`` image, the chart label says v2, or it is a flyte-binary Service on port 8090."""
    if str(service.labels.get("helm.sh/chart", "")).startswith("flyte-binary-v2."):
        return True
    for pod in index.pods_for(service):
        for _, container in pod.containers():
            image = str(container.get("image") or "").rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
            if image == FLYTE2_IMAGE:
                return True
    if component(service, index) != "flyte-binary":
        return False
    ports = (service.body.get("spec") or {}).get("ports") or []
    return any(isinstance(p, dict) and p.get("port") == FLYTE2_API_PORT for p in ports)


def component(service: Manifest, index: Index) -> str | None:
    """Which Flyte component a Service fronts, from its labels, its name or its pods' images."""
    label = service.labels.get("app.kubernetes.io/name")
    if label in COMPONENTS:
        return label
    for name in COMPONENTS:
        if name in service.name:
            return name
    for pod in index.pods_for(service):
        for _, container in pod.containers():
            image = str(container.get("image") or "").rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
            if image in COMPONENTS:
                return image
    return None


@dataclass(frozen=True)
class Setting:
    """Where a configuration value was read: the ConfigMap/Secret, its data key, the line."""

    value: Any
    source: Manifest
    key: str
    line: int

    def where(self) -> str:
        """``ConfigMap/flyte/flyte-admin-base-config, key server.yaml (rendered.yaml:186)``."""
        return f"{self.source.ref}, key {self.key} ({self.source.file}:{self.line})"


@dataclass(frozen=True)
class ServerConfig:
    """flyteadmin's listener settings as far as the input tells them.

    ``secure`` is ``None`` when the configuration files are not all in the input (or the pod has no
    ``--config``): the checks then report nothing that depends on it.
    """

    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    secure: bool | None = None
    secure_setting: Setting | None = None
    admin_endpoint: Setting | None = None
    admin_insecure: bool = False
    known: bool = False


@dataclass(frozen=True)
class Listener:
    """One flyteadmin port as the load balancer sees it.

    ``role`` is ``"http"`` (the HTTP/1 gateway, or the single TLS listener with ``secure: true``),
    ``"grpc"`` (plaintext h2c, closed with ``secure: true``) or ``"other"`` (metrics, redoc, webhook).
    """

    component: str
    role: str
    port: int | None
    config: ServerConfig

    @property
    def tls(self) -> bool | None:
        """Whether the port serves TLS (``None``: cannot tell). The gRPC port never does."""
        if self.role == "grpc":
            return False
        if self.role == "http":
            return self.config.secure
        return None

    def describe(self) -> str:
        number = f"port {self.port}" if self.port is not None else "this port"
        if self.role == "grpc":
            if self.config.secure:
                return f"{number} is flyteadmin's gRPC port, which is closed because secure: true"
            if self.config.secure is False:
                return f"{number} is flyteadmin's gRPC port, which serves plaintext HTTP/2 (h2c)"
            return f"{number} is flyteadmin's gRPC port: plaintext HTTP/2 (h2c), or closed with secure: true"
        if self.role == "http":
            if self.config.secure:
                return f"{number} is flyteadmin's TLS listener (secure: true)"
            if self.config.secure is False:
                return f"{number} is flyteadmin's plaintext HTTP/1 gateway (secure: false)"
            return f"{number} is flyteadmin's HTTP port"
        return f"{number} is not one of flyteadmin's HTTP or gRPC ports"


def admin_listener(service: Manifest, port: Mapping[str, Any], index: Index) -> Listener | None:
    """The flyteadmin listener behind a Service port, or ``None`` if the Service is not flyteadmin's."""
    name = component(service, index)
    if name not in ADMIN_COMPONENTS:
        return None
    target = gce.target_port(port)
    number = target if isinstance(target, int) else None
    port_name = target if isinstance(target, str) else None
    pods = index.pods_for(service)
    found = _container_serving(pods, target)
    if found is not None:
        pod, position, (declared_number, declared_name) = found
        number = number if number is not None else declared_number
        port_name = port_name or declared_name
        config = server_config(pod, position, index)
    else:
        config = _any_server_config(pods, index)
    if number == config.http_port or (number is None and port_name == "http"):
        role = "http"
    elif number == config.grpc_port or (number is None and port_name == "grpc"):
        role = "grpc"
    else:
        role = "other"
    return Listener(name, role, number, config)


def _container_serving(
    pods: list[PodTemplate], target: int | str | None
) -> tuple[PodTemplate, int, tuple[int | None, str | None]] | None:
    """The first container that declares the target port: ``(pod, position, (number, name))``."""
    for pod in pods:
        for position, container in pod.containers():
            declared = _declared_port(container, target)
            if declared is not None:
                return pod, position, declared
    return None


def _declared_port(
    container: Mapping[str, Any], target: int | str | None
) -> tuple[int | None, str | None] | None:
    ports = container.get("ports")
    for declared in ports if isinstance(ports, list) else []:
        if not isinstance(declared, Mapping):
            continue
        number = declared.get("containerPort")
        number = number if isinstance(number, int) else None
        name = str(declared["name"]) if declared.get("name") else None
        if (isinstance(target, int) and target == number) or (isinstance(target, str) and target == name):
            return number, name
    return None


def _any_server_config(pods: list[PodTemplate], index: Index) -> ServerConfig:
    for pod in pods:
        for position, container in pod.containers():
            if config_globs(container):
                return server_config(pod, position, index)
    return ServerConfig()


def config_globs(container: Mapping[str, Any]) -> list[str]:
    """The ``--config`` values of a container's command line (flytestdlib's config file globs)."""
    argv = [str(a) for key in ("command", "args") for a in (container.get(key) or []) if a is not None]
    globs: list[str] = []
    for position, arg in enumerate(argv):
        if arg == "--config" and position + 1 < len(argv):
            globs.extend(argv[position + 1].split(","))
        elif arg.startswith("--config="):
            globs.extend(arg.split("=", 1)[1].split(","))
        else:
            # a shell wrapper: "flyteadmin --config=/etc/flyte/config/*.yaml serve"
            for word in arg.split():
                if word.startswith("--config="):
                    globs.extend(word.split("=", 1)[1].split(","))
    return [g.strip() for g in globs if g.strip()]


def config_files(
    pod: PodTemplate, position: int, index: Index
) -> tuple[list[tuple[str, str, Manifest]], bool] | None:
    """The configuration files a Flyte container reads, from the ConfigMaps/Secrets mounted there.

    Returns:
        ``(files, complete)``: ``files`` is ``(file name, text, source object)`` in the order the
        glob expands them; ``complete`` is false when a mounted source is not in the input.
        ``None`` when the container has no ``--config`` that resolves to a mounted volume.
    """
    containers = dict(pod.containers())
    container = containers.get(position)
    if container is None:
        return None
    globs = config_globs(container)
    if not globs:
        return None
    volumes = {str(v.get("name")): v for v in (pod.spec.get("volumes") or []) if isinstance(v, Mapping)}
    mounts = [m for m in (container.get("volumeMounts") or []) if isinstance(m, Mapping)]
    files: dict[str, tuple[str, Manifest]] = {}
    complete = True
    resolved = False
    for pattern in globs:
        directory, _, base = pattern.rpartition("/")
        directory = posixpath.normpath(directory or "/")
        for mount in mounts:
            if posixpath.normpath(str(mount.get("mountPath") or "")) != directory:
                continue
            volume = volumes.get(str(mount.get("name")))
            if volume is None:
                continue
            resolved = True
            for kind, name in _volume_sources(volume):
                source = index.find(kind, name, pod.workload.namespace)
                if source is None:
                    complete = False
                    continue
                for key, text in source.string_data().items():
                    if fnmatch.fnmatchcase(key, base or "*"):
                        files[key] = (text, source)
    if not resolved:
        return None
    return [(key, text, source) for key, (text, source) in sorted(files.items())], complete


def _volume_sources(volume: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    config_map = volume.get("configMap")
    if isinstance(config_map, Mapping) and config_map.get("name"):
        yield "ConfigMap", str(config_map["name"])
    secret = volume.get("secret")
    if isinstance(secret, Mapping) and secret.get("secretName"):
        yield "Secret", str(secret["secretName"])
    projected = volume.get("projected")
    sources = projected.get("sources") if isinstance(projected, Mapping) else None
    for item in sources if isinstance(sources, list) else []:
        if not isinstance(item, Mapping):
            continue
        for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
            ref = item.get(key)
            if isinstance(ref, Mapping) and ref.get("name"):
                yield kind, str(ref["name"])


@dataclass
class _Merged:
    values: dict[str, Any] = field(default_factory=dict)
    settings: dict[tuple[str, ...], Setting] = field(default_factory=dict)


def _merge(files: list[tuple[str, str, Manifest]]) -> _Merged:
    import yaml

    from flyte_iap.manifest_check.loader import ManifestError, index_node, printable, safe_loader

    merged = _Merged()
    constructor = safe_loader()("")
    try:
        for key, text, source in files:
            try:
                node = yaml.compose(text, Loader=safe_loader())
            except yaml.YAMLError:
                continue
            if not isinstance(node, yaml.MappingNode):
                continue
            problem = index_node(node)
            if problem is not None:
                section = "stringData" if ("stringData", key) in source.lines else "data"
                line = source.line_inside((section, key), problem[1])
                raise ManifestError(
                    f"{printable(source.file)}:{line}: {source.ref}, key {printable(key)}: {problem[0]}",
                    "configuration files need neither deep nesting nor repeated aliases; expand them",
                )
            _merge_node(node, (), merged, key, source, constructor)
    finally:
        constructor.dispose()
    return merged


def _merge_node(
    node: Any, path: tuple[str, ...], merged: _Merged, key: str, source: Manifest, constructor: Any
) -> None:
    import yaml

    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        child = (*path, str(key_node.value))
        if isinstance(value_node, yaml.MappingNode):
            _merge_node(value_node, child, merged, key, source, constructor)
        elif isinstance(value_node, yaml.ScalarNode):
            try:
                value = constructor.construct_object(value_node)
            except yaml.YAMLError:
                continue  # a tag no safe loader builds (!!python/name:...): the value is unknown
            section = "stringData" if ("stringData", key) in source.lines else "data"
            line = source.line_inside((section, key), key_node.start_mark.line + 1)
            merged.settings[child] = Setting(value, source, key, line)


def _setting(merged: _Merged, *path: str) -> Setting | None:
    return merged.settings.get(path)


def server_config(pod: PodTemplate, position: int, index: Index) -> ServerConfig:
    """flyteadmin's settings for the container at ``position`` of ``pod`` (defaults when unknown)."""
    found = config_files(pod, position, index)
    if found is None:
        return ServerConfig()
    files, complete = found
    merged = _merge(files)
    http = _setting(merged, "server", "httpPort")
    grpc = _setting(merged, "server", "grpc", "port") or _setting(merged, "server", "grpcPort")
    secure = _setting(merged, "server", "security", "secure")
    secure_value = secure.value is True if secure is not None else False
    if not complete and not secure_value:
        # A file we cannot see could still turn TLS on.
        known_secure: bool | None = None
    else:
        known_secure = secure_value
    endpoint = _setting(merged, "admin", "endpoint")
    insecure = _setting(merged, "admin", "insecure")
    return ServerConfig(
        http_port=http.value if http is not None and isinstance(http.value, int) else DEFAULT_HTTP_PORT,
        grpc_port=grpc.value if grpc is not None and isinstance(grpc.value, int) else DEFAULT_GRPC_PORT,
        secure=known_secure,
        secure_setting=secure,
        admin_endpoint=endpoint,
        admin_insecure=bool(insecure is not None and insecure.value is True),
        known=complete,
    )


def split_endpoint(endpoint: str) -> tuple[str, int] | None:
    """``("flyteadmin", 81)`` for ``dns:///flyteadmin:81`` (``None`` without a port)."""
    text = endpoint.strip()
    for prefix in ("dns:///", "dns://", "passthrough:///", "http://", "https://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("/", 1)[0]
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not host:
        return None
    return host.lower(), int(port)


def endpoint_listener(
    pod: PodTemplate, position: int, config: ServerConfig, index: Index
) -> tuple[Listener, Manifest | None] | None:
    """The flyteadmin listener a Flyte component's ``admin.endpoint`` reaches, when the input tells.

    Returns:
        ``(listener, service)``; ``service`` is ``None`` for a loopback endpoint (the flyte-binary
        calling itself).
    """
    if config.admin_endpoint is None:
        return None
    parsed = split_endpoint(str(config.admin_endpoint.value))
    if parsed is None:
        return None
    host, port_number = parsed
    if host in _LOOPBACK:
        # Only the flyte-binary serves flyteadmin in the same pod as its other components.
        containers = dict(pod.containers())
        runs = component_of_container(containers.get(position, {}))
        if runs != "flyte-binary" and pod.labels.get("app.kubernetes.io/name") != "flyte-binary":
            return None
        if port_number == config.http_port:
            role = "http"
        elif port_number == config.grpc_port:
            role = "grpc"
        else:
            role = "other"
        return Listener("flyte-binary", role, port_number, config), None
    labels = host.split(".")
    namespace = labels[1] if len(labels) > 1 and labels[1] != "svc" else pod.workload.namespace
    service = index.find("Service", labels[0], namespace)
    if service is None:
        return None
    found = gce.service_port(service, port_number)
    if found is None:
        return None
    listener = admin_listener(service, found[1], index)
    return (listener, service) if listener is not None else None


def component_of_container(container: Mapping[str, Any]) -> str | None:
    """The Flyte component a container runs, from its image name."""
    image = str(container.get("image") or "").rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return image if image in COMPONENTS else None


def flyte_containers(index: Index) -> Iterator[tuple[PodTemplate, int, ServerConfig]]:
    """Every workload container that reads Flyte configuration files, with what they say."""
    from flyte_iap.manifest_check.index import WORKLOAD_KINDS

    for kind in WORKLOAD_KINDS:
        for workload in index.of_kind(kind):
            pod = PodTemplate(workload, () if kind == "Pod" else ("spec", "template"))
            for position, container in pod.containers():
                if config_globs(container):
                    yield pod, position, server_config(pod, position, index)


def field_of(pod: PodTemplate, *rest: str | int) -> FieldPath:
    """Path of a field of the pod template inside its workload's manifest."""
    return (*pod.path, *rest)
