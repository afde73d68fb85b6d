"""What the command groups share: options named after their environment variables, token output."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from flyte_iap.idtoken import DEFAULT_MIN_VALID

if TYPE_CHECKING:
    from flyte_iap.cache import TokenCache

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option(*names: str, **kwargs: Any) -> Decorator:
    """``click.option`` whose environment variable is ``FLYTE_IAP_<LONGEST NAME>``.

    Args:
        names: the option's names (``"--client-id"``).
        kwargs: ``click.option``'s keyword arguments; ``envvar`` and ``show_envvar`` may override ours.

    Returns:
        The decorator.
    """
    # A boolean pair "--insecure/--secure" is named after its first half: FLYTE_IAP_INSECURE.
    longest = max((n.split("/")[0] for n in names if n.startswith("--")), key=len)
    kwargs.setdefault("envvar", "FLYTE_IAP_" + longest.lstrip("-").replace("-", "_").upper())
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def echo_warnings(warnings: list[str]) -> None:
    """Print library warnings (e.g. skipped cache files) on stderr, once each.

    Args:
        warnings: the messages; the list is emptied.
    """
    from flyte_iap.errors import printable

    for message in dict.fromkeys(warnings):
        click.echo(f"warning: {printable(message, 2000)}", err=True)
    warnings.clear()


def emit_token(token: str, fmt: str = "token") -> None:
    """Write a token to stdout: the token (or its JSON document) and a newline, nothing else.

    Args:
        token: what flytekit and flytectl send as ``proxy-authorization: Bearer <token>``.
        fmt: one of :data:`flyte_iap.token_output.FORMATS`.
    """
    from flyte_iap.token_output import render

    sys.stdout.write(render(token, fmt) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def token_cache(*, deadline: bool = False) -> Iterator[TokenCache]:
    """A token cache for one command.

    Args:
        deadline: run the block under the token commands' deadline
            (:func:`flyte_iap.transport.command_deadline`, 60 s unless ``FLYTE_IAP_COMMAND_DEADLINE``).

    Returns:
        A context manager giving a new :class:`~flyte_iap.cache.TokenCache`, whose warnings are printed
        on stderr when the block ends.
    """
    from flyte_iap import transport
    from flyte_iap.cache import TokenCache

    cache = TokenCache()
    try:
        if deadline:
            with transport.command_deadline(transport.command_seconds()):
                yield cache
        else:
            yield cache
    finally:
        echo_warnings(cache.warnings)


def options(*decorators: Decorator) -> Decorator:
    """Several options as one decorator.

    Args:
        decorators: options (from :func:`option`), listed in ``--help`` in this order.

    Returns:
        The decorator.
    """

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


# -- options several commands share -----------------------------------------------------------------

AUDIENCE_HELP = "OAuth client ID of the IAP-protected app: the token's audience (aud)."
audience_option = option("--audience", required=True, metavar="CLIENT_ID", help=AUDIENCE_HELP)
endpoint_option = option(
    "--endpoint", required=True, metavar="URL", help="flyteadmin behind IAP: https://flyte.example.com."
)


class Seconds(click.FloatRange):
    """A finite number of seconds >= ``min``: click's FloatRange lets ``nan`` and ``inf`` through."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number


format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["token", "json", "exec-credential"]),
    default="token",
    show_default=True,
    help='stdout: the bare token (for admin.proxyCommand), JSON {"token", "expiry"}, or a Kubernetes '
    "ExecCredential.",
)


def min_valid_option(help_text: str) -> Decorator:
    return option(
        "--min-valid",
        type=Seconds(min=0),
        default=DEFAULT_MIN_VALID,
        show_default=True,
        help=help_text,
    )


# -- profiles (flyte_iap.profiles): named deployments whose settings fill the options not given ---------


profile_option = option(
    "--profile",
    metavar="NAME",
    envvar="FLYTE_IAP_PROFILE",
    help="A deployment from the profiles file (`flyte-iap profile list`): its settings fill the options "
    "not given.",
)


def with_profile(profile: str | None, **given: str | None) -> dict[str, str | None]:
    """``given`` with each None filled from the profile (``url`` comes from the profile's endpoint)."""
    if not profile:
        return given
    from flyte_iap.profiles import get_profile

    values = get_profile(profile)
    filled = dict(given)
    for key, value in given.items():
        if value is None:
            filled[key] = values.get("endpoint" if key == "url" else key)
    return filled
