"""``python -m flyte_iap.testing``: run the local fakes from a shell, or act as the user's browser.

Example::

    $ python -m flyte_iap.testing serve > fakes.env &      # prints `export NAME=value` lines, then waits
    $ . ./fakes.env                                        # flyte-iap and google-auth now use the fakes
    $ BROWSER="python -m flyte_iap.testing browse %s" flyte-iap login ...

``serve`` writes only ``export`` lines and a final ``# ready`` comment to stdout (so the output can be
sourced) and stops on SIGINT or SIGTERM. ``browse URL`` opens the authorization URL like a browser whose
user consents, follows the redirect to the client's loopback page and reports on stderr (never stdout,
which belongs to the command that opened the browser); it exits 1 when the flow did not reach a 2xx
loopback page. Standard library only, besides the fakes themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

#: The last line ``serve`` prints on stdout once every fake is listening.
READY_LINE = "# flyte-iap fakes ready; stop with Ctrl-C or SIGTERM"


def _missing_extra(args: argparse.Namespace) -> str | None:
    """Import what ``serve`` will start, before starting anything; the error lines if a module is missing."""
    modules = ["flyte_iap.testing.fake_google"]
    if args.flyteadmin:
        modules += ["flyte_iap.testing.fake_flyteadmin", "flyte_iap.testing.iap_proxy"]
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            from flyte_iap.extras import install_hint

            what = "serve --flyteadmin" if args.flyteadmin else "serve"
            missing = (exc.name or str(exc)).split(".")[0]
            return (
                f"error: {what} needs the Python package {missing!r}, which is not installed\n"
                f"hint: {install_hint('testing')}"
            )
    return None


def _serve(args: argparse.Namespace) -> int:
    problem = _missing_extra(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from flyte_iap.testing.fake_google import FakeGoogle

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    with contextlib.ExitStack() as stack:
        google = stack.enter_context(
            FakeGoogle(user_email=args.user_email, token_lifetime=args.token_lifetime, port=args.port)
        )
        exports = dict(google.env)
        exports["FLYTE_IAP_TEST_CLIENT_ID"] = google.DESKTOP_CLIENT_ID
        exports["FLYTE_IAP_TEST_CLIENT_SECRET"] = google.DESKTOP_CLIENT_SECRET
        exports["FLYTE_IAP_TEST_IAP_CLIENT_ID"] = google.IAP_CLIENT_ID
        exports["FLYTE_IAP_TEST_USER_EMAIL"] = google.user_email
        exports["FLYTE_IAP_TEST_BROWSER"] = google.browser_command
        # Further fakes (IAP proxy, flyteadmin) start here on `stack` and add their lines to `exports`.
        if args.flyteadmin:
            exports.update(_serve_flyte(args, google, stack))
        if args.flyte2:
            exports.update(_serve_flyte2(args, google, stack))

        for name, value in exports.items():
            print(f"export {name}={shlex.quote(value)}")
        print(READY_LINE, flush=True)
        print(
            f"FakeGoogle listening on {google.base_url} as {google.user_email}", file=sys.stderr, flush=True
        )
        while not stop.wait(0.5):
            pass
    return 0


def _serve_flyte(args: argparse.Namespace, google: Any, stack: contextlib.ExitStack) -> dict[str, str]:
    """Start FakeFlyteAdmin and an IapProxy in front of it; return their export lines."""
    from flyte_iap.testing.fake_flyteadmin import FakeFlyteAdmin
    from flyte_iap.testing.iap_proxy import IapProxy

    admin = stack.enter_context(FakeFlyteAdmin(auth=args.flyteadmin_auth))
    allowed = [google.user_email, google.metadata_service_account, *args.allow]
    proxy = stack.enter_context(
        IapProxy(
            google.IAP_CLIENT_ID,
            certs_url=google.certs_url,
            allowed=allowed,
            http_upstream=admin.http_url,
            grpc_upstream=admin.grpc_target,
            tls=args.tls,
            port=args.iap_port,
        )
    )
    admin.public_url = proxy.url
    exports = {
        # admin.endpoint for flytekit: dns:///$FLYTE_IAP_TEST_ENDPOINT_HOST; doctor: --endpoint
        "FLYTE_IAP_TEST_ENDPOINT": proxy.url,
        "FLYTE_IAP_TEST_ENDPOINT_HOST": proxy.endpoint,
        "FLYTE_IAP_TEST_FLYTEADMIN_GRPC": admin.grpc_target,
        "FLYTE_IAP_TEST_FLYTEADMIN_HTTP": admin.http_url,
    }
    if args.tls and proxy.ca_cert_file:
        exports["FLYTE_IAP_TEST_CA_CERT"] = proxy.ca_cert_file
    if args.flyteadmin_auth:
        exports["FLYTE_IAP_TEST_ADMIN_CLIENT_ID"] = admin.client_id
        exports["FLYTE_IAP_TEST_ADMIN_CLIENT_SECRET"] = admin.client_secret
    print(f"IapProxy on {proxy.url} in front of FakeFlyteAdmin ({admin.grpc_target})", file=sys.stderr)
    return exports


def _serve_flyte2(args: argparse.Namespace, google: Any, stack: contextlib.ExitStack) -> dict[str, str]:
    """Start FakeFlyte2 (the Flyte 2 control plane) and an IapProxy in front of it."""
    from flyte_iap.testing.fake_flyte2 import FakeFlyte2
    from flyte_iap.testing.iap_proxy import IapProxy

    flyte2 = stack.enter_context(FakeFlyte2())
    flyte2.add_run("r-first-run")
    allowed = [google.user_email, google.metadata_service_account, *args.allow]
    proxy = stack.enter_context(
        IapProxy(
            google.IAP_CLIENT_ID,
            certs_url=google.certs_url,
            allowed=allowed,
            http_upstream=flyte2.url,
            tls=args.tls,
            port=args.flyte2_iap_port,
        )
    )
    exports = {
        # flyte-iap config --sdk flyte2 --endpoint; the flyte SDK sends no token over plain HTTP
        "FLYTE_IAP_TEST_FLYTE2_ENDPOINT": proxy.url,
        "FLYTE_IAP_TEST_FLYTE2_BACKEND": flyte2.url,
    }
    if args.tls and proxy.ca_cert_file:
        exports["FLYTE_IAP_TEST_FLYTE2_CA_CERT"] = proxy.ca_cert_file
    print(f"IapProxy on {proxy.url} in front of FakeFlyte2 ({flyte2.url})", file=sys.stderr)
    return exports


def _browse(args: argparse.Namespace) -> int:
    from flyte_iap.testing.browser import browse

    result = browse(args.url, timeout=args.timeout)
    # Print URLs without their query: the redirect carries the authorization code.
    if result.redirect_url:
        print(f"consent screen redirected to {result.redirect_url.split('?')[0]}", file=sys.stderr)
    if result.status:
        print(f"{result.url.split('?')[0]} answered HTTP {result.status}", file=sys.stderr)
    if not result.ok:
        # The page explains a failure (Google's error page, or the client's own); a success page is noise.
        if result.body.strip():
            print(result.body.strip()[:2000], file=sys.stderr)
        print(f"browse failed: {result.error or f'HTTP {result.status}'}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m flyte_iap.testing`` argument parser (subcommands ``serve`` and ``browse``)."""
    parser = argparse.ArgumentParser(prog="python -m flyte_iap.testing", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the fakes on 127.0.0.1 and print export lines")
    serve.add_argument("--port", type=int, default=0, help="FakeGoogle port (default: a free one)")
    serve.add_argument("--user-email", default="alice@example.com", help="who consents in the browser")
    serve.add_argument("--token-lifetime", type=int, default=3600, help="token lifetime in seconds")
    serve.add_argument(
        "--flyteadmin",
        action="store_true",
        help="also start FakeFlyteAdmin and an IapProxy in front of it (FLYTE_IAP_TEST_ENDPOINT)",
    )
    serve.add_argument(
        "--flyteadmin-auth", action="store_true", help="with --flyteadmin: turn on flyteadmin's own auth"
    )
    serve.add_argument(
        "--tls", action="store_true", help="with --flyteadmin or --flyte2: the proxy serves HTTPS"
    )
    serve.add_argument(
        "--flyte2",
        action="store_true",
        help="also start FakeFlyte2 (Flyte 2's Connect API) and an IapProxy in front of it "
        "(FLYTE_IAP_TEST_FLYTE2_ENDPOINT); the flyte SDK needs --tls to send tokens",
    )
    serve.add_argument("--flyte2-iap-port", type=int, default=0, help="that IapProxy's port (default: free)")
    serve.add_argument("--iap-port", type=int, default=0, help="IapProxy port (default: a free one)")
    serve.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="EMAIL",
        help="with --flyteadmin: also let this e-mail or IAM member through IAP (repeatable)",
    )
    serve.set_defaults(func=_serve)

    browse = commands.add_parser("browse", help="open URL as a consenting user (use as BROWSER='... %%s')")
    browse.add_argument("url")
    browse.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each page")
    browse.set_defaults(func=_browse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand and return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
