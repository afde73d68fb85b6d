"""What the hostile run found solid, kept tested: concurrency, atomic records, crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from helpers.hostile import Runner, wait_until

from flyte_iap.cache import TokenCache
from flyte_iap.testing import FakeGoogle

IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity"


def test_twenty_concurrent_sa_token_runs_mint_once_and_agree(fake_google: FakeGoogle) -> None:
    fake_google.delay_next(0.5, path=IDENTITY)  # keep the first minter busy while the others queue
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flyte_iap", "sa-token", "--audience", fake_google.IAP_CLIENT_ID],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]

    assert [p.returncode for p in processes] == [0] * 20, [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    assert len(fake_google.requests_to(IDENTITY)) == 1


def test_readers_never_see_a_torn_record_while_it_is_rewritten(isolated_env: Path) -> None:
    cache = TokenCache(isolated_env)
    cache.write("user", "aud", "client", {"id_token": "0" * 4000})
    stop = threading.Event()
    seen: list[object] = []

    def read() -> None:
        reader = TokenCache(isolated_env)
        while not stop.is_set():
            record = reader.read("user", "aud", "client")
            seen.append(record["id_token"][0] if record else None)
            assert not reader.warnings, reader.warnings

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(300):
        cache.write("user", "aud", "client", {"id_token": str(i % 10) * 4000})
    stop.set()
    for thread in readers:
        thread.join()

    assert seen and None not in seen


def test_a_token_run_killed_during_its_refresh_leaves_a_cache_the_next_run_uses(
    cli: Runner, fake_google: FakeGoogle, signed_in: str, isolated_env: Path
) -> None:
    cache = TokenCache(isolated_env)
    record = cache.find("user", fake_google.IAP_CLIENT_ID)[0]
    record["id_token"] = fake_google.mint_id_token(fake_google.IAP_CLIENT_ID, expired=True)
    cache.write("user", fake_google.IAP_CLIENT_ID, record["principal"], record)
    fake_google.clear_requests()
    fake_google.delay_next(30, path="/token")
    victim = subprocess.Popen(
        [sys.executable, "-m", "flyte_iap", "token", "--audience", fake_google.IAP_CLIENT_ID],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: bool(fake_google.requests_to("/token")), timeout=30)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)

    result = cli("token", "--audience", fake_google.IAP_CLIENT_ID)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(fake_google.requests_to("/token")) == 2  # the killed refresh, then this one
