"""Claims are checked before a token is cached or printed."""

from __future__ import annotations

import base64
import json
import time

import pytest

from flyte_iap.errors import InvalidTokenError
from flyte_iap.idtoken import check_id_token, decode_claims, seconds_left, usable_id_token

AUD = "123-web.apps.googleusercontent.com"
NOW = 1_800_000_000


def make_token(**claims: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    body = {"iss": "https://accounts.google.com", "aud": AUD, "exp": NOW + 3600, "email": "a@x.com"}
    body.update(claims)
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(body)}.c2ln"


def test_good_token_returns_its_claims() -> None:
    claims = check_id_token(make_token(), AUD, min_valid=300, now=NOW)
    assert claims["email"] == "a@x.com"


def test_bare_issuer_form_is_accepted() -> None:
    assert check_id_token(make_token(iss="accounts.google.com"), AUD, now=NOW)["aud"] == AUD


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"aud": "other.apps.googleusercontent.com"}, "audience is 'other"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"exp": NOW + 100}, "expires in 100 s"),
        ({"exp": NOW - 5}, "expires in -5 s"),
        ({"exp": "soon"}, "expires in -inf"),
    ],
)
def test_bad_claims_are_refused_with_a_reason(claims: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidTokenError, match=fragment) as info:
        check_id_token(make_token(**claims), AUD, min_valid=300, now=NOW)
    assert info.value.hint


@pytest.mark.parametrize(
    "token", ["", "a.b", "a..c", "a.!!!.c", f"x.{base64.urlsafe_b64encode(b'[1]').decode()}.y"]
)
def test_malformed_tokens_raise_invalid_token_error(token: str) -> None:
    with pytest.raises(InvalidTokenError, match="malformed"):
        decode_claims(token)


def test_seconds_left_is_negative_infinity_without_exp() -> None:
    assert seconds_left({}, now=NOW) == float("-inf")
    assert seconds_left({"exp": True}, now=NOW) == float("-inf")
    assert seconds_left({"exp": NOW + 10}, now=NOW) == 10


def test_usable_id_token_is_the_token_only_when_it_may_be_served_as_it_is() -> None:
    fresh = make_token(exp=int(time.time()) + 3600)
    expiring = make_token(exp=int(time.time()) + 100)

    assert usable_id_token(fresh, AUD, min_valid=300) == fresh
    assert usable_id_token(fresh, AUD, min_valid=300, rejected=fresh) is None  # IAP just refused it
    assert usable_id_token(expiring, AUD, min_valid=300) is None
    assert usable_id_token(fresh, "another-audience") is None
    for value in (None, "", 42, "not-a-jwt"):
        assert usable_id_token(value, AUD) is None
