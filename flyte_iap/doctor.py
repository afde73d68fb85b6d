"""Walk a Flyte deployment behind IAP from the client's side, one check at a time, each with its fix.

Example::

    from flyte_iap.doctor import run_checks

    report = run_checks("https://flyte.example.com", "123-iap.apps.googleusercontent.com")
    for check in report.checks:
        print(check.status, check.name, check.detail, check.fix or "")
    report.ok  # True only when every check passed

The checks, in order (a check whose prerequisite failed is ``skip``):

``dns``
    The host resolves.
``tls``
    The certificate verifies (system roots, or ``ca_cert``), names the host, is not within
    ``min_cert_days`` of expiry; the server offers HTTP/2 (ALPN ``h2``), which gRPC needs.
``iap-enforced``
    A request without credentials is turned away by IAP itself (``x-goog-iap-generated-response``).
    If it reaches flyteadmin, IAP is not in front of the backend.
``token``
    An ID token can be minted: the user's (:func:`flyte_iap.get_user_id_token`, never opening a
    browser: without a usable sign-in the fix is the ``flyte-iap login`` command) or a service
    account's (:func:`flyte_iap.get_service_account_id_token`).
``audience``
    Its ``aud`` is the audience asked for (and who it names, and for how long).
``iap-accepts``
    ``GET /healthcheck`` with ``proxy-authorization: Bearer <token>`` passes IAP; IAP's refusal
    message, if any, is turned into the fix.
``grpc``
    ``grpc.health.v1.Health/Check`` (service ``flyteadmin``) with the same header reaches flyteadmin
    over HTTP/2 through the load balancer and IAP. Needs grpcio (the ``doctor`` extra; flytekit
    already brings it); imported only here. A failure is diagnosed from grpcio's own error: a refused
    connection, a failed handshake or a non-HTTP/2 answer each get their own fix.

When IAP is not in front of the endpoint (``iap-enforced`` saw an answer that is not IAP's),
``iap-accepts`` and ``grpc`` are skipped, saying so: they test IAP. Each check is a step of
:data:`STEPS`, which shares what it found with later steps through a :class:`Run`.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import flyte_iap
from flyte_iap import DOCS_URL
from flyte_iap.client_config import split_endpoint
from flyte_iap.errors import ConfigurationError, FlyteIapError, LoginRequiredError
from flyte_iap.idtoken import decode_claims, seconds_left

PASS, FAIL, SKIP = "pass", "fail", "skip"
#: check name -> what it verifies, in the order they run
CHECKS = {
    "dns": "the host name resolves",
    "tls": "the TLS certificate is valid for the host",
    "iap-enforced": "IAP rejects a request without credentials",
    "token": "an ID token can be minted",
    "audience": "the token's audience is the IAP OAuth client",
    "iap-accepts": "IAP accepts the token",
    "grpc": "gRPC through IAP reaches flyteadmin",
}
#: the checks only ``--sdk flyte2`` runs (flyte_iap.doctor_flyte2), with the ones above but grpc
FLYTE2_CHECKS = {
    "flyte2-config": "the flyte SDK's config file can get through IAP",
    "connect": "a Connect call through IAP reaches the Flyte 2 backend",
}
_IAP_HEADER = "x-goog-iap-generated-response"
_HEALTH_METHOD = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckRequest{service: "flyteadmin"}, encoded by hand: grpcio has no health
# messages of its own and this avoids a dependency on grpcio-health-checking.
_HEALTH_REQUEST = b"\x0a\x0aflyteadmin"
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str  # "pass", "fail" or "skip"
    detail: str
    fix: str | None = None

    @property
    def title(self) -> str:
        """What the check verifies, in words."""
        return CHECKS.get(self.name) or FLYTE2_CHECKS[self.name]


@dataclass
class Report:
    """Every check's outcome, in order."""

    endpoint: str
    audience: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.status == PASS for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``flyte-iap doctor --format json``)."""
        return {
            "endpoint": self.endpoint,
            "audience": self.audience,
            "ok": self.ok,
            "checks": [{**asdict(c), "title": c.title} for c in self.checks],
        }


def run_checks(
    endpoint: str,
    audience: str | None,
    *,
    service_account: bool = False,
    service_account_jwt: bool = False,
    jwt_url: str | None = None,
    impersonate_service_account: str | None = None,
    key_file: str | None = None,
    client_id: str | None = None,
    ca_cert: str | None = None,
    timeout: float = 10.0,
    min_cert_days: int = 14,
    token_provider: Callable[[], str] | None = None,
) -> Report:
    """Run every check against ``endpoint``.

    Args:
        endpoint: flyteadmin behind IAP (``https://host``, ``host[:port]``; ``http://`` for local fakes).
        audience: the IAP OAuth client ID tokens are minted for; None with ``service_account_jwt``.
        service_account: mint a service account's token instead of the user's.
        service_account_jwt: a service account's signed JWT instead (``flyte-iap sa-jwt``), whose
            audience is the app's URL (``https://HOST/*``); ``audience`` must then be None.
        jwt_url: that URL, as the proxy command's ``sa-jwt --url`` gives it (default: the endpoint's).
        impersonate_service_account: service-account mode, minting for this account.
        key_file: service-account mode, with this key file.
        client_id: user mode, the Desktop OAuth client of the stored sign-in.
        ca_cert: a PEM bundle to trust instead of the system roots (private CAs, local fakes).
        timeout: seconds for each network operation.
        min_cert_days: the certificate must be valid for at least this many more days.
        token_provider: mints the token instead of flyte-iap's own functions.

    Returns:
        The :class:`Report`; nothing is raised for a failing check.

    Raises:
        ConfigurationError: the endpoint cannot be parsed.
    """
    host, port, insecure = split_endpoint(endpoint)
    secure = not insecure
    port = port or (443 if secure else 80)
    base = f"{'https' if secure else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    sa_mode = bool(service_account or service_account_jwt or impersonate_service_account or key_file)
    if service_account_jwt:
        from flyte_iap.signed_jwt import get_service_account_jwt, jwt_audience

        if audience is not None:
            raise ConfigurationError(
                "--audience does not apply to a service account's signed JWT",
                "its audience is the endpoint's URL (https://HOST/*): drop --audience",
            )
        from flyte_iap.client_config import app_url

        url = jwt_url or app_url(endpoint)  # what `flyte-iap config --service-account-jwt` writes
        audience = jwt_audience(url)
    elif audience is None:
        raise ConfigurationError("no audience", "pass --audience, the IAP OAuth client ID")
    if token_provider is None:
        if service_account_jwt:

            def token_provider() -> str:
                return get_service_account_jwt(
                    url, impersonate_service_account=impersonate_service_account, key_file=key_file
                )

        elif sa_mode:

            def token_provider() -> str:
                return flyte_iap.get_service_account_id_token(
                    audience, impersonate_service_account=impersonate_service_account, key_file=key_file
                )

        else:

            def token_provider() -> str:
                # never a browser: doctor must not hang waiting for a sign-in
                return flyte_iap.get_user_id_token(audience, client_id=client_id, interactive=False)

    run = Run(
        host=host,
        port=port,
        secure=secure,
        base=base,
        audience=audience,
        ca_cert=ca_cert,
        timeout=timeout,
        min_cert_days=min_cert_days,
        mint=token_provider,
        principal="service account" if sa_mode else "user",
        kind="signed JWT" if service_account_jwt else "ID token",
    )
    report = Report(endpoint=base, audience=audience)
    for name, step in STEPS:
        check = Check(name, SKIP, f"not run: {run.halted}") if run.halted else step(run)
        run.results[name] = check
        report.checks.append(check)
    return report


@dataclass
class Run:
    """What the checks of one :func:`run_checks` call share: the target, and what earlier checks found.

    A step (an entry of :data:`STEPS`) reads it to decide whether it can run, and records what later
    steps need (``reachable``, ``iap``, ``token``). Setting ``halted`` skips every later step with
    that reason.
    """

    host: str
    port: int
    secure: bool
    base: str
    audience: str
    ca_cert: str | None
    timeout: float
    min_cert_days: int
    mint: Callable[[], str]
    principal: str
    #: what is minted: "ID token", or "signed JWT" (a service account's, for ``audience`` = the URL)
    kind: str = "ID token"
    #: outcomes so far, by check name
    results: dict[str, Check] = field(default_factory=dict)
    #: a verified connection is possible (the tls check did not rule it out)
    reachable: bool = False
    #: IAP answered the request without credentials (True), something else did (False), or unknown
    iap: bool | None = None
    token: str | None = None
    halted: str | None = None

    @property
    def verify(self) -> bool | str:
        """``requests``' ``verify``: the CA bundle given, else the system roots."""
        return self.ca_cert or True


