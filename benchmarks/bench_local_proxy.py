"""``flyte-iap proxy`` against calling IAP directly: added latency, stream throughput, memory.

Example::

    python benchmarks/run.py -k local_proxy --runs 400

One run, side by side: a gRPC server (unary echo, server stream) and an HTTP/1.1 server behind the IAP
emulator on TLS (``IapProxy(tls=True)``, HTTP/2 by ALPN, as Google's front end on :443). *Direct* is a
client that sends the ID token itself over TLS to IAP; *proxy* is a client with no token and no TLS,
pointed at ``flyte-iap proxy --sa`` (the real command, a separate process, its token from FakeGoogle's
metadata server). Calls alternate between the two so that both see the same machine load.

* added latency: p50 and p99 of (proxy - direct) per unary gRPC call and per REST GET (HTTP/1.1
  keep-alive to the proxy; the emulator opens an HTTP/1.1 connection to the upstream per request on
  both paths);
* stream throughput: one server stream of 64 MiB, MiB/s through each path;
* memory: the proxy process's resident set (VmRSS, sampled, and its peak VmHWM) while 100 server streams
  of 4 MiB each run at once, read from /proc.

Goals (issue 15): p50 added latency <= 1 ms per call, throughput >= 80 % of direct, RSS <= 60 MiB.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import MIB, Context

_CHUNK = 64 * 1024
_STREAM_CHUNKS = 1024  # 64 MiB
_RSS_STREAMS = 100
_RSS_CHUNKS = 64  # 4 MiB each
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 8 << 20)]


def _grpc_server() -> tuple[Any, str]:
    import grpc

    payload = os.urandom(_CHUNK)

    def echo(request: bytes, context: Any) -> bytes:
        return request

    def stream(request: bytes, context: Any) -> Iterator[bytes]:
        for _ in range(int(request)):
            yield payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=_RSS_STREAMS + 8))
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def _http_server() -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b'{"projects": []}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _paired(
    direct: Callable[[], object], proxied: Callable[[], object], runs: int
) -> tuple[list[float], ...]:
    """Alternate the two calls ``runs`` times; seconds per call of each, and their differences."""
    d_times: list[float] = []
    p_times: list[float] = []
    for i in range(runs):
        order = (direct, proxied) if i % 2 == 0 else (proxied, direct)
        for call in order:
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            (d_times if call is direct else p_times).append(elapsed)
    return d_times, p_times, [p - d for d, p in zip(d_times, p_times, strict=True)]


def _h2_work_per_call(token: str, runs: int) -> float:
    """Seconds of h2 work per unary gRPC call through the proxy, in process and without I/O.

    The proxy's two HTTP/2 connections, set up as it sets them up, pass the exchange the latency rows
    measure (the request from grpcio's headers, the answer in three parts as the emulator sends it)
    between in-memory peers; only the proxy's side is timed: the share of its cost that is h2's
    framing, HPACK and header checks, which no change to the proxy's own code can remove.
    """
    import h2.config
    import h2.connection
    import h2.events

    from flyte_iap.local_proxy import LocalProxy, TokenSource
    from flyte_iap.local_proxy.http2 import new_h2 as downstream_h2
    from flyte_iap.local_proxy.upstream import new_h2 as upstream_h2

    def peer(client_side: bool) -> h2.connection.H2Connection:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client_side))
        conn.initiate_connection()
        return conn

    def deliver(sink: h2.connection.H2Connection, data: bytes) -> None:
        """A peer reads ``data``, acknowledging DATA as a reader that takes it at once."""
        for event in sink.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                sink.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def exchange(a: h2.connection.H2Connection, b: h2.connection.H2Connection) -> None:
        deliver(b, a.data_to_send())
        deliver(a, b.data_to_send())

    proxy = LocalProxy("https://flyte.example.com", TokenSource(lambda _: token))
    client, server = peer(True), peer(False)
    down, up = downstream_h2(), upstream_h2()
    down.initiate_connection()
    up.initiate_connection()
    for _ in range(2):
        exchange(client, down)
        exchange(up, server)
    request = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/bench.Echo/Echo"),
        (b":authority", b"127.0.0.1:8080"),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-python/1.62 grpc-c/38.0.0 (linux; chttp2)"),
        (b"grpc-accept-encoding", b"identity, deflate, gzip"),
        (b"grpc-timeout", b"29999m"),
    ]
    message = b"\0\0\0\0\x64" + b"x" * 100
    timed = 0.0
    for _ in range(runs):
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, request)
        client.send_data(stream, message, end_stream=True)
        wire = client.data_to_send()
        start = time.perf_counter()
        received, body = down.receive_data(wire)[:2]
        assert isinstance(received, h2.events.RequestReceived) and isinstance(body, h2.events.DataReceived)
        headers = list(received.headers)
        up_stream = up.get_next_available_stream_id()
        up.send_headers(up_stream, proxy.upstream_headers("POST", "/bench.Echo/Echo", headers, token))
        up.send_data(up_stream, body.data, end_stream=True)
        down.acknowledge_received_data(body.flow_controlled_length, stream)
        to_iap, to_client = up.data_to_send(), down.data_to_send()
        timed += time.perf_counter() - start
        deliver(client, to_client)
        deliver(server, to_iap)
        server.send_headers(up_stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        parts = [server.data_to_send()]
        server.send_data(up_stream, message)
        parts.append(server.data_to_send())
        server.send_headers(up_stream, [(b"grpc-status", b"0"), (b"grpc-message", b"")], end_stream=True)
        parts.append(server.data_to_send())
        for part in parts:
            start = time.perf_counter()
            for event in up.receive_data(part):
                if isinstance(event, h2.events.ResponseReceived):
                    down.send_headers(stream, [(b":status", b"200"), *list(event.headers)[1:]])
                elif isinstance(event, h2.events.DataReceived):
                    down.send_data(stream, event.data)
                    up.acknowledge_received_data(event.flow_controlled_length, up_stream)
                elif isinstance(event, h2.events.TrailersReceived):
                    down.send_headers(stream, list(event.headers), end_stream=True)
            to_client, to_iap = down.data_to_send(), up.data_to_send()
            timed += time.perf_counter() - start
            deliver(client, to_client)
            deliver(server, to_iap)
        exchange(client, down)
        exchange(up, server)
    return timed / runs


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _start_proxy(
    ctx: Context, endpoint: str, audience: str, ca_cert: str
) -> tuple[subprocess.Popen[str], str]:
    argv = [
        ctx.our_command("flyte-iap"),
        "proxy",
        "--sa",
        "--endpoint",
        endpoint,
        "--audience",
        audience,
        "--ca-cert",
        ca_cert,
    ]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ctx.env(),
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url:
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"flyte-iap proxy did not start: {err.strip()}")
    return process, url


def run(ctx: Context) -> None:
    import grpc
    import requests

    from flyte_iap.testing import IapProxy

    google = ctx.fake_google
    audience = google.IAP_CLIENT_ID
    token = google.mint_id_token(audience, email=google.metadata_service_account)
    grpc_server, grpc_target = _grpc_server()
    http_server = _http_server()
    iap = IapProxy(
        audience,
        certs_url=google.certs_url,
        allowed=["allAuthenticatedUsers"],
        grpc_upstream=grpc_target,
        http_upstream=f"http://127.0.0.1:{http_server.server_address[1]}",
        tls=True,
    ).start()
    process, url = _start_proxy(ctx, iap.url, audience, str(iap.ca_cert_file))
    local_target = url.removeprefix("http://")
    header = [("proxy-authorization", f"Bearer {token}")]
    runs = max(ctx.runs, 200)
    try:
        direct_channel = grpc.secure_channel(
            f"localhost:{iap.port}", grpc.ssl_channel_credentials(iap.ca_cert_pem), options=_GRPC_OPTIONS
        )
        proxy_channel = grpc.insecure_channel(local_target, options=_GRPC_OPTIONS)
        direct_echo = direct_channel.unary_unary("/bench.Echo/Echo")
        proxy_echo = proxy_channel.unary_unary("/bench.Echo/Echo")
        direct_stream = direct_channel.unary_stream("/bench.Echo/Stream")
        proxy_stream = proxy_channel.unary_stream("/bench.Echo/Stream")
        direct_http = requests.Session()
        # per request: requests lets REQUESTS_CA_BUNDLE override a session's verify
        ca = str(iap.ca_cert_file)
        direct_http.headers["proxy-authorization"] = f"Bearer {token}"
        proxy_http = requests.Session()
        small = b"x" * 100
        for _ in range(ctx.warmup + 20):
            direct_echo(small, metadata=header, timeout=30)
            proxy_echo(small, timeout=30)
            direct_http.get(f"{iap.url}/api/v1/projects", verify=ca, timeout=30).raise_for_status()
            proxy_http.get(f"{url}/api/v1/projects", timeout=30).raise_for_status()

        # -- latency ------------------------------------------------------------------------------
        rows = []
        for label, direct, proxied in (
            (
                "unary gRPC (100 B)",
                lambda: direct_echo(small, metadata=header, timeout=30),
                lambda: proxy_echo(small, timeout=30),
            ),
            (
                "REST GET",
                lambda: direct_http.get(
                    f"{iap.url}/api/v1/projects", verify=ca, timeout=30
                ).raise_for_status(),
                lambda: proxy_http.get(f"{url}/api/v1/projects", timeout=30).raise_for_status(),
            ),
        ):
            cpu_before = _cpu_s(process.pid)
            d, p, added = _paired(direct, proxied, runs)
            rows.append((label, d, p, added, (_cpu_s(process.pid) - cpu_before) / runs))
        print(f"\nlatency, {runs} calls each, alternating (ms):")
        head = f"  {'':22} {'direct p50':>11} {'proxy p50':>10} {'added p50':>10} {'added p99':>10}"
        print(head + f" {'proxy CPU/call':>15}")
        h2_work = _h2_work_per_call(token, runs * 5)
        for label, d, p, added, cpu in rows:
            print(
                f"  {label:22} {statistics.median(d) * 1e3:11.2f} {statistics.median(p) * 1e3:10.2f}"
                f" {statistics.median(added) * 1e3:10.2f} {_percentile(added, 0.99) * 1e3:10.2f}"
                f" {cpu * 1e3:15.2f}"
            )
            ctx.goal(
                f"flyte-iap proxy: p50 added latency per {label} <= 1 ms",
                statistics.median(added) <= 1e-3,
                f"{statistics.median(added) * 1e3:.2f} ms (p99 {_percentile(added, 0.99) * 1e3:.2f} ms; "
                f"direct p50 {statistics.median(d) * 1e3:.2f} ms)",
            )

        grpc_cpu = rows[0][4]
        print(
            f"  of the proxy's CPU per unary gRPC call, h2's own work (framing, HPACK, header checks; in "
            f"process, no I/O): {h2_work * 1e3:.2f} ms ({h2_work / grpc_cpu:.0%})"
        )

        # -- throughput ----------------------------------------------------------------------------
        def drain(stream: Any, **kwargs: Any) -> float:
            start = time.perf_counter()
            total = sum(len(chunk) for chunk in stream(str(_STREAM_CHUNKS).encode(), timeout=120, **kwargs))
            assert total == _STREAM_CHUNKS * _CHUNK
            return total / MIB / (time.perf_counter() - start)

        direct_rates, proxy_rates = [], []
        proxy_cpu = 0.0
        for _ in range(3):
            direct_rates.append(drain(direct_stream, metadata=header))
            cpu_before = _cpu_s(process.pid)
            proxy_rates.append(drain(proxy_stream))
            proxy_cpu += _cpu_s(process.pid) - cpu_before
        direct_rate, proxy_rate = statistics.median(direct_rates), statistics.median(proxy_rates)
        print(f"\nserver stream of {_STREAM_CHUNKS * _CHUNK // MIB} MiB (median of 3):")
        ratio = proxy_rate / direct_rate
        print(f"  direct {direct_rate:8.1f} MiB/s   proxy {proxy_rate:8.1f} MiB/s   {ratio:.0%}")
        cpu_per_mib = proxy_cpu / (3 * _STREAM_CHUNKS * _CHUNK / MIB)
        print(
            f"  the proxy's CPU: {cpu_per_mib * 1e3:.1f} ms per MiB "
            f"(alone on a core: {1 / cpu_per_mib:.0f} MiB/s)"
        )
        ctx.goal(
            "flyte-iap proxy: server-stream throughput >= 80% of direct",
            proxy_rate >= 0.8 * direct_rate,
            f"{proxy_rate:.0f} vs {direct_rate:.0f} MiB/s ({proxy_rate / direct_rate:.0%})",
        )

        # -- memory ---------------------------------------------------------------------------------
        idle_rss, _ = _rss_mib(process.pid)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(_rss_mib(process.pid)[0])
                time.sleep(0.05)

        def one_stream(_: int) -> int:
            stream = proxy_stream(str(_RSS_CHUNKS).encode(), timeout=300)
            total = 0
            for chunk in stream:
                total += len(chunk)
                time.sleep(0.002)  # a client slower than the server: the proxy must not hoard the rest
            return total

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with concurrent.futures.ThreadPoolExecutor(_RSS_STREAMS) as pool:
            totals = list(pool.map(one_stream, range(_RSS_STREAMS)))
        done.set()
        sampler.join()
        _, peak = _rss_mib(process.pid)
        assert totals == [_RSS_CHUNKS * _CHUNK] * _RSS_STREAMS
        sampled = max(samples) if samples else peak
        print(
            f"\nflyte-iap proxy RSS: idle {idle_rss:.1f} MiB, {_RSS_STREAMS} concurrent streams of "
            f"{_RSS_CHUNKS * _CHUNK // MIB} MiB: max sampled {sampled:.1f} MiB, peak (VmHWM) {peak:.1f} MiB"
        )
        ctx.goal(
            f"flyte-iap proxy: RSS <= 60 MiB at {_RSS_STREAMS} concurrent streams",
            peak <= 60,
            f"peak {peak:.1f} MiB (idle {idle_rss:.1f} MiB)",
        )
        direct_channel.close()
        proxy_channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        iap.stop()
        http_server.shutdown()
        grpc_server.stop(None)
