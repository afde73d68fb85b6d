"""What the local proxy's tests import by name (fixtures are in tests/proxy/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
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
