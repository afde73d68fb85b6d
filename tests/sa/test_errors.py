"""Every failure of `flyte-iap sa-token` is one error line and one hint on stderr, exit 1, no hang."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.sa import (
    CI_SA,
    DEPLOYER_SA,
    JWT_SUBJECT_TOKEN,
    POOL_PROVIDER,
    Runner,
    claims,
    error_lines,
    stdout_token,
    write_json,
)

from flyte_iap.testing import FakeGoogle

ROLE = "roles/iam.serviceAccountOpenIdTokenCreator"


class SilentServer:
    """Listens on 127.0.0.1, accepts every connection, reads nothing and never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.connections = 0
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._socket.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A server that accepts connections and never answers (a black-holed route), counting them."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def test_no_credentials_lists_everything_that_was_tried(
    sa_token: Runner, no_metadata: None, adc_path: Path
) -> None:
    error, hint = error_lines(sa_token())

    assert error.startswith("error: no Google credentials found")
    assert "--key-file: not given" in error
    assert "GOOGLE_APPLICATION_CREDENTIALS: not set" in error
    assert str(adc_path) in error
    assert "metadata server: no answer at 127.0.0.1:9" in error
    assert "flyte-iap token" in hint and "--impersonate-service-account" in hint


def test_metadata_probe_gives_up_after_two_short_attempts_when_nothing_answers(
    sa_token: Runner, silent_server: SilentServer
) -> None:
    result = sa_token(GCE_METADATA_HOST=silent_server.address, GCE_METADATA_IP=silent_server.address)

    error, _ = error_lines(result)
    assert "metadata server: no answer" in error and "(2 x 1 s)" in error
    # google-auth's own probe would try 3 times with 3 s each plus backoff; ours connects twice.
    assert silent_server.connections == 2, silent_server.connections


def test_no_gce_check_skips_the_metadata_probe(sa_token: Runner, silent_server: SilentServer) -> None:
    result = sa_token(
        GCE_METADATA_HOST=silent_server.address, GCE_METADATA_IP=silent_server.address, NO_GCE_CHECK="true"
    )

    error, _ = error_lines(result)
    assert "metadata server: skipped (NO_GCE_CHECK=true)" in error


def test_metadata_server_that_stops_answering_is_reported_after_bounded_retries(
    fake_google: FakeGoogle, sa_token: Runner
) -> None:
    fake_google.fail_next(10, status=503, path="/computeMetadata/v1/instance/")

    error, _ = error_lines(sa_token())

    assert "cannot reach the metadata server" in error
    assert "HTTP 503 (tried 3 times)" in error
    assert len(fake_google.requests_to("/computeMetadata/v1/instance/")) == 3


