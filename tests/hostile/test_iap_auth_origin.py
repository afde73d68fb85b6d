"""IapAuth sends the token only to its origin: never to a host an app redirects to, even after a 401."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from flyte_iap import IapAuth

TOKEN = "header.payload.signature"


class Recorder(ThreadingHTTPServer):
    """A server on 127.0.0.1: ``/redirect/<status>?to=<url>`` redirects, anything else answers like IAP's 401.

    ``seen`` holds ``(Host header, path, Proxy-Authorization or None)`` of every request.
    """

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.seen.append((self.headers["Host"], self.path, self.headers.get("Proxy-Authorization")))
                if self.path.startswith("/redirect/"):
                    status, _, target = self.path.removeprefix("/redirect/").partition("?to=")
                    self.send_response(int(status))
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(401)
                self.send_header("x-goog-iap-generated-response", "true")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def with_token(self, host_prefix: str) -> list[tuple[str, str, str | None]]:
        return [s for s in self.seen if s[0].startswith(host_prefix) and s[2] is not None]


@pytest.fixture
def app() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


class Getter:
    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def __call__(self, audience: str, rejected: str | None) -> str:
        self.calls.append(rejected)
        return TOKEN


@pytest.fixture(autouse=True)
def no_exp_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test token is not a JWT: treat it as valid for an hour.
    monkeypatch.setattr("flyte_iap.requests_auth.decode_claims", lambda token: {"exp": 2**40})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("how", ["session-auth", "request-auth"])
@pytest.mark.parametrize("target", ["other-port", "localhost-same-port"])
def test_a_redirect_to_another_origin_never_receives_the_token_even_after_its_401(
    app: Recorder, elsewhere: Recorder, status: int, how: str, target: str
) -> None:
    getter = Getter()
    auth = IapAuth("aud", token_getter=getter)
    if target == "other-port":
        destination, victim = f"http://127.0.0.1:{elsewhere.port}/steal", elsewhere
    else:
        destination, victim = f"http://localhost:{app.port}/steal", app
    url = f"http://127.0.0.1:{app.port}/redirect/{status}?to={destination}"
    with requests.Session() as session:
        if how == "session-auth":
            session.auth = auth
            response = session.post(url, data=b"body", timeout=10)
        else:
            response = session.post(url, data=b"body", auth=auth, timeout=10)

    assert response.status_code == 401  # the other origin's 401 is handed back, not retried with a token
    assert app.seen[0][2] == f"Bearer {TOKEN}"  # the app itself got the token
    stolen = [s for s in victim.seen if s[1] == "/steal"]
    assert stolen, "the redirect was followed"
    assert all(proxy_auth is None for _, _, proxy_auth in stolen)
    assert getter.calls == [None]  # no new token was fetched for the other origin's 401


def test_session_auth_sends_nothing_to_a_second_host(app: Recorder, elsewhere: Recorder) -> None:
    auth = IapAuth("aud", token_getter=Getter())
    with requests.Session() as session:
        session.auth = auth
        session.get(f"http://127.0.0.1:{app.port}/first", timeout=10)
        session.get(f"http://127.0.0.1:{elsewhere.port}/second", timeout=10)

    assert app.with_token("127.0.0.1")
    assert elsewhere.seen and not elsewhere.with_token("")
    assert auth.origins == {f"http://127.0.0.1:{app.port}"}


def test_origins_given_explicitly_are_the_only_ones_served(app: Recorder) -> None:
    auth = IapAuth("aud", token_getter=Getter(), origins=[f"http://localhost:{app.port}"])

    requests.get(f"http://127.0.0.1:{app.port}/by-ip", auth=auth, timeout=10)
    requests.get(f"http://localhost:{app.port}/by-name", auth=auth, timeout=10)

    assert {(path, bool(proxy)) for _, path, proxy in app.seen if path.startswith("/by-")} == {
        ("/by-ip", False),  # once, and its 401 was not retried
        ("/by-name", True),
    }
    assert len([s for s in app.seen if s[1] == "/by-ip"]) == 1


def test_the_401_retry_still_works_on_the_origin_itself(app: Recorder) -> None:
    getter = Getter()
    response = requests.get(
        f"http://127.0.0.1:{app.port}/iap", auth=IapAuth("aud", token_getter=getter), timeout=10
    )

    assert response.status_code == 401
    assert getter.calls == [None, TOKEN]  # refreshed once with the rejected token, sent once more
    assert len([s for s in app.seen if s[1] == "/iap"]) == 2
