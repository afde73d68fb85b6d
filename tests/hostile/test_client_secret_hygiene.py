"""A client secret on the command line is discouraged where it is offered, and never suggested in a hint."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flyte_iap.cli import cli
from flyte_iap.client_secrets import SecretSource
from flyte_iap.user_tokens import login_command


@pytest.mark.parametrize("command", ["login", "token"])
def test_help_says_a_secret_on_the_command_line_is_visible_and_names_the_alternatives(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)

    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "Visible to other users in `ps` and kept in shell history" in text
    assert "FLYTE_IAP_CLIENT_SECRET" in text and "--client-secrets-file" in text


def test_a_login_hint_for_a_secret_given_as_a_value_points_at_the_client_json() -> None:
    command = login_command("aud", "client", SecretSource("value", value="GOCSPX-real-secret"))

    assert "--client-secret " not in command
    assert "GOCSPX" not in command
    assert command.endswith("--client-secrets-file <DESKTOP_CLIENT_JSON>")
