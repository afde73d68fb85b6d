"""Service-account tokens are cached per (audience, service account) and refreshed before they expire."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sa import CI_SA, DEPLOYER_SA, Runner, claims, stdout_token

from flyte_iap.cache import TokenCache
from flyte_iap.testing import FakeGoogle

IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"
HEAVY = ("google", "requests", "urllib3", "click", "yaml", "keyring", "cryptography")


def test_warm_cache_answers_without_any_request(fake_google: FakeGoogle, sa_token: Runner) -> None:
    first = stdout_token(sa_token())
    fake_google.clear_requests()

    second = stdout_token(sa_token())

    assert second == first
    assert fake_google.requests == []


@pytest.mark.parametrize("source", ["metadata", "key-file", "impersonation", "external-account"])
def test_warm_cache_is_answered_without_importing_google_auth(
    fake_google: FakeGoogle,
    run_sa: Runner,
    aud: str,
    key_file: Path,
    wif_file: Path,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["sa-token", "--audience", aud]
    if source == "key-file":
        args += ["--key-file", str(key_file)]
    elif source == "impersonation":
        fake_google.allow_impersonation(fake_google.metadata_service_account, DEPLOYER_SA)
        args += ["--impersonate-service-account", DEPLOYER_SA]
    elif source == "external-account":
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(wif_file))
    token = stdout_token(run_sa(*args))
    fake_google.clear_requests()
    probe = (
        "import sys\n"
        f"sys.argv = ['flyte-iap', *{args!r}]\n"
        "from flyte_iap._entry import main\n"
        "main()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "sys.stderr.write(repr(loaded))\n"
    )

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout == token + "\n"
    assert result.stderr == "[]"
    assert fake_google.requests == []


def test_token_is_refreshed_when_less_than_min_valid_is_left(
    fake_google: FakeGoogle, sa_token: Runner
) -> None:
    fake_google.token_lifetime = 200
    short = stdout_token(sa_token("--min-valid", "100"))
    fake_google.token_lifetime = 3600
    fake_google.clear_requests()

    still_good = stdout_token(sa_token("--min-valid", "100"))
    assert still_good == short
    assert fake_google.requests == []

    fresh = stdout_token(sa_token())  # default --min-valid 300
    assert fresh != short
    assert claims(fresh)["exp"] - claims(short)["exp"] > 3000
    assert len(fake_google.requests_to(IDENTITY)) == 1
    fake_google.clear_requests()
    assert stdout_token(sa_token()) == fresh
    assert fake_google.requests == []


def test_min_valid_can_come_from_the_environment(fake_google: FakeGoogle, sa_token: Runner) -> None:
    fake_google.token_lifetime = 200
    short = stdout_token(sa_token(FLYTE_IAP_MIN_VALID="100"))
    fake_google.clear_requests()

    assert stdout_token(sa_token(FLYTE_IAP_MIN_VALID="100")) == short
    assert fake_google.requests == []


def test_expired_cached_token_is_replaced(fake_google: FakeGoogle, sa_token: Runner, aud: str) -> None:
    expired = fake_google.mint_id_token(aud, email=fake_google.metadata_service_account, expired=True)
    TokenCache().write("sa", aud, "metadata", {"id_token": expired})

    token = stdout_token(sa_token())

    assert token != expired
    assert TokenCache().read("sa", aud, "metadata")["id_token"] == token


def test_concurrent_cold_starts_make_one_request_and_print_the_same_token(
    fake_google: FakeGoogle, aud: str
) -> None:
    fake_google.delay_next(0.5, path=IDENTITY)  # keep the first minter busy while the others queue
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flyte_iap", "sa-token", "--audience", aud],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]

    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    assert len(fake_google.requests_to(IDENTITY)) == 1


def test_corrupt_cache_file_is_a_warning_and_a_miss(
    fake_google: FakeGoogle, sa_token: Runner, aud: str, isolated_env: Path
) -> None:
    path = TokenCache().path("sa", aud, "metadata")
    # A cache dir the user names must be theirs alone (0700), as ssh requires of ~/.ssh.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text("{half a record")

    result = sa_token()

    assert result.returncode == 0
    assert result.stderr.startswith("warning: ignoring unreadable token cache file")
    assert claims(result.stdout.strip())["aud"] == aud
    fake_google.clear_requests()
    assert stdout_token(sa_token()) == result.stdout.strip()
    assert fake_google.requests == []


def test_cache_record_is_private_and_keyed_by_the_service_account(
    fake_google: FakeGoogle, sa_token: Runner, aud: str, key_file: Path
) -> None:
    token = stdout_token(sa_token("--key-file", str(key_file)))

    cache = TokenCache()
    record = cache.read("sa", aud, CI_SA)
    assert record is not None and record["id_token"] == token
    assert record["email"] == CI_SA
    assert record["source"] == f"--key-file {key_file}"
    assert set(record) == {
        "version",
        "kind",
        "audience",
        "principal",
        "updated",
        "id_token",
        "email",
        "source",
    }
    assert stat.S_IMODE(os.stat(cache.path("sa", aud, CI_SA)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == 0o700


def test_each_service_account_and_audience_has_its_own_entry(
    fake_google: FakeGoogle, run_sa: Runner, sa_token: Runner, aud: str, key_file: Path
) -> None:
    from_metadata = stdout_token(sa_token())
    from_key = stdout_token(sa_token("--key-file", str(key_file)))
    other_app = stdout_token(run_sa("sa-token", "--audience", "other-app", "--key-file", str(key_file)))

    assert claims(from_metadata)["email"] == fake_google.metadata_service_account
    assert claims(from_key)["email"] == CI_SA
    assert claims(other_app)["aud"] == "other-app"
    fake_google.clear_requests()
    assert stdout_token(sa_token()) == from_metadata
    assert stdout_token(sa_token("--key-file", str(key_file))) == from_key
    assert fake_google.requests == []


@pytest.mark.parametrize("fast_path", ["1", "0"])
def test_impersonated_token_is_served_from_cache_before_credentials_are_looked_at(
    fake_google: FakeGoogle, sa_token: Runner, user_adc: Path, fast_path: str
) -> None:
    fake_google.allow_impersonation(fake_google.user_email, DEPLOYER_SA)
    token = stdout_token(sa_token("--impersonate-service-account", DEPLOYER_SA))
    user_adc.write_text("{broken")  # the slow path must not read it either while the cache is warm
    fake_google.clear_requests()

    again = sa_token(
        "--impersonate-service-account", DEPLOYER_SA, FLYTE_IAP_NO_FAST_PATH="0" if fast_path == "1" else "1"
    )

    assert stdout_token(again) == token
    assert fake_google.requests == []


def test_changing_the_key_file_to_another_account_mints_for_that_account(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path
) -> None:
    first = stdout_token(sa_token("--key-file", str(key_file)))
    key_file.write_text(json.dumps(fake_google.add_service_account(DEPLOYER_SA)))

    second = stdout_token(sa_token("--key-file", str(key_file)))

    assert claims(first)["email"] == CI_SA
    assert claims(second)["email"] == DEPLOYER_SA


def test_fast_path_reads_the_same_environment_variables_as_the_cli(
    fake_google: FakeGoogle, run_sa: Runner, aud: str
) -> None:
    fake_google.allow_impersonation(fake_google.metadata_service_account, DEPLOYER_SA)
    env = {"FLYTE_IAP_AUDIENCE": aud, "FLYTE_IAP_IMPERSONATE_SERVICE_ACCOUNT": DEPLOYER_SA}
    token = stdout_token(run_sa("sa-token", **env))
    fake_google.clear_requests()

    assert stdout_token(run_sa("sa-token", **env)) == token
    assert claims(token)["email"] == DEPLOYER_SA
    assert fake_google.requests == []
