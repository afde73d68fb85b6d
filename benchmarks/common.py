"""What every benchmark module shares: exact per-process timing and memory, the old plugin, the fakes.

Example (a ``benchmarks/bench_*.py`` module)::

    def run(ctx):
        bare = ctx.measure("python -c pass", [ctx.python, "-c", "pass"])
        ours = ctx.measure("flyte-iap token", [ctx.our_command("flyte-iap"), "token", "--audience", aud],
                           env=ctx.env(), expect_stdout=token + "\\n")
        plugin = ctx.measure("plugin --help", [ctx.plugin_command("flyte-iap"), "--help"], runs=5)
        ctx.table("cached user token", [bare, ours, plugin], baselines=[bare, plugin])
        ctx.goal("at most 3x the bare interpreter", ours.median_s / bare.median_s <= 3, ...)

Measurements are per process and exact: each run is forked by a tiny launcher interpreter and reaped with
:func:`os.wait4`, whose resource usage is that child's alone (``ru_maxrss``: its peak resident set), and
whose wall time is taken around the fork and the reap. Runs are sequential, so nothing else competes.

The old plugin (``flytekitplugins-identity-aware-proxy``) is installed once into ``.bench/plugin-venv``
(uv when available, else venv + pip) and reused by later runs. :attr:`Context.fake_google` is a running
:class:`flyte_iap.testing.FakeGoogle`, and :meth:`Context.env` an environment pointing at it with a private
token cache, so nothing leaves 127.0.0.1 while measuring.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
PLUGIN_REQUIREMENT = "flytekitplugins-identity-aware-proxy"
MIB = 1024 * 1024

# Spawns one measured command and reports its wall time, peak RSS and exit code. A child's ru_maxrss
# includes the memory of the process it was forked from (Linux records the pre-exec peak at exec), so the
# fork must happen in this small interpreter (no site, about 7 MiB), not in the benchmark process with
# FakeGoogle and google-auth loaded (about 40 MiB). Peaks below the launcher's own size are its floor.
_LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as fh:
    cpu = usage.ru_utime + usage.ru_stime
    fh.write(f"{wall} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu}")
"""


@dataclass(frozen=True)
class Measurement:
    """Wall time and peak memory of ``runs`` executions of one command line."""

    label: str
    argv: tuple[str, ...]
    wall_s: tuple[float, ...]
    peak_rss_bytes: tuple[int, ...]
    #: user + system CPU seconds of each run: steadier than wall time on a busy machine.
    cpu_s: tuple[float, ...] = ()

    @property
    def median_s(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_s) if self.cpu_s else float("nan")

    @property
    def min_s(self) -> float:
        return min(self.wall_s)

    @property
    def peak_mib(self) -> float:
        """The median of the runs' peak resident set sizes, in MiB."""
        return statistics.median(self.peak_rss_bytes) / MIB

    @property
    def max_peak_mib(self) -> float:
        return max(self.peak_rss_bytes) / MIB


@dataclass(frozen=True)
class Command:
    """One command line to measure, with its environment and what every run must print and exit with."""

    label: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    expect_stdout: str | None = None
    expect_exit: int | None = 0


@dataclass(frozen=True)
class Goal:
    """A target from the issue, checked against measurements."""

    description: str
    met: bool | None  # None: could not be measured
    detail: str


class BenchError(RuntimeError):
    """A measured command did not do what it should (wrong output, non-zero exit)."""


