"""Steps whose success depends on upstream behaviour are run against fakes that behave the same way.

Validated is not working: a certificate can be well-formed and still break flyteadmin. When a page
creates a Secret that a component uses in a way that can fail at run time, the console harness
(:mod:`_harness.shell`) calls the check here with the files the page's own commands produced.

``flyteadmin-tls``
    flyte-core's flyteadmin runs in secure mode with this certificate. Its REST gateway dials
    flyteadmin itself with the TLS server name ``0.0.0.0:<server.httpPort>`` and Go's exact host name
    check (flyteorg/flyte@v1.16.8:flyteadmin/pkg/server/service.go, ``serveGatewaySecure``), so the
    certificate must carry that name. The check starts :class:`~flyte_iap.testing.FakeFlyteAdmin` in
    secure mode with the page's files, puts :class:`~flyte_iap.testing.IapProxy` in front (the load
    balancer, speaking TLS to the backend without verifying it) and calls ``/api/v1/projects`` with an
    ID token for the IAP client, as the console and REST clients do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import EXAMPLES

#: the IAP OAuth client ID the examples use (the BackendConfig's Secret and every client's audience)
IAP_CLIENT_ID = "123456789012-iap.apps.googleusercontent.com"
#: flyte-core v1.16.8 values.yaml: configmap.adminServer.server.httpPort
_CHART_HTTP_PORT = 8088


def flyte_core_http_port(values_file: Path = EXAMPLES / "helm" / "flyte-core" / "values-gke-iap.yaml") -> int:
    """flyteadmin's ``server.httpPort`` for the guide's values (the chart's default unless they set it)."""
    values = yaml.safe_load(values_file.read_text()) or {}
    server: Any = values.get("configmap", {}).get("adminServer", {}).get("server", {})
    return int(server.get("httpPort", _CHART_HTTP_PORT))


def flyteadmin_rest_through_iap(certificate: Path, key: Path) -> str | None:
    """None when flyteadmin's REST API answers through IAP with this certificate, else why not."""
    import requests

    from flyte_iap.testing import FakeFlyteAdmin, FakeGoogle, IapProxy

    with (
        FakeGoogle() as google,
        FakeFlyteAdmin(
            certificate_file=certificate, key_file=key, server_http_port=flyte_core_http_port()
        ) as admin,
        IapProxy(
            IAP_CLIENT_ID,
            certs_url=google.certs_url,
            allowed=[google.user_email],
            http_upstream=admin.http_url,
        ) as iap,
    ):
        token = google.mint_id_token(IAP_CLIENT_ID)
        health = requests.get(
            iap.url + "/healthcheck", headers={"Proxy-Authorization": f"Bearer {token}"}, timeout=30
        )
        reply = requests.get(
            iap.url + "/api/v1/projects", headers={"Proxy-Authorization": f"Bearer {token}"}, timeout=30
        )
    if health.status_code != 200:
        return f"GET /healthcheck through IAP answered {health.status_code}"
    if reply.status_code != 200:
        return (
            f"GET /api/v1/projects through IAP answered {reply.status_code}: {reply.text.strip()}\n"
            f"(flyteadmin's REST gateway dials itself as {admin.host_address} and needs a SAN equal to it)"
        )
    return None