def _doc(page: str) -> str:
    return f"{DOCS_URL}/{page}"


# -- the steps, in order ---------------------------------------------------------------------------


def _step_dns(run: Run) -> Check:
    check = _check_dns(run.host, run.port)
    if check.status != PASS:
        run.halted = "the host does not resolve"
    return check


def _step_tls(run: Run) -> Check:
    if not run.secure:
        run.reachable = True
        return Check("tls", PASS, "plain HTTP endpoint: no TLS to check (IAP itself only serves HTTPS)")
    check, run.reachable = _check_tls(run.host, run.port, run.ca_cert, run.timeout, run.min_cert_days)
    return check


def _step_iap_enforced(run: Run) -> Check:
    if not run.reachable:
        return Check("iap-enforced", SKIP, "not run: the tls check failed")
    check, run.iap = _check_unauthenticated(run.base, run.verify, run.timeout)
    return check


def _step_token(run: Run) -> Check:
    try:
        run.token = run.mint()
    except LoginRequiredError as exc:
        return _not_signed_in(run.audience, exc)
    except FlyteIapError as exc:
        return Check("token", FAIL, exc.message, exc.hint)
    return Check("token", PASS, f"minted a {run.principal} {run.kind}")


def _step_audience(run: Run) -> Check:
    if run.token is None:
        return Check("audience", SKIP, "not run: no token")
    if run.kind == "signed JWT" and not run.audience.endswith("/*"):
        return Check(
            "audience",
            FAIL,
            f"the JWT's aud {run.audience!r} names one path of the app, and Flyte's clients call others "
            "(gRPC: /flyteidl.service.AdminService/...)",
            "give `flyte-iap sa-jwt --url` the app's URL without a path (its aud is then https://HOST/*, "
            "every path); flyte-iap config --service-account-jwt writes it so",
        )
    if run.kind == "signed JWT":
        return _check_audience(
            run.token,
            run.audience,
            what="the endpoint's URL",
            fix="the JWT's aud must be the app's URL, https://HOST/*: run `flyte-iap sa-jwt --url` with the "
            "endpoint's scheme and host only (flyte-iap config --service-account-jwt writes it)",
        )
    return _check_audience(run.token, run.audience)


