"""Sphinx configuration of the flyte-iap guide.

Build (what ``nox -s docs`` does after running every snippet)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Offline by design: no intersphinx, no remote images, no diagrams rendered by a service; the diagrams
are SVG files in ``_static/``. Pages are MyST Markdown; a page whose front matter says
``file_format: mystnb`` is executed by myst-nb on every build, so its outputs are the real outputs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import flyte_iap

# docs/_ext: directives that render reference pages from flyte-iap's code (check rules, endpoints)
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "flyte-iap"
author = "flyte-iap contributors"
copyright = "flyte-iap contributors"
release = flyte_iap.__version__
version = release

extensions = [
    "myst_nb",  # also loads myst_parser
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
    "sphinx_copybutton",
    "sphinx_design",
    "flyte_iap_docs",
]

exclude_patterns = [
    "_build",
    "**/_build",
    ".jupyter_cache",
    "**/.jupyter_cache",
    "README.md",
    "**/README.md",
    "_harness",
    "_schemas",
    "_data",
    "_tools",
    "_ext",
    "**/.ipynb_checkpoints",
    ".pytest_cache",
]

# -- MyST ------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "attrs_inline", "substitution"]
myst_heading_anchors = 3
myst_substitutions = {"chart_version": "v1.16.8"}

# -- myst-nb: executed pages run against local fakes on every build ---------------------------------
nb_execution_mode = "force"
nb_execution_raise_on_error = False  # with -W --keep-going every failing page is reported
nb_execution_show_tb = True
nb_execution_timeout = 180
nb_merge_streams = True
nb_output_stderr = "show"

# Kernels inherit this environment: never the builder's own credentials or token cache.
for _name in list(os.environ):
    if _name.startswith(("FLYTE_IAP_", "GOOGLE_", "CLOUDSDK_", "GCE_METADATA", "FLYTECTL_")):
        del os.environ[_name]
os.environ["FLYTE_IAP_CACHE_DIR"] = tempfile.mkdtemp(prefix="flyte-iap-docs-cache-")
os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"

# -- autodoc ---------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Quotes and ellipses only: "--" stays two hyphens, as in every command line on these pages.
smartquotes_action = "qe"

# -- HTML ------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"flyte-iap {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["custom.css"]
html_show_sourcelink = False
copybutton_exclude = ".linenos, .gp, .go"


def _escape_globs(app: object, ctx: object, lines: list[str]) -> None:
    """Command help is plain text, but sphinx-click renders it as reST: keep ``*.yaml`` a glob."""
    import re

    lines[:] = [re.sub(r"(?<![\\*`])\*(?=\.)", r"\\*", line) for line in lines]


def setup(app: object) -> dict[str, bool]:
    for event in (
        "sphinx-click-process-description",
        "sphinx-click-process-options",
        "sphinx-click-process-arguments",
        "sphinx-click-process-epilog",
    ):
        app.connect(event, _escape_globs)  # type: ignore[attr-defined]
    return {"parallel_read_safe": True}
