"""The flyte SDK's Python API as a user's script calls it; run by the tests in a process of its own.

    python api_client.py init ENDPOINT CA_FILE COMMAND...   flyte.init(auth_type="ExternalCommand", ...)
    python api_client.py config CONFIG_FILE                  flyte.init_from_config(...)

Then lists projects and runs, gets run ``r-watch-me`` and watches it to the end; prints one JSON object:
``{"projects": [...], "runs": [...], "watch": [[phase, time.monotonic()], ...]}`` (CLOCK_MONOTONIC is
system-wide, so the test compares the arrival times with when FakeFlyte2 sent each message).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import flyte
import flyte.remote


async def _watch(run: flyte.remote.Run) -> list[tuple[str, float]]:
    arrivals = []
    async for details in run.watch():
        arrivals.append((str(details.phase.value), time.monotonic()))
    return arrivals


def main(argv: list[str]) -> None:
    if argv[0] == "init":
        endpoint, ca_file, *command = argv[1:]
        flyte.init(
            endpoint=endpoint,
            auth_type="ExternalCommand",
            command=command,
            ca_cert_file_path=ca_file,
            project="flytesnacks",
            domain="development",
        )
    else:
        flyte.init_from_config(argv[1])
    projects = [p.pb2.id for p in flyte.remote.Project.listall()]
    runs = [r.name for r in flyte.remote.Run.listall()]
    watch = asyncio.run(_watch(flyte.remote.Run.get("r-watch-me")))
    print(json.dumps({"projects": projects, "runs": runs, "watch": watch}))


if __name__ == "__main__":
    main(sys.argv[1:])
