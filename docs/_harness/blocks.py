"""Find every fenced block and code directive of a page and pick what evaluates it.

Example (what ``docs/conftest.py`` does)::

    pytest_collect_file = Sybil(parsers=[DocBlockParser(), SkipParser(), ClearNamespaceParser()],
                                patterns=["*.md"], fixtures=["doc"]).pytest()

Unlike sybil's per-language parsers, :class:`DocBlockParser` yields a region for *every* fence, so a
block in a language nobody evaluates fails instead of passing unseen:

=====================================  ===========================================================
``python`` (and ``% invisible-code-``  executed in the page's namespace (``>>>`` blocks as doctests)
``block: python`` setup)
``console``, ``bash``, ``sh``          :mod:`_harness.shell` (```` ```console session ````: the
                                       whole transcript runs in one real bash)
``yaml``                               :mod:`_harness.manifests` (and must not copy a file of
                                       ``examples/``: include it instead)
``json``                               parsed
``{literalinclude} path``              the file is validated by its type and counted
``{code-cell}`` in a myst-nb page      run by the Sphinx build (myst-nb); counted, not run twice
container directives (``{note}`` ...)  not code; their nested fences are found on their own
anything else                          fails, naming ``page.md:LINE``
=====================================  ===========================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sybil import Document, Example, Region
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.abstract.doctest import DocTestStringParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer
from sybil.parsers.myst.lexers import DirectiveInPercentCommentLexer

from . import DOCS, BlockFailure, where
from .manifests import copied_from_examples, run_flyte_iap_check, validate_file, validate_text
from .report import NOTEBOOK, record
from .shell import ShellBlock, parse_console, parse_script

# Directives that hold prose or other blocks, not code of their own.
CONTAINERS = {
    "note",
    "warning",
    "tip",
    "important",
    "caution",
    "danger",
    "attention",
    "hint",
    "error",
    "seealso",
    "admonition",
    "tab-set",
    "tab-item",
    "tab-set-code",
    "dropdown",
    "grid",
    "grid-item",
    "grid-item-card",
    "card",
    "figure",
    "image",
    "toctree",
    "eval-rst",
    "contents",
    "glossary",
    "list-table",
    "csv-table",
    "table",
    "rubric",
    "topic",
    "sidebar",
    "margin",
    "epigraph",
    "versionadded",
    "versionchanged",
    "deprecated",
    "automodule",
    "autoclass",
    "autofunction",
    "autoexception",
    "glue",
    "glue:figure",
    # generated from flyte-iap's code by docs/_ext/flyte_iap_docs.py: nothing written in the page to check
    "flyte-iap-check-rules",
    "flyte-iap-endpoint-overrides",
}
PYTHON = {"python", "py", "python3"}
SHELL_TRANSCRIPT = {"console", "shell-session"}
SHELL_SCRIPT = {"bash", "sh", "shell"}


class DocBlockParser:
    def __init__(self) -> None:
        self.fences = FencedCodeBlockLexer(
            language=r"[^\n]*", mapping={"language": "info", "source": "source"}
        )
        self.invisible = [
            DirectiveInPercentCommentLexer(directive=r"(invisible-)?code(-block)?", arguments=".+"),
            DirectiveInHTMLCommentLexer(directive=r"(invisible-)?code(-block)?", arguments=".+"),
        ]
        self.python = PythonEvaluator()
        self.doctests = DocTestStringParser(DocTestEvaluator())

    def __call__(self, document: Document) -> Iterable[Region]:
        notebook = is_notebook(document.text)
        for region in self.fences(document):
            info = region.lexemes["info"].strip()
            source = region.lexemes["source"]
            name, args = _directive(info)
            if name is None:
                yield from self._code(region, info.split()[0] if info else "", source, document)
                if info.split()[1:2] == ["session"] and info.split()[0] in SHELL_TRANSCRIPT:
                    # ```console session: one bash session a reader pastes whole (_harness.shell)
                    region.parsed = (*region.parsed, True)
            elif name in CONTAINERS:
                continue
            elif name in ("code-block", "code", "sourcecode"):
                yield from self._code(
                    region, args.split()[0] if args else "", _strip_options(source), document
                )
            elif name == "code-cell":
                if not notebook:
                    yield _failing(
                        region,
                        "{code-cell} only belongs in a myst-nb page (front matter file_format: mystnb)",
                    )
                else:
                    region.parsed = source
                    region.evaluator = _notebook_cell
                    yield region
            elif name == "literalinclude":
                region.parsed = (args, _options(source))
                region.evaluator = _literalinclude
                yield region
            else:
                yield _failing(
                    region,
                    f"directive {{{name}}} is neither code the doc tests know nor a container: "
                    "add it to docs/_harness/blocks.py",
                )
        for lexer in self.invisible:
            for region in lexer(document):
                language = region.lexemes["arguments"].strip()
                yield from self._code(region, language, region.lexemes["source"], document)

    def _code(self, region: Region, language: str, source: Any, document: Document) -> Iterable[Region]:
        if language in PYTHON:
            if str(source).lstrip().startswith(">>>"):
                for doctest_region in self.doctests(str(source), document.path):
                    doctest_region.adjust(region, source)
                    doctest_region.evaluator = _counted("doctest", doctest_region.evaluator)
                    yield doctest_region
                return
            region.parsed = source
            region.evaluator = _counted("python", self.python)
        elif language in SHELL_TRANSCRIPT | SHELL_SCRIPT:
            region.parsed = (language, source)
            region.evaluator = _shell
        elif language in ("yaml", "yml"):
            region.parsed = source
            region.evaluator = _yaml
        elif language == "json":
            region.parsed = source
            region.evaluator = _json
        else:
            region.parsed = None
            region.evaluator = _fail_with(
                f"a ```{language or '(no language)'}``` block: the doc tests run or validate python, console, "
                "bash, yaml and json blocks; use one of those, include the file, or skip the block with a "
                'reason (% skip: next "why")'
            )
        yield region


def is_notebook(text: str) -> bool:
    head = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    return bool(head and re.search(r"^file_format:\s*mystnb\s*$", head.group(1), re.MULTILINE))


def _directive(info: str) -> tuple[str | None, str]:
    m = re.fullmatch(r"\{([a-zA-Z0-9:_-]+)\}\s*(.*)", info)
    return (m.group(1), m.group(2).strip()) if m else (None, "")


def _options(source: str) -> dict[str, str]:
    return dict(re.findall(r"^[ \t]*:([\w-]+):[ \t]*(.*)$", str(source), re.MULTILINE))


def _strip_options(source: Any) -> str:
    text = str(source)
    text = re.sub(r"\A(?:[ \t]*:[\w-]+:.*\n)+", "", text)
    return re.sub(r"\A[ \t]*---\n.*?\n[ \t]*---\n", "", text, flags=re.DOTALL)


def _line(example: Example) -> int:
    """The first line of a block's content (the line after its opening fence)."""
    return example.line + 1


