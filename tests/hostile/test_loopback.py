"""Stalled or idle connections to the login's loopback port never hold up the browser's redirect."""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from flyte_iap.browser_login import authorize


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_the_redirect_is_answered_while_idle_and_trickling_connections_are_open(
    sockets: list[socket.socket],
) -> None:
    stop = threading.Event()

    def opener(url: str) -> bool:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        port = urllib.parse.urlsplit(query["redirect_uri"][0]).port
        assert port is not None
        for _ in range(8):  # browsers pre-open connections and leave them idle
            sockets.append(socket.create_connection(("127.0.0.1", port)))
        slow = socket.create_connection(("127.0.0.1", port))
        sockets.append(slow)

        def trickle() -> None:  # a header byte every 0.5 s for 30 s, longer than the login waits
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X" * 35:
                if stop.wait(0.5):
                    return
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        redirect = (
            query["redirect_uri"][0]
            + "?"
            + urllib.parse.urlencode({"state": query["state"][0], "code": "c0de"})
        )

        def follow() -> None:
            stop.wait(1.5)  # the trickle has started before the browser comes back
            urllib.request.urlopen(redirect, timeout=30).read()

        threading.Thread(target=follow, daemon=True).start()
        return True

    try:
        grant = authorize("client", opener=opener, notify=lambda message: None, timeout=20)
    finally:
        stop.set()

    assert grant.code == "c0de"


def test_connections_still_open_when_the_login_ends_are_closed(sockets: list[socket.socket]) -> None:
    stop = threading.Event()

    def opener(url: str) -> bool:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        port = urllib.parse.urlsplit(query["redirect_uri"][0]).port
        assert port is not None
        slow = socket.create_connection(("127.0.0.1", port))
        sockets.append(slow)

        def trickle() -> None:
            for byte in b"GET /" + b"x" * 55:  # 30 s: longer than the login waits
                if stop.wait(0.5):
                    return
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        redirect = (
            query["redirect_uri"][0] + "?" + urllib.parse.urlencode({"state": query["state"][0], "code": "c"})
        )
        threading.Thread(
            target=lambda: urllib.request.urlopen(redirect, timeout=30).read(), daemon=True
        ).start()
        return True

    try:
        authorize("client", opener=opener, notify=lambda message: None, timeout=20)
        slow = sockets[0]
        slow.settimeout(10)
        assert slow.recv(1) == b""  # the server shut the stalled connection down with the login
    finally:
        stop.set()