@dataclass
class Context:
    """Shared by every benchmark module in one ``benchmarks/run.py`` invocation."""

    runs: int = 20
    warmup: int = 2
    python: str = sys.executable
    goals: list[Goal] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # -- commands ---------------------------------------------------------------------------------

    def our_command(self, name: str) -> str:
        """A console script of this environment (where flyte-iap is installed), e.g. ``flyte-iap``."""
        path = Path(self.python).parent / name
        if not path.exists():
            found = shutil.which(name)
            if found is None:
                raise BenchError(f"{name} is not installed next to {self.python}: pip install -e .")
            return found
        return str(path)

    @cached_property
    def plugin_venv(self) -> Path | None:
        """A virtualenv with the old plugin installed (created once under .bench/), or None if it failed."""
        venv = BENCH_DIR / "plugin-venv"
        marker = venv / ".installed"
        if marker.exists():
            return venv
        print(f"installing {PLUGIN_REQUIREMENT} into {venv.relative_to(ROOT)} (once)...", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        BENCH_DIR.mkdir(exist_ok=True)
        uv = shutil.which("uv") or shutil.which("uv", path=str(Path(self.python).parent))
        try:
            if uv:
                subprocess.run([uv, "venv", "--quiet", "--python", self.python, str(venv)], check=True)
                subprocess.run(
                    [
                        uv,
                        "pip",
                        "install",
                        "--quiet",
                        "--python",
                        str(venv / "bin" / "python"),
                        PLUGIN_REQUIREMENT,
                    ],
                    check=True,
                )
            else:
                subprocess.run([self.python, "-m", "venv", str(venv)], check=True)
                subprocess.run(
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", PLUGIN_REQUIREMENT],
                    check=True,
                )
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"could not install {PLUGIN_REQUIREMENT}: {exc}", file=sys.stderr)
            return None
        marker.write_text(PLUGIN_REQUIREMENT + "\n")
        return venv

    def plugin_command(self, name: str = "flyte-iap") -> str | None:
        """A console script of the old plugin's virtualenv, or None when it could not be installed."""
        venv = self.plugin_venv
        if venv is None:
            return None
        path = venv / "bin" / name
        return str(path) if path.exists() else None

    # -- the fakes and the environment ----------------------------------------------------------

    @cached_property
    def fake_google(self) -> Any:
        """A running FakeGoogle, stopped when the benchmarks end."""
        from flyte_iap.testing import FakeGoogle

        return self._stack.enter_context(FakeGoogle())

    @cached_property
    def workdir(self) -> Path:
        """A temporary directory for this run (caches, credential files), removed at the end."""
        return Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="flyte-iap-bench-")))

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, pointed at :attr:`fake_google`, with a private token cache and HOME.

        Variables of the developer's shell that would change what is measured (FLYTE_IAP_*, GOOGLE_*,
        metadata overrides, BROWSER) are dropped first.
        """
        scrub = ("FLYTE_IAP_", "GOOGLE_", "CLOUDSDK_", "GCE_METADATA", "FLYTE_CREDENTIALS")
        env = {k: v for k, v in os.environ.items() if not k.startswith(scrub) and k != "BROWSER"}
        env.update(self.fake_google.env)
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        env.update(
            HOME=str(home),
            FLYTE_IAP_CACHE_DIR=str(self.workdir / "cache"),
            CLOUDSDK_CONFIG=str(home / "gcloud"),
            XDG_CACHE_HOME=str(home / ".cache"),
        )
        env.update(extra or {})
        return env

    # -- measuring ------------------------------------------------------------------------------

    def _run_once(
        self, argv: Sequence[str], env: Mapping[str, str] | None
    ) -> tuple[float, int, int, bytes, bytes, float]:
        with (
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            tempfile.NamedTemporaryFile("r", suffix=".report") as report,
        ):
            launcher = [self.python, "-S", "-I", "-c", _LAUNCHER, report.name, *argv]
            code = subprocess.call(launcher, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            fields = report.read().split()
            if code != 0 or len(fields) != 4:
                raise BenchError(f"could not run {argv[0]} (launcher exit {code})")
            out.seek(0)
            err.seek(0)
            wall, maxrss, exit_code, cpu = float(fields[0]), int(fields[1]), int(fields[2]), float(fields[3])
            # ru_maxrss is KiB on Linux, bytes on macOS.
            rss = maxrss if sys.platform == "darwin" else maxrss * 1024
            return wall, rss, exit_code, out.read(), err.read(), cpu

    def measure(
        self,
        label: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        runs: int | None = None,
        warmup: int | None = None,
        expect_stdout: str | None = None,
        expect_exit: int | None = 0,
    ) -> Measurement:
        """Run ``argv`` ``warmup`` times unmeasured, then ``runs`` times measured, one process at a time.

        Args:
            label: the row's name in tables.
            argv: the command line.
            env: its environment (default: this process's).
            runs: measured runs (default :attr:`runs`).
            warmup: unmeasured runs first, to warm the page cache (default :attr:`warmup`).
            expect_stdout: if given, every run's stdout must equal it exactly.
            expect_exit: every run's exit code must equal it (None: any).

        Returns:
            The :class:`Measurement`.

        Raises:
            BenchError: a run exited or printed something else than expected.
        """
        command = Command(label, tuple(argv), env, expect_stdout, expect_exit)
        return self.measure_interleaved([command], runs=runs, warmup=warmup)[0]

    def measure_interleaved(
        self, commands: Sequence[Command], *, runs: int | None = None, warmup: int | None = None
    ) -> list[Measurement]:
        """Measure several commands round-robin (A, B, C, A, B, C, ...) so load changes hit all alike.

        On a shared or busy machine this keeps the ratios between the commands fair, which sequential
        blocks of runs do not. Same checks and arguments as :meth:`measure`.

        Returns:
            One :class:`Measurement` per command, in order.
        """
        runs = self.runs if runs is None else runs
        warmup = self.warmup if warmup is None else warmup
        walls: list[list[float]] = [[] for _ in commands]
        peaks: list[list[int]] = [[] for _ in commands]
        cpus: list[list[float]] = [[] for _ in commands]
        for i in range(warmup + runs):
            for j, command in enumerate(commands):
                elapsed, rss, code, stdout, stderr, cpu = self._run_once(command.argv, command.env)
                if command.expect_exit is not None and code != command.expect_exit:
                    tail = stderr.decode(errors="replace")[-2000:]
                    raise BenchError(
                        f"{command.label}: exit code {code}, expected {command.expect_exit}\n{tail}"
                    )
                if (
                    command.expect_stdout is not None
                    and stdout.decode(errors="replace") != command.expect_stdout
                ):
                    raise BenchError(f"{command.label}: unexpected stdout {stdout[:200]!r}")
                if i >= warmup:
                    walls[j].append(elapsed)
                    peaks[j].append(rss)
                    cpus[j].append(cpu)
        return [
            Measurement(c.label, tuple(c.argv), tuple(w), tuple(p), tuple(u))
            for c, w, p, u in zip(commands, walls, peaks, cpus, strict=True)
        ]

    # -- reporting ------------------------------------------------------------------------------

    def table(self, title: str, rows: Sequence[Measurement], baselines: Sequence[Measurement] = ()) -> None:
        """Print wall time (median, best), median CPU time, peak memory, and wall-time ratios to baselines."""
        headers = [
            "command",
            "median ms",
            "min ms",
            "cpu ms",
            "peak MiB",
            *[f"x {b.label}" for b in baselines],
        ]
        body = []
        for row in rows:
            cells = [
                row.label,
                f"{row.median_s * 1000:.1f}",
                f"{row.min_s * 1000:.1f}",
                f"{row.median_cpu_s * 1000:.1f}",
                f"{row.peak_mib:.1f}",
            ]
            cells += [f"{row.median_s / b.median_s:.2f}" for b in baselines]
            body.append(cells)
        widths = [max(len(str(r[i])) for r in [headers, *body]) for i in range(len(headers))]
        print(f"\n{title} (runs: {', '.join(str(len(r.wall_s)) for r in rows)})")
        for i, cells in enumerate([headers, *body]):
            print(
                "  "
                + "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w)
                    for j, (c, w) in enumerate(zip(cells, widths, strict=True))
                )
            )
            if i == 0:
                print("  " + "  ".join("-" * w for w in widths))

    def goal(self, description: str, met: bool | None, detail: str) -> Goal:
        """Record and print a goal; ``met=None`` when it could not be measured."""
        goal = Goal(description, met, detail)
        self.goals.append(goal)
        status = {True: "MET ", False: "MISS", None: "N/A "}[met]
        print(f"  [{status}] {description}: {detail}")
        return goal

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self._stack.close()

    @classmethod
    @contextlib.contextmanager
    def open(cls, **kwargs: Any) -> Iterator[Context]:
        ctx = cls(**kwargs)
        try:
            yield ctx
        finally:
            ctx.close()
