"""A cached ``flyte-iap token`` against ``python -c pass`` and against the old plugin's ``flyte-iap --help``.

Example::

    python benchmarks/run.py -k user_token

flytekit and flytectl run the proxy command at least twice per ``pyflyte`` call, so what matters is the
warm case: a token is cached and still valid. The sign-in is done first through the real CLI against
FakeGoogle (``flyte-iap login`` with the scripted browser); the measured runs must then print exactly
that token and make no request at all. The old plugin cannot be pointed at a fake (it reads its secret
over gRPC on every call), so its side is its start-up alone: ``flyte-iap --help``, a lower bound of any
of its token commands.

Goals (issue 3): at most 3x the bare interpreter, at least 20x faster than the plugin, under 25 MiB peak.
"""

from __future__ import annotations

import subprocess

from common import BenchError, Command, Context


def _sign_in(ctx: Context, env: dict[str, str], audience: str) -> str:
    google = ctx.fake_google
    flyte_iap = ctx.our_command("flyte-iap")
    login = subprocess.run(
        [flyte_iap, "login", "--audience", audience, "--client-id", google.DESKTOP_CLIENT_ID,
         "--client-secret", google.DESKTOP_CLIENT_SECRET, "--timeout", "60"],
        env={**env, "BROWSER": google.browser_command}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if login.returncode != 0:
        raise BenchError(f"flyte-iap login failed:\n{login.stderr}")
    token = subprocess.run(
        [flyte_iap, "token", "--audience", audience], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return token.strip()


def run(ctx: Context) -> None:
    google = ctx.fake_google
    audience = google.IAP_CLIENT_ID
    env = ctx.env()
    token = _sign_in(ctx, env, audience)
    google.clear_requests()

    commands = [
        Command("python -c pass", [ctx.python, "-c", "pass"]),
        Command(
            "flyte-iap token (cached)",
            [ctx.our_command("flyte-iap"), "token", "--audience", audience],
            env=env,
            expect_stdout=token + "\n",
        ),
    ]
    plugin_cli = ctx.plugin_command("flyte-iap")
    if plugin_cli is not None:
        commands.append(Command("old plugin: flyte-iap --help", [plugin_cli, "--help"]))
    # Round-robin, so a busy machine slows all three alike and the ratios stay fair.
    bare, ours, *rest = ctx.measure_interleaved(commands)
    if google.requests:
        raise BenchError(f"the cached token command made {len(google.requests)} request(s)")
    plugin = rest[0] if rest else None
    rows = [bare, ours, *rest]
    baselines = [bare, *rest]

    ctx.table("cached user token", rows, baselines)
    ratio = ours.median_s / bare.median_s
    cpu_ratio = ours.median_cpu_s / bare.median_cpu_s
    ctx.goal(
        "cached token <= 3x bare interpreter",
        ratio <= 3,
        f"{ratio:.2f}x wall ({ours.median_s * 1000:.1f} ms), {cpu_ratio:.2f}x CPU",
    )
    if plugin is None:
        ctx.goal(">= 20x faster than the old plugin", None, "the plugin could not be installed")
    else:
        speedup = plugin.median_s / ours.median_s
        ctx.goal(
            ">= 20x faster than the old plugin",
            speedup >= 20,
            f"{speedup:.1f}x wall ({plugin.median_s * 1000:.0f} ms vs {ours.median_s * 1000:.1f} ms), "
            f"{plugin.median_cpu_s / ours.median_cpu_s:.1f}x CPU; plugin peak {plugin.peak_mib:.1f} MiB",
        )
    ctx.goal(
        "cached token peak memory < 25 MiB",
        ours.max_peak_mib < 25,
        f"{ours.max_peak_mib:.1f} MiB (max of runs)",
    )
