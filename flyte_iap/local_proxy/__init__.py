"""A local authenticating reverse proxy to Flyte behind IAP (``flyte-iap proxy``).

Not to be confused with :class:`flyte_iap.testing.IapProxy`, the emulator *of* IAP: this runs on the
user's machine, in front of the real IAP, so that clients that cannot send IAP's header still get in.

Example::

    from flyte_iap.local_proxy import LocalProxy, TokenSource, user_token_fetcher

    tokens = TokenSource(user_token_fetcher(audience))  # the sign-in of `flyte-iap login`
    with LocalProxy("https://flyte.example.com", tokens) as proxy:  # a thread; or await proxy.start()
        print(proxy.url)  # http://127.0.0.1:PORT, for admin.endpoint (insecure: true), curl, ...

What it does with each request:

* accepts HTTP/1.1 (REST, console, Connect with server streams) and HTTP/2 with prior knowledge (h2c:
  gRPC from flytekit, flytectl, grpcio) on a loopback port;
* forwards it as a stream on a TLS + HTTP/2 connection to the one endpoint, with ``:authority`` set to
  it, ``proxy-authorization: Bearer <ID token>`` added (IAP checks and strips it), hop-by-hop headers
  dropped and everything else untouched: the client's own ``authorization`` (flyteadmin's auth) passes;
* streams bodies both ways under HTTP/2 flow control, acknowledging data only once the other side took
  it (memory per stream is bounded by the window, never by the body), and passes gRPC trailers, HTTP/1.1
  chunked trailers, resets and redirects (never followed) back to the client;
* refuses to be an open proxy or a tool for web pages: CONNECT (405), absolute-form targets naming another
  host (403), a ``Host``/``:authority`` that is not loopback (DNS rebinding, 403), a foreign ``Origin``
  or ``Sec-Fetch-Site: cross-site`` (403); with a session secret, requests without it get 407;
* in flyteadmin's ``GetOAuth2Metadata`` answer, a token endpoint on the IAP origin is moved to the
  proxy (:mod:`flyte_iap.local_proxy.oauth_metadata`), so flytekit's and flytectl's client-secret, PKCE
  and device token requests come through it too instead of reaching IAP without its header (flyte#6089);
* the token comes from the same cache and refresh logic as ``flyte-iap token`` / ``sa-token``
  (:class:`TokenSource`): read from memory per request, refreshed ahead of expiry in a worker thread,
  one refresh in flight however many requests wait; IAP's own 401/403 answers reach the client unchanged
  and become a one-line hint on the proxy's log.

Why h11 + h2 over asyncio (sans-IO framing, hand-written plumbing):

* gRPC needs HTTP/2 trailers end to end and prior-knowledge h2c from local clients. On the client side
  (proxy to IAP) no maintained Python HTTP client exposes HTTP/2 response trailers (httpx/httpcore do
  not; aiohttp has no HTTP/2), so a server framework (aiohttp: HTTP/1.1 only; hypercorn: ASGI, whose
  trailers are an extension) would still need the upstream side written on h2. grpcio could proxy
  gRPC alone, not REST or Connect, and would parse every message.
* h2 (python-hyper, used by httpx, hypercorn and this project's IAP emulator) and h11 (used by httpcore,
  uvicorn and hypercorn) implement the framing, HPACK, flow-control accounting and HTTP/1.1 parsing;
  what is written here is the forwarding between them, the policy and the token handling.
* Measured (``nox -s bench -- -k local_proxy --runs 300``, benchmarks/bench_local_proxy.py: the real
  ``flyte-iap proxy`` process against the IAP emulator on TLS, calls alternating with direct ones, on a
  shared 2-core machine, nine runs): 0.94-1.03 ms p50 added per unary gRPC call and 0.90-1.09 ms per
  REST GET (1.0-1.1 ms of the proxy's own CPU per call, 90 % of it user time); a 64 MiB server stream
  at 78-92 % of the direct rate (8 ms of the proxy's CPU per MiB: 125 MiB/s alone on a core); 52-55 MiB
  peak RSS with 100 concurrent streams, 48 MiB of it the interpreter with google-auth loaded before any
  traffic. Where the time goes: h2's own framing, HPACK and header checks are about 0.37 ms of a unary
  call (the benchmark measures them in process, without I/O); the rest is asyncio's transports and
  TLS, the syscalls of a loopback hop, and the forwarding here, which sends a unary request's body with
  its headers, answers a body-less HTTP/1.1 request without extra tasks and reads the endpoint's bytes
  in the transport callback. Two costs were removed outright: HPACK's pure-Python Huffman coding of
  the never-indexed token upstream (0.3 ms per request), and hyperframe hex-encoding each DATA frame's
  whole payload for a trace line nobody logs (13 us per 16 KiB frame, see ``_h2peer``). uvloop would
  take another 7-12 % off (measured) at the cost of a dependency; we found no maintained Python binding
  of a C HTTP/2 stack that proxies trailers, and grpcio's C core proxies only gRPC.
* Importing it costs about 40 ms (h2, hpack, hyperframe, h11): only ``flyte-iap proxy`` pays it; the
  warm ``flyte-iap token`` path never imports this package.

The dependencies are the ``proxy`` extra (h11, h2); :func:`require_stack` says how to install them.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from flyte_iap.errors import ConfigurationError
from flyte_iap.local_proxy.tokens import TokenSource

if TYPE_CHECKING:
    from flyte_iap.local_proxy.server import LocalProxy

__all__ = [
    "LocalProxy",
    "TokenSource",
    "require_stack",
    "service_account_token_fetcher",
    "user_token_fetcher",
]

_STACK = ("h11", "h2")


def require_stack() -> None:
    """Check that the proxy's HTTP libraries are installed.

    Raises:
        ConfigurationError: one is missing; the hint is the install command.
    """
    missing = [name for name in _STACK if importlib.util.find_spec(name) is None]
    if missing:
        from flyte_iap.extras import install_hint

        raise ConfigurationError(
            f"flyte-iap proxy needs {' and '.join(missing)}, which "
            + ("is" if len(missing) == 1 else "are")
            + " not installed",
            install_hint("proxy"),
        )


def __getattr__(name: str) -> Any:
    if name == "LocalProxy":
        require_stack()
        from flyte_iap.local_proxy.server import LocalProxy

        return LocalProxy
    raise AttributeError(name)


def user_token_fetcher(audience: str, *, client_id: str | None = None, min_valid: float = 300.0) -> Any:
    """``fetch`` for :class:`TokenSource`: the signed-in user's token, as ``flyte-iap token`` gets it.

    Never starts a browser sign-in (the proxy runs unattended): a sign-in that is needed raises
    :class:`~flyte_iap.errors.LoginRequiredError` with the ``flyte-iap login`` command as its hint.
    """

    def fetch(rejected: str | None) -> str:
        from flyte_iap.user_tokens import get_user_id_token

        return get_user_id_token(
            audience, client_id=client_id, min_valid=min_valid, interactive=False, rejected_token=rejected
        )

    return fetch


def service_account_token_fetcher(
    audience: str,
    *,
    impersonate_service_account: str | None = None,
    key_file: str | None = None,
    min_valid: float = 300.0,
) -> Any:
    """``fetch`` for :class:`TokenSource`: a service account's token, as ``flyte-iap sa-token`` gets it."""

    def fetch(rejected: str | None) -> str:
        from flyte_iap.service_account import get_service_account_id_token

        return get_service_account_id_token(
            audience,
            impersonate_service_account=impersonate_service_account,
            key_file=key_file,
            min_valid=min_valid,
            rejected_token=rejected,
        )

    return fetch
