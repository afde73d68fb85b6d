"""``--help`` output of gcloud, kubectl, helm and flyte-iap, parsed into subcommands and flags.

Example::

    spec = command_spec("gcloud", ("compute", "addresses", "create"))
    assert "--global" in spec.flags and spec.flags["--global"] is False   # a boolean flag

Help texts are cached under ``docs/_build/.cache/help/``, keyed by the tool's path, size and
modification time, so a second run of the doc tests costs no ``gcloud`` start-up (about a second each).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import CACHE

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CommandSpec:
    """What one command accepts. ``flags`` maps ``--name`` (and ``-x``) to whether it takes a value."""

    tool: str
    path: tuple[str, ...]
    is_group: bool
    subcommands: set[str] = field(default_factory=set)
    flags: dict[str, bool] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    text: str = ""


class NoSuchCommand(Exception):
    """The tool rejects ``--help`` for this command path."""


def available(tool: str) -> bool:
    """Whether ``tool`` can be asked for help on this machine (flyte-iap always can)."""
    return tool == "flyte-iap" or shutil.which(tool) is not None


def _tool_key(tool: str) -> str:
    if tool == "flyte-iap":
        import flyte_iap

        base = Path(flyte_iap.__file__).parent
        stamp = max(p.stat().st_mtime_ns for p in base.rglob("*.py"))
        return f"flyte-iap-{stamp}"
    exe = shutil.which(tool)
    assert exe is not None
    real = Path(exe).resolve()
    st = real.stat()
    extra = ""
    version_file = real.parent.parent / "VERSION"  # the Cloud SDK keeps its version here
    if version_file.is_file():
        extra = version_file.read_text().strip()
    return f"{tool}-{real}-{st.st_size}-{st.st_mtime_ns}-{extra}"


def _run_help(tool: str, path: tuple[str, ...]) -> str:
    env = dict(os.environ)
    if tool == "flyte-iap":
        argv = [sys.executable, "-m", "flyte_iap", *path, "--help"]
    elif tool == "gcloud":
        argv = ["gcloud", *path, "--help"]
        # A private, empty gcloud configuration: help never needs the user's and must not write it.
        env["CLOUDSDK_CONFIG"] = tempfile.mkdtemp(prefix="gcloud-help-")
        env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
        env["CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK"] = "1"
        env["PAGER"] = "cat"
    elif tool == "kubectl" and path == ("options",):
        argv = ["kubectl", "options"]
    else:
        argv = [tool, *path, "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    text = _ANSI.sub("", proc.stdout)
    if proc.returncode != 0 or not text.strip():
        raise NoSuchCommand(
            f"`{' '.join([tool, *path])} --help` failed: {_ANSI.sub('', proc.stderr).strip()[:300]}"
        )
    return text


def help_text(tool: str, path: tuple[str, ...]) -> str:
    """The help of ``tool path...``, from the cache when the tool has not changed."""
    key = hashlib.sha256(f"{_tool_key(tool)}|{' '.join(path)}".encode()).hexdigest()[:32]
    cache_dir = CACHE / "help"
    cached = cache_dir / f"{tool}-{key}.txt"
    missing = cache_dir / f"{tool}-{key}.missing"
    if cached.is_file():
        return cached.read_text()
    if missing.is_file():
        raise NoSuchCommand(missing.read_text())
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        text = help_text_uncached(tool, path)
    except NoSuchCommand as exc:
        _atomic_write(missing, str(exc))
        raise
    _atomic_write(cached, text)
    return text


def help_text_uncached(tool: str, path: tuple[str, ...]) -> str:
    return _run_help(tool, path)


def _atomic_write(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


# -- gcloud ---------------------------------------------------------------------------------------

_GCLOUD_SECTION = re.compile(r"^([A-Z][A-Z ]+)$", re.MULTILINE)
# Flags that every gcloud command takes; True when the flag needs a value.
_GCLOUD_WIDE = {
    "--access-token-file": True,
    "--account": True,
    "--billing-project": True,
    "--configuration": True,
    "--flags-file": True,
    "--flatten": True,
    "--format": True,
    "--help": False,
    "--impersonate-service-account": True,
    "--log-http": False,
    "--project": True,
    "--quiet": False,
    "-q": False,
    "--trace-token": True,
    "--user-output-enabled": False,
    "--verbosity": True,
}


# A flag's header line in a FLAGS section: "     --zone=ZONE, -z ZONE". Directly required flags sit
# at five spaces; members of "exactly one of these" groups deeper. Description lines have more words.
_GCLOUD_FLAG_HEADER = re.compile(
    # a value may be followed by its default: `--network=NETWORK; default="default"`
    r"^( {5,})(--(?:\[no-\])?[a-z0-9][a-z0-9_-]*)(=\S+?)?(?:; default=\S+)?(?:, (-[a-zA-Z])(?: \S+)?)?[ \t]*$",
    re.MULTILINE,
)


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    matches = list(_GCLOUD_SECTION.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out[m.group(1).strip()] = text[m.end() : end]
    return out


def _gcloud_spec(path: tuple[str, ...]) -> CommandSpec:
    text = help_text("gcloud", path)
    sections = _sections(text)
    synopsis = sections.get("SYNOPSIS", "")
    is_group = bool(re.search(r"\b(GROUP|COMMAND)\b", synopsis)) and (
        "COMMANDS" in sections or "GROUPS" in sections
    )
    spec = CommandSpec("gcloud", path, is_group, text=text)
    for name in ("GROUPS", "COMMANDS"):
        spec.subcommands |= set(
            re.findall(r"^     ([a-z][a-z0-9-]*)\s*$", sections.get(name, ""), re.MULTILINE)
        )
    spec.flags.update(_GCLOUD_WIDE)
    for title, body in sections.items():
        # resource arguments list their attribute flags (`--location=LOCATION`) with the positionals
        if ("FLAGS" not in title and title != "POSITIONAL ARGUMENTS") or title == "GCLOUD WIDE FLAGS":
            continue
        for m in _GCLOUD_FLAG_HEADER.finditer(body):
            indent, name, value, short = m.group(1), m.group(2), m.group(3), m.group(4)
            takes_value = bool(value)
            names = [name.replace("[no-]", ""), name.replace("[no-]", "no-")] if "[no-]" in name else [name]
            if short:
                names.append(short)
            for n in names:
                spec.flags.setdefault(n, takes_value and "[no-]" not in name)
            if title == "REQUIRED FLAGS" and len(indent) == 5:
                spec.required.add(name)
    return spec


# -- kubectl and helm (cobra) ---------------------------------------------------------------------

_COBRA_FLAG_KUBECTL = re.compile(
    r"^\s+(?:(-[a-zA-Z]), )?(--[a-z0-9][a-z0-9-]*)=('?[^:]*?'?):\s*$", re.MULTILINE
)
_COBRA_FLAG_HELM = re.compile(
    r"^\s+(?:(-[a-zA-Z]), )?\s*(--[a-z0-9][a-z0-9-]*)(?: ([a-zA-Z]+))?\s{2,}", re.MULTILINE
)


def _add_kubectl_flags(flags: dict[str, bool], text: str) -> None:
    """Flags in kubectl's help layout; a flag takes a value unless its default is a boolean."""
    for m in _COBRA_FLAG_KUBECTL.finditer(text):
        short, name, default = m.group(1), m.group(2), m.group(3).strip("'")
        takes = default not in ("false", "true")
        flags[name] = takes
        if short:
            flags[short] = takes