def _failing(region: Region, message: str) -> Region:
    region.parsed = None
    region.evaluator = _fail_with(message)
    return region


def _fail_with(message: str) -> Any:
    def evaluate(example: Example) -> str:
        return f"{where(example.path, example.line)}: {message}"

    return evaluate


def _counted(kind: str, evaluator: Any) -> Any:
    def evaluate(example: Example) -> Any:
        record(kind)
        return evaluator(example)

    return evaluate


def _notebook_cell(example: Example) -> None:
    record(NOTEBOOK)


def _shell(example: Example) -> str | None:
    language, source, *session = example.parsed
    sandbox = example.namespace["doc"]
    try:
        commands = (
            parse_console(str(source), _line(example))
            if language in SHELL_TRANSCRIPT
            else parse_script(str(source), _line(example))
        )
        if session:
            ShellBlock(sandbox, example.path).run_session(commands)
            return None
        ShellBlock(sandbox, example.path).run(commands)
    except BlockFailure as exc:
        message = str(exc)
        return message if message.startswith("docs/") else f"{where(example.path, example.line)}: {message}"
    return None


def _yaml(example: Example) -> str | None:
    text = str(example.parsed)
    copied = copied_from_examples(text)
    if copied:
        return (
            f"{where(example.path, example.line)}: this block copies {copied}; include the file instead "
            "(```{literalinclude} ...```) so the page shows exactly what the tests validate"
        )
    kind, problems = validate_text(text)
    record(f"yaml:{kind}")
    if not problems and kind == "k8s":
        problems = run_flyte_iap_check(text, where(example.path, example.line))
    if problems:
        return f"{where(example.path, example.line)}: {kind}:\n  " + "\n  ".join(problems)
    return None


def _json(example: Example) -> str | None:
    try:
        json.loads(str(example.parsed))
    except json.JSONDecodeError as exc:
        return f"{where(example.path, _line(example) + exc.lineno - 1)}: not valid JSON: {exc.msg}"
    record("json")
    return None


def _literalinclude(example: Example) -> str | None:
    target, options = example.parsed
    page = Path(example.path)
    path = (DOCS / target.lstrip("/")) if target.startswith("/") else (page.parent / target)
    path = path.resolve()
    here = where(example.path, example.line)
    if not path.is_file():
        return f"{here}: {{literalinclude}} {target}: no such file"
    if path.suffix in (".yaml", ".yml"):
        if options.get("language", "yaml") != "yaml":
            return f"{here}: {target} is YAML; give it :language: yaml"
        problems = validate_file(path)
    elif path.suffix == ".json":
        try:
            json.loads(path.read_text())
            problems = []
            record("include:json")
        except json.JSONDecodeError as exc:
            problems = [f"not valid JSON: {exc}"]
    elif path.suffix == ".py":
        try:
            compile(path.read_text(), str(path), "exec")
            problems = []
            record("include:python-syntax")
        except SyntaxError as exc:
            problems = [f"not valid Python: {exc}"]
    else:
        return f"{here}: the doc tests cannot validate {path.suffix} files; add a rule to docs/_harness/blocks.py"
    if problems:
        return f"{here}: {target}:\n  " + "\n  ".join(problems)
    return None