def _no_iap(run: Run) -> str:
    return (
        f"not run: IAP is not in front of {run.base} (see iap-enforced), so there is no IAP to accept a token"
    )


def _step_iap_accepts(run: Run) -> Check:
    if run.token is None:
        return Check("iap-accepts", SKIP, "not run: no token")
    if not run.reachable:
        return Check("iap-accepts", SKIP, "not run: the tls check failed")
    if run.iap is False:
        return Check("iap-accepts", SKIP, _no_iap(run))
    check = _check_authenticated(run.base, run.token, run.verify, run.timeout, jwt=run.kind == "signed JWT")
    if (
        check.status == FAIL
        and run.principal == "service account"
        and run.kind == "ID token"
        and "audience doesn't match" in check.detail
    ):
        check = replace(check, fix=_service_account_audience_fix(run, check.detail))
    return check


_JWT_SIGNATURE_FIX = (
    "IAP could not verify the JWT with the service account's public keys: the key that signed it (a key "
    "file's private_key_id is its kid) was deleted or disabled, or belongs to another account; create a "
    "new key, or sign through IAM Credentials signJwt (--impersonate-service-account, or no key file)"
)
_JWT_FIX = (
    "IAP refused the service account's signed JWT: its aud must be the app's URL (https://HOST/*, what "
    "`flyte-iap sa-jwt --url` makes of the endpoint's scheme and host), it must be signed with a key of "
    "that account (a key file, or IAM Credentials signJwt) and not live longer than the 3600 s of "
    "Google's sample; see " + _doc("client/ci-and-workloads.html")
)