def _cobra_spec(tool: str, path: tuple[str, ...]) -> CommandSpec:
    text = help_text(tool, path)
    spec = CommandSpec(tool, path, False, text=text)
    for block in re.finditer(r"^[A-Z][^\n]*[Cc]ommands[^\n]*:\n((?:  +\S.*\n)+)", text, re.MULTILINE):
        spec.subcommands |= set(re.findall(r"^  ([a-z][a-z0-9-]*)\s", block.group(1), re.MULTILINE))
    spec.is_group = bool(spec.subcommands)
    _add_kubectl_flags(spec.flags, text)
    for m in _COBRA_FLAG_HELM.finditer(text):
        short, name, typ = m.group(1), m.group(2), m.group(3)
        if name in spec.flags:
            continue
        spec.flags[name] = bool(typ)
        if short:
            spec.flags[short] = bool(typ)
    spec.flags.setdefault("--help", False)
    spec.flags.setdefault("-h", False)
    return spec


@cache
def kubectl_global_flags() -> dict[str, bool]:
    flags: dict[str, bool] = {}
    _add_kubectl_flags(flags, help_text("kubectl", ("options",)))
    return flags


# -- click (flyte-iap) ----------------------------------------------------------------------------


def _click_spec(path: tuple[str, ...]) -> CommandSpec:
    text = help_text("flyte-iap", path)
    spec = CommandSpec("flyte-iap", path, False, text=text)
    commands = re.search(r"^Commands:\n((?:  .*\n?)+)", text, re.MULTILINE)
    if commands:
        spec.subcommands = set(re.findall(r"^  ([a-z][a-z0-9-]*)", commands.group(1), re.MULTILINE))
        spec.is_group = True
    options = re.search(r"^Options:\n((?:(?:  .*)?\n?)+)", text, re.MULTILINE)
    if options:
        for m in re.finditer(
            r"^  +((?:-\w, )?--[a-z0-9][a-z0-9-_]*(?: / --[a-z0-9-]+)?)( [A-Z][A-Z_|\[\].]*| [a-z]+| \S+)?",
            options.group(1),
            re.MULTILINE,
        ):
            names, metavar = m.group(1), (m.group(2) or "").strip()
            takes = bool(metavar) and not metavar.startswith("/")
            for name in re.split(r"[ ,/]+", names):
                if name.startswith("-"):
                    spec.flags[name] = takes
    spec.flags.setdefault("--help", False)
    spec.flags.setdefault("-h", False)
    return spec


@cache
def command_spec(tool: str, path: tuple[str, ...]) -> CommandSpec:
    """The parsed help of ``tool path...``; raises :class:`NoSuchCommand` when there is no such command."""
    if tool == "gcloud":
        return _gcloud_spec(path)
    if tool == "flyte-iap":
        return _click_spec(path)
    return _cobra_spec(tool, path)
