"""Text from outside (token endpoint, loopback redirect) reaches the terminal with its controls escaped."""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request

import pytest
from helpers.hostile import Runner, error_of

from flyte_iap.browser_login import authorize
from flyte_iap.errors import LoginError, printable
from flyte_iap.testing import FakeGoogle

#: Retitles the terminal window, clears the screen and flips the text direction.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\u202etxt.exe"


def test_printable_escapes_every_control_character_and_bounds_the_length() -> None:
    assert printable(HOSTILE) == "\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe"
    assert printable("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert len(printable("x" * 10_000)) == 300


def test_an_error_description_from_the_token_endpoint_is_printed_escaped(
    cli: Runner, fake_google: FakeGoogle, signed_in: str
) -> None:
    fake_google.oauth_error_next("invalid_client", description=HOSTILE, status=401)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, "--min-valid", "3600")

    stderr = error_of(result)
    assert "\x1b" not in stderr and "\x07" not in stderr and "\u202e" not in stderr
    assert "invalid_client: \\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe" in stderr


def test_an_error_description_in_the_loopback_redirect_is_escaped() -> None:
    def opener(url: str) -> bool:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        redirect = (
            query["redirect_uri"][0]
            + "?"
            + urllib.parse.urlencode(
                {"state": query["state"][0], "error": "access_denied\x1b[2J", "error_description": HOSTILE}
            )
        )
        threading.Thread(
            target=lambda: urllib.request.urlopen(redirect, timeout=10).read(), daemon=True
        ).start()
        return True

    with pytest.raises(LoginError) as caught:
        authorize("client", opener=opener, notify=lambda message: None, timeout=20)

    message = caught.value.message
    assert "\x1b" not in message and "\u202e" not in message
    assert "access_denied\\x1b[2J (\\x1b]0;pwned" in message
