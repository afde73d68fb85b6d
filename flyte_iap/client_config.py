"""The Flyte client configuration (``~/.flyte/config.yaml``) for a deployment behind IAP.

Example::

    from flyte_iap.client_config import ClientConfig, render, write

    config = ClientConfig(
        endpoint="https://flyte.example.com",
        audience="123-iap.apps.googleusercontent.com",   # the IAP OAuth client ID
        client_id="456-desktop.apps.googleusercontent.com",
    )
    text = render(config)                                 # YAML with a comment header
    write(text, "~/.flyte/config.yaml", force=False)      # atomic, 0600, refuses to overwrite

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
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flyte_iap.errors import ConfigurationError
from flyte_iap.private_file import write_private_file

ADMIN_AUTH_TYPES = {"none": None, "pkce": "Pkce", "client-secret": "ClientSecret"}
MODES = ("user", "service-account")


@dataclass(frozen=True)
class ClientConfig:
    """What goes into the file.

    Attributes:
        endpoint: flyteadmin behind IAP: ``https://host``, ``host``, ``host:port`` or ``dns:///host``.
        audience: the IAP OAuth client ID (the ID token's ``aud``).
        mode: ``user`` (``flyte-iap token``) or ``service-account`` (``flyte-iap sa-token``).
        client_id: user mode: the Desktop OAuth client to sign in with (``--client-id``).
        impersonate_service_account: service-account mode: the account to mint tokens for.
        admin_auth: flyteadmin's own auth: ``none``, ``pkce`` or ``client-secret``.
        admin_client_id: with ``client-secret``: flyteadmin's confidential client.
        admin_client_secret_location: with ``client-secret``: a file holding its secret.
        admin_client_secret_env_var: or an environment variable holding it.
        insecure: plaintext gRPC/HTTP (local tests only; IAP serves HTTPS). Default: from the scheme.
        ca_cert_file: a PEM bundle to trust instead of the system roots (``caCertFilePath``).
        command: how to invoke flyte-iap: ``flyte-iap`` (found on ``PATH``) or an absolute path.
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
    if not config.audience or not config.audience.strip():
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


def _header(config: ClientConfig, data: dict[str, Any]) -> list[str]:
    from flyte_iap import DOCS_URL

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
