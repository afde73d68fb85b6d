"""Console and bash blocks: every command is run or checked, and shown output is compared.

A ``console`` block is a transcript: lines starting with ``$ `` are commands (a trailing ``\\``
continues one), the lines after a command are what it prints. A ``bash`` block is a script: every
line is a command and nothing is printed. What happens to a command depends on its program:

==============  ===================================================================================
``flyte-iap``   run (``python -m flyte_iap``) with the page's sandbox environment, in a directory where
                ``examples/`` resolves; its output (stdout and stderr, in order) must match the lines
                shown, where a line ``...`` stands for any lines and ``...`` inside a line for any text.
                A non-zero exit is a failure unless the shown output has an ``error:`` line (or a
                ``FAIL`` line of ``flyte-iap doctor``). Inside a
                pipeline (fed by a command that cannot run here) only its subcommand and flags are
                checked, against ``flyte-iap ... --help``.
``openssl``     run in the same directory (the files it writes are there for the next commands).
``gcloud``      the command path and every flag are checked against the installed ``gcloud ... --help``
                (flags with a value must be written ``--flag=VALUE``; required flags must be present);
                files given as arguments must exist and are validated. Skipped, with that reason, where
                gcloud is not installed.
``kubectl``     subcommands and flags are checked against ``kubectl ... --help`` (skipped where kubectl
                is not installed); every file or directory it names (``-f``, ``--cert`` ...) must exist,
                and manifests among them are validated. ``create secret tls flyteadmin-tls`` also runs
                flyteadmin's secure mode with that certificate behind IAP (:mod:`_harness.behaviour`).
``helm``        flags are checked against ``helm ... --help`` where helm is installed, else against
                :data:`HELM_FLAGS`; the chart must be ``flyteorg/flyte-binary`` or ``flyteorg/flyte-core``
                at :data:`~_harness.manifests.CHART_VERSION`, the release and namespace those the
                manifests assume, and every values file must pass the chart's key check.
                ``helm template ... | flyte-iap check - ARGS`` shown with its output is run: stdin is
                the chart's Services rebuilt for those values (:func:`~_harness.manifests.chart_services`).
``export``      sets the variable for the page's later commands.
``pip``         requirement names must be declared dependencies of this project (not run: the docs
                build has no network); this project itself is installed from a clone (``./flyte-iap``)
                or the wheel ``nox -s package`` builds, with extras it declares. ``pipx install`` the
                same; ``pipx inject flyte-iap REQ...`` adds declared dependencies.
==============  ===================================================================================

Any other program fails the block: add a rule here, or skip the block with a reason.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from . import REPO, BlockFailure, where
from .cli_help import NoSuchCommand, available, command_spec, kubectl_global_flags
from .manifests import CHART_VERSION, CHART_VERSIONS, CHARTS, DEPLOYMENTS, NAMESPACE, validate_text
from .report import record
from .sandbox import DocSandbox

HELM_REPO = ("flyteorg", "https://flyteorg.github.io/flyte")

# Where helm is not installed, its flags are checked against this list: the Helm 3 flags of the
# subcommands this guide uses (`helm <cmd> --help`), kept short on purpose. A command using a flag
# that is not here fails; check the flag in Helm's documentation and add it. True = takes a value.
_HELM_GLOBAL = {
    "--namespace": True,
    "-n": True,
    "--kube-context": True,
    "--kubeconfig": True,
    "--debug": False,
    "--help": False,
    "-h": False,
}
_HELM_RELEASE = {
    "--values": True,
    "-f": True,
    "--set": True,
    "--set-string": True,
    "--set-file": True,
    "--version": True,
    "--create-namespace": False,
    "--wait": False,
    "--timeout": True,
    "--atomic": False,
    "--dry-run": False,
    "--devel": False,
}
HELM_FLAGS: dict[tuple[str, ...], dict[str, bool]] = {
    ("install",): _HELM_RELEASE,
    ("upgrade",): {**_HELM_RELEASE, "--install": False, "-i": False, "--reuse-values": False},
    ("template",): {
        **_HELM_RELEASE,
        "--include-crds": False,
        "--output-dir": True,
        "--kube-version": True,
        "--api-versions": True,
        "--show-only": True,
        "-s": True,
    },
    ("repo", "add"): {"--force-update": False},
    ("repo", "update"): {},
    ("uninstall",): {"--wait": False, "--timeout": True},
    ("get", "values"): {"--all": False, "-a": False, "--output": True, "-o": True, "--revision": True},
}

#: This project, as pip names it, and the start of its wheel's file name.
PROJECT = "flyte-iap"
WHEEL_PREFIX = "flyte_iap"

#: Packages flyte-iap replaces (the migration guide uninstalls them).
REPLACED_PACKAGES = {"flytekitplugins-identity-aware-proxy"}

# kubectl flags whose value is a file or directory that must exist.
_KUBECTL_FILE_FLAGS = {
    "-f",
    "--filename",
    "--cert",
    "--key",
    "--from-file",
    "--from-env-file",
    "-k",
    "--kustomize",
}


@dataclass
class Command:
    text: str
    line: int
    expected: list[str] = field(default_factory=list)


def parse_console(source: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            start = first_line + i
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            commands.append(Command(text.strip(), start))
        elif commands:
            commands[-1].expected.append(line.rstrip())
        elif line.strip():
            raise BlockFailure(f"console block: output before the first `$ ` command: {line!r}")
        i += 1
    for c in commands:
        while c.expected and not c.expected[-1]:
            c.expected.pop()
    if not commands:
        raise BlockFailure("console block without a `$ ` command")
    return commands


def parse_script(source: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        start = first_line + i
        if line.startswith("$ "):
            raise BlockFailure(
                "a bash block is a script: write it without `$ ` prompts, or make it a console block"
            )
        if line and not line.startswith("#"):
            text = line
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            commands.append(Command(text, start))
        i += 1
    if not commands:
        raise BlockFailure("bash block without a command")
    return commands


# -- tokenizing -----------------------------------------------------------------------------------


def _substitutions(text: str) -> tuple[str, list[str]]:
    """Replace each ``$(...)`` by a placeholder; return the text and the inner commands."""
    inner: list[str] = []
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise BlockFailure(f"unbalanced $( in {text!r}")
            inner.append(text[i + 2 : j - 1])
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out), inner


def _simple_commands(text: str) -> list[list[list[str]]]:
    """``a | b && c`` -> [[a, b], [c]]: sequences of pipelines of argv lists, redirections removed."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    sequences: list[list[list[str]]] = [[[]]]
    tokens = list(lexer)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("&&", "||", ";"):
            sequences.append([[]])
        elif tok == "|":
            sequences[-1].append([])
        elif tok in (">", ">>", "<", "2>", "&>"):
            i += 1  # the redirection's target
            if sequences[-1][-1] and sequences[-1][-1][-1] in ("1", "2"):
                sequences[-1][-1].pop()
        else:
            sequences[-1][-1].append(tok)
        i += 1
    return [[argv for argv in seq if argv] for seq in sequences if any(seq)]


