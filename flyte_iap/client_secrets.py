"""Where the Desktop OAuth client's secret comes from: an option, the console's JSON file, or Secret Manager.

Example::

    from flyte_iap.client_secrets import SecretSource

    source = SecretSource.from_options(client_secret_gcp_secret="projects/my-proj/secrets/flyte-desktop")
    client_id, secret = source.resolve("123-desktop.apps.googleusercontent.com")

A Desktop ("installed app") client secret is not confidential in Google's model (it ships inside every
copy of a desktop program), but Google's token endpoint still requires it, and teams often keep it in
Secret Manager so it is not pasted into config files. Secret Manager is read through its REST API with
application default credentials (``google.auth.default()``), so the heavy
``google-cloud-secret-manager`` client is not needed. The secret is resolved only when a token must be
minted and is then stored with the login, so the proxy command does not call Secret Manager again.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

from flyte_iap import endpoints, transport
from flyte_iap.errors import ConfigurationError, CredentialsError, FlyteIapError, PermissionDeniedError
from flyte_iap.private_file import FileRefusedError, read_json_file

_SECRET_RE = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")
_DESKTOP_HINT = (
    "download the JSON of an OAuth client of type Desktop app (APIs & Services > Credentials > "
    "the client > Download JSON)"
)


@dataclass(frozen=True)
class SecretSource:
    """One way of getting the client secret: ``kind`` is ``value``, ``file`` or ``gcp-secret``.

    ``location`` is the file path or the Secret Manager resource (empty for ``value``); the secret itself
    is never shown by ``repr``.
    """

    kind: str
    location: str = ""
    value: str | None = field(default=None, repr=False)

    @classmethod
    def from_options(
        cls,
        client_secret: str | None = None,
        client_secrets_file: str | Path | None = None,
        client_secret_gcp_secret: str | None = None,
    ) -> SecretSource | None:
        """Build the source from the three mutually exclusive options.

        Args:
            client_secret: the secret itself (``--client-secret``).
            client_secrets_file: the client JSON the Cloud console downloads (``--client-secrets-file``).
            client_secret_gcp_secret: ``projects/P/secrets/S[/versions/V]`` (``--client-secret-gcp-secret``).

        Returns:
            The source, or ``None`` if no option was given.

        Raises:
            ConfigurationError: more than one option, or a malformed secret resource name.
        """
        given = [
            name
            for name, value in (
                ("--client-secret", client_secret),
                ("--client-secrets-file", client_secrets_file),
                ("--client-secret-gcp-secret", client_secret_gcp_secret),
            )
            if value
        ]
        if len(given) > 1:
            raise ConfigurationError(
                f"{' and '.join(given)} were both given", "pass only one way of getting the client secret"
            )
        if client_secret:
            return cls("value", value=client_secret)
        if client_secrets_file:
            return cls("file", str(Path(client_secrets_file).expanduser()))
        if client_secret_gcp_secret:
            return cls("gcp-secret", secret_version_name(client_secret_gcp_secret))
        return None

    def cli_args(self) -> list[str]:
        """The options that select this source, for a hint.

        Returns:
            E.g. ``["--client-secret-gcp-secret", "projects/P/secrets/S/versions/latest"]``. A literal
            secret is never suggested on a command line (``ps`` and shell history show it): the hint names
            the client JSON instead, as ``["--client-secrets-file", "<DESKTOP_CLIENT_JSON>"]``.
        """
        if self.kind == "file":
            return ["--client-secrets-file", self.location]
        if self.kind == "gcp-secret":
            return ["--client-secret-gcp-secret", self.location]
        return ["--client-secrets-file", "<DESKTOP_CLIENT_JSON>"]

    def resolve(self, client_id: str | None) -> tuple[str, str]:
        """Return ``(client_id, client_secret)``.

        Args:
            client_id: the Desktop client ID from the options; may be ``None`` for a client secrets file,
                which names its own.

        Returns:
            The client ID (the file's own for a client secrets file) and the secret.

        Raises:
            ConfigurationError: no client ID, or a file that is unreadable, not a Desktop client, or for
                another client ID.
            CredentialsError: Secret Manager cannot be read with application default credentials.
        """
        if self.kind == "file":
            file_id, secret = read_client_secrets_file(self.location)
            if client_id and client_id != file_id:
                raise ConfigurationError(
                    f"{self.location} is for client {file_id}, not --client-id {client_id}",
                    "drop --client-id or pass the matching file",
                )
            return file_id, secret
        if not client_id:
            raise ConfigurationError(
                "no OAuth client ID", "pass --client-id with the Desktop OAuth client's ID"
            )
        if self.kind == "gcp-secret":
            return client_id, access_secret_version(self.location)
        assert self.value is not None
        return client_id, self.value


def secret_version_name(resource: str) -> str:
    """Normalize a Secret Manager secret or version name to a version name.

    Args:
        resource: ``projects/P/secrets/S`` or ``projects/P/secrets/S/versions/V`` (slashes around it and
            white space are dropped).

    Returns:
        ``projects/P/secrets/S/versions/V``, with ``V`` ``latest`` when no version was given.

    Raises:
        ConfigurationError: ``resource`` is not a Secret Manager secret or version name.
    """
    resource = resource.strip().strip("/")
    if not _SECRET_RE.match(resource):
        raise ConfigurationError(
            f"{resource!r} is not a Secret Manager secret name",
            "use projects/PROJECT/secrets/SECRET or projects/PROJECT/secrets/SECRET/versions/VERSION",
        )
    return resource if "/versions/" in resource else resource + "/versions/latest"


def read_client_secrets_file(path: str | Path) -> tuple[str, str]:
    """Read ``(client_id, client_secret)`` from a client JSON downloaded from the Cloud console.

    Only Desktop clients (key ``installed``) are accepted: a Web application client (key ``web``) only
    takes its registered redirect URIs, so the loopback login would end in ``redirect_uri_mismatch``.

    Args:
        path: the file; ``~`` is expanded.

    Returns:
        The client ID and client secret under ``installed``.

    Raises:
        ConfigurationError: unreadable file, not a regular file (a FIFO, a device), larger than 1 MiB,
            not JSON, a Web client, or fields missing.
    """
    path = Path(path).expanduser()
    try:
        data = read_json_file(path)
    except FileNotFoundError:
        raise ConfigurationError(f"client secrets file {path} does not exist", _DESKTOP_HINT) from None
    except FileRefusedError as exc:
        raise ConfigurationError(f"client secrets file {exc.path} {exc.reason}", _DESKTOP_HINT) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read client secrets file {path}: {exc.strerror}", _DESKTOP_HINT
        ) from None
    except ValueError:
        raise ConfigurationError(f"client secrets file {path} is not valid JSON", _DESKTOP_HINT) from None
    if isinstance(data, dict) and "web" in data and "installed" not in data:
        raise ConfigurationError(
            f"{path} is for a Web application OAuth client; the login needs a Desktop app client",
            "create an OAuth client of type Desktop app in the IAP app's project and download its JSON "
            "(the Web client is the --audience, not the login client)",
        )
    section = data.get("installed") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigurationError(f"{path} has no 'installed' section", _DESKTOP_HINT)
    client_id, secret = section.get("client_id"), section.get("client_secret")
    if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
        raise ConfigurationError(f"{path} lacks client_id or client_secret under 'installed'", _DESKTOP_HINT)
    return client_id, secret


def access_secret_version(name: str, *, http: transport.HttpRequest | None = None) -> str:
    """Read a Secret Manager secret version as text, with application default credentials.

    Args:
        name: ``projects/P/secrets/S/versions/V``.
        http: an injected google-auth style transport (tests).

    Returns:
        The payload decoded as UTF-8, surrounding whitespace removed (``gcloud secrets create
        --data-file`` keeps the trailing newline of a file).

    Raises:
        CredentialsError: no application default credentials, or they were refused (401).
        PermissionDeniedError: the account lacks ``secretmanager.versions.access`` (403).
        FlyteIapError: the secret or version does not exist, or any other API error.
        TransportError: Secret Manager cannot be reached.
    """
    import google.auth
    import google.auth.exceptions

    adc_hint = (
        "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), or pass the "
        "secret with --client-secret / --client-secrets-file instead"
    )
    try:
        credentials, _ = google.auth.default(scopes=[endpoints.CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise CredentialsError(
            f"no application default credentials to read {name} from Secret Manager ({_first_line(exc)})",
            adc_hint,
        ) from None
    url = endpoints.secret_version_access_url(name)
    headers: dict[str, str] = {}
    try:
        # google-auth retries its own token requests; one attempt per call here avoids multiplying them.
        credentials.before_request(transport.google_auth_request(http=http, tries=1), "GET", url, headers)
    except google.auth.exceptions.RefreshError as exc:
        raise CredentialsError(
            f"application default credentials were refused while reading {name}: {_first_line(exc)}",
            adc_hint,
        ) from None
    except google.auth.exceptions.TransportError:
        raise CredentialsError(
            f"could not get an access token for application default credentials to read {name}",
            "check your network and the credentials in GOOGLE_APPLICATION_CREDENTIALS",
        ) from None
    response = transport.request("GET", url, what="Secret Manager", headers=headers, http=http)
    if response.status != 200:
        error = transport.api_error(response, f"Secret Manager ({name})")
        if isinstance(error, PermissionDeniedError):
            error.hint = (
                "grant roles/secretmanager.secretAccessor on the secret to the account of your "
                "application default credentials"
            )
        elif response.status == 404:
            error.hint = f"check the project and secret name: gcloud secrets versions list {_secret_of(name)}"
        raise error
    payload = response.json()
    data = payload.get("payload", {}).get("data") if isinstance(payload, dict) else None
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8") if isinstance(data, str) else None
    except (binascii.Error, UnicodeDecodeError):
        text = None
    if not text or not text.strip():
        raise FlyteIapError(
            f"Secret Manager returned no usable text for {name}",
            "the secret version must hold the Desktop OAuth client secret as plain text",
        )
    return text.strip()


def _secret_of(name: str) -> str:
    parts = name.split("/")
    return f"{parts[3]} --project {parts[1]}" if len(parts) >= 4 else name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