def _service_account_audience_fix(run: Run, detail: str) -> str:
    """IAP refused a service account's ID token's audience: another client, or the managed client."""
    from flyte_iap.discovery import discover_client_id

    default_port = 443 if run.secure else 80
    app_url = run.base if run.port != default_port else run.base.rsplit(":", 1)[0]
    sa_jwt = f"flyte-iap sa-jwt --url {app_url}"
    expected = _expected_audiences(detail)
    try:
        discovered = discover_client_id(run.base, timeout=run.timeout, ca_cert=run.ca_cert)
    except FlyteIapError:
        discovered = None
    if discovered and expected and discovered not in expected:
        # The client IAP signs browsers in with is not one it accepts in ID tokens: Google's managed
        # client, which gives no programmatic access (no service-account ID token can name it).
        return (
            f"IAP at {app_url} signs in with OAuth client {discovered}, which it does not accept as an ID "
            f"token's audience: the Google-managed client. A service account gets in with a signed JWT "
            f"instead: `{sa_jwt}` as the proxy command (flyte-iap config --service-account-jwt writes it)"
        )
    if discovered and discovered in expected:
        return (
            f"the token was minted for another OAuth client: use --audience {discovered} in the proxy command"
        )
    return (
        "the token was minted for another OAuth client: use IAP's client for this backend as --audience; "
        f"if the app uses the Google-managed OAuth client, use `{sa_jwt}` instead"
    )


def _expected_audiences(detail: str) -> list[str]:
    """The audiences IAP names in its "doesn't match expected value (A, B)" answer."""
    match = re.search(r"expected value \((.*)\)\)\s*$", detail)
    return [a.strip() for a in match.group(1).split(",")] if match else []


def _step_grpc(run: Run) -> Check:
    if run.token is None:
        return Check("grpc", SKIP, "not run: no token")
    if not run.reachable:
        return Check("grpc", SKIP, "not run: the tls check failed")
    if run.iap is False:
        return Check("grpc", SKIP, _no_iap(run).replace("to accept a token", "to pass a gRPC call through"))
    accepted = run.results.get("iap-accepts")
    return _check_grpc(
        run.host,
        run.port,
        run.secure,
        run.ca_cert,
        run.token,
        run.timeout,
        http_passed=accepted is not None and accepted.status == PASS,
    )


#: The checks in the order they run: ``(name, step)``; a step returns its :class:`Check` (``skip`` when
#: what it needs is missing). A new check is a step appended here and a title in :data:`CHECKS`.
STEPS: list[tuple[str, Callable[[Run], Check]]] = [
    ("dns", _step_dns),
    ("tls", _step_tls),
    ("iap-enforced", _step_iap_enforced),
    ("token", _step_token),
    ("audience", _step_audience),
    ("iap-accepts", _step_iap_accepts),
    ("grpc", _step_grpc),
]


def _not_signed_in(audience: str, exc: LoginRequiredError) -> Check:
    # The error's own wording is about why no sign-in started; here the reason is doctor's rule.
    if exc.reason is None or exc.login_command is None:
        return Check("token", FAIL, exc.message, exc.hint)
    return Check(
        "token",
        FAIL,
        f"not signed in for audience {audience}: {exc.reason}; doctor does not sign in (it never opens a "
        "browser)",
        f"sign in, then run doctor again: {exc.login_command}",
    )


# -- dns ----------------------------------------------------------------------------------------------


def _check_dns(host: str, port: int) -> Check:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return Check(
            "dns",
            FAIL,
            f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}",
            "create the DNS A record for the ingress's static IP, or fix the endpoint's spelling; see "
            + _doc("deploy/static-ip-dns.html"),
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return Check("dns", PASS, f"{host} resolves to {', '.join(addresses)}")


# -- tls ----------------------------------------------------------------------------------------------


