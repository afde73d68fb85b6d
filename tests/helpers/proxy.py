"""What the local proxy's tests import by name (fixtures are in tests/proxy/conftest.py)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flyte_iap.local_proxy.server import LocalProxy
    from flyte_iap.testing import FakeFlyteAdmin

#: ``make_local(**overrides) -> LocalProxy`` from the ``make_local`` fixture.
LocalFactory = Callable[..., "LocalProxy"]


def assert_flyteadmin_never_saw_iap_credentials(admin: FakeFlyteAdmin) -> None:
    """IAP consumed the proxy's token: flyteadmin got none of it, on gRPC or HTTP."""
    for call in admin.grpc_calls:
        assert "proxy-authorization" not in call.metadata, call.method
    for request in admin.http_requests:
        assert "proxy-authorization" not in request.headers, request.path


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address or a DNS name) that is its own CA, valid a day either
    side of now, and its key: the PEM files ``cert.pem`` and ``key.pem`` in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        name_in_san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        name_in_san = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([name_in_san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file
