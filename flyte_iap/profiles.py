"""Named deployments: one small TOML file maps a profile name to its endpoint, audience and credentials.

Example ``profiles.toml`` (in :func:`config_dir`):

.. code-block:: toml

    [profiles.prod]
    endpoint = "https://flyte.example.com"
    audience = "123456789012-iap.apps.googleusercontent.com"
    client_id = "123456789012-desktop.apps.googleusercontent.com"
    client_secret_gcp_secret = "projects/my-project/secrets/flyte-iap-desktop"

    # Google-managed client: the allowlisted Desktop client is the audience
    [profiles.staging]
    endpoint = "https://flyte.staging.example.com"
    client_id = "123456789012-desktop.apps.googleusercontent.com"
    client_secrets_file = "~/.config/flyte-iap/desktop.json"

    [profiles.ci]
    endpoint = "https://flyte.example.com"
    mode = "service-account-jwt"

and then ``flyte-iap token --profile prod`` (or ``FLYTE_IAP_PROFILE=prod``); options given on the command
line win over the profile. ``flyte-iap config --profile prod`` writes a client config whose
``admin.proxyCommand`` is just ``[flyte-iap, token, --profile, prod]``.

The file holds no secret: a client secret is named by where it lives (a file, a Secret Manager secret).
Standard library only (``tomllib``), read only when a profile is asked for.
"""

from __future__ import annotations

import os
import stat
import sys

from flyte_iap.errors import ConfigurationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Environment variable naming the profile when ``--profile`` is not given.
ENV = "FLYTE_IAP_PROFILE"
#: What a profile may hold (all strings).
FIELDS = (
    "endpoint",
    "audience",
    "client_id",
    "client_secrets_file",
    "client_secret_gcp_secret",
    "store",
    "mode",
    "impersonate_service_account",
    "key_file",
)
#: Modes a profile may name: which token command its proxy command runs.
MODES = ("user", "service-account", "service-account-jwt")
#: A profiles file larger than this is refused (it holds a few lines per deployment).
MAX_BYTES = 256 * 1024
_FILE = "profiles.toml"


def config_dir() -> str:
    """``FLYTE_IAP_CONFIG_DIR``, else the platform's config dir for flyte-iap (as platformdirs names it).

    Linux and other POSIX: ``$XDG_CONFIG_HOME/flyte-iap`` or ``~/.config/flyte-iap``; macOS:
    ``~/Library/Application Support/flyte-iap``; Windows: ``%APPDATA%\\flyte-iap``.
    """
    explicit = os.environ.get("FLYTE_IAP_CONFIG_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    if sys.platform == "win32" and os.environ.get("APPDATA"):  # pragma: no cover - Windows only
        return os.path.join(os.environ["APPDATA"], "flyte-iap")
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        return os.path.join(os.path.expanduser("~"), "Library", "Application Support", "flyte-iap")
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "flyte-iap")


def profiles_path() -> str:
    """The profiles file (it need not exist)."""
    return os.path.join(config_dir(), _FILE)


def _read(path: str) -> str | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read profiles file {path}: {exc.strerror}", _EDIT_HINT) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"profiles file {path} is not a regular file", _EDIT_HINT)
    if info.st_size > MAX_BYTES:
        raise ConfigurationError(f"profiles file {path} is larger than {MAX_BYTES} bytes", _EDIT_HINT)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read profiles file {path}: {exc.strerror}", _EDIT_HINT) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"profiles file {path} is not UTF-8 text", _EDIT_HINT) from None


_EDIT_HINT = "fix or remove the file, or write profiles with `flyte-iap profile set NAME ...`"


def load_profiles(path: str | None = None) -> dict[str, dict[str, str]]:
    """Every profile in the file, checked: name -> {field: value}.

    Raises:
        ConfigurationError: the file cannot be read, is not TOML, or holds something a profile cannot.
    """
    path = path or profiles_path()
    text = _read(path)
    if text is None:
        return {}
    import tomllib

    try:
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigurationError(f"profiles file {path} is not valid TOML: {exc}", _EDIT_HINT) from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigurationError(f"profiles file {path}: `profiles` must be a table of tables", _EDIT_HINT)
    out: dict[str, dict[str, str]] = {}
    for name, values in profiles.items():
        if not isinstance(values, dict):
            raise ConfigurationError(f"profiles file {path}: profile {name!r} is not a table", _EDIT_HINT)
        out[name] = _checked(name, values, path)
    return out


def _checked(name: str, values: dict[str, Any], where: str) -> dict[str, str]:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{where}: profile {name!r} has unknown key(s) {', '.join(unknown)}",
            "a profile holds: " + ", ".join(FIELDS),
        )
    bad = sorted(k for k, v in values.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise ConfigurationError(
            f"{where}: profile {name!r}: {', '.join(bad)} must be non-empty strings", _EDIT_HINT
        )
    if values.get("mode", "user") not in MODES:
        raise ConfigurationError(
            f"{where}: profile {name!r} has mode {values['mode']!r}", "mode is one of " + ", ".join(MODES)
        )
    return {k: v.strip() for k, v in values.items()}


#: Fields that name files: ``~`` in them is expanded when a profile is used.
PATH_FIELDS = ("client_secrets_file", "key_file")


def get_profile(name: str, path: str | None = None) -> dict[str, str]:
    """One profile's values, ready to use (``~`` expanded in file names).

    Raises:
        ConfigurationError: no such profile, or a bad file.
    """
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigurationError(
            f"no profile {name!r} in {path or profiles_path()} (profiles: {known})",
            "add it with `flyte-iap profile set " + name + " --endpoint URL ...`",
        )
    values = dict(profiles[name])
    for key in PATH_FIELDS:
        if key in values:
            values[key] = os.path.expanduser(values[key])
    return values


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def _toml_key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _toml_string(name)


def render(profiles: dict[str, dict[str, str]]) -> str:
    """The TOML text of ``profiles`` (what :func:`load_profiles` reads back)."""
    blocks = ["# flyte-iap profiles: `flyte-iap token --profile NAME`. No secrets here, only where they are."]
    for name in sorted(profiles):
        lines = [f"[profiles.{_toml_key(name)}]"]
        lines += [f"{key} = {_toml_string(profiles[name][key])}" for key in FIELDS if key in profiles[name]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def set_profile(name: str, values: dict[str, str | None], path: str | None = None) -> str:
    """Create or update a profile (a value of ``None`` leaves that field as it was); returns the file.

    Raises:
        ConfigurationError: a bad name or value, or a bad existing file.
    """
    from flyte_iap.private_file import write_private_file

    if not name or len(name) > 100 or any(c.isspace() or c in "[]." for c in name):
        raise ConfigurationError(f"profile name {name!r} is not usable", "use letters, digits, - and _")
    path = path or profiles_path()
    profiles = load_profiles(path)
    merged = dict(profiles.get(name, {}))
    merged.update({k: v for k, v in values.items() if v is not None})
    profiles[name] = _checked(name, merged, "the new settings")
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_private_file(path, render(profiles))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write profiles file {path}: {exc.strerror}",
            "set FLYTE_IAP_CONFIG_DIR to a writable directory",
        ) from None
    return path
