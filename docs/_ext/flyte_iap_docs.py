"""Sphinx directives that render reference material from flyte-iap's own code, so pages cannot drift.

Usage in a MyST page::

    ```{flyte-iap-check-rules}
    ```

    ```{flyte-iap-endpoint-overrides}
    ```

``flyte-iap-check-rules`` renders every rule of :data:`flyte_iap.manifest_check.RULES` (through
:func:`flyte_iap.manifest_check.rules_markdown`, which gives each rule the target ``iapNNN``);
``flyte-iap-endpoint-overrides`` renders :data:`flyte_iap.endpoints.OVERRIDES` as a table. Both parse
their generated Markdown as MyST, so they are meant for MyST pages, and both make Sphinx rebuild the
page when the module they read changes.

The extension also makes sphinx-click render the CLI's help texts as they read in a terminal: they
mark commands with single backticks (Markdown), which reST would otherwise turn into italics.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class _GeneratedMarkdown(SphinxDirective):
    """Parse Markdown produced by flyte-iap as if it were written in the page."""

    has_content = False
    #: modules whose source files the output depends on
    sources: tuple[str, ...] = ()

    def markdown(self) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        for name in self.sources:
            module = importlib.import_module(name)
            if module.__file__:
                self.env.note_dependency(module.__file__)
        container = nodes.container()
        lines = StringList(self.markdown().splitlines(), source=self.get_source_info()[0])
        self.state.nested_parse(lines, self.content_offset, container, match_titles=True)
        return list(container.children)


class CheckRules(_GeneratedMarkdown):
    """Every ``flyte-iap check`` rule: heading ``IAPnnn: title``, severity, guide page, description, fix."""

    sources = (
        "flyte_iap.manifest_check.registry",
        "flyte_iap.manifest_check.report",
        "flyte_iap.manifest_check.rules_backend",
        "flyte_iap.manifest_check.rules_frontend",
        "flyte_iap.manifest_check.rules_grpc",
        "flyte_iap.manifest_check.rules_ingress",
    )

    def markdown(self) -> str:
        from flyte_iap.manifest_check import rules_markdown

        return rules_markdown(heading_level=2, link_style="doc")


class EndpointOverrides(_GeneratedMarkdown):
    """The ``FLYTE_IAP_*_URI`` variables and the Google endpoint each one replaces."""

    sources = ("flyte_iap.endpoints",)

    def markdown(self) -> str:
        from flyte_iap.endpoints import OVERRIDES

        rows = ["| Variable | Default |", "|---|---|"]
        rows += [f"| `{name}` | `{default}` |" for name, default in OVERRIDES.items()]
        return "\n".join(rows)


_SINGLE_BACKTICKS = re.compile(r"(?<![`\w])`([^`\n]+)`(?![`\w_])")


def _literal_backticks(app: Sphinx, ctx: Any, lines: list[str]) -> None:
    """`flyte-iap token` in a click help text is code, as in Markdown: make it reST's ``literal``."""
    lines[:] = [_SINGLE_BACKTICKS.sub(r"``\1``", line) for line in lines]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("flyte-iap-check-rules", CheckRules)
    app.add_directive("flyte-iap-endpoint-overrides", EndpointOverrides)
    app.setup_extension("sphinx_click")
    for event in ("description", "options", "arguments", "envvars", "epilog"):
        app.connect(f"sphinx-click-process-{event}", _literal_backticks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
