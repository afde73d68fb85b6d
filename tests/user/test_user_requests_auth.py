"""IapAuth: requests through the local IAP carry the user's token, refreshed and retried on IAP's 401."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.user import ScriptedBrowser

from flyte_iap.cache import TokenCache
from flyte_iap.idtoken import decode_claims
from flyte_iap.requests_auth import IapAuth
from flyte_iap.testing import FakeGoogle, IapProxy
from flyte_iap.user_tokens import login_user


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply({k.lower(): v for k, v in self.headers.items()})

    def do_POST(self) -> None:
        received = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._reply({"body": received.decode()})

    def _reply(self, payload: dict[str, str]) -> None:
        body = json.dumps(payload).encode()
        status = 401 if self.path == "/backend-401" else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def iap(fake_google: FakeGoogle, upstream: str, aud: str) -> Iterator[IapProxy]:
    with IapProxy(
        aud, certs_url=fake_google.certs_url, allowed=[fake_google.user_email], http_upstream=upstream
    ) as proxy:
        yield proxy


@pytest.fixture
def signed_in(fake_google: FakeGoogle, aud: str) -> str:
    result = login_user(
        aud,
        client_id=fake_google.DESKTOP_CLIENT_ID,
        client_secret=fake_google.DESKTOP_CLIENT_SECRET,
        opener=ScriptedBrowser(fake_google),
        notify=lambda message: None,
        timeout=20,
    )
    fake_google.clear_requests()
    return result.id_token


def test_requests_pass_iap_with_the_user_token_and_keep_their_own_authorization(
    iap: IapProxy, signed_in: str, aud: str, fake_google: FakeGoogle
) -> None:
    auth = IapAuth(aud)
    response = requests.get(
        iap.url + "/api/v1/projects", auth=auth, headers={"Authorization": "Bearer admin"}, timeout=10
    )
    assert response.status_code == 200
    seen = response.json()
    assert "proxy-authorization" not in seen  # IAP strips it
    assert seen["authorization"] == "Bearer admin"
    assert seen["x-goog-authenticated-user-email"].endswith(fake_google.user_email)
    assert fake_google.requests_to("/token") == []  # the cached token was used


@pytest.fixture
def refused_token(signed_in: str, aud: str, fake_google: FakeGoogle) -> str:
    """The cached token looks fine locally but IAP refuses its signature (say, revoked keys)."""
    cache = TokenCache()
    record = cache.read("user", aud, fake_google.DESKTOP_CLIENT_ID)
    assert record is not None
    header, payload, _ = signed_in.split(".")
    refused = f"{header}.{payload}.AAAA"
    cache.write("user", aud, fake_google.DESKTOP_CLIENT_ID, {**record, "id_token": refused})
    return refused


def test_a_token_iap_rejects_is_replaced_and_the_request_sent_once_more(
    iap: IapProxy, refused_token: str, aud: str, fake_google: FakeGoogle
) -> None:
    response = requests.get(iap.url + "/x", auth=IapAuth(aud), timeout=10)

    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert iap.rejected["http"] == 1 and iap.passed["http"] == 1
    assert len(fake_google.requests_to("/token")) == 1


def test_a_file_body_is_sent_again_whole_from_where_it_started_after_iap_refuses_the_token(
    iap: IapProxy, refused_token: str, aud: str, tmp_path: Path
) -> None:
    upload = tmp_path / "upload.txt"
    upload.write_text("skipped:" + "workflow spec " * 500)
    with upload.open("rb") as body:
        body.seek(len("skipped:"))  # the body starts where the file stands when the request is made

        response = requests.post(iap.url + "/upload", data=body, auth=IapAuth(aud), timeout=5)

    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert response.json()["body"] == "workflow spec " * 500
    assert iap.rejected["http"] == 1 and iap.passed["http"] == 1


def test_a_generator_body_is_not_sent_again_after_iap_refuses_the_token_but_the_next_request_passes(
    iap: IapProxy, refused_token: str, aud: str, fake_google: FakeGoogle, caplog: pytest.LogCaptureFixture
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first,"
        yield b"second"

    auth = IapAuth(aud)
    with caplog.at_level(logging.DEBUG, logger="flyte_iap.requests_auth"):
        response = requests.post(iap.url + "/upload", data=chunks(), auth=auth, timeout=5)

    assert response.status_code == 401 and response.history == []
    assert response.headers["x-goog-iap-generated-response"] == "true"
    assert iap.passed["http"] == 0  # an empty body never reached the backend
    assert "generator body was consumed and cannot be rewound" in caplog.text
    assert auth.token() != refused_token  # already replaced: the caller's next try carries the new one
    again = requests.post(iap.url + "/upload", data=chunks(), auth=auth, timeout=5)
    assert again.status_code == 200 and again.history == []
    assert again.json()["body"] == "first,second"
    assert len(fake_google.requests_to("/token")) == 1


def test_a_401_from_the_backend_itself_is_not_retried(
    iap: IapProxy, signed_in: str, aud: str, fake_google: FakeGoogle
) -> None:
    response = requests.get(iap.url + "/backend-401", auth=IapAuth(aud), timeout=10)
    assert response.status_code == 401 and response.history == []
    assert fake_google.requests_to("/token") == []


def test_a_second_iap_401_is_returned_not_looped(iap: IapProxy, signed_in: str, aud: str) -> None:
    calls: list[str | None] = []

    def getter(audience: str, rejected: str | None) -> str:
        calls.append(rejected)
        return signed_in.rsplit(".", 1)[0] + ".AAAA"

    response = requests.get(iap.url + "/x", auth=IapAuth(aud, token_getter=getter), timeout=10)
    assert response.status_code == 401
    assert len(response.history) == 1
    assert len(calls) == 2 and calls[1] is not None


def test_the_token_is_kept_in_memory_until_it_nears_expiry(aud: str, fake_google: FakeGoogle) -> None:
    tokens = iter([fake_google.mint_id_token(aud, lifetime=200), fake_google.mint_id_token(aud)])
    calls: list[str | None] = []

    def getter(audience: str, rejected: str | None) -> str:
        calls.append(rejected)
        return next(tokens)

    auth = IapAuth(aud, token_getter=getter, min_valid=300)
    first = auth.token()
    second = auth.token()
    third = auth.token()
    assert first != second == third
    assert decode_claims(third)["aud"] == aud
    assert calls == [None, None]
