"""``flyte-iap doctor --sdk flyte2``: a Flyte 2 deployment behind IAP, checked the way the ``flyte`` SDK
calls it.

Example::

    from flyte_iap.doctor_flyte2 import run_flyte2_checks

    report = run_flyte2_checks(
        "https://flyte.example.com", "123-iap.apps.googleusercontent.com", flyte_config="~/.flyte/config.yaml"
    )
    report.ok

The checks, in order: ``flyte2-config`` (only with a config file), ``dns``, ``tls``, ``iap-enforced``,
``token``, ``audience``, ``iap-accepts``, ``connect``. What differs from Flyte 1
(:mod:`flyte_iap.doctor`), with the upstream behaviour each rests on:

* The token goes in ``authorization: Bearer`` (``authType: ExternalCommand``; flyte 2.12.1 wheel
  ``flyte/remote/_client/auth/_authenticators/base.py``, ``default_header_key``), and with a config
  file it is minted by running the file's own ``admin.command``, as the SDK would.
* HTTP/2 is not required: the SDK's Connect calls and server streams work over HTTP/1.1 too.
* The backend's health path is ``/healthz`` (``flyteorg/flyte@v2.0.43:flytestdlib/app/app.go``).
* ``connect``: ``POST /flyteidl2.project.ProjectService/ListProjects`` (what ``flyte get project``
  sends: binary proto, ``connect-protocol-version: 1``) must come back from the backend as
  ``application/proto``.
* ``flyte2-config``: the file must use ``authType: ExternalCommand`` with an ``admin.command`` that
  exists; ``admin.proxyCommand`` is broken in flyte 2.12.1 (``flyte/_initialize.py`` passes
  ``command=None`` and ``auth/_authenticators/factory.py`` passes ``command=`` again: ``TypeError``) and,
  next to another ``authType``, would share its keyring entry (``auth/_keyring.py``: one item per
  endpoint, user ``tokens``) so the two tokens overwrite each other; ``insecure: true`` turns the SDK's
  auth off (``auth/_session.py``); an endpoint with a path is not where the SDK calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flyte_iap.client_config import split_endpoint
from flyte_iap.doctor import (
    _IAP_HEADER,
    FAIL,
    PASS,
    SKIP,
    Check,
    Report,
    _body,
    _check_audience,
    _check_dns,
    _check_tls,
    _doc,
    _email,
    _get,
    _iap_fix,
    _not_signed_in,
    _reason,
    _unreachable_fix,
)
from flyte_iap.errors import ConfigurationError, FlyteIapError, LoginRequiredError

#: The SDK's config search order (flyte 2.12.1 wheel: flyte/config/_reader.py, resolve_config_path),
#: without the git-root step.
_CONFIG_SEARCH = ("config.yaml", ".flyte/config.yaml")
_HEALTH_PATH = "/healthz"
_LIST_PROJECTS = "/flyteidl2.project.ProjectService/ListProjects"
_MAX_CONFIG_BYTES = 1 << 20
_FIX_CONFIG = "write the file with `flyte-iap config --sdk flyte2 ...`; see " + _doc("flyte2/client.html")


def find_flyte_config() -> Path | None:
    """The file the ``flyte`` SDK would read: ./config.yaml, ./.flyte/config.yaml, $UCTL_CONFIG,
    $FLYTECTL_CONFIG, ~/.union/config.yaml, ~/.flyte/config.yaml; ``None`` when there is none."""
    candidates = [Path(p) for p in _CONFIG_SEARCH]
    candidates += [Path(os.environ[v]) for v in ("UCTL_CONFIG", "FLYTECTL_CONFIG") if os.environ.get(v)]
    candidates += [Path.home() / ".union" / "config.yaml", Path.home() / ".flyte" / "config.yaml"]
    return next((p for p in candidates if p.is_file()), None)


def load_flyte_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Flyte 2 config file, bounded; a ConfigurationError for anything that is not YAML mapping."""
    import yaml

    target = Path(path).expanduser()
    try:
        if not target.is_file():
            raise ConfigurationError(
                f"{target} is not a file", "pass the flyte SDK's config.yaml, or " + _FIX_CONFIG
            )
        with target.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {target}: {exc.strerror or exc}", "check the path") from exc
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigurationError(
            f"{target} is larger than 1 MiB", "pass the flyte SDK's config.yaml, or " + _FIX_CONFIG
        )
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{target} is not valid YAML: {exc}".splitlines()[0], _FIX_CONFIG) from exc
    if not isinstance(data, dict) or not isinstance(data.get("admin"), dict):
        raise ConfigurationError(f"{target} has no admin section", _FIX_CONFIG)
    return data


