"""TokenSource: the token is read from memory per request, refreshed ahead of expiry in a thread, once."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import pytest

from flyte_iap.errors import InvalidTokenError, LoginRequiredError
from flyte_iap.local_proxy.tokens import REFRESH_AHEAD, RETRY_AFTER, TokenSource


def _token(exp: float, n: int = 0) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'n': n, 'email': 'a@example.com'})}.c2ln"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_fresh_token_is_served_from_memory_without_fetching() -> None:
    clock = Clock()
    calls: list[str | None] = []
    source = TokenSource(lambda rejected: calls.append(rejected) or _token(clock.now + 3600), clock=clock)
    source.prime(_token(clock.now + 3600))

    async def many() -> set[str]:
        return set(await asyncio.gather(*(source.get() for _ in range(100))))

    assert len(asyncio.run(many())) == 1
    assert calls == []
    assert source.email == "a@example.com"


def test_concurrent_callers_share_one_fetch_that_runs_off_the_event_loop() -> None:
    clock = Clock()
    release = threading.Event()
    threads: list[str] = []

    def fetch(rejected: str | None) -> str:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return _token(clock.now + 3600)

    source = TokenSource(fetch, clock=clock)

    async def run() -> tuple[list[str], int]:
        waiting = [asyncio.ensure_future(source.get()) for _ in range(50)]
        ticks = 0
        while ticks < 5:  # the loop keeps running while the fetch blocks in its thread
            await asyncio.sleep(0.01)
            ticks += 1
        release.set()
        return await asyncio.gather(*waiting), ticks

    tokens, ticks = asyncio.run(run())
    assert len(set(tokens)) == 1 and ticks == 5
    assert len(threads) == 1 and threads[0] != threading.main_thread().name
    assert source.fetches == 1


def test_token_close_to_expiry_is_still_served_while_a_background_refresh_runs() -> None:
    clock = Clock()
    old = _token(clock.now + 300 + REFRESH_AHEAD / 2, n=1)
    new = _token(clock.now + 3600, n=2)
    source = TokenSource(lambda rejected: new, min_valid=300, clock=clock)
    source.prime(old)

    async def run() -> tuple[str, str]:
        first = await source.get()
        await asyncio.sleep(0.2)
        return first, await source.get()

    assert asyncio.run(run()) == (old, new)
    assert source.fetches == 1


def test_failed_background_refresh_is_reported_and_not_retried_per_request() -> None:
    clock = Clock()
    errors: list[BaseException] = []
    attempts: list[float] = []

    def fetch(rejected: str | None) -> str:
        attempts.append(clock.now)
        raise LoginRequiredError("not signed in", "flyte-iap login ...")

    source = TokenSource(fetch, min_valid=300, clock=clock, on_background_error=errors.append)
    current = _token(clock.now + 300 + REFRESH_AHEAD / 2)
    source.prime(current)

    async def requests(n: int) -> list[str]:
        out = []
        for _ in range(n):
            out.append(await source.get())
            await asyncio.sleep(0.01)
        return out

    assert asyncio.run(requests(20)) == [current] * 20
    assert len(attempts) == 1 and len(errors) == 1
    clock.now += RETRY_AFTER + 1
    asyncio.run(requests(3))
    assert len(attempts) == 2


def test_expired_token_makes_callers_wait_for_the_fetch_and_errors_reach_them() -> None:
    clock = Clock()

    def fetch(rejected: str | None) -> str:
        raise LoginRequiredError("no login", "log in")

    source = TokenSource(fetch, clock=clock)
    source.prime(_token(clock.now - 1))

    with pytest.raises(LoginRequiredError):
        asyncio.run(source.get())


def test_rejected_token_is_handed_to_the_fetch_and_replaced() -> None:
    clock = Clock()
    first, second = _token(clock.now + 3600, n=1), _token(clock.now + 3600, n=2)
    seen: list[str | None] = []

    def fetch(rejected: str | None) -> str:
        seen.append(rejected)
        return second

    source = TokenSource(fetch, clock=clock)
    source.prime(first)
    source.reject(first)

    assert asyncio.run(source.get()) == second
    assert seen == [first]
    source.reject(first)  # an old token's rejection does not drop the new one
    assert asyncio.run(source.get()) == second and seen == [first]


def test_time_module_clock_is_the_default() -> None:
    source = TokenSource(lambda rejected: _token(time.time() + 3600))
    assert asyncio.run(source.get()).count(".") == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("not-a-jwt", "malformed ID token"),
        (_token(0).rpartition(".")[0].rpartition(".")[0] + ".e30.c2ln", "no expiry"),  # payload {}
        (None, "returned NoneType, not an ID token"),
    ],
)
def test_a_fetch_answering_something_that_is_not_an_id_token_is_an_error_for_its_callers(
    answer: object, message: str
) -> None:
    """A custom fetch's bad answer reaches the callers as an error (the proxy's 503 with a hint), is not
    sent on as a token, and raises nowhere else (an asyncio callback's traceback on the log)."""
    clock = Clock()
    source = TokenSource(lambda rejected: answer, clock=clock)  # type: ignore[arg-type,return-value]
    stray: list[dict[str, object]] = []

    async def get() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: stray.append(context))
        return await source.get()

    with pytest.raises(InvalidTokenError, match=message):
        asyncio.run(get())
    assert stray == []