def test_permission_denied_names_the_role_and_the_principal(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation("someone-else@fake-project.iam.gserviceaccount.com", DEPLOYER_SA)

    result = sa_token("--key-file", str(key_file), "--impersonate-service-account", DEPLOYER_SA)

    error, hint = error_lines(result)
    assert f"{CI_SA} may not create ID tokens for {DEPLOYER_SA}" in error
    assert "HTTP 403" in error and ROLE in error
    assert f"add-iam-policy-binding {DEPLOYER_SA}" in hint
    assert f"--role={ROLE}" in hint and f"--member=serviceAccount:{CI_SA}" in hint


def test_permission_denied_for_a_federated_identity_names_the_pool_principal_set(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation("someone-else@fake-project.iam.gserviceaccount.com", DEPLOYER_SA)

    result = sa_token(
        "--impersonate-service-account", DEPLOYER_SA, GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)
    )

    error, hint = error_lines(result)
    assert "HTTP 403" in error
    pool = POOL_PROVIDER.split("/providers/")[0]
    assert f"principalSet:{pool}/*" in hint
    assert DEPLOYER_SA in hint and CI_SA in hint  # the chain: pool -> CI_SA -> DEPLOYER_SA


def test_user_credentials_without_impersonation_point_to_token_and_impersonation(
    fake_google: FakeGoogle, sa_token: Runner, user_adc: Path, no_metadata: None
) -> None:
    error, hint = error_lines(sa_token())

    assert "user credentials (authorized_user)" in error and str(user_adc) in error
    assert "flyte-iap token" in hint and "--impersonate-service-account" in hint
    assert fake_google.requests == []


@pytest.mark.parametrize(
    ("audience", "expired", "expected"),
    [
        (POOL_PROVIDER, True, ["invalid_grant", "expired"]),
        ("https://example.com/not-the-pool", False, ["audience"]),
    ],
    ids=["expired", "another-audience"],
)
def test_sts_rejection_of_the_subject_token_is_reported(
    fake_google: FakeGoogle,
    sa_token: Runner,
    wif_file: Path,
    no_metadata: None,
    audience: str,
    expired: bool,
    expected: list[str],
) -> None:
    subject = Path(json.loads(wif_file.read_text())["credential_source"]["file"])
    subject.write_text(fake_google.mint_subject_token(audience, expired=expired))

    error, hint = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert "the Security Token Service rejected the subject token" in error
    assert all(word in error for word in expected), error
    assert POOL_PROVIDER in hint and "attribute condition" in hint
    assert fake_google.requests_to("/v1/projects/") == []


def test_missing_subject_token_is_not_reported_as_an_sts_rejection(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    Path(json.loads(wif_file.read_text())["credential_source"]["file"]).unlink()

    error, hint = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert "cannot read the subject token" in error
    assert "id-token: write" in hint
    assert fake_google.requests_to("/v1/token") == []


def test_federated_identity_without_a_service_account_needs_impersonation(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None, tmp_path: Path
) -> None:
    info = json.loads(wif_file.read_text())
    del info["service_account_impersonation_url"]
    direct = write_json(tmp_path / "direct.json", info)

    error, hint = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(direct)))

    assert "names no service account" in error
    assert "--impersonate-service-account" in hint


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "malformed credentials file (not JSON)"),
        ('["a", "list"]', "malformed credentials file (not a JSON object)"),
        ("missing-private-key", "malformed service-account key"),
        ("bad-pem", "malformed service-account key"),
    ],
)
def test_malformed_key_file_is_reported_without_its_content(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None, content: str, expected: str
) -> None:
    key = json.loads(key_file.read_text())
    if content == "missing-private-key":
        del key["private_key"]
        key_file.write_text(json.dumps(key))
    elif content == "bad-pem":
        key["private_key"] = (
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGJ1dCBub3QgYSBrZXk=\n-----END PRIVATE KEY-----\n"
        )
        key_file.write_text(json.dumps(key))
    else:
        key_file.write_text(content)

    error, hint = error_lines(sa_token("--key-file", str(key_file)))

    assert f"--key-file {key_file}: {expected}" in error
    assert "PRIVATE KEY" not in error and "c2VjcmV0" not in error
    assert "gcloud iam service-accounts keys create" in hint
    assert fake_google.requests == []


def test_key_file_of_another_type_is_refused(
    fake_google: FakeGoogle, sa_token: Runner, user_adc: Path, no_metadata: None
) -> None:
    error, _ = error_lines(sa_token("--key-file", str(user_adc)))

    assert "expected a service-account key" in error and "'authorized_user'" in error


def test_google_application_credentials_naming_a_missing_file_is_an_error_not_a_fallback(
    fake_google: FakeGoogle, sa_token: Runner, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"

    error, hint = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(missing)))

    assert f"GOOGLE_APPLICATION_CREDENTIALS ({missing}): file not found" in error
    assert "GOOGLE_APPLICATION_CREDENTIALS" in hint
    assert fake_google.requests_to("/computeMetadata") == []