# -- output matching ------------------------------------------------------------------------------


def output_matches(expected: list[str], actual: str) -> bool:
    pattern = []
    for line in expected:
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            pattern.append(
                "[^\\n]*?".join(re.escape(part) for part in line.rstrip().split("...")) + r"[ \t]*\n"
            )
    text = "\n".join(ln.rstrip() for ln in actual.rstrip("\n").splitlines()) + "\n" if actual.strip() else ""
    return re.fullmatch("".join(pattern), text) is not None


# -- the evaluator --------------------------------------------------------------------------------


class ShellBlock:
    def __init__(self, sandbox: DocSandbox, page: str) -> None:
        self.sandbox = sandbox
        self.page = page
        self.skips: list[str] = []
        self.executed = False

    def fail(self, cmd: Command, message: str) -> BlockFailure:
        return BlockFailure(f"{where(self.page, cmd.line)}: `{cmd.text}`\n{message}")

    def run(self, commands: list[Command]) -> None:
        for cmd in commands:
            self.command(cmd)
        if self.skips:
            pytest.skip("; ".join(dict.fromkeys(self.skips)))

    def run_session(self, commands: list[Command]) -> None:
        """Run a ```` ```console session ```` block as one bash session, as a reader who pastes it.

        Background jobs, ``export``, ``. ./file`` and ``cd`` carry over from command to command. Each
        command must exit 0 and print what the page shows (every command's output is compared, and
        one that shows none must print none). ``pip`` lines are only checked: the build has no network.
        Whatever the session started is killed when it ends.
        """
        import os
        import signal
        import uuid

        marker = f"@@flyte-iap-docs-{uuid.uuid4().hex}"
        script = ["exec 2>&1"]
        shown: list[Command] = []
        for cmd in commands:
            argv = _simple_commands(_substitutions(cmd.text)[0])[0][0]
            if argv[0] in ("pip", "pip3", "pipx") or argv[1:3] == ["-m", "pip"]:
                self.static(cmd, argv, piped=False)
                continue
            script.append(f"printf '\\n{marker} {len(shown)}\\n'")
            script.append(cmd.text)
            script.append(f"printf '\\n{marker} rc %s\\n' \"$?\"")
            shown.append(cmd)
        env = self.sandbox.env()
        env["TMPDIR"] = str(self.sandbox.root)  # mktemp -d lands in the page's sandbox
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.sandbox.cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate("\n".join(script) + "\n", timeout=180)
        except subprocess.TimeoutExpired:
            out = ""
            raise self.fail(shown[0], "the session did not finish within 180 s") from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.executed = True
        parts = re.split(rf"\n?{re.escape(marker)} ", out)
        results: dict[int, tuple[str, str]] = {}
        index = -1
        for part in parts[1:]:
            head, _, body = part.partition("\n")
            if head.startswith("rc "):
                results[index] = (results.get(index, ("", ""))[0], head[3:].strip())
                if body.strip():
                    raise self.fail(shown[index], f"printed after the command ended:\n{body}")
            else:
                index = int(head)
                results[index] = (body, "")
        for i, cmd in enumerate(shown):
            output, rc = results.get(i, (None, None))
            if output is None or rc == "":
                raise self.fail(cmd, f"the session stopped before this command ended; output:\n{out[-2000:]}")
            if rc != "0":
                raise self.fail(cmd, f"exited {rc}; output:\n{output}")
            if not output_matches(cmd.expected, output):
                raise self.fail(
                    cmd,
                    "output differs from the page.\nexpected:\n"
                    + "\n".join(cmd.expected)
                    + f"\ngot:\n{output}",
                )
            record(f"console:session:{cmd.text.split()[0]}")

    def command(self, cmd: Command) -> None:
        text, inner = _substitutions(cmd.text)
        for sub in inner:
            for seq in _simple_commands(sub):
                for argv in seq:
                    self.static(cmd, argv, piped=True)
        sequences = _simple_commands(text)
        if not sequences:
            raise self.fail(cmd, "no command")
        runnable = len(sequences) == 1 and len(sequences[0]) == 1 and not inner
        ran = False
        for seq in sequences:
            piped = len(seq) > 1
            for argv in seq:
                argv, env = self._assignments(argv)
                if not piped and runnable and argv[0] in ("flyte-iap", "openssl"):
                    self.execute(cmd, argv, env)
                    ran = True
                else:
                    self.static(cmd, argv, piped=piped)
            if cmd.expected and len(sequences) == 1 and not inner and self._run_rendered_check(cmd, seq):
                ran = True
        if cmd.expected and not ran:
            raise self.fail(
                cmd,
                "shows output, but this command is only checked, not run here: drop the output "
                "or describe it in prose",
            )

    def _run_rendered_check(self, cmd: Command, seq: list[list[str]]) -> bool:
        """Run ``helm template ... | flyte-iap check - ...`` (shown with its output) on a rebuilt rendering.

        Helm cannot run in the doc tests, so stdin is the Services the chart renders for the release and
        values the command names (:func:`~_harness.manifests.chart_services`, the same rebuild the
        deployment-set checks use); ``flyte-iap check`` then runs on the page's own arguments.
        """
        if len(seq) != 2 or seq[0][:2] != ["helm", "template"] or seq[1][:3] != ["flyte-iap", "check", "-"]:
            return False
        import yaml

        from .manifests import chart_services

        argv = seq[0]
        positionals, values, version = [], [], ""
        i = 2
        while i < len(argv):
            name, eq, value = argv[i].partition("=")
            if name.startswith("-"):
                if not eq and name in ("--values", "-f", "--version", "--namespace", "-n"):
                    i += 1
                    value = argv[i]
                if name in ("--values", "-f"):
                    values.append(value)
                elif name == "--version":
                    version = value
            else:
                positionals.append(argv[i])
            i += 1
        release, chart = positionals[0], positionals[1].partition("/")[2]
        if chart == "flyte-binary" and version.startswith("v2."):
            chart = "flyte-binary-v2"
        merged: dict = {}
        for v in values:
            merged.update(yaml.safe_load((self.sandbox.cwd / v).read_text()) or {})
        rendered = yaml.safe_dump_all(chart_services(chart, release, merged), sort_keys=False)
        self.execute(cmd, seq[1], {}, stdin_text=rendered)
        return True

    @staticmethod
    def _assignments(argv: list[str]) -> tuple[list[str], dict[str, str]]:
        env: dict[str, str] = {}
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) and len(argv) > 1:
            name, _, value = argv[0].partition("=")
            env[name] = value
            argv = argv[1:]
        return argv, env

    # -- run --------------------------------------------------------------------------------------

    def execute(
        self, cmd: Command, argv: list[str], extra_env: dict[str, str], stdin_text: str | None = None
    ) -> None:
        env = self.sandbox.env()
        env.update(extra_env)
        args = [_expand(a, env) for a in argv[1:]]
        program = [sys.executable, "-m", "flyte_iap"] if argv[0] == "flyte-iap" else [argv[0]]
        try:
            proc = subprocess.run(
                [*program, *args],
                cwd=self.sandbox.cwd,
                env=env,
                input=stdin_text,
                stdin=None if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            raise self.fail(cmd, "did not finish within 180 s") from None
        self.executed = True
        record(f"console:run:{argv[0]}")
        # a shown `error:` line, or a `FAIL` line of `flyte-iap doctor`, says the page expects a failure
        shown_error = any(line.startswith(("error:", "FAIL ")) for line in cmd.expected)
        if proc.returncode != 0 and not shown_error:
            raise self.fail(cmd, f"exited {proc.returncode}; output:\n{proc.stdout}")
        if argv[0] == "flyte-iap" and not output_matches(cmd.expected, proc.stdout):
            raise self.fail(
                cmd,
                "output differs from the page.\nexpected:\n"
                + "\n".join(cmd.expected)
                + f"\ngot:\n{proc.stdout}",
            )
        if argv[0] != "flyte-iap" and cmd.expected and not output_matches(cmd.expected, proc.stdout):
            raise self.fail(
                cmd,
                "output differs from the page.\nexpected:\n"
                + "\n".join(cmd.expected)
                + f"\ngot:\n{proc.stdout}",
            )

    # -- check ------------------------------------------------------------------------------------

    def static(self, cmd: Command, argv: list[str], *, piped: bool) -> None:
        argv, _ = self._assignments(argv)
        program = argv[0]
        if program == "export":
            for assignment in argv[1:]:
                name, eq, value = assignment.partition("=")
                if not eq or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                    raise self.fail(cmd, f"export {assignment!r}: write NAME=value")
                self.sandbox.exports[name] = _expand(value, self.sandbox.env())
            record("console:export")
        elif program == "flyte-iap":
            self.check_cli(cmd, "flyte-iap", argv)
        elif program == "gcloud":
            self.check_gcloud(cmd, argv)
        elif program == "kubectl":
            self.check_kubectl(cmd, argv)
        elif program == "helm":
            self.check_helm(cmd, argv)
        elif program in ("pip", "pip3", "pipx") or argv[:3] in (
            ["python", "-m", "pip"],
            ["python3", "-m", "pip"],
        ):
            self.check_pip(cmd, argv)
        elif program == "openssl":
            raise self.fail(cmd, "openssl runs only as a command of its own (no pipes or substitutions)")
        else:
            raise self.fail(
                cmd,
                f"the doc tests have no rule for `{program}`: add one to docs/_harness/shell.py "
                'or skip the block with a reason (% skip: next "why")',
            )

    def check_cli(self, cmd: Command, tool: str, argv: list[str]) -> None:
        """Subcommands and flags of a click (flyte-iap) command, from its --help."""
        path: tuple[str, ...] = ()
        spec = command_spec(tool, path)
        i = 1
        while i < len(argv):
            tok = argv[i]
            if tok.startswith("-") and tok != "-":
                name, eq, _ = tok.partition("=")
                if name not in spec.flags:
                    raise self.fail(cmd, _unknown(f"{tool} {' '.join(path)}", name, spec.flags))
                if spec.flags[name] and not eq:
                    i += 1
            elif spec.is_group:
                if tok not in spec.subcommands:
                    raise self.fail(
                        cmd,
                        f"`{tool} {' '.join(path)}` has no command {tok!r} "
                        f"(it has: {', '.join(sorted(spec.subcommands))})",
                    )
                path = (*path, tok)
                spec = command_spec(tool, path)
            i += 1
        record(f"console:{tool}")

    def check_gcloud(self, cmd: Command, argv: list[str]) -> None:
        if not available("gcloud"):
            self.skips.append("gcloud is not installed here, so its flags cannot be checked")
            return
        path: tuple[str, ...] = ()
        spec = command_spec("gcloud", path)
        positionals: list[str] = []
        flags: list[tuple[str, bool]] = []
        for tok in argv[1:]:
            if tok.startswith("-"):
                name, eq, _ = tok.partition("=")
                flags.append((name, bool(eq)))
            elif spec.is_group:
                if tok not in spec.subcommands:
                    raise self.fail(cmd, f"`gcloud {' '.join(path)}` has no group or command {tok!r}")
                path = (*path, tok)
                spec = command_spec("gcloud", path)
            else:
                positionals.append(tok)
        if spec.is_group:
            raise self.fail(cmd, f"`gcloud {' '.join(path)}` is a command group, not a command")
        for name, has_value in flags:
            if name not in spec.flags:
                raise self.fail(cmd, _unknown(f"gcloud {' '.join(path)}", name, spec.flags))
            if spec.flags[name] and not has_value:
                raise self.fail(cmd, f"{name} takes a value: write it as {name}=VALUE")
            if not spec.flags[name] and has_value:
                raise self.fail(cmd, f"{name} is a switch and takes no value")
        missing = spec.required - {n for n, _ in flags}
        if missing:
            raise self.fail(cmd, f"`gcloud {' '.join(path)}` requires {', '.join(sorted(missing))}")
        names = [n for n, _ in flags]
        for name in sorted({n for n in names if names.count(n) > 1}):
            if not _gcloud_flag_repeatable(spec.text, name):
                raise self.fail(
                    cmd,
                    f"{name} is given {names.count(name)} times, but gcloud keeps only the last value: "
                    "write one command per value",
                )
        for arg in positionals:
            if re.search(r"\.(ya?ml|json)$", arg):
                self._check_file(cmd, arg, must_validate=True)
        record("console:gcloud")

    def check_kubectl(self, cmd: Command, argv: list[str]) -> None:
        if not available("kubectl"):
            self.skips.append("kubectl is not installed here, so its flags cannot be checked")
            return
        global_flags = kubectl_global_flags()
        path: tuple[str, ...] = ()
        spec = command_spec("kubectl", path)
        positionals: list[str] = []
        pending: list[tuple[str, str | None]] = []
        i = 1
        while i < len(argv):
            tok = argv[i]
            if tok.startswith("-") and tok != "-":
                name, eq, value = tok.partition("=")
                known = {**global_flags, **spec.flags}
                if name not in known:
                    raise self.fail(cmd, _unknown(f"kubectl {' '.join(path)}", name, known))
                if known[name] and not eq:
                    i += 1
                    if i >= len(argv):
                        raise self.fail(cmd, f"{name} needs a value")
                    value = argv[i]
                pending.append((name, value if known[name] else None))
            elif not positionals and tok in spec.subcommands:
                path = (*path, tok)
                spec = command_spec("kubectl", path)
            else:
                positionals.append(tok)
            i += 1
        if not path:
            raise self.fail(cmd, "kubectl without a command")
        known = {**global_flags, **spec.flags}
        for name, value in pending:
            if name not in known:
                raise self.fail(cmd, _unknown(f"kubectl {' '.join(path)}", name, known))
            if name in _KUBECTL_FILE_FLAGS and value and value != "-" and "$" not in value:
                self._check_file(cmd, value.split("=", 1)[-1], must_validate=name in ("-f", "--filename"))
        if path == ("create", "secret", "tls") and positionals[:1] == ["flyteadmin-tls"]:
            self.check_flyteadmin_tls(cmd, dict(pending))
        record("console:kubectl")

    def check_flyteadmin_tls(self, cmd: Command, flags: dict[str, str | None]) -> None:
        """flyteadmin in secure mode with this Secret must serve its REST API (see behaviour.py)."""
        from .behaviour import flyteadmin_rest_through_iap

        cert, key = flags.get("--cert"), flags.get("--key")
        if not cert or not key:
            raise self.fail(cmd, "the flyteadmin-tls Secret needs --cert and --key")
        problem = flyteadmin_rest_through_iap(self.sandbox.cwd / cert, self.sandbox.cwd / key)
        if problem:
            raise self.fail(
                cmd, "flyteadmin in secure mode with this certificate breaks its REST API:\n" + problem
            )
        self.executed = True
        record("console:run:flyteadmin-secure")

    def check_helm(self, cmd: Command, argv: list[str]) -> None:
        real = available("helm")
        path: tuple[str, ...] = ()
        positionals: list[str] = []
        flags: list[tuple[str, str | None]] = []
        i = 1
        while i < len(argv):
            tok = argv[i]
            if tok.startswith("-"):
                name, eq, value = tok.partition("=")
                table = self._helm_flags(cmd, path, real)
                if name not in table:
                    raise self.fail(cmd, _unknown(f"helm {' '.join(path)}", name, table))
                if table[name] and not eq:
                    i += 1
                    value = argv[i] if i < len(argv) else ""
                flags.append((name, value if table[name] else None))
            elif not path or ((path == ("repo",) or path == ("get",)) and not positionals):
                path = (*path, tok)
            else:
                positionals.append(tok)
            i += 1
        self._helm_flags(cmd, path, real)  # the final command must exist
        opts = dict(flags)
        if path in (("install",), ("upgrade",), ("template",)):
            if len(positionals) != 2:
                raise self.fail(cmd, f"write `helm {path[0]} RELEASE CHART ...`")
            release, chart_ref = positionals
            repo, _, chart = chart_ref.partition("/")
            if repo != HELM_REPO[0] or chart not in CHARTS:
                raise self.fail(
                    cmd,
                    f"chart {chart_ref!r}: this guide documents {HELM_REPO[0]}/flyte-binary and "
                    f"{HELM_REPO[0]}/flyte-core",
                )
            # flyte-binary v2.x is Flyte 2 (docs/flyte2/): its own keys, release and manifests
            if chart == "flyte-binary" and str(opts.get("--version") or "").startswith("v2."):
                chart = "flyte-binary-v2"
            version = CHART_VERSIONS.get(chart, CHART_VERSION)
            if opts.get("--version") != version:
                raise self.fail(
                    cmd,
                    f"pin the chart: --version {version} (the version the values were checked against)",
                )
            if release != DEPLOYMENTS[chart][0]:
                raise self.fail(
                    cmd,
                    f"release {release!r}: the manifests in examples/gke/{chart}/ assume the release "
                    f"name {DEPLOYMENTS[chart][0]!r}",
                )
            if (opts.get("--namespace") or opts.get("-n")) != NAMESPACE:
                raise self.fail(cmd, f"install into the namespace the manifests use: --namespace {NAMESPACE}")
            values = [v for n, v in flags if n in ("-f", "--values") and v]
            if not values:
                raise self.fail(cmd, "name the values file (--values examples/helm/...)")
            for v in values:
                self._check_file(cmd, v, must_validate=True, chart=chart)
        elif path == ("repo", "add") and tuple(positionals) != HELM_REPO:
            raise self.fail(cmd, f"the Flyte charts: helm repo add {HELM_REPO[0]} {HELM_REPO[1]}")
        record("console:helm")

    def _helm_flags(self, cmd: Command, path: tuple[str, ...], real: bool) -> dict[str, bool]:
        if not path:
            return _HELM_GLOBAL
        if real:
            try:
                return {**_HELM_GLOBAL, **command_spec("helm", path).flags}
            except NoSuchCommand as exc:
                raise self.fail(cmd, str(exc)) from None
        if path in (("repo",), ("get",)):
            return _HELM_GLOBAL
        if path not in HELM_FLAGS:
            raise self.fail(
                cmd,
                f"`helm {' '.join(path)}` is not in docs/_harness/shell.py HELM_FLAGS "
                "(helm is not installed here); check it in Helm's documentation and add it",
            )
        return {**_HELM_GLOBAL, **HELM_FLAGS[path]}

    def check_pip(self, cmd: Command, argv: list[str]) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        if "uninstall" in argv:
            names = [a for a in argv[argv.index("uninstall") + 1 :] if not a.startswith("-")]
            unknown = [n for n in names if _canonical(n) not in REPLACED_PACKAGES]
            if not names or unknown:
                raise self.fail(
                    cmd,
                    "`pip uninstall` is documented only for packages flyte-iap replaces: "
                    + ", ".join(sorted(REPLACED_PACKAGES)),
                )
            record("console:pip")
            return
        if argv[0] == "pipx" and argv[1:2] == ["inject"]:
            # pipx inject VENV REQ...: add packages to flyte-iap's own pipx environment
            if argv[2:3] != [PROJECT]:
                raise self.fail(
                    cmd, f"`pipx inject` adds packages to {PROJECT}'s environment: pipx inject {PROJECT} ..."
                )
            args = argv[3:]
        else:
            args = argv[argv.index("install") + 1 :] if "install" in argv else []
        if not args:
            raise self.fail(
                cmd, "only `pip install ...` (and uninstalling what flyte-iap replaces) is documented"
            )
        for arg in args:
            if arg.startswith("-"):
                if arg not in ("--upgrade", "-U", "--user", "--force-reinstall"):
                    raise self.fail(cmd, f"pip option {arg} is not one this guide uses")
                continue
            if _is_local_install(arg):
                self._check_local_install(cmd, arg)
                continue
            try:
                req = Requirement(arg)
            except InvalidRequirement as exc:
                raise self.fail(cmd, f"{arg!r} is not a requirement: {exc}") from None
            if _canonical(req.name) == PROJECT:
                raise self.fail(
                    cmd,
                    f"{PROJECT} is not published on a package index: install it from a clone "
                    f"(./{PROJECT}) or a built wheel (dist/{WHEEL_PREFIX}-*-py3-none-any.whl); see install.md",
                )
            if _canonical(req.name) not in known_packages():
                raise self.fail(
                    cmd, f"{req.name} is neither this project nor one of its declared dependencies"
                )
        record("console:pip")

    def _check_local_install(self, cmd: Command, arg: str) -> None:
        """A clone (``./flyte-iap``, ``.``) or the wheel ``nox -s package`` builds, with known extras."""
        path, _, extras = arg.partition("[")
        names = [e.strip() for e in extras.rstrip("]").split(",") if e.strip()] if extras else []
        declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        unknown = [n for n in names if n not in declared]
        if unknown:
            raise self.fail(
                cmd, f"{PROJECT} has no extra {', '.join(unknown)} (it has: {', '.join(declared)})"
            )
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".whl"):
            # what `nox -s package` builds: a pure-Python wheel named after the normalized project name
            if not re.fullmatch(re.escape(WHEEL_PREFIX) + r"-(\*|[0-9][0-9a-z.+]*)-py3-none-any\.whl", name):
                raise self.fail(
                    cmd,
                    f"{path}: the wheel `nox -s package` builds is {WHEEL_PREFIX}-VERSION-py3-none-any.whl",
                )
        elif path not in (".", "./") and name != PROJECT:
            raise self.fail(cmd, f"{path}: install from the clone's directory, ./{PROJECT} (or . inside it)")

    def _check_file(self, cmd: Command, name: str, *, must_validate: bool, chart: str | None = None) -> None:
        path = (self.sandbox.cwd / name) if not Path(name).is_absolute() else Path(name)
        if not path.exists():
            raise self.fail(
                cmd,
                f"{name} does not exist (paths are relative to the repository root; "
                "files made by earlier commands of the page count)",
            )
        if not must_validate:
            return
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        if not files:
            raise self.fail(cmd, f"{name} holds no YAML files")
        from .manifests import validate_file

        for f in files:
            if chart and validate_text(f.read_text(), f.resolve())[0] != f"helm-values:{chart}":
                raise self.fail(cmd, f"{name} is not a values file of {chart} (examples/helm/{chart}/)")
            problems = validate_file(f.resolve(), record_as="console-file")
            if problems:
                raise self.fail(cmd, f"{f.name}:\n  " + "\n  ".join(problems))


def _gcloud_flag_repeatable(help_text: str, name: str) -> bool:
    """Whether the help paragraph of a gcloud flag says it may be given more than once."""
    match = re.search(
        rf"^ {{5,}}{re.escape(name)}\b[^\n]*\n((?:(?! {{5}}--)[^\n]*\n)*)", help_text, re.MULTILINE
    )
    return bool(match and re.search(r"\brepeat", match.group(1), re.IGNORECASE))


def _unknown(command: str, name: str, known: dict[str, bool]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"`{command.strip()}` has no flag {name}" + (f" (did you mean {close[0]}?)" if close else "")


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def _is_local_install(arg: str) -> bool:
    """A path pip installs from (a directory or a wheel file), not a requirement on an index."""
    path = arg.partition("[")[0]
    return path in (".", "./") or "/" in path or path.endswith(".whl")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def known_packages() -> set[str]:
    """This project and everything its pyproject.toml declares."""
    from packaging.requirements import Requirement

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    for group in data.get("dependency-groups", {}).values():
        reqs += [r for r in group if isinstance(r, str)]
    names = {_canonical(project["name"])}
    for r in reqs:
        try:
            names.add(_canonical(Requirement(r).name))
        except Exception:
            continue
    return names