def _check_tls(
    host: str, port: int, ca_cert: str | None, timeout: float, min_days: int, *, require_h2: bool = True
) -> tuple[Check, bool]:
    """The check, and whether a verified connection is possible (for the checks that follow)."""
    try:
        context = ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        failed = Check(
            "tls", FAIL, f"cannot read --ca-cert {ca_cert}: {exc}", "pass a PEM file of CA certificates"
        )
        return failed, False
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
            alpn = tls.selected_alpn_protocol()
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return _tls_failure(host, port, exc, ca_cert, timeout), False
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        return Check(
            "tls",
            FAIL,
            f"cannot connect to {host}:{port} over TLS: {reason}",
            "check that the ingress has an external IP and a certificate attached and that port 443 is "
            "open; see " + _doc("deploy/ingress.html"),
        ), False
    days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400 if "notAfter" in cert else None
    if days is not None and days < min_days:
        return Check(
            "tls",
            FAIL,
            f"the certificate for {host} expires in {days:.0f} days",
            "Google-managed certificates renew about a month before expiry: check the ManagedCertificate's "
            "status (kubectl describe managedcertificate) and that DNS still points at the load balancer; "
            "see " + _doc("deploy/certificate.html"),
        ), True
    if alpn != "h2" and require_h2:
        return Check(
            "tls",
            FAIL,
            f"the certificate for {host} is valid, but the server does not offer HTTP/2 (ALPN {alpn!r})",
            "gRPC needs HTTP/2: terminate TLS at the Google load balancer (GCE ingress), not at a proxy "
            "that only speaks HTTP/1.1; see " + _doc("deploy/grpc-backend.html"),
        ), True
    left = f", valid for {days:.0f} more days" if days is not None else ""
    offered = "HTTP/2 offered" if alpn == "h2" else "HTTP/1.1 only"
    return Check("tls", PASS, f"certificate valid for {host}{left} ({version}, {offered})"), True


def _tls_failure(
    host: str, port: int, exc: ssl.SSLCertVerificationError, ca_cert: str | None, timeout: float
) -> Check:
    message = exc.verify_message or str(exc)
    names = _certificate_names(host, port, timeout)
    shown = f" (the certificate names {', '.join(names)})" if names else ""
    if exc.verify_code == 62 or "mismatch" in message.lower():
        return Check(
            "tls",
            FAIL,
            f"the certificate does not name {host}{shown}",
            f"add {host} to the ManagedCertificate's domains (or the ingress's TLS secret) and use the same "
            "name in admin.endpoint; see " + _doc("deploy/certificate.html"),
        )
    if exc.verify_code == 10 or "expired" in message.lower():
        return Check(
            "tls",
            FAIL,
            f"the certificate for {host} has expired",
            "check the ManagedCertificate's status and that DNS points at the load balancer; see "
            + _doc("deploy/certificate.html"),
        )
    trusted = f"the CAs in {ca_cert}" if ca_cert else "the system's trusted CAs"
    return Check(
        "tls",
        FAIL,
        f"the certificate for {host} is not trusted: {message}{shown}",
        f"it is not signed by {trusted}. A Google-managed certificate still PROVISIONING leaves the "
        "load balancer with a self-signed one: wait for Active. For a private CA pass --ca-cert FILE "
        "(and set admin.caCertFilePath); see " + _doc("troubleshooting.html"),
    )


def _certificate_names(host: str, port: int, timeout: float) -> list[str]:
    """The DNS names of the server's certificate, read without verifying it (for the message only)."""
    try:
        from cryptography import x509
    except ImportError:  # optional: the message just lacks the names
        return []
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if not der:
            return []
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        ]
    except (OSError, ssl.SSLError, ValueError, x509.ExtensionNotFound):
        return []


# -- HTTP through IAP --------------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str], verify: bool | str, timeout: float) -> Any:
    import requests

    # Accept without text/html: IAP then answers 401 instead of redirecting to a sign-in page
    return requests.get(
        url,
        headers={"accept": "application/json", **headers},
        verify=verify,
        timeout=timeout,
        allow_redirects=False,
    )


def _body(response: Any) -> str:
    return " ".join(response.text.split())[:300]


def _unreachable_fix(base: str) -> str:
    # The tls check passes a plain-http endpoint without connecting, so it cannot be the only pointer.
    return (
        f"check that {base} is the load balancer's address and that this machine can reach it "
        "(firewall, HTTPS_PROXY); see the dns and tls checks"
    )


