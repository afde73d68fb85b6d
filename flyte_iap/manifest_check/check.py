"""Running the rules over manifests: the entry points behind ``flyte-iap check``.

Example::

    from flyte_iap.manifest_check import check_paths

    findings = check_paths(["rendered.yaml", "gke/"])
    errors = [f for f in findings if f.severity == "error"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TextIO

from flyte_iap.errors import ConfigurationError
from flyte_iap.manifest_check.index import Index
from flyte_iap.manifest_check.loader import Manifest, load_paths, load_text
from flyte_iap.manifest_check.registry import RULES, Context, Finding, ignored_rules
from flyte_iap.manifest_check.topology import Topology


def _ignore_set(ignore: Iterable[str]) -> set[str]:
    wanted = {r.strip().upper() for r in ignore if r.strip()}
    unknown = sorted(wanted - set(RULES))
    if unknown:
        raise ConfigurationError(
            f"unknown rule ID {', '.join(unknown)}",
            f"rule IDs are {', '.join(sorted(RULES))}",
        )
    return wanted


def check_manifests(
    manifests: Iterable[Manifest],
    *,
    partial: bool = False,
    ignore: Iterable[str] = (),
    strict: bool = False,
) -> list[Finding]:
    """Run every rule over already-loaded manifests.

    Args:
        manifests: the objects to check together (see :func:`~flyte_iap.manifest_check.loader.load_text`).
        partial: the input is knowingly incomplete: do not report references to objects outside it.
        ignore: rule IDs not to run.
        strict: a reference to an object that is not in the input is an error, not a warning.

    Returns:
        The findings, ordered by file (input order), line and rule ID.

    Raises:
        ConfigurationError: ``ignore`` names a rule that does not exist.
        ManifestError: configuration embedded in a ConfigMap or Secret is too nested or too expanded
            by aliases to be read.
    """
    skip = _ignore_set(ignore)
    objects = list(manifests)
    file_order = {name: n for n, name in enumerate(dict.fromkeys(o.file for o in objects))}
    context = Context(Topology(Index(objects)), partial=partial, strict=strict)
    findings: dict[tuple[str, str, str, int, str], Finding] = {}
    for rule_id in sorted(RULES):
        if rule_id in skip:
            continue
        context.rule = RULES[rule_id]
        for finding in RULES[rule_id].check(context):
            if finding is None or finding.rule in ignored_rules(finding.source):
                continue
            findings.setdefault(
                (finding.rule, finding.object, finding.file, finding.line, finding.message), finding
            )
    return sorted(findings.values(), key=lambda f: (file_order.get(f.file, len(file_order)), f.line, f.rule))


def check_text(
    text: str,
    filename: str = "<stdin>",
    *,
    partial: bool = False,
    ignore: Iterable[str] = (),
    strict: bool = False,
) -> list[Finding]:
    """Check multi-document YAML given as a string (e.g. ``helm template`` output).

    Args:
        text: the manifests.
        filename: how findings name the input.
        partial: see :func:`check_manifests`.
        ignore: rule IDs not to run.
        strict: see :func:`check_manifests`.

    Returns:
        The findings (see :func:`check_manifests`).

    Raises:
        ManifestError: the text is not valid YAML (or too nested, or an alias bomb).
        ConfigurationError: ``ignore`` names a rule that does not exist.
    """
    return check_manifests(load_text(text, filename), partial=partial, ignore=ignore, strict=strict)


def check_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    partial: bool = False,
    ignore: Iterable[str] = (),
    stdin: TextIO | None = None,
    strict: bool = False,
    per_dir: bool = False,
) -> list[Finding]:
    """Check manifest files and directories (``-`` reads standard input).

    Directories are walked for ``*.yaml`` and ``*.yml`` (skipping hidden directories and Helm charts'
    ``templates/``). Everything given is one deployment, where references between files resolve,
    unless ``per_dir``: then the files of each directory are one deployment of their own (for a tree
    of alternatives, such as ``examples/gke/flyte-binary`` next to ``examples/gke/flyte-core``).

    Args:
        paths: files, directories, or ``-``.
        partial: see :func:`check_manifests`.
        ignore: rule IDs not to run.
        stdin: the stream ``-`` reads (default ``sys.stdin``).
        strict: see :func:`check_manifests`.
        per_dir: check the files of each directory (and standard input) apart.

    Returns:
        The findings (see :func:`check_manifests`).

    Raises:
        ManifestError: a path is missing or unreadable, or holds invalid YAML.
        ConfigurationError: ``ignore`` names a rule that does not exist.
    """
    manifests, _ = load_paths(paths, stdin)
    findings: list[Finding] = []
    for group in deployments(manifests, per_dir=per_dir):
        findings += check_manifests(group, partial=partial, ignore=ignore, strict=strict)
    return findings


def deployments(manifests: Iterable[Manifest], *, per_dir: bool) -> list[list[Manifest]]:
    """The objects as the deployments to check: one, or one per directory of the files they came from."""
    objects = list(manifests)
    if not per_dir:
        return [objects] if objects else []
    groups: dict[str, list[Manifest]] = {}
    for obj in objects:
        groups.setdefault(os.path.dirname(obj.file) if obj.file != "<stdin>" else obj.file, []).append(obj)
    return list(groups.values())
