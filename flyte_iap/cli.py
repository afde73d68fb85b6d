"""The ``flyte-iap`` command line: a thin layer over the library.

Results go to stdout (for the token commands: the token and a newline, nothing else); messages go to
stderr. A :class:`~flyte_iap.errors.FlyteIapError` becomes ``error: ...`` and ``hint: ...`` on stderr
and its exit code, never a traceback. Every option can also be set as ``FLYTE_IAP_<OPTION>``
(``--client-id`` is ``FLYTE_IAP_CLIENT_ID``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from flyte_iap import __version__
from flyte_iap.errors import FlyteIapError


def option(*names: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``click.option`` whose environment variable is ``FLYTE_IAP_<LONGEST NAME>``."""
    longest = max((n for n in names if n.startswith("--")), key=len)
    kwargs.setdefault("envvar", "FLYTE_IAP_" + longest.lstrip("-").replace("-", "_").upper())
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def echo_warnings(warnings: list[str]) -> None:
    """Print library warnings (e.g. skipped cache files) on stderr, once each."""
    for message in dict.fromkeys(warnings):
        click.echo(f"warning: {message}", err=True)
    warnings.clear()


def emit_token(token: str) -> None:
    """Write a token to stdout: the token and a newline, nothing else."""
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="flyte-iap")
def cli() -> None:
    """Google ID tokens for Flyte behind Identity-Aware Proxy, and checks for the deployment.

    Use `flyte-iap token` (users) or `flyte-iap sa-token` (CI, workloads) as flytekit's and flytectl's
    `admin.proxyCommand`.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn library errors into one-line messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="flyte-iap", standalone_mode=False)
    except FlyteIapError as exc:
        click.echo(f"error: {exc.message}", err=True)
        click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)


# Commands are defined below, one block per area, each a thin wrapper over a library module.