def _check_unauthenticated(base: str, verify: bool | str, timeout: float) -> tuple[Check, bool | None]:
    """The check, and whether IAP answered (None when nothing did)."""
    import requests

    url = base + "/healthcheck"
    try:
        response = _get(url, {}, verify, timeout)
    except requests.RequestException as exc:
        failed = Check("iap-enforced", FAIL, f"GET {url} failed: {_reason(exc)}", _unreachable_fix(base))
        return failed, None
    if response.headers.get(_IAP_HEADER, "").lower() == "true":
        return Check(
            "iap-enforced", PASS, f"IAP answered HTTP {response.status_code}: {_body(response)}"
        ), True
    if response.status_code < 300:
        return Check(
            "iap-enforced",
            FAIL,
            f"a request without credentials reached the backend (HTTP {response.status_code} from "
            f"GET /healthcheck): IAP is not in front of it",
            "turn IAP on for the backend service: a BackendConfig with iap.enabled: true and the OAuth "
            "client's secret, attached to flyteadmin's Services (cloud.google.com/backend-config); see "
            + _doc("deploy/backendconfig.html"),
        ), False
    return Check(
        "iap-enforced",
        FAIL,
        f"HTTP {response.status_code} without {_IAP_HEADER}: not IAP's answer: {_body(response)}",
        "something other than IAP answered (flyteadmin's own auth, another proxy, or a wrong host): "
        "check that the endpoint is the IAP-protected load balancer; see "
        + _doc("deploy/backendconfig.html"),
    ), False


_AUDIENCE_FIX = (
    "--audience must be the OAuth client ID of the IAP-protected backend (Security > "
    "Identity-Aware Proxy > the backend's menu > Settings / OAuth client)"
)


def _check_audience(
    token: str, audience: str, *, what: str = "--audience", fix: str = _AUDIENCE_FIX
) -> Check:
    try:
        claims = decode_claims(token)
    except FlyteIapError as exc:
        return Check("audience", FAIL, exc.message, exc.hint)
    who = claims.get("email") or claims.get("sub") or "?"
    left = seconds_left(claims)
    if claims.get("aud") != audience:
        return Check("audience", FAIL, f"the token's aud is {claims.get('aud')!r}, not {audience!r}", fix)
    return Check(
        "audience",
        PASS,
        f"aud matches {what}; the token names {who}, valid {left / 60:.0f} more min",
    )


#: (text in IAP's 401, fix). The three about service-account JWTs match the IAP emulator's messages,
#: modelled on IAP's (Google does not publish them); other words for the same refusals get _JWT_FIX.
_FIXES = [
    (
        "service account jwt audience",
        "the JWT names another URL than this app's: make it with `flyte-iap sa-jwt --url` and the "
        "endpoint's scheme and host only (its aud is then https://HOST/*, every path)",
    ),
    (
        "service account jwt lifetime",
        "IAP refused how long the JWT lives (exp - iat): flyte-iap sa-jwt makes them live 3600 s, as "
        "Google's sample does; a JWT made elsewhere must not live longer",
    ),
    (
        "issued in the future",
        "the JWT's iat is ahead of Google's clock: check this machine's clock (NTP)",
    ),
    (
        "audience doesn't match",
        "the token was minted for another OAuth client: use --audience {expected}, IAP's client for this "
        "backend, in admin.proxyCommand too",
    ),
    (
        "expired",
        "the token had expired when IAP saw it: check this machine's clock (NTP); flyte-iap refreshes "
        "tokens before they expire",
    ),
    (
        "empty token",
        "IAP did not see the token: a proxy between you and Google may drop Proxy-Authorization",
    ),
    (
        "signature is invalid",
        "the token is not signed by Google: check FLYTE_IAP_* endpoint overrides",
    ),
    (
        "unable to parse",
        "the token is not a JWT: check what the token command prints (nothing else may go to stdout)",
    ),
]


#: The same for a service account's signed JWT: no OAuth client or --audience is involved (so IAP's
#: ID-token audience refusal and anything unknown get _JWT_FIX), and its signature is the account's.
_JWT_FIXES = [
    (needle, _JWT_SIGNATURE_FIX if needle == "signature is invalid" else fix)
    for needle, fix in _FIXES
    if needle != "audience doesn't match"
]


def _iap_fix(status: int, body: str, email: str | None, *, jwt: bool = False) -> str:
    if status == 403:
        if email is None:
            member = "user:EMAIL (or serviceAccount:SA_EMAIL)"
        elif email.endswith("gserviceaccount.com"):
            member = f"serviceAccount:{email}"
        else:
            member = f"user:{email}"
        return (
            f"grant roles/iap.httpsResourceAccessor (IAP-secured Web App User) to {member}: gcloud iap web "
            "add-iam-policy-binding --resource-type=backend-services --service=BACKEND_SERVICE "
            f"--member={member} --role=roles/iap.httpsResourceAccessor; see "
            + _doc("deploy/oauth-clients.html")
        )
    lowered = body.lower()
    for needle, fix in _JWT_FIXES if jwt else _FIXES:
        if needle in lowered:
            expected = ", ".join(_expected_audiences(body)) or "<the IAP OAuth client ID>"
            return fix.format(expected=expected)
    if jwt:
        return _JWT_FIX
    return (
        "if the Desktop OAuth client is new, allowlist it for programmatic access "
        "(IAP settings: programmatic_clients); see " + _doc("troubleshooting.html")
    )


