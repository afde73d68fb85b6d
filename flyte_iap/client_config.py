"""The Flyte client configuration (``~/.flyte/config.yaml``) for a deployment behind IAP.

Example::

    from flyte_iap.client_config import ClientConfig, render, write

    config = ClientConfig(
        endpoint="https://flyte.example.com",
        audience="123-iap.apps.googleusercontent.com",  # the IAP OAuth client ID
        client_id="456-desktop.apps.googleusercontent.com",
    )
    text = render(config)  # YAML with a comment header
    write(text, "~/.flyte/config.yaml", force=False)  # atomic, 0600, refuses to overwrite

With ``sdk="flyte2"`` the file is for the ``flyte`` SDK 2.x instead (:func:`build_flyte2`).

One file serves flytekit (``pyflyte``, ``FlyteRemote``, >= 1.10) and flytectl (>= 0.8.18): both read
``admin.endpoint``, ``admin.insecure``, ``admin.caCertFilePath``, ``admin.proxyCommand`` and
``admin.authType``. The proxy command is ``flyte-iap token`` for people and ``flyte-iap sa-token`` for CI
and workloads; its stdout becomes ``proxy-authorization: Bearer <ID token>`` on every request.

``admin.authType`` is about flyteadmin's *own* authentication, separate from IAP:

* ``none`` (default): the key is left out. flytekit's default (``Pkce``) and flytectl's
  (``ClientSecret``) only act after flyteadmin answers ``UNAUTHENTICATED``, which a flyteadmin
  without ``useAuth`` never does; and ``ClientSecret`` written out would make flytekit require a
  client secret at the first call.
* ``pkce``: people signing in to flyteadmin in a browser (``Pkce``). flytectl's PKCE exchange does not
  send the proxy header (flyteorg/flyte#6089), so it fails behind IAP; flytekit works.
* ``client-secret``: CI (``ClientSecret`` with ``clientId`` and ``clientSecretLocation`` or
  ``clientSecretEnvVar``); the token request to flyteadmin's ``/oauth2/token`` carries the proxy
  header too.

``DeviceFlow`` is not offered: flytekit polls flyteadmin's token endpoint without the proxy header.

flytekit and flytectl run ``proxyCommand`` without a shell, so ``flyte-iap`` must be on the ``PATH``
of the process that runs them. IDEs, notebooks and cron jobs often have a ``PATH`` without the
virtualenv's ``bin``: ``command=`` an absolute path (``flyte-iap config --absolute-command``) makes the
file work there, at the price of tying it to one machine's install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flyte_iap.errors import ConfigurationError
from flyte_iap.private_file import write_private_file

ADMIN_AUTH_TYPES = {"none": None, "pkce": "Pkce", "client-secret": "ClientSecret"}
MODES = ("user", "service-account", "service-account-jwt")
#: Which client reads the file: flytekit/flytectl (Flyte 1) or the ``flyte`` SDK 2.x (Flyte 2).
SDKS = ("flytekit", "flyte2")


@dataclass(frozen=True)
class ClientConfig:
    """What goes into the file.

    Attributes:
        endpoint: flyteadmin behind IAP: ``https://host``, ``host``, ``host:port`` or ``dns:///host``.
        audience: the IAP OAuth client ID (the ID token's ``aud``).
        mode: ``user`` (``flyte-iap token``), ``service-account`` (``flyte-iap sa-token``) or
            ``service-account-jwt`` (``flyte-iap sa-jwt --url`` the endpoint's URL; no audience needed).
        client_id: user mode: the Desktop OAuth client to sign in with (``--client-id``).
        impersonate_service_account: service-account mode: the account to mint tokens for.
        admin_auth: flyteadmin's own auth: ``none``, ``pkce`` or ``client-secret``.
        admin_client_id: with ``client-secret``: flyteadmin's confidential client.
        admin_client_secret_location: with ``client-secret``: a file holding its secret.
        admin_client_secret_env_var: or an environment variable holding it.
        insecure: plaintext gRPC/HTTP (local tests only; IAP serves HTTPS). Default: from the scheme.
        ca_cert_file: a PEM bundle to trust instead of the system roots (``caCertFilePath``).
        command: how to invoke flyte-iap: ``flyte-iap`` (found on ``PATH``) or an absolute path.
        sdk: ``flytekit`` (Flyte 1: ``admin.proxyCommand``) or ``flyte2`` (the ``flyte`` SDK 2.x:
            ``authType: ExternalCommand`` + ``admin.command``; see :func:`build_flyte2`).
        project: ``flyte2``: the default project (``task.project``), optional.
        domain: ``flyte2``: the default domain (``task.domain``), optional.
    """

    endpoint: str
    audience: str
    mode: str = "user"
    client_id: str | None = None
    impersonate_service_account: str | None = None
    admin_auth: str = "none"
    admin_client_id: str | None = None
    admin_client_secret_location: str | None = None
    admin_client_secret_env_var: str | None = None
    insecure: bool | None = None
    ca_cert_file: str | None = None
    command: str = "flyte-iap"
    sdk: str = "flytekit"
    project: str | None = None
    domain: str | None = None
    #: a profile of the profiles file (flyte_iap.profiles): the proxy command is then just
    #: ``[command, token|sa-token|sa-jwt, --profile, NAME]``, the profile holding the rest.
    profile: str | None = None


def split_endpoint(endpoint: str) -> tuple[str, int | None, bool | None]:
    """Parse an endpoint as users write it.

    Args:
        endpoint: ``https://host[:port][/...]``, ``http://...``, ``dns:///host[:port]`` or ``host[:port]``.

    Returns:
        ``(host, port or None, insecure)`` where ``insecure`` is True for ``http://``, False for
        ``https://`` and None when the scheme was not given.

    Raises:
        ConfigurationError: no host.
    """
    text = endpoint.strip()
    insecure: bool | None = None
    if text.startswith("dns:///"):
        text = text[len("dns:///") :]
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ConfigurationError(
                f"unsupported endpoint scheme {parts.scheme!r} in {endpoint!r}",
                "give the endpoint as https://flyte.example.com or flyte.example.com",
            )
        insecure = parts.scheme == "http"
    else:
        parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid port in endpoint {endpoint!r}", "use host or host:port") from exc
    host = parts.hostname or ""
    if not host:
        raise ConfigurationError(f"no host in endpoint {endpoint!r}", "use e.g. https://flyte.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # admin.endpoint is a gRPC target (host[:port]): flytekit and flytectl have nowhere to put a path,
        # so dropping it silently would point the client somewhere the user did not mean.
        root = f"{parts.scheme or 'https'}://{_hostport(host, port, default=-1)}"
        raise ConfigurationError(
            f"endpoint {endpoint!r} has a path ({parts.path or '?' + parts.query}); Flyte clients take "
            "a host and port only",
            f"use {root} (the console is at /console on the same host, and admin.endpoint has no path)",
        )
    return host, port, insecure


def _hostport(host: str, port: int | None, *, default: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port in (None, default) else f"{shown}:{port}"


def proxy_command(config: ClientConfig) -> list[str]:
    """The ``admin.proxyCommand`` list for ``config``.

    Args:
        config: the settings.

    Returns:
        ``[command, "token", "--audience", ...]`` for people, ``[command, "sa-token", ...]`` otherwise.

    Raises:
        ConfigurationError: an unknown mode, or options that belong to the other mode.
    """
    if config.mode not in MODES:
        raise ConfigurationError(f"unknown mode {config.mode!r}", "use user or service-account")
    if config.profile:
        verb = {"user": "token", "service-account": "sa-token", "service-account-jwt": "sa-jwt"}[config.mode]
        return [config.command, verb, "--profile", config.profile]
    if config.mode == "user":
        if config.impersonate_service_account:
            raise ConfigurationError(
                "--impersonate-service-account is for service-account mode",
                "add --service-account, or drop --impersonate-service-account",
            )
        command = [config.command, "token", "--audience", config.audience]
        if config.client_id:
            command += ["--client-id", config.client_id]
        return command
    if config.client_id:
        raise ConfigurationError(
            "--client-id (a Desktop OAuth client) is for user mode",
            "service accounts need no OAuth client: drop --client-id",
        )
    if config.mode == "service-account-jwt":
        command = [config.command, "sa-jwt", "--url", app_url(config.endpoint)]
        if config.impersonate_service_account:
            command += ["--impersonate-service-account", config.impersonate_service_account]
        return command
    command = [config.command, "sa-token", "--audience", config.audience]
    if config.impersonate_service_account:
        command += ["--impersonate-service-account", config.impersonate_service_account]
    return command


def build(config: ClientConfig) -> dict[str, Any]:
    """The configuration as a dict, validated.

    Args:
        config: the settings.

    Returns:
        ``{"admin": {...}, "console": {...}}``, the keys flytekit and flytectl read.

    Raises:
        ConfigurationError: missing or contradictory settings.
    """
    if config.sdk not in SDKS:
        raise ConfigurationError(f"unknown SDK {config.sdk!r}", "use flytekit (Flyte 1) or flyte2")
    if config.sdk == "flyte2":
        return build_flyte2(config)
    if config.project or config.domain:
        raise ConfigurationError(
            "--project and --domain are written for the flyte SDK (Flyte 2) only", "add --sdk flyte2"
        )
    needs_audience = config.mode != "service-account-jwt" and not config.profile
    if needs_audience and (not config.audience or not config.audience.strip()):
        raise ConfigurationError("no audience", "pass --audience, the IAP OAuth client ID")
    host, port, scheme_insecure = split_endpoint(config.endpoint)
    insecure = config.insecure if config.insecure is not None else bool(scheme_insecure)
    if config.insecure is not None and scheme_insecure is not None and config.insecure != scheme_insecure:
        raise ConfigurationError(
            f"endpoint {config.endpoint!r} contradicts insecure={config.insecure}",
            "use an http:// endpoint only for plaintext test setups, https:// otherwise",
        )
    if insecure and config.ca_cert_file:
        raise ConfigurationError(
            "--ca-cert has no effect on an insecure (plaintext) endpoint", "drop one of them"
        )
    auth_type = _auth_type(config)
    admin: dict[str, Any] = {
        "endpoint": "dns:///" + _hostport(host, port, default=80 if insecure else 443),
        "insecure": insecure,
    }
    if config.ca_cert_file:
        admin["caCertFilePath"] = str(Path(config.ca_cert_file).expanduser().resolve())
    admin["proxyCommand"] = proxy_command(config)
    if auth_type:
        admin["authType"] = auth_type
    if auth_type == "ClientSecret":
        admin["clientId"] = config.admin_client_id
        if config.admin_client_secret_location:
            admin["clientSecretLocation"] = config.admin_client_secret_location
        else:
            admin["clientSecretEnvVar"] = config.admin_client_secret_env_var
    scheme = "http" if insecure else "https"
    return {
        "admin": admin,
        "console": {"endpoint": f"{scheme}://{_hostport(host, port, default=80 if insecure else 443)}"},
    }


def build_flyte2(config: ClientConfig) -> dict[str, Any]:
    """The configuration for the ``flyte`` SDK 2.x (Flyte 2) as a dict, validated.

    The SDK's ``admin.proxyCommand`` is broken in flyte 2.12.1 (``_initialize.py`` passes
    ``command=None`` and ``factory.get_async_proxy_authenticator`` passes ``command=`` again: a
    ``TypeError``), so the token command goes in ``admin.command`` with ``authType: ExternalCommand``
    (flyte 2.12.1 wheel: ``flyte/config/_internal.py`` keys, ``flyte/remote/_client/auth/_authenticators/
    factory.py``). The SDK sends its stdout as ``authorization: Bearer <token>``, which IAP accepts; it
    runs the command only after a ``401`` and keeps the token in the keyring under ``host:port``.
    Its auth interceptors are skipped when ``admin.insecure`` is true (``auth/_session.py``), so a
    plaintext endpoint can never carry a token to IAP.

    Args:
        config: the settings (``sdk="flyte2"``).

    Returns:
        ``{"admin": {...}, "console": {...}}`` and, with a project or domain, ``{"task": {...}}``.

    Raises:
        ConfigurationError: missing or contradictory settings, or settings Flyte 2 has no use for.
    """
    if not config.audience or not config.audience.strip():
        raise ConfigurationError("no audience", "pass --audience, the IAP OAuth client ID")
    path = urlsplit(config.endpoint if "://" in config.endpoint else "//" + config.endpoint).path
    if config.endpoint.strip().startswith("dns:///"):
        path = urlsplit("//" + config.endpoint.strip()[len("dns:///") :]).path
    if path.strip("/"):
        raise ConfigurationError(
            f"endpoint {config.endpoint!r} has a path ({path}); the flyte SDK calls /<service>/<method> "
            "at the root of the host",
            "give only the host: https://flyte.example.com (the API and console share one host behind IAP)",
        )
    host, port, scheme_insecure = split_endpoint(config.endpoint)
    if config.insecure or scheme_insecure:
        raise ConfigurationError(
            "insecure (plaintext) endpoint: the flyte SDK sends no credentials when admin.insecure is true, "
            "so IAP would reject every call",
            "use the https:// endpoint IAP serves (and --ca-cert for a private CA)",
        )
    if config.admin_auth != "none" or config.admin_client_id:
        raise ConfigurationError(
            "--admin-auth has no Flyte 2 counterpart: the Flyte 2 backend has no auth of its own behind IAP",
            "drop --admin-auth and the --admin-client-* options",
        )
    admin: dict[str, Any] = {
        "endpoint": "dns:///" + _hostport(host, port, default=443),
        "insecure": False,
        "authType": "ExternalCommand",
        "command": proxy_command(config),
    }
    if config.ca_cert_file:
        admin["caCertFilePath"] = str(Path(config.ca_cert_file).expanduser().resolve())
    data: dict[str, Any] = {
        "admin": admin,
        "console": {"endpoint": f"https://{_hostport(host, port, default=443)}"},
    }
    task = {k: v for k, v in (("project", config.project), ("domain", config.domain)) if v}
    if task:
        data["task"] = task
    return data


def _auth_type(config: ClientConfig) -> str | None:
    if config.admin_auth not in ADMIN_AUTH_TYPES:
        choices = ", ".join(ADMIN_AUTH_TYPES)
        raise ConfigurationError(f"unknown flyteadmin auth {config.admin_auth!r}", f"use one of {choices}")
    secret_given = config.admin_client_secret_location or config.admin_client_secret_env_var
    if config.admin_auth != "client-secret":
        if config.admin_client_id or secret_given:
            raise ConfigurationError(
                "flyteadmin client credentials given without --admin-auth client-secret",
                "add --admin-auth client-secret, or drop --admin-client-id and the secret options",
            )
        return ADMIN_AUTH_TYPES[config.admin_auth]
    if not config.admin_client_id:
        raise ConfigurationError(
            "--admin-auth client-secret needs --admin-client-id",
            "pass the confidential client flyteadmin knows (the Helm chart's default is flytepropeller)",
        )
    if not secret_given or (config.admin_client_secret_location and config.admin_client_secret_env_var):
        raise ConfigurationError(
            "--admin-auth client-secret needs exactly one of --admin-client-secret-location and "
            "--admin-client-secret-env-var",
            "point at a file holding the secret, or name the environment variable that holds it",
        )
    return "ClientSecret"


def _scalar(value: Any) -> str:
    # JSON scalars are valid YAML flow scalars, and quoting every string avoids YAML 1.1 surprises
    return json.dumps(value)


def _header_flyte2(config: ClientConfig, data: dict[str, Any]) -> list[str]:
    from flyte_iap import DOCS_URL

    lines = [
        f"# flyte SDK (Flyte 2) configuration for {data['admin']['endpoint'][len('dns:///') :]} behind IAP,",
        "# written by `flyte-iap config --sdk flyte2` for flyte >= 2.12.",
        "#",
        "# authType ExternalCommand runs admin.command after the first 401 and sends its stdout, a Google ID",
        "# token for the IAP OAuth client, as `authorization: Bearer ...`; the token is kept in the keyring",
        "# under this endpoint until IAP rejects it. (admin.proxyCommand is broken in flyte 2.12.1.)",
        "# The command runs without a shell: flyte-iap must be on the PATH of the process running flyte",
        "# (or an absolute path: flyte-iap config --absolute-command).",
    ]
    if config.mode == "user":
        login = ["flyte-iap", "login", "--audience", config.audience]
        if config.client_id:
            login += ["--client-id", config.client_id]
        lines += ["#", "# Sign in once, in a terminal, before the first use:", "#   " + " ".join(login)]
    lines += ["#", f"# Guide: {DOCS_URL}/flyte2/client.html"]
    return lines


def _header(config: ClientConfig, data: dict[str, Any]) -> list[str]:
    from flyte_iap import DOCS_URL

    if config.sdk == "flyte2":
        return _header_flyte2(config, data)
    admin = data["admin"]
    lines = [
        f"# Flyte client configuration for {admin['endpoint'][len('dns:///') :]} behind IAP,",
        "# written by `flyte-iap config` for flytekit >= 1.10 and flytectl >= 0.8.18.",
        "#",
        "# admin.proxyCommand prints a Google ID token whose audience is the IAP OAuth client; flytekit and",
        "# flytectl send it as `proxy-authorization: Bearer ...` on every request, and IAP strips it.",
        "# They run it without a shell: the command must be found on the PATH of the process running",
        "# pyflyte, FlyteRemote or flytectl (or an absolute path: flyte-iap config --absolute-command).",
    ]
    if config.mode == "user":
        login = ["flyte-iap", "login", "--audience", config.audience]
        if config.client_id:
            login += ["--client-id", config.client_id]
        lines += [
            "#",
            "# Sign in once, in a terminal, before the first use (add --client-secret-gcp-secret or",
            "# --client-secrets-file for the Desktop client's secret):",
            "#   " + " ".join(login),
        ]
    else:
        lines += [
            "#",
            "# Service-account mode: credentials come from GOOGLE_APPLICATION_CREDENTIALS, gcloud's",
            "# application default credentials, or the metadata server (GKE Workload Identity, GCE, Run).",
        ]
    if admin.get("authType") == "Pkce":
        lines += [
            "#",
            "# authType Pkce: flytectl's PKCE exchange does not carry the proxy header and fails behind IAP",
            "# (flyteorg/flyte#6089); pyflyte and FlyteRemote work.",
        ]
    lines += ["#", f"# Guide: {DOCS_URL}/client/config.html"]
    return lines


def render(config: ClientConfig) -> str:
    """The YAML text of the file.

    Args:
        config: the settings.

    Returns:
        A comment header (what the file is for, how to sign in), then ``admin`` and ``console``.

    Raises:
        ConfigurationError: see :func:`build`.
    """
    data = build(config)
    lines = _header(config, data)
    for section, values in data.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            if isinstance(value, list):
                rendered = "[" + ", ".join(_scalar(v) for v in value) + "]"
            else:
                rendered = _scalar(value)
            lines.append(f"  {key}: {rendered}")
    return "\n".join(lines) + "\n"


def installed_command() -> str:
    """Where the ``flyte-iap`` script is, for ``command=`` in :class:`ClientConfig`.

    Returns:
        The absolute path of the script next to the running interpreter, else of the one on ``PATH``.

    Raises:
        ConfigurationError: no ``flyte-iap`` script can be found.
    """
    beside = Path(sys.executable).with_name("flyte-iap")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("flyte-iap")
    if found:
        return str(Path(found).resolve())
    raise ConfigurationError(
        "cannot find the flyte-iap script to write its absolute path",
        "install flyte-iap in this environment, or drop --absolute-command",
    )


def write(text: str, path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically with mode 0600.

    Args:
        text: the file's content.
        path: where to write; ``~`` is expanded and missing directories are created.
        force: replace an existing file.

    Returns:
        The path written.

    Raises:
        ConfigurationError: the file exists and ``force`` is False, or it cannot be written.
    """
    target = Path(path).expanduser()
    if target.exists() and not force:
        raise ConfigurationError(f"{target} already exists", "pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(target, text)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write {target}: {exc.strerror or exc}", "check the directory"
        ) from exc
    return target


# -- checks on what users type --------------------------------------------------------------------

# An OAuth client ID as Google issues it: the project number, a dash, an ID, and Google's domain.
_CLIENT_ID_RE = re.compile(r"[0-9]+-[0-9A-Za-z_]+\.apps\.googleusercontent\.com")


def audience_warnings(audience: str) -> list[str]:
    """What is odd about an ``--audience`` value, as warnings (empty when it looks right).

    IAP accepts a user's or service account's ID token only when its ``aud`` is the OAuth client ID of
    the IAP-protected app, so anything else (a URL, a project name, a typo) fails at IAP later.

    Args:
        audience: the value given.

    Returns:
        Zero or one message.
    """
    value = audience.strip()
    if not value or _CLIENT_ID_RE.fullmatch(value):
        return []
    return [
        f"--audience {value!r} does not look like an OAuth client ID "
        "(NUMBER-ID.apps.googleusercontent.com): IAP accepts only ID tokens whose audience is the "
        "OAuth client ID of the IAP-protected app"
    ]


# -- reading the client config flytekit and flytectl use -------------------------------------------

#: Larger than any real client config; a bigger "config" is refused unread.
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadedConfig:
    """What doctor needs from an existing Flyte client config (see :func:`read_config`).

    Attributes:
        path: the file read.
        endpoint: ``https://host[:port]`` (or ``http://`` when ``admin.insecure`` is true).
        audience: ``--audience`` of ``admin.proxyCommand``, or None when it has none.
        mode: ``user`` (``flyte-iap token``), ``service-account`` (``flyte-iap sa-token``),
            ``service-account-jwt`` (``flyte-iap sa-jwt``), or None when the proxy command is not
            flyte-iap's.
        url: ``--url`` of a ``flyte-iap sa-jwt`` proxy command (its JWT's audience), None without one.
        profile: ``--profile`` of a flyte-iap proxy command (which then holds its other settings).
        client_id: ``--client-id`` of the proxy command.
        impersonate_service_account: ``--impersonate-service-account`` of the proxy command.
        key_file: ``--key-file`` of the proxy command.
        ca_cert_file: ``admin.caCertFilePath``.
    """

    path: Path
    endpoint: str
    audience: str | None
    mode: str | None = None
    url: str | None = None
    profile: str | None = None
    client_id: str | None = None
    impersonate_service_account: str | None = None
    key_file: str | None = None
    ca_cert_file: str | None = None


def default_config_path(environ: dict[str, str] | None = None, home: Path | None = None) -> Path | None:
    """The YAML config flytekit would load when none is named, or None.

    flytekit 1.16 looks, in order, at ``$FLYTECTL_CONFIG``, ``./flytekit.config`` and ``~/.flyte/config``
    (both INI, from before flytectl) and ``~/.flyte/config.yaml`` (flytekit 1.16.31,
    flytekit/configuration/file.py: ``get_config_file``); flytectl reads ``~/.flyte/config.yaml``.
    Where flytekit would pick an INI file, this returns None: doctor cannot read the same settings.

    Args:
        environ: the environment (default: ``os.environ``).
        home: the home directory (default: ``Path.home()``).

    Returns:
        The path of an existing YAML config, or None.
    """
    env = os.environ if environ is None else environ
    named = env.get("FLYTECTL_CONFIG")
    if named and Path(named).expanduser().exists():
        return Path(named).expanduser()
    home = Path.home() if home is None else home
    if Path("flytekit.config").exists() or (home / ".flyte" / "config").exists():
        return None
    default = home / ".flyte" / "config.yaml"
    return default if default.exists() else None


def _bounded_text(path: Path) -> str:
    import stat

    hint = "pass a Flyte client config (YAML, as flyte-iap config writes it), or --endpoint and --audience"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigurationError(f"{path} is not a regular file", hint)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigurationError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not a client config", hint)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not UTF-8 text", hint) from None


