"""The browser step: PKCE and state checked by FakeGoogle; the loopback takes only the right redirect."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser

import pytest
from helpers.user import ScriptedBrowser

from flyte_iap import browser_login
from flyte_iap.browser_login import authorize, code_challenge
from flyte_iap.errors import LoginError
from flyte_iap.testing import FakeGoogle


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_login_sends_pkce_s256_and_state_that_the_fake_accepts(
    fake_google: FakeGoogle, browser: ScriptedBrowser
) -> None:
    grant = authorize(fake_google.DESKTOP_CLIENT_ID, opener=browser, timeout=20)

    params = _query(browser.urls[0])
    assert params["code_challenge_method"] == "S256"
    assert params["code_challenge"] == code_challenge(grant.code_verifier)
    assert params["scope"] == "openid email"
    assert params["access_type"] == "offline"
    assert "consent" in params["prompt"]
    assert params["redirect_uri"] == grant.redirect_uri
    assert grant.redirect_uri.startswith("http://127.0.0.1:")
    result = browser.results[0]
    assert result.ok, result
    assert result.state == params["state"] and len(params["state"]) >= 32
    assert result.code == grant.code
    assert "You may close this window" in result.body


def test_code_challenge_is_base64url_sha256_without_padding() -> None:
    verifier = browser_login.make_code_verifier()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    import base64

    assert code_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_redirect_with_a_wrong_state_is_rejected_and_the_right_one_still_accepted(
    fake_google: FakeGoogle,
) -> None:
    pages: list[tuple[int, str]] = []

    def forged(url: str) -> None:
        redirect = _query(url)["redirect_uri"]
        pages.append(_get(redirect + "?code=planted-code&state=forged"))
        pages.append(_get(redirect.rstrip("/") + "/favicon.ico"))

    browser = ScriptedBrowser(fake_google, before=forged)
    grant = authorize(fake_google.DESKTOP_CLIENT_ID, opener=browser, timeout=20)

    assert pages[0][0] == 400 and "ignored" in pages[0][1]
    assert pages[1][0] == 404
    assert grant.code != "planted-code"
    assert browser.results[0].ok


def test_only_wrong_state_redirects_end_in_a_state_mismatch_error(fake_google: FakeGoogle) -> None:
    def opener(url: str) -> bool:
        redirect = _query(url)["redirect_uri"]
        _get(redirect + "?code=planted-code&state=stale-tab")
        return True

    with pytest.raises(LoginError) as caught:
        authorize(fake_google.DESKTOP_CLIENT_ID, opener=opener, timeout=1.5)
    assert "state that does not match" in caught.value.message
    assert "newest" in caught.value.hint


def test_server_stops_after_the_right_redirect(fake_google: FakeGoogle, browser: ScriptedBrowser) -> None:
    grant = authorize(fake_google.DESKTOP_CLIENT_ID, opener=browser, timeout=20)
    port = urllib.parse.urlsplit(grant.redirect_uri).port
    assert port is not None
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_denied_consent_is_an_access_denied_error(fake_google: FakeGoogle, browser: ScriptedBrowser) -> None:
    fake_google.deny_consent = True
    with pytest.raises(LoginError) as caught:
        authorize(fake_google.DESKTOP_CLIENT_ID, opener=browser, timeout=20)
    assert "access_denied" in caught.value.message
    assert "Allow" in caught.value.hint
    assert browser.results[0].error == "access_denied"


def test_web_client_gets_redirect_uri_mismatch_and_the_login_times_out_with_a_desktop_hint(
    fake_google: FakeGoogle, browser: ScriptedBrowser
) -> None:
    web_client = "999-web.apps.googleusercontent.com"
    fake_google.add_oauth_client(web_client, "web-secret", redirect_uris=["https://flyte.example.com/cb"])
    with pytest.raises(LoginError) as caught:
        authorize(web_client, opener=browser, timeout=1.5)
    assert browser.results[0].error == "redirect_uri_mismatch"
    assert "timed out" in caught.value.message
    assert "redirect_uri_mismatch" in caught.value.hint and "Desktop app" in caught.value.hint


def test_port_in_use_fails_at_once(fake_google: FakeGoogle) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        opened: list[str] = []
        with pytest.raises(LoginError) as caught:
            authorize(fake_google.DESKTOP_CLIENT_ID, port=port, opener=opened.append, timeout=30)
    assert f"port {port}" in caught.value.message and "in use" in caught.value.message
    assert "--port" in caught.value.hint
    assert opened == []  # no browser was opened for a login that cannot finish


def test_fixed_port_is_used_in_the_redirect_uri(fake_google: FakeGoogle, browser: ScriptedBrowser) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    grant = authorize(fake_google.DESKTOP_CLIENT_ID, port=port, opener=browser, timeout=20)
    assert grant.redirect_uri == f"http://127.0.0.1:{port}/"


def test_timeout_when_the_browser_never_comes_back(fake_google: FakeGoogle) -> None:
    started = time.monotonic()
    with pytest.raises(LoginError) as caught:
        authorize(fake_google.DESKTOP_CLIENT_ID, opener=lambda url: True, timeout=1)
    assert "timed out after 1 s" in caught.value.message
    assert "--timeout" in caught.value.hint
    assert time.monotonic() - started < 30  # it ended by itself


def _sign_in_without_browser(fake_google: FakeGoogle, port: int = 0) -> tuple[int, str, list[str]]:
    """Sign in with ``open_browser=False``; the redirect port, the lines shown and the URLs opened."""
    lines: list[str] = []
    done = threading.Event()

    def notify(message: str) -> None:
        lines.append(message)
        if "http://" in message and not done.is_set():
            done.set()
            url = next(w for w in message.split() if w.startswith(fake_google.auth_uri))
            threading.Thread(target=fake_google.browser, args=(url,), daemon=True).start()

    opened: list[str] = []
    grant = authorize(
        fake_google.DESKTOP_CLIENT_ID,
        port=port,
        open_browser=False,
        opener=opened.append,
        notify=notify,
        timeout=20,
    )
    redirect_port = urllib.parse.urlsplit(grant.redirect_uri).port
    assert redirect_port is not None
    return redirect_port, "\n".join(lines), opened


def test_no_browser_shows_the_url_and_the_ssh_forward_hint(fake_google: FakeGoogle) -> None:
    port, text, opened = _sign_in_without_browser(fake_google)
    assert opened == []
    assert fake_google.auth_uri in text
    assert f"ssh -N -L {port}:127.0.0.1:{port}" in text
    assert "use --port to keep the same port between logins" in text  # the port was ephemeral


def test_forward_hint_does_not_suggest_port_when_the_port_was_given(fake_google: FakeGoogle) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fixed = s.getsockname()[1]

    port, text, _ = _sign_in_without_browser(fake_google, port=fixed)

    assert port == fixed
    assert f"ssh -N -L {fixed}:127.0.0.1:{fixed} <this host>" in text
    assert "--port" not in text


def test_a_browser_that_cannot_open_falls_back_to_showing_the_url(fake_google: FakeGoogle) -> None:
    lines: list[str] = []

    def notify(message: str) -> None:
        lines.append(message)
        if "open this URL" in message:
            url = next(w for w in message.split() if w.startswith(fake_google.auth_uri))
            threading.Thread(target=fake_google.browser, args=(url,), daemon=True).start()

    def broken(url: str) -> bool:
        raise webbrowser.Error("could not locate runnable browser")

    grant = authorize(fake_google.DESKTOP_CLIENT_ID, opener=broken, notify=notify, timeout=20)
    assert grant.code
    assert any("Could not open a browser" in line for line in lines)


def test_default_opener_does_not_start_a_text_browser_without_a_display(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0: launched.append(url) or True)
    monkeypatch.setattr(browser_login.sys, "platform", "linux")
    for name in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert browser_login.default_opener("http://127.0.0.1:1/") is False
    monkeypatch.setenv("BROWSER", "true %s")
    assert browser_login.default_opener("http://127.0.0.1:1/") is True
    assert launched == ["http://127.0.0.1:1/"]


def test_default_opener_runs_the_browser_command_from_the_environment(
    fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROWSER", fake_google.browser_command)
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # re-read BROWSER
    grant = authorize(fake_google.DESKTOP_CLIENT_ID, timeout=30, notify=lambda message: None)
    assert grant.code
    assert fake_google.requests_to("/o/oauth2/v2/auth")
