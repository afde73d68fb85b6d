"""Presenting findings (text for people, JSON for machines) and the rule list for the docs.

Example::

    from flyte_iap.manifest_check.report import format_text, rules_markdown

    print(format_text(findings), summary_line(findings, files=2, objects=40))
    markdown = rules_markdown()  # the reference page's rule list, generated from the registry
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from flyte_iap import __version__
from flyte_iap.manifest_check.loader import printable
from flyte_iap.manifest_check.registry import ERROR, RULES, WARNING, Finding, Rule

_WIDTH = 100


def summary(findings: Sequence[Finding], *, files: int, objects: int) -> dict[str, int]:
    """Counts for the summary line and the JSON ``summary`` object."""
    return {
        "errors": sum(f.severity == ERROR for f in findings),
        "warnings": sum(f.severity == WARNING for f in findings),
        "files": files,
        "objects": objects,
    }


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text,
        _WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_text(findings: Sequence[Finding]) -> str:
    """One block per finding: ``file:line: RULE severity: object``, what is wrong, the fix, the link.

    Blocks are separated by a blank line; the text is empty when there is no finding. Control
    characters from the input (object names, hosts, file names) are shown escaped, never sent to the
    terminal.
    """
    blocks = []
    for f in findings:
        lines = [f"{printable(f.file)}:{f.line}: {f.rule} {f.severity}: {printable(f.object)}"]
        lines += _wrap(printable(f.message), "  ", "  ")
        lines += _wrap(printable(f.fix), "  fix: ", "       ")
        lines.append(f"  see: {f.url}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def summary_line(findings: Sequence[Finding], *, files: int, objects: int) -> str:
    """``2 errors, 1 warning (3 files, 41 objects checked)`` or ``no problems found (...)``."""
    counts = summary(findings, files=files, objects=objects)
    checked = f"{_plural(files, 'file')}, {_plural(objects, 'object')} checked"
    if not findings:
        return f"no problems found ({checked})"
    return f"{_plural(counts['errors'], 'error')}, {_plural(counts['warnings'], 'warning')} ({checked})"


def format_json(findings: Sequence[Finding], *, files: int, objects: int) -> str:
    """``{"version", "findings": [...], "summary": {...}}`` as indented JSON."""
    document = {
        "tool": "flyte-iap",
        "version": __version__,
        "findings": [f.to_dict() for f in findings],
        "summary": summary(findings, files=files, objects=objects),
    }
    return json.dumps(document, indent=2) + "\n"


def format_json_error(message: str, hint: str) -> str:
    """The JSON document for input that cannot be checked (exit status 2): no findings, an ``error``."""
    document = {
        "tool": "flyte-iap",
        "version": __version__,
        "error": {"message": message, "hint": hint},
        "findings": [],
    }
    return json.dumps(document, indent=2) + "\n"


def _rule_markdown(rule: Rule, heading: str, link_style: str) -> str:
    guide = f"{{doc}}`/{rule.page}`" if link_style == "doc" else f"<{rule.url}>"
    return "\n".join(
        [
            f"({rule.id.lower()})=",
            f"{heading} {rule.id}: {rule.title}",
            "",
            f"**Severity:** {rule.severity} · **Name:** `{rule.name}` · **Guide:** {guide}",
            "",
            rule.description,
            "",
            f"**How to fix:** {rule.fix}",
            "",
        ]
    )


def rules_markdown(*, heading_level: int = 2, link_style: str = "doc") -> str:
    """The registered rules as MyST Markdown, for the docs' rule reference page.

    Each rule gets a heading ``IAPnnn: title`` with the target ``(iapnnn)=`` (so pages can link to
    ``reference/check-rules.md#iap001``), its severity, name, guide page, description and fix.

    Args:
        heading_level: ``2`` for ``##`` headings.
        link_style: ``"doc"`` links guide pages with MyST's ``{doc}`` role (inside the Sphinx site);
            ``"url"`` with absolute links to ``DOCS_URL``.

    Returns:
        The Markdown text.

    Raises:
        ValueError: unknown ``link_style`` or a heading level outside 1-6.
    """
    if link_style not in ("doc", "url"):
        raise ValueError("link_style must be 'doc' or 'url'")
    if not 1 <= heading_level <= 6:
        raise ValueError("heading_level must be between 1 and 6")
    heading = "#" * heading_level
    return "\n".join(_rule_markdown(RULES[r], heading, link_style) for r in sorted(RULES))
