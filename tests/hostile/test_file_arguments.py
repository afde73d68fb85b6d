"""Every file given to flyte-iap is read bounded: FIFOs, devices, huge or deeply nested files get answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.hostile import Runner, error_of

from flyte_iap.testing import FakeGoogle

CI_SA = "flyte-ci@fake-project.iam.gserviceaccount.com"


def hostile_file(kind: str, tmp_path: Path) -> str:
    """A path that is a FIFO, /dev/zero, 2 MiB of JSON, or JSON nested too deeply for the parser."""
    if kind == "fifo":
        path = tmp_path / "client.json"
        os.mkfifo(path)
        return str(path)
    if kind == "dev-zero":
        return "/dev/zero"
    path = tmp_path / "client.json"
    if kind == "huge":
        path.write_text(json.dumps({"installed": {"pad": "x" * (2 << 20)}}))
    else:
        path.write_text("[" * 100_000 + "]" * 100_000)
    return str(path)


REASONS = {
    "fifo": "is not a regular file (a FIFO)",
    "dev-zero": "is not a regular file (a character device)",
    "huge": "is larger than 1024 KiB",
    "nested": "is not valid JSON",
}


@pytest.mark.parametrize("kind", list(REASONS))
def test_a_hostile_client_secrets_file_is_refused_with_a_hint(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path, kind: str
) -> None:
    path = hostile_file(kind, tmp_path)

    result = cli(
        "login",
        "--audience",
        fake_google.IAP_CLIENT_ID,
        "--client-secrets-file",
        path,
        "--no-browser",
        "--timeout",
        "5",
        timeout=30,
    )

    stderr = error_of(result, code=2)
    assert f"client secrets file {path}" in stderr
    assert REASONS[kind].replace("is not valid JSON", "not valid JSON") in stderr


@pytest.mark.parametrize("kind", list(REASONS))
@pytest.mark.parametrize("how", ["--key-file", "GOOGLE_APPLICATION_CREDENTIALS"])
def test_a_hostile_credentials_file_is_refused_with_a_hint(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path, kind: str, how: str
) -> None:
    path = hostile_file(kind, tmp_path)
    args = ["sa-token", "--audience", fake_google.IAP_CLIENT_ID]
    env = {}
    if how == "--key-file":
        args += ["--key-file", path]
    else:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = path

    result = cli(*args, timeout=30, **env)

    stderr = error_of(result)
    assert path in stderr
    assert REASONS[kind].replace("is not valid JSON", "malformed credentials file (not JSON)") in stderr


def test_an_ec_private_key_in_a_key_file_is_refused_with_a_hint(
    cli: Runner, fake_google: FakeGoogle, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    info = fake_google.add_service_account(CI_SA)
    info["private_key"] = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    key = tmp_path / "ec.json"
    key.write_text(json.dumps(info))

    result = cli("sa-token", "--audience", fake_google.IAP_CLIENT_ID, "--key-file", str(key))

    stderr = error_of(result)
    assert f"--key-file {key}" in stderr
    assert "RSA" in stderr
