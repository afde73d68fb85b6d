"""Go's certificate host name check, for fakes of Go servers that verify their own certificate.

flyteadmin's REST gateway (secure mode) dials its own gRPC server with a preset TLS server name,
and grpc-go hands that name unchanged to Go's ``crypto/x509`` ``Certificate.VerifyHostname``. This
module reproduces that function's decision and its error text, so a fake fails exactly where the
real server fails: ``verify_hostname(cert, "0.0.0.0:8088")`` (``cert`` a ``cryptography`` certificate)
is None, or ``"x509: certificate is valid for flyteadmin, ..., not 0.0.0.0:8088"``.

Behaviour read in golang/go ``src/crypto/x509/verify.go`` (Go 1.26, the toolchain of
flyteorg/flyte@v1.16.8:flyteadmin/go.mod): an address that parses as an IP is matched only against
IP SANs; any other name is matched against DNS SANs, with wildcard and trailing-dot handling only
when both sides are valid host names, and otherwise by exact (ASCII case-insensitive) equality.
The subject's Common Name is never used.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

__all__ = ["verify_hostname"]


def _lower_ascii(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _valid_hostname(host: str, *, pattern: bool) -> bool:
    if not pattern:
        host = host.removesuffix(".")
    if not host or host == "*":
        return False
    for i, label in enumerate(host.split(".")):
        if not label:
            return False
        if pattern and i == 0 and label == "*":
            continue
        for j, c in enumerate(label):
            if c.isascii() and (c.isalnum() or c == "_" or (c == "-" and j != 0)):
                continue
            return False
    return True


def _match_hostnames(pattern: str, host: str) -> bool:
    pattern, host = _lower_ascii(pattern), _lower_ascii(host.removesuffix("."))
    if not pattern or not host:
        return False
    want, got = pattern.split("."), host.split(".")
    if len(want) != len(got):
        return False
    return all((i == 0 and w == "*") or w == g for i, (w, g) in enumerate(zip(want, got, strict=True)))


def _match_exactly(a: str, b: str) -> bool:
    if a in ("", ".") or b in ("", "."):
        return False
    return _lower_ascii(a) == _lower_ascii(b)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _sans(cert: x509.Certificate) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.DNSName), ext.get_values_for_type(x509.IPAddress)


def _has_san_extension(cert: x509.Certificate) -> bool:
    return any(e.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME for e in cert.extensions)


def verify_hostname(cert: x509.Certificate, host: str) -> str | None:
    """None when Go accepts ``cert`` for ``host``, else Go's ``x509.HostnameError`` message."""
    dns_names, ips = _sans(cert)
    candidate_ip = host[1:-1] if len(host) >= 3 and host[0] == "[" and host[-1] == "]" else host
    ip = _parse_ip(candidate_ip)
    if ip is not None:
        if any(ip == other for other in ips):
            return None
        if not ips:
            return (
                f"x509: cannot validate certificate for {candidate_ip} because it doesn't contain any IP SANs"
            )
        return f"x509: certificate is valid for {', '.join(str(a) for a in ips)}, not {candidate_ip}"
    candidate = _lower_ascii(host)
    valid_candidate = _valid_hostname(candidate, pattern=False)
    for name in dns_names:
        if valid_candidate and _valid_hostname(name, pattern=True):
            if _match_hostnames(name, candidate):
                return None
        elif _match_exactly(name, candidate):
            return None
    has_san = bool(dns_names or ips) or _has_san_extension(cert)
    common_names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not has_san and common_names and _match_hostnames(str(common_names[0].value), host):
        return "x509: certificate relies on legacy Common Name field, use SANs instead"
    if not dns_names:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {', '.join(dns_names)}, not {host}"
