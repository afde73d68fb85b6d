"""Every call to Google has a total deadline, and a token command a bound of its own, however slow Google."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from helpers.hostile import Runner, error_of

from flyte_iap import _deadline_http, endpoints, transport
from flyte_iap.cache import TokenCache
from flyte_iap.errors import TransportError
from flyte_iap.testing import FakeGoogle

CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"


@pytest.fixture
def expired_login(fake_google: FakeGoogle, signed_in: str, isolated_env: Path) -> None:
    """The user is signed in, but the cached ID token has expired: `token` must refresh."""
    cache = TokenCache(isolated_env)
    record = cache.find("user", fake_google.IAP_CLIENT_ID)[0]
    record["id_token"] = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, expired=True)
    cache.write("user", fake_google.IAP_CLIENT_ID, record["principal"], record)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_token_endpoint_trickling_one_byte_a_second_is_cut_off_at_the_deadline(
    cli: Runner,
    fake_google: FakeGoogle,
    expired_login: None,
    trickle_server: Callable[..., object],
    headers_too: bool,
) -> None:
    server = trickle_server(0.5, headers_too=headers_too)

    result = cli(
        "token",
        "--audience",
        fake_google.IAP_CLIENT_ID,
        FLYTE_IAP_TOKEN_URI=f"{server.url}/token",  # type: ignore[attr-defined]
        FLYTE_IAP_HTTP_TIMEOUT="1",
        timeout=40,
    )

    stderr = error_of(result)
    assert "cannot reach Google's token endpoint" in stderr
    assert "no complete answer within 1 s (tried 3 times)" in stderr


def test_the_key_file_path_through_google_auth_has_the_same_deadline(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path, trickle_server: Callable[..., object]
) -> None:
    server = trickle_server(0.5)
    key = tmp_path / "key.json"
    key.write_text(json.dumps(fake_google.add_service_account(CI_SA)))

    result = cli(
        "sa-token",
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--key-file",
        str(key),
        FLYTE_IAP_TOKEN_URI=f"{server.url}/token",  # type: ignore[attr-defined]
        FLYTE_IAP_HTTP_TIMEOUT="1",
        timeout=40,
    )

    stderr = error_of(result)
    assert "no complete answer within 1 s" in stderr


def test_the_whole_token_command_ends_by_its_deadline_whatever_the_per_request_timeout(
    cli: Runner, fake_google: FakeGoogle, expired_login: None, trickle_server: Callable[..., object]
) -> None:
    server = trickle_server(0.5)

    result = cli(
        "token",
        "--audience",
        fake_google.IAP_CLIENT_ID,
        FLYTE_IAP_TOKEN_URI=f"{server.url}/token",  # type: ignore[attr-defined]
        FLYTE_IAP_HTTP_TIMEOUT="300",  # three attempts of 300 s would outlast the subprocess timeout
        FLYTE_IAP_COMMAND_DEADLINE="2",
        timeout=40,
    )

    stderr = error_of(result)
    assert "cannot reach Google's token endpoint" in stderr
    assert server.hits == 1  # type: ignore[attr-defined]  # no retry once the command's time is up


@pytest.mark.parametrize("variable", ["FLYTE_IAP_HTTP_TIMEOUT", "FLYTE_IAP_COMMAND_DEADLINE"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
def test_nonsense_deadlines_from_the_environment_are_refused(
    cli: Runner, fake_google: FakeGoogle, expired_login: None, variable: str, value: str
) -> None:
    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID, **{variable: value})

    assert f"{variable}={value!r} is not a number of seconds > 0" in error_of(result, code=2)


def test_an_answer_larger_than_the_cap_is_refused(fake_google: FakeGoogle) -> None:
    fake_google.malformed_next(path="/token", body=b" " * (2 << 20))

    with pytest.raises(TransportError, match="answer larger than 1024 KiB"):
        transport.post_oauth(
            endpoints.token_uri(), {"grant_type": "x"}, what="Google's token endpoint", tries=1
        )


def test_the_deadline_session_raises_a_requests_timeout_on_a_trickle(
    trickle_server: Callable[..., object],
) -> None:
    server = trickle_server(0.3)

    with pytest.raises(requests.exceptions.Timeout, match="no complete answer within 1 s"):
        _deadline_http.session(1 << 20).get(server.url, timeout=1)  # type: ignore[attr-defined]