def _check_authenticated(
    base: str, token: str, verify: bool | str, timeout: float, *, jwt: bool = False
) -> Check:
    import requests

    url = base + "/healthcheck"
    try:
        response = _get(url, {"proxy-authorization": f"Bearer {token}"}, verify, timeout)
    except requests.RequestException as exc:
        return Check("iap-accepts", FAIL, f"GET {url} failed: {_reason(exc)}", _unreachable_fix(base))
    from_iap = response.headers.get(_IAP_HEADER, "").lower() == "true"
    if from_iap:
        email = _email(token)
        return Check(
            "iap-accepts",
            FAIL,
            f"IAP refused the token: HTTP {response.status_code}: {_body(response)}",
            _iap_fix(response.status_code, response.text, email, jwt=jwt),
        )
    if response.status_code >= 500:
        return Check(
            "iap-accepts",
            FAIL,
            f"IAP let the token through but the load balancer answered HTTP {response.status_code}",
            "the flyteadmin HTTP backend is unhealthy or unreachable: check the backend's health check "
            "(BackendConfig healthCheck on /healthcheck) and the pods; see "
            + _doc("deploy/backendconfig.html"),
        )
    return Check(
        "iap-accepts", PASS, f"IAP let the token through: flyteadmin answered HTTP {response.status_code}"
    )


