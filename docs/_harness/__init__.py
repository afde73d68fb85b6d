"""The documentation's test harness: every fenced block in ``docs/*.md`` is run or validated.

Usage (what ``nox -s docs`` does)::

    pytest -c docs/pytest.ini -n 2 --dist loadfile docs

``docs/conftest.py`` wires these modules into sybil and pytest:

- :mod:`_harness.blocks` finds every fenced block and directive in a page and picks its evaluator;
- :mod:`_harness.shell` runs ``flyte-iap`` and ``openssl`` commands and checks ``gcloud``, ``kubectl``
  and ``helm`` commands against their help text;
- :mod:`_harness.manifests` validates Kubernetes and GKE manifests, Envoy configuration, Helm values,
  IAP settings files and flytekit/flytectl configuration, and runs ``flyte-iap check``;
- :mod:`_harness.cli_help` reads and caches ``--help`` output;
- :mod:`_harness.sandbox` gives each page a working directory, a private HOME and the fakes;
- :mod:`_harness.report` counts what ran, what was validated and what was skipped.
"""

from __future__ import annotations

from pathlib import Path

#: the repository root (docs/ is one level below it)
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"
#: where help texts of gcloud/kubectl/helm are cached between runs
CACHE = DOCS / "_build" / ".cache"


class BlockFailure(Exception):
    """A block does not do what the page says; the message names ``page.md:LINE``."""


def where(path: str | Path, line: int) -> str:
    """``docs/deploy/ingress.md:42`` for messages."""
    try:
        rel = Path(path).resolve().relative_to(REPO)
    except ValueError:
        rel = Path(path)
    return f"{rel}:{line}"
