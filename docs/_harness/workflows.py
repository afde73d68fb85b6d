"""GitHub Actions workflows under ``examples/ci/``: structure, and every ``flyte-iap`` command they run.

Example::

    problems = validate_github_workflow(yaml.safe_load(text), REPO)

What is checked (GitHub itself cannot be run here; ``tests/sa/test_examples.py`` runs the workflow's
token flow against the fakes):

- the file is a workflow: ``on`` and ``jobs``, each job with ``runs-on`` and steps that each have
  exactly one of ``uses`` and ``run``;
- a job that authenticates with Workload Identity Federation (``google-github-actions/auth`` with
  ``workload_identity_provider``) may ask GitHub for an OIDC token (``permissions: id-token: write``);
- every ``flyte-iap`` command in a ``run`` script names a real subcommand and real flags
  (``flyte-iap ... --help``), and every ``--config FILE`` exists in the repository.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from .cli_help import command_spec


def validate_github_workflow(data: Any, repo: Path) -> list[str]:
    if not isinstance(data, dict):
        return ["not a GitHub Actions workflow (a mapping with `on` and `jobs`)"]
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if "on" not in data and True not in data:
        return ["no `on:` trigger: not a GitHub Actions workflow"]
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        return ["no `jobs:`"]
    problems: list[str] = []
    for name, job in jobs.items():
        if not isinstance(job, dict) or "runs-on" not in job or not isinstance(job.get("steps"), list):
            problems.append(f"job {name}: needs `runs-on` and a list of `steps`")
            continue
        permissions = {**(data.get("permissions") or {}), **(job.get("permissions") or {})}
        for i, step in enumerate(job["steps"]):
            where = f"job {name}, step {i + 1}"
            if not isinstance(step, dict) or ("uses" in step) == ("run" in step):
                problems.append(f"{where}: a step has exactly one of `uses` and `run`")
                continue
            uses = str(step.get("uses", ""))
            federated = uses.startswith("google-github-actions/auth@") and "workload_identity_provider" in (
                step.get("with") or {}
            )
            if federated and permissions.get("id-token") != "write":
                problems.append(f"{where}: Workload Identity Federation needs `permissions: id-token: write`")
            if "run" in step:
                problems += [f"{where}: {p}" for p in _check_script(str(step["run"]), repo)]
    return problems


def _check_script(script: str, repo: Path) -> list[str]:
    problems: list[str] = []
    # `run: >-` folds lines; `run: |` keeps them: either way each line is a command, or part of one.
    for line in script.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            problems.append(f"cannot parse `{line.strip()}`: {exc}")
            continue
        for i, word in enumerate(words):
            if word == "--config" and i + 1 < len(words) and not (repo / words[i + 1]).is_file():
                problems.append(f"--config {words[i + 1]}: no such file in the repository")
        if "flyte-iap" in words:
            argv = words[words.index("flyte-iap") :]
            argv = argv[: next((k for k, w in enumerate(argv) if w in (">", "|", "&&", ";")), len(argv))]
            problems += _check_flyte_iap(argv)
    return problems


def _check_flyte_iap(argv: list[str]) -> list[str]:
    path: tuple[str, ...] = ()
    spec = command_spec("flyte-iap", path)
    i = 1
    while i < len(argv):
        token = argv[i]
        if re.fullmatch(r"-{1,2}[\w-]+(=.*)?", token):
            name, eq, _ = token.partition("=")
            if name not in spec.flags:
                return [f"`flyte-iap {' '.join(path)}` has no flag {name}"]
            if spec.flags[name] and not eq:
                i += 1
        elif spec.is_group:
            if token not in spec.subcommands:
                return [f"`flyte-iap` has no command {token!r}"]
            path = (*path, token)
            spec = command_spec("flyte-iap", path)
        i += 1
    missing = spec.required - {a.partition("=")[0] for a in argv}
    return [f"`flyte-iap {' '.join(path)}` requires {', '.join(sorted(missing))}"] if missing else []
