"""The ``flyte-iap`` command line: a thin layer over the library.

Example::

    $ flyte-iap login --audience 123-web.apps.googleusercontent.com \\
        --client-id 456-desktop.apps.googleusercontent.com \\
        --client-secret-gcp-secret projects/my-proj/secrets/flyte-desktop
    $ flyte-iap token --audience 123-web.apps.googleusercontent.com      # the ID token on stdout

Results go to stdout (for the token commands: the token and a newline, nothing else); messages go to
stderr. A :class:`~flyte_iap.errors.FlyteIapError` becomes ``error: ...`` and ``hint: ...`` on stderr
and its exit code, never a traceback. Options made with :func:`option` can also be set as
``FLYTE_IAP_<OPTION>`` (``--client-id`` is ``FLYTE_IAP_CLIENT_ID``).
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from flyte_iap import __version__
from flyte_iap.errors import FlyteIapError, printable


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="flyte-iap")
def cli() -> None:
    """Google ID tokens for Flyte behind Identity-Aware Proxy, and checks for the deployment.

    Use `flyte-iap token` (users) or `flyte-iap sa-token` (CI, workloads) as flytekit's and flytectl's
    `admin.proxyCommand`.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn library errors into one-line messages and exit codes.

    Args:
        argv: the arguments; ``sys.argv[1:]`` by default.
    """
    try:
        cli.main(args=argv, prog_name="flyte-iap", standalone_mode=False)
    except FlyteIapError as exc:
        # Messages quote servers, files and paths: no terminal escape sequence gets through.
        click.echo(f"error: {printable(exc.message, 2000)}", err=True)
        click.echo(f"hint: {printable(exc.hint, 2000)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        # click turns Ctrl-C (and EOF at a prompt) into Abort.
        click.echo("error: aborted", err=True)
        click.echo(_INTERRUPTED_HINT, err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # click >= 8.2: no arguments shows the help
            exc.show()
            sys.exit(exc.exit_code)
        # The same two lines as every other failure, instead of click's usage block.
        command = exc.ctx.command_path if exc.ctx is not None else "flyte-iap"
        click.echo(f"error: {printable(exc.format_message(), 2000)}", err=True)
        click.echo(f"hint: see `{command} --help`", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        click.echo(_INTERRUPTED_HINT, err=True)
        sys.exit(130)
    except Exception as exc:
        # A bug. Its message is left out: it may quote a request or a file that holds a secret.
        if os.environ.get("FLYTE_IAP_TRACEBACK") == "1":
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        click.echo(f"error: unexpected {type(exc).__name__} at {where} (a bug in flyte-iap)", err=True)
        click.echo(
            "hint: run it again with FLYTE_IAP_TRACEBACK=1 to see the traceback, and report it", err=True
        )
        sys.exit(1)


_INTERRUPTED_HINT = "hint: nothing was stored; run the command again when you are ready"


# Each module registers its commands on `cli`: tokens (login, token, logout, sa-token and the old
# plugin's names) and deployment (config, doctor, check).
from flyte_iap.cli import deployment, tokens  # noqa: E402

__all__ = ["cli", "deployment", "main", "tokens"]
from flyte_iap.cli import (  # noqa: E402
    profiles,  # noqa: F401  (flyte-iap profile: flyte_iap.profiles)
    proxy,  # noqa: F401  (flyte-iap proxy: flyte_iap.local_proxy)
    status,  # noqa: F401  (flyte-iap status: flyte_iap.status)
)
