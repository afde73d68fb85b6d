"""verify_hostname decides and words a host name mismatch as Go's crypto/x509 VerifyHostname does."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flyte_iap.testing._go_x509 import verify_hostname


def _cert(*names: str, ips: tuple[str, ...] = (), common_name: str = "flyteadmin") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize(
    ("names", "host"),
    [
        (("0.0.0.0:8088",), "0.0.0.0:8088"),  # not a valid host name: exact match only
        (("flyteadmin.flyte.svc",), "FLYTEADMIN.flyte.svc"),  # ASCII case-insensitive
        (("flyteadmin.flyte.svc",), "flyteadmin.flyte.svc."),  # trailing dot of a valid name
        (("*.flyte.svc",), "flyteadmin.flyte.svc"),  # left-most wildcard
    ],
)
def test_accepted_names(names: tuple[str, ...], host: str) -> None:
    assert verify_hostname(_cert(*names), host) is None


@pytest.mark.parametrize(
    ("names", "host"),
    [
        (("flyteadmin",), "0.0.0.0:8088"),
        (("0.0.0.0",), "0.0.0.0:8088"),  # the port is part of the name
        (("*.0.0.0:8088",), "0.0.0.0:8088"),
        (("*.flyte.svc",), "a.b.flyte.svc"),  # a wildcard covers one label
        (("*",), "flyteadmin"),
    ],
)
def test_rejected_names(names: tuple[str, ...], host: str) -> None:
    expected = f"x509: certificate is valid for {', '.join(names)}, not {host}"
    assert verify_hostname(_cert(*names), host) == expected


def test_ip_addresses_match_only_ip_sans() -> None:
    assert verify_hostname(_cert("10.0.0.1", ips=("10.0.0.2",)), "[10.0.0.2]") is None
    assert verify_hostname(_cert("10.0.0.1"), "10.0.0.1") == (
        "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs"
    )
    assert verify_hostname(_cert(ips=("10.0.0.2",)), "10.0.0.1") == (
        "x509: certificate is valid for 10.0.0.2, not 10.0.0.1"
    )


def test_common_name_is_never_used() -> None:
    assert verify_hostname(_cert(common_name="flyteadmin"), "flyteadmin") == (
        "x509: certificate relies on legacy Common Name field, use SANs instead"
    )
    assert verify_hostname(_cert(common_name="other"), "flyteadmin") == (
        "x509: certificate is not valid for any names, but wanted to match flyteadmin"
    )