def test_deleted_key_is_reported_as_rejected_by_the_token_endpoint(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    key = json.loads(key_file.read_text())
    key.update(
        {
            k: v
            for k, v in fake_google.add_service_account("other@fake-project.iam.gserviceaccount.com").items()
            if k in ("private_key", "private_key_id")
        }
    )
    key_file.write_text(json.dumps(key))

    error, hint = error_lines(sa_token("--key-file", str(key_file)))

    assert f"Google's token endpoint rejected the key of {CI_SA}" in error
    assert "invalid_grant" in error
    assert "keys list" in hint


def test_unknown_service_account_is_reported(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    result = sa_token(
        "--key-file",
        str(key_file),
        "--impersonate-service-account",
        "nobody@fake-project.iam.gserviceaccount.com",
    )

    error, _ = error_lines(result)
    assert "service account nobody@fake-project.iam.gserviceaccount.com does not exist" in error


@pytest.mark.parametrize(
    ("impersonate", "path", "status"),
    [(None, "/token", 503), (DEPLOYER_SA, "/v1/projects/-/serviceAccounts/", 500)],
    ids=["token-endpoint", "iamcredentials"],
)
def test_google_5xx_is_retried(
    fake_google: FakeGoogle,
    sa_token: Runner,
    key_file: Path,
    no_metadata: None,
    impersonate: str | None,
    path: str,
    status: int,
) -> None:
    fake_google.allow_impersonation(CI_SA, DEPLOYER_SA)
    fake_google.fail_next(2, status=status, path=path)

    impersonation = ["--impersonate-service-account", impersonate] if impersonate else []
    token = stdout_token(sa_token("--key-file", str(key_file), *impersonation))

    assert claims(token)["email"] == (impersonate or CI_SA)
    assert [r.status for r in fake_google.requests_to(path)] == [status, status, 200]


def test_sts_5xx_is_retried_and_then_reported_as_unreachable_not_as_a_rejection(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    fake_google.fail_next(5, status=502, path="/v1/token")

    error, _ = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert "cannot reach" in error and "HTTP 502 (tried 3 times)" in error
    assert "rejected" not in error
    assert len(fake_google.requests_to("/v1/token")) == 3


def test_persistent_token_endpoint_failure_stops_after_three_attempts(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    fake_google.fail_next(10, status=500, path="/token")

    error, _ = error_lines(sa_token("--key-file", str(key_file)))

    assert "cannot reach Google's token endpoint" in error and "HTTP 500 (tried 3 times)" in error
    assert len(fake_google.requests_to("/token")) == 3


def test_connection_refused_by_iamcredentials_is_reported(fake_google: FakeGoogle, sa_token: Runner) -> None:
    fake_google.allow_impersonation(fake_google.metadata_service_account, DEPLOYER_SA)

    result = sa_token(
        "--impersonate-service-account", DEPLOYER_SA, FLYTE_IAP_IAMCREDENTIALS_URI="http://127.0.0.1:9"
    )

    error, _ = error_lines(result)
    assert "cannot reach iamcredentials generateIdToken at http://127.0.0.1:9/" in error
    assert "connection refused" in error


def test_answer_without_a_token_is_an_error_not_output(
    fake_google: FakeGoogle, sa_token: Runner, key_file: Path, no_metadata: None
) -> None:
    fake_google.allow_impersonation(CI_SA, DEPLOYER_SA)
    fake_google.malformed_next(path="/v1/projects/-/serviceAccounts/")

    result = sa_token("--key-file", str(key_file), "--impersonate-service-account", DEPLOYER_SA)

    error, _ = error_lines(result)
    assert "answered HTTP 200 without a token" in error


def test_cached_token_for_another_audience_is_never_printed(
    fake_google: FakeGoogle, sa_token: Runner, aud: str, no_metadata: None
) -> None:
    from flyte_iap.cache import TokenCache

    foreign = fake_google.mint_id_token("another-app", email=CI_SA)
    TokenCache().write("sa", aud, "metadata", {"id_token": foreign})

    error, _ = error_lines(sa_token(NO_GCE_CHECK="true"))

    assert "no Google credentials found" in error


@pytest.mark.parametrize("value", ["", "not an email", "projects/-/serviceAccounts/x@y"])
def test_bad_impersonation_target_is_a_usage_error(sa_token: Runner, value: str) -> None:
    result = sa_token("--impersonate-service-account", value, NO_GCE_CHECK="true")

    if value == "":
        # an empty option value means "not given", like an unset environment variable
        assert "no Google credentials found" in result.stderr
        return
    assert result.returncode == 2
    assert "is not a service account" in result.stderr


def test_subject_token_type_unknown_to_sts_is_a_rejection(
    fake_google: FakeGoogle, sa_token: Runner, wif_file: Path, no_metadata: None
) -> None:
    info = json.loads(wif_file.read_text())
    info["subject_token_type"] = "urn:ietf:params:oauth:token-type:saml2"
    assert info["subject_token_type"] != JWT_SUBJECT_TOKEN
    write_json(wif_file, info)

    error, _ = error_lines(sa_token(GOOGLE_APPLICATION_CREDENTIALS=str(wif_file)))

    assert "the Security Token Service rejected the subject token" in error
    assert "invalid_request" in error
