"""A cached ``flyte-iap sa-token`` against the old plugin's ``flyte-iap generate-service-account-id-token``.

Example::

    python benchmarks/run.py -k sa_token

Both commands get a service account's ID token from the same FakeGoogle metadata server
(``GCE_METADATA_HOST``), for the same audience, the same number of runs, one process at a time. Each is
warmed first, so what is measured is the call a CI job or a pod makes before every ``pyflyte`` request:
a token is cached and still valid.

The plugin caches in the OS keyring. Headless machines (CI runners, pods) have no keyring backend, so
there it caches nothing and asks the metadata server on every call; that is its first row. Its second
row gives it a file keyring (``keyrings.alt``, installed into its virtualenv), its best case, where it
still pings the metadata server on every call to find its credentials. The requests each command sends
to the metadata server per call are counted and printed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from common import BenchError, Context, Measurement

KEYRING_BACKEND = "keyrings.alt.file.PlaintextKeyring"


def _requests_per_call(ctx: Context, measurement: Measurement, before: int) -> float:
    return (len(ctx.fake_google.requests) - before) / (len(measurement.wall_s) + ctx.warmup)


def _plugin_with_file_keyring(ctx: Context) -> bool:
    """Install keyrings.alt into the plugin's virtualenv (once); False when that is not possible."""
    venv = ctx.plugin_venv
    if venv is None:
        return False
    python = str(venv / "bin" / "python")
    check = [python, "-c", f"import keyring.core; keyring.core.load_keyring({KEYRING_BACKEND!r})"]
    if subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return True
    uv = ctx.our_command("uv") if (Path(ctx.python).parent / "uv").exists() else "uv"
    for command in (
        [uv, "pip", "install", "--quiet", "--python", python, "keyrings.alt"],
        [python, "-m", "pip", "install", "--quiet", "keyrings.alt"],
    ):
        try:
            if subprocess.run(command, capture_output=True, check=False).returncode == 0:
                return subprocess.run(check, capture_output=True, check=False).returncode == 0
        except OSError:
            continue
    return False


def run(ctx: Context) -> None:
    google = ctx.fake_google
    audience = google.IAP_CLIENT_ID
    env = ctx.env()  # GCE_METADATA_HOST and GCE_METADATA_IP point at FakeGoogle, no credentials files
    # As after a normal install, both sides run from compiled bytecode: the warm-up runs write it.
    # (With PYTHONDONTWRITEBYTECODE set, every run would compile flytekit's sources again.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    flyte_iap = ctx.our_command("flyte-iap")
    ours_argv = [flyte_iap, "sa-token", "--audience", audience]
    token = subprocess.run(
        ours_argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    if token.returncode != 0:
        raise BenchError(f"flyte-iap sa-token failed:\n{token.stderr}")
    google.clear_requests()

    ours = ctx.measure("flyte-iap sa-token (cached)", ours_argv, env=env, expect_stdout=token.stdout)
    if google.requests:
        raise BenchError(f"the cached sa-token made {len(google.requests)} request(s)")
    rows, notes = [ours], {ours.label: 0.0}

    plugin_cli = ctx.plugin_command("flyte-iap")
    plugin_rows: list[Measurement] = []
    if plugin_cli is not None:
        plugin_argv = [plugin_cli, "generate-service-account-id-token", "--webapp_client_id", audience]
        before = len(google.requests)
        # keyring's "no backend" stand-in, whatever else is installed in the plugin's virtualenv
        no_keyring = {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
        bare = ctx.measure("old plugin, no keyring (CI, pods)", plugin_argv, env=no_keyring)
        notes[bare.label] = _requests_per_call(ctx, bare, before)
        plugin_rows.append(bare)
        if _plugin_with_file_keyring(ctx):
            keyring_env = {
                **env,
                "PYTHON_KEYRING_BACKEND": KEYRING_BACKEND,
                "XDG_DATA_HOME": str(ctx.workdir / "plugin-keyring"),
            }
            before = len(google.requests)
            cached = ctx.measure("old plugin, file keyring", plugin_argv, env=keyring_env)
            notes[cached.label] = _requests_per_call(ctx, cached, before)
            plugin_rows.append(cached)
        rows += plugin_rows

    ctx.table("cached service-account token, metadata server source", rows, baselines=[ours])
    for row in rows:
        print(f"  {row.label}: {notes[row.label]:.1f} metadata request(s) per call")
    if not plugin_rows:
        ctx.goal("sa-token faster than the old plugin", None, "the plugin could not be installed")
        return
    for plugin in plugin_rows:
        speedup = plugin.median_s / ours.median_s
        ctx.goal(
            f"sa-token faster than {plugin.label}",
            speedup > 1,
            f"{speedup:.1f}x ({plugin.median_s * 1000:.0f} ms vs {ours.median_s * 1000:.1f} ms; peak "
            f"{plugin.peak_mib:.1f} vs {ours.peak_mib:.1f} MiB)",
        )