def settings_from_config(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """``(endpoint, audience)`` from a Flyte 2 config: ``https://`` + ``admin.endpoint``'s host, and the
    ``--audience`` of ``admin.command`` (else of ``admin.proxyCommand``); None where absent.

    Raises:
        ConfigurationError: the file cannot be read as a Flyte config.
    """
    admin = load_flyte_config(path)["admin"]
    endpoint = str(admin.get("endpoint") or "").strip() or None
    if endpoint is not None:
        host = endpoint[len("dns:///") :] if endpoint.startswith("dns:///") else endpoint
        endpoint = host if "://" in host else f"https://{host}"
    audience = None
    for key in ("command", "proxyCommand"):
        command = admin.get(key)
        if isinstance(command, list) and "--audience" in command[:-1]:
            audience = str(command[command.index("--audience") + 1])
            break
    return endpoint, audience


def check_flyte_config(path: str | os.PathLike[str], endpoint: str | None = None) -> Check:
    """The ``flyte2-config`` check: will this file get the SDK's calls through IAP?"""
    try:
        admin = load_flyte_config(path)["admin"]
    except ConfigurationError as exc:
        return Check("flyte2-config", FAIL, exc.message, exc.hint)
    problems: list[tuple[str, str]] = []
    auth_type = admin.get("authType")
    command = admin.get("command")
    if admin.get("proxyCommand"):
        what = "admin.proxyCommand is broken in flyte 2.12.1 (TypeError before any call)"
        if auth_type and auth_type != "ExternalCommand":
            what += (
                f"; next to authType {auth_type} it would also share one keyring entry per endpoint, "
                "each token overwriting the other"
            )
        problems.append(
            (what, "replace it with authType: ExternalCommand and admin.command: [the same list]")
        )
    if auth_type != "ExternalCommand" and not (admin.get("proxyCommand") and not auth_type):
        problems.append(
            (
                f"authType is {auth_type or 'unset (Pkce)'}, so the SDK never runs a token command for IAP",
                "set authType: ExternalCommand with admin.command: [flyte-iap, token, --audience, ...]",
            )
        )
    elif not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        problems.append(("admin.command is not a list of strings", "admin.command: [flyte-iap, token, ...]"))
    else:
        program = command[0]
        found = (
            shutil.which(program)
            if os.sep not in program
            else (program if os.access(program, os.X_OK) else None)
        )
        if found is None:
            problems.append(
                (
                    f"admin.command runs {program!r}, which is not "
                    + ("an executable file" if os.sep in program else "on PATH"),
                    "install flyte-iap where flyte runs, or write its absolute path "
                    "(flyte-iap config --sdk flyte2 --absolute-command)",
                )
            )
    if admin.get("insecure") is True:
        problems.append(
            (
                "insecure: true: the SDK sends no credentials on a plaintext connection (and IAP serves "
                "HTTPS)",
                "set insecure: false and use the https endpoint (caCertFilePath for a private CA)",
            )
        )
    configured = str(admin.get("endpoint") or "")
    if not configured:
        problems.append(("admin.endpoint is missing", "admin.endpoint: dns:///flyte.example.com"))
    else:
        rest = configured[len("dns:///") :] if configured.startswith("dns:///") else configured
        path_part = urlsplit(rest if "://" in rest else "//" + rest).path
        if path_part.strip("/"):
            problems.append(
                (
                    f"admin.endpoint {configured!r} has a path; the SDK calls /<service>/<method> at the "
                    "host's root",
                    "give only the host: dns:///flyte.example.com",
                )
            )
        elif endpoint:
            try:
                same = split_endpoint(configured)[:2] == split_endpoint(endpoint)[:2]
            except ConfigurationError as exc:
                problems.append((exc.message, exc.hint))
            else:
                if not same:
                    problems.append(
                        (
                            f"admin.endpoint {configured!r} is not the endpoint checked ({endpoint})",
                            "run doctor with --endpoint matching the file, or fix the file",
                        )
                    )
    if problems:
        detail = "; ".join(p for p, _ in problems)
        fix = "; ".join(f for _, f in problems) + "; or " + _FIX_CONFIG
        return Check("flyte2-config", FAIL, f"{Path(path)}: {detail}", fix)
    return Check("flyte2-config", PASS, f"{Path(path)}: authType ExternalCommand running {command[0]}")


def command_token_provider(path: str | os.PathLike[str], timeout: float) -> Callable[[], str]:
    """Run the config file's ``admin.command`` as the SDK does (no shell) and return its stdout."""

    def provide() -> str:
        command = load_flyte_config(path)["admin"].get("command")
        if not isinstance(command, list) or not command:
            raise ConfigurationError("the config has no admin.command", _FIX_CONFIG)
        try:
            done = subprocess.run(
                [str(c) for c in command],
                capture_output=True,
                text=True,
                timeout=max(timeout, 30),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigurationError(f"admin.command failed to run: {exc}", "run it in a terminal") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-2:]
            raise ConfigurationError(
                f"admin.command exited {done.returncode}: {' / '.join(last)}"[:400],
                "run the command in a terminal to see why",
            )
        return done.stdout.strip()

    return provide


def run_flyte2_checks(
    endpoint: str,
    audience: str,
    *,
    flyte_config: str | None = None,
    ca_cert: str | None = None,
    timeout: float = 10.0,
    min_cert_days: int = 14,
    token_provider: Callable[[], str] | None = None,
) -> Report:
    """Run the Flyte 2 checks against ``endpoint``; see the module docstring.

    Args:
        endpoint: the IAP-protected host (``https://host``; ``http://`` only for local fakes).
        audience: the IAP OAuth client ID.
        flyte_config: the flyte SDK's config file; its ``admin.command`` mints the token.
        ca_cert: a PEM bundle to trust instead of the system roots.
        timeout: seconds for each network operation.
        min_cert_days: the certificate must be valid for at least this many more days.
        token_provider: mints the token (default: the config's command, else flyte-iap's user token).

    Returns:
        The report; nothing is raised for a failing check.

    Raises:
        ConfigurationError: the endpoint cannot be parsed.
    """
    import flyte_iap

    host, port, insecure = split_endpoint(endpoint)
    secure = not insecure
    port = port or (443 if secure else 80)
    base = f"{'https' if secure else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    report = Report(endpoint=base, audience=audience)
    add = report.checks.append
    verify: bool | str = ca_cert or True
    if flyte_config is not None:
        add(check_flyte_config(flyte_config, endpoint))

    dns = _check_dns(host, port)
    add(dns)
    if dns.status != PASS:
        for name in ("tls", "iap-enforced", "token", "audience", "iap-accepts", "connect"):
            add(Check(name, SKIP, "not run: the host does not resolve"))
        return report
    if secure:
        tls, reachable = _check_tls(host, port, ca_cert, timeout, min_cert_days, require_h2=False)
    else:
        tls = Check("tls", PASS, "plain HTTP endpoint: no TLS to check (IAP itself only serves HTTPS)")
        reachable = True
    add(tls)
    add(_unauthenticated(base, verify, timeout) if reachable else Check("iap-enforced", SKIP, "not run: tls"))

    if token_provider is None and flyte_config is not None:
        token_provider = command_token_provider(flyte_config, timeout)
    token: str | None = None
    try:
        if token_provider is not None:
            token = token_provider()
        else:
            token = flyte_iap.get_user_id_token(audience, interactive=False)
        add(Check("token", PASS, "minted an ID token" + (" with admin.command" if flyte_config else "")))
    except LoginRequiredError as exc:
        add(_not_signed_in(audience, exc))
    except FlyteIapError as exc:
        add(Check("token", FAIL, exc.message, exc.hint))
    if token is None:
        for name in ("audience", "iap-accepts", "connect"):
            add(Check(name, SKIP, "not run: no token"))
        return report
    add(_check_audience(token, audience))
    if not reachable:
        add(Check("iap-accepts", SKIP, "not run: the tls check failed"))
        add(Check("connect", SKIP, "not run: the tls check failed"))
        return report
    accepted = _authenticated(base, token, verify, timeout)
    add(accepted)
    add(check_connect(base, token, verify, timeout, http_passed=accepted.status == PASS))
    return report


def _unauthenticated(base: str, verify: bool | str, timeout: float) -> Check:
    import requests

    url = base + _HEALTH_PATH
    try:
        response = _get(url, {}, verify, timeout)
    except requests.RequestException as exc:
        return Check("iap-enforced", FAIL, f"GET {url} failed: {_reason(exc)}", _unreachable_fix(base))
    if response.headers.get(_IAP_HEADER, "").lower() == "true":
        return Check("iap-enforced", PASS, f"IAP answered HTTP {response.status_code}: {_body(response)}")
    return Check(
        "iap-enforced",
        FAIL,
        f"a request without credentials got HTTP {response.status_code} from GET {_HEALTH_PATH}, not IAP's "
        "answer: IAP is not in front of the backend",
        "turn IAP on: a BackendConfig with iap.enabled on the API and console Services; the Flyte 2 backend "
        "trusts identity headers it does not verify, so it must never be reachable without IAP; see "
        + _doc("flyte2/gke.html"),
    )


def _authenticated(base: str, token: str, verify: bool | str, timeout: float) -> Check:
    import requests

    url = base + _HEALTH_PATH
    try:
        response = _get(url, {"authorization": f"Bearer {token}"}, verify, timeout)
    except requests.RequestException as exc:
        return Check("iap-accepts", FAIL, f"GET {url} failed: {_reason(exc)}", _unreachable_fix(base))
    if response.headers.get(_IAP_HEADER, "").lower() == "true":
        return Check(
            "iap-accepts",
            FAIL,
            f"IAP refused the token in authorization: HTTP {response.status_code}: {_body(response)}",
            _iap_fix(response.status_code, response.text, _email(token)),
        )
    if response.status_code >= 500:
        return Check(
            "iap-accepts",
            FAIL,
            f"IAP let the token through but the load balancer answered HTTP {response.status_code}",
            "the backend is unhealthy or unreachable: the BackendConfig's health check must use "
            f"{_HEALTH_PATH} on port 8090; see " + _doc("flyte2/gke.html"),
        )
    return Check(
        "iap-accepts", PASS, f"IAP let the token through: GET {_HEALTH_PATH} answered {response.status_code}"
    )


def check_connect(base: str, token: str, verify: bool | str, timeout: float, *, http_passed: bool) -> Check:
    """The ``connect`` check: ``ListProjects`` as ``flyte get project`` sends it, through IAP."""
    import requests

    url = base + _LIST_PROJECTS
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/proto",
        "connect-protocol-version": "1",
        "accept-encoding": "gzip",
    }
    try:
        # an empty body is an empty ListProjectsRequest
        response = requests.post(
            url, data=b"", headers=headers, verify=verify, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        return Check("connect", FAIL, f"POST {_LIST_PROJECTS} failed: {_reason(exc)}", _unreachable_fix(base))
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if response.headers.get(_IAP_HEADER, "").lower() == "true":
        fix = (
            _iap_fix(response.status_code, response.text, _email(token))
            if not http_passed
            else "the health check passed but the API call was refused: the /flyteidl2.* paths go to a "
            "backend service with other IAP settings; use one BackendConfig on the API and console Services"
        )
        return Check("connect", FAIL, f"IAP refused the Connect call: HTTP {response.status_code}", fix)
    if response.status_code == 200 and content_type == "application/proto":
        return Check(
            "connect", PASS, f"the backend answered ListProjects ({len(response.content)} bytes, Connect)"
        )
    if content_type == "application/json" and response.status_code < 500:
        # a Connect error from the backend itself: the path through IAP works
        return Check("connect", PASS, f"the backend answered with a Connect error: {_body(response)}")
    if response.status_code in (404, 405) or content_type.startswith("text/html"):
        return Check(
            "connect",
            FAIL,
            f"POST {_LIST_PROJECTS} did not reach the Flyte 2 API (HTTP {response.status_code}, "
            f"{content_type or '?'})",
            "route every path except the console's to the <release>-http Service (port 8090) in the Ingress: "
            "the SDK calls /flyteidl2.<service>/<method>; see " + _doc("flyte2/gke.html"),
        )
    return Check(
        "connect",
        FAIL,
        f"the Connect call came back HTTP {response.status_code}: {_body(response)}",
        "check the backend's pods and the load balancer's health check (/healthz on port 8090); see "
        + _doc("flyte2/gke.html"),
    )