def app_url(endpoint: str) -> str:
    """The app's URL for an endpoint, as a service-account JWT names it: scheme and host (and a port
    other than the scheme's), no path: ``flyte.example.com:443`` -> ``https://flyte.example.com``.

    Raises:
        ConfigurationError: the endpoint cannot be parsed.
    """
    host, port, insecure = split_endpoint(endpoint)
    return f"{'http' if insecure else 'https'}://{_hostport(host, port, default=80 if insecure else 443)}"


def _flag(command: list[str], name: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def read_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read endpoint, audience and token mode from a Flyte client config (``~/.flyte/config.yaml``).

    The audience is the ``--audience`` of ``admin.proxyCommand`` when that command is flyte-iap's
    (``flyte-iap token`` or ``sa-token``, by any path); ``flyte-iap sa-jwt`` has a ``--url`` instead,
    and another proxy command yields ``audience=None``.

    Args:
        path: the file; ``~`` is expanded. At most :data:`MAX_CONFIG_BYTES` are read; a FIFO, a
            directory or a device is refused.

    Returns:
        The :class:`LoadedConfig`.

    Raises:
        ConfigurationError: unreadable, not YAML, no ``admin.endpoint``, or values of the wrong type.
    """
    import yaml

    target = Path(path).expanduser()
    text = _bounded_text(target)
    hint = "write it with flyte-iap config, or pass --endpoint and --audience"
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigurationError(f"{target} is not valid YAML: {str(exc).splitlines()[0]}", hint) from None
    admin = data.get("admin") if isinstance(data, dict) else None
    if not isinstance(admin, dict) or not isinstance(admin.get("endpoint"), str) or not admin["endpoint"]:
        raise ConfigurationError(f"{target} has no admin.endpoint", hint)
    insecure = admin.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigurationError(f"{target}: admin.insecure is not true or false", hint)
    host, port, _ = split_endpoint(admin["endpoint"])
    endpoint = f"{'http' if insecure else 'https'}://{_hostport(host, port, default=80 if insecure else 443)}"
    ca_cert = admin.get("caCertFilePath")
    command = admin.get("proxyCommand")
    if command is not None and not (isinstance(command, list) and all(isinstance(a, str) for a in command)):
        raise ConfigurationError(f"{target}: admin.proxyCommand is not a list of strings", hint)
    command = command or []
    mode = None
    if len(command) >= 2 and Path(command[0]).name == "flyte-iap":
        mode = {"token": "user", "sa-token": "service-account", "sa-jwt": "service-account-jwt"}.get(
            command[1]
        )
    return LoadedConfig(
        path=target,
        endpoint=endpoint,
        audience=_flag(command, "--audience") if mode else None,
        mode=mode,
        url=(_flag(command, "--url") or None) if mode == "service-account-jwt" else None,
        profile=_flag(command, "--profile") if mode else None,
        client_id=_flag(command, "--client-id") if mode else None,
        impersonate_service_account=_flag(command, "--impersonate-service-account") if mode else None,
        key_file=_flag(command, "--key-file") if mode else None,
        ca_cert_file=ca_cert if isinstance(ca_cert, str) and ca_cert else None,
    )
