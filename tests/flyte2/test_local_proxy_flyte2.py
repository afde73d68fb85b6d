"""The flyte SDK 2.x through `flyte-iap proxy` (flyte_iap.local_proxy), IAP and a Flyte 2 control plane.

The SDK points at the local proxy with ``insecure: true``: it then installs no auth interceptor (flyte
2.12.1 wheel: flyte/remote/_client/auth/_session.py) and sends plain HTTP/1.1 Connect calls, which the
proxy forwards over TLS + HTTP/2 to IAP with ``proxy-authorization``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_flyte

from flyte_iap.local_proxy import LocalProxy, TokenSource
from flyte_iap.testing import FakeFlyte2, FakeGoogle, IapProxy

pytestmark = pytest.mark.e2e
API_CLIENT = str(Path(__file__).with_name("api_client.py"))


@pytest.fixture
def local_proxy(iap: IapProxy, fake_google: FakeGoogle) -> Iterator[LocalProxy]:
    tokens = TokenSource(lambda rejected: fake_google.mint_id_token(fake_google.IAP_CLIENT_ID))
    with LocalProxy(iap.url, tokens, ca_cert=iap.ca_cert_file) as proxy:
        yield proxy


def _config(proxy: LocalProxy) -> Path:
    path = Path("config.yaml")
    path.write_text(
        f"admin:\n  endpoint: dns:///{proxy.url.split('://', 1)[1]}\n  insecure: true\n"
        "task:\n  project: flytesnacks\n  domain: development\n"
    )
    return path.resolve()


def test_flyte_cli_reaches_flyte2_through_the_local_proxy_and_iap(
    local_proxy: LocalProxy, iap: IapProxy, flyte2: FakeFlyte2
) -> None:
    _config(local_proxy)

    result = run_flyte("get", "run")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "r-watch-me" in result.stdout
    assert iap.rejections == []
    assert [(f.token_header, f.http_version) for f in iap.forwarded] == [("proxy-authorization", "2")]
    assert [c.method for c in flyte2.calls] == ["flyteidl2.workflow.RunService/ListRuns"]


def test_watch_stream_arrives_message_by_message_through_the_local_proxy_and_iap(
    local_proxy: LocalProxy, flyte2: FakeFlyte2
) -> None:
    flyte2.stream_interval = 1.0
    config = _config(local_proxy)

    done = subprocess.run(
        [sys.executable, API_CLIENT, "config", str(config)], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [phase for phase, _ in result["watch"]] == ["queued", "running", "succeeded"]
    sent = [at for name, _, at in flyte2.stream_sent if name == "r-watch-me"]
    arrived = [at for _, at in result["watch"]]
    for index in range(len(sent) - 1):
        assert arrived[index] < sent[index + 1], (arrived, sent)