def _email(token: str) -> str | None:
    """Who the token names: its ``email``, or a signed JWT's ``sub`` (a service account's e-mail)."""
    try:
        claims = decode_claims(token)
    except FlyteIapError:
        return None
    email = claims.get("email")
    if not isinstance(email, str):
        email = claims.get("sub")
    return email if isinstance(email, str) and "@" in email else None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\[SSL: [^\]]*\] ([^(]*)", text) or re.search(r"(Failed to establish[^'\"]*)", text)
    return (match.group(1) if match else text)[:300].strip()


# -- gRPC -------------------------------------------------------------------------------------------


def _check_grpc(
    host: str, port: int, secure: bool, ca_cert: str | None, token: str, timeout: float, *, http_passed: bool
) -> Check:
    try:
        import grpc
    except ImportError:
        from flyte_iap.extras import install_hint

        return Check(
            "grpc",
            FAIL,
            "grpcio is not installed, so gRPC cannot be checked",
            f"{install_hint('doctor')}; flytekit installs grpcio too. Then run doctor again",
        )
    target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if secure:
        roots = None
        if ca_cert:
            with open(ca_cert, "rb") as handle:
                roots = handle.read()
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))
    else:
        channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary(_HEALTH_METHOD)
        answer = call(_HEALTH_REQUEST, metadata=[("proxy-authorization", f"Bearer {token}")], timeout=timeout)
        status = _HEALTH_STATUS.get(answer[1] if len(answer) >= 2 and answer[0] == 0x08 else 0, "UNKNOWN")
        return Check("grpc", PASS, f"flyteadmin answered grpc.health.v1 Check: {status}")
    except grpc.RpcError as exc:
        return _grpc_failure(exc.code(), exc.details() or "", http_passed=http_passed, target=target)
    finally:
        channel.close()


# What grpcio says when the call never got an HTTP answer (grpcio 1.6x-1.8x core messages), and what each
# means: diagnosed from the error itself, so a refused connection is not blamed on the load balancer.
_TRANSPORT_ERRORS = [
    (
        re.compile(r"connection refused", re.I),
        "nothing accepts connections on {target} (Connection refused)",
        "check the endpoint's host and port: the load balancer's address on 443, or, for a port-forward "
        "or local test, that the process listens there",
    ),
    (
        re.compile(r"errors resolving|name resolution|domain name not found|dns resolution", re.I),
        "gRPC cannot resolve the host of {target}",
        "check the endpoint's spelling and this machine's DNS; see " + "{doc_dns}",
    ),
    (
        re.compile(r"handshake failed|ssl_error|certificate verify|tsi_", re.I),
        "the TLS handshake for gRPC to {target} failed",
        "gRPC checks the certificate like the tls check does: for a private CA pass --ca-cert (and set "
        "admin.caCertFilePath); a server that is not TLS at all needs an http:// endpoint (admin.insecure)",
    ),
    (
        re.compile(r"parsing http/2|http1\.x server|expected settings frame", re.I),
        "{target} answered, but not with HTTP/2",
        "gRPC needs HTTP/2 end to end: the gRPC paths must go to a Service port marked HTTP2 in "
        "cloud.google.com/app-protocols; see {doc_grpc}",
    ),
    (
        re.compile(r"connection reset|socket closed|broken pipe|connection aborted", re.I),
        "the connection to {target} was closed before any answer",
        "something on the path closes HTTP/2 connections (a proxy or firewall), or the backend restarted; "
        "run doctor again, and compare with the iap-accepts check",
    ),
]


def _grpc_failure(code: Any, details: str, *, http_passed: bool, target: str = "the endpoint") -> Check:
    name = getattr(code, "name", str(code))
    http = re.search(r"status: (\d{3})", details)
    status = int(http.group(1)) if http else None
    if status in (401, 403):
        if http_passed:
            fix = (
                "the HTTP check passed, so the gRPC paths go to a backend service with other IAP settings: "
                "use the same BackendConfig (iap and OAuth client) on flyteadmin's gRPC Service; see "
                + _doc("deploy/grpc-backend.html")
            )
        else:
            # The same refusal as the iap-accepts check: its fix applies here too.
            fix = "IAP refused the HTTP request with this token too: apply the iap-accepts fix above first"
        return Check("grpc", FAIL, f"IAP refused the gRPC call: HTTP {status} ({name})", fix)
    if status == 404:
        return Check(
            "grpc",
            FAIL,
            "the load balancer has no route for gRPC (HTTP 404 for /grpc.health.v1.Health/Check)",
            "add flyteadmin's gRPC paths (/flyteidl.service.*/*, /grpc.health.v1.Health/*) to the ingress, "
            "pointing at the gRPC port; see " + _doc("deploy/ingress.html"),
        )
    if status is not None and status >= 500:
        return Check(
            "grpc",
            FAIL,
            f"gRPC through IAP did not reach flyteadmin (HTTP {status})",
            "the load balancer has no healthy HTTP/2 backend for the gRPC paths: they must go to a Service "
            "port that serves TLS and is marked HTTP2 in cloud.google.com/app-protocols (a gateway's https "
            "port, or flyteadmin's http port in secure mode), and its health check must pass; see "
            + _doc("deploy/grpc-backend.html"),
        )
    if status is None:
        for pattern, detail, fix in _TRANSPORT_ERRORS:
            if pattern.search(details):
                fill = {
                    "target": target,
                    "doc_dns": _doc("deploy/static-ip-dns.html"),
                    "doc_grpc": _doc("deploy/grpc-backend.html"),
                }
                return Check("grpc", FAIL, f"{detail.format(**fill)} ({name})", fix.format(**fill))
        if name == "DEADLINE_EXCEEDED":
            return Check(
                "grpc",
                FAIL,
                f"no gRPC answer from {target} within the timeout (DEADLINE_EXCEEDED)",
                "a firewall may drop the traffic, or the backend hangs: try again with a larger --timeout, "
                "and compare with the iap-accepts check",
            )
        if name == "UNAVAILABLE":
            return Check(
                "grpc",
                FAIL,
                f"the gRPC call to {target} failed before any HTTP answer (UNAVAILABLE: {details[:200]})",
                "the message above is grpcio's own: compare with the tls and iap-accepts checks, which "
                "reach the same host over HTTP",
            )
    if name in ("UNKNOWN", "INTERNAL") and status is None:
        return Check(
            "grpc",
            FAIL,
            f"an HTTP error page came back instead of a gRPC answer ({name}: {details[:200]})",
            "usually IAP or the load balancer refusing the call; grpcio >= 1.62 reports which HTTP status; "
            "see " + _doc("troubleshooting.html"),
        )
    # any other gRPC status was sent by flyteadmin itself: the path through IAP works
    return Check("grpc", PASS, f"flyteadmin answered the gRPC health check: {name} {details[:120]}".rstrip())
