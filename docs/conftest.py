"""The documentation is a test suite: sybil collects every block of every page under docs/.

Run it as ``nox -s docs`` does::

    pytest -c docs/pytest.ini -n 2 --dist loadfile docs

What each kind of block must do is described in ``docs/_harness/`` (blocks.py, shell.py,
manifests.py). This file wires the harness into pytest:

- the sybil collector (page namespace per document; ``doc`` is the page's
  :class:`~_harness.sandbox.DocSandbox`, with the fakes on demand);
- an environment free of the developer's credentials (``FLYTE_IAP_*``, ``GOOGLE_*``, gcloud, metadata);
- failures and skips reported at ``page.md:LINE``, and a block skipped without a reason turned into
  a failure;
- the closing summary line: how many blocks ran, were validated and were skipped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.evaluators.skip import Skipper
from sybil.integration.pytest import SybilItem
from sybil.parsers.myst import ClearNamespaceParser, SkipParser

sys.path.insert(0, str(Path(__file__).parent))

from _harness import report as doc_report
from _harness.blocks import DocBlockParser
from _harness.sandbox import DocSandbox, scrubbed_environ

pytest_collect_file = Sybil(
    parsers=[DocBlockParser(), SkipParser(), ClearNamespaceParser()],
    patterns=["*.md"],
    excludes=["_build/*", "*/_build/*", "README.md", "*/README.md"],
    fixtures=["doc"],
).pytest()


def pytest_configure(config: pytest.Config) -> None:
    clean = scrubbed_environ()
    os.environ.clear()
    os.environ.update(clean)
    # No metadata server: google-auth would otherwise wait seconds for one at import.
    os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
    config._doc_tally = doc_report.Tally()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocSandbox]:
    """The page's sandbox: working directory with ``examples/``, private HOME and cache, fakes."""
    sandbox = DocSandbox(tmp_path_factory.mktemp("page"))
    try:
        yield sandbox
    finally:
        sandbox.close()


def _is_directive(item: SybilItem) -> bool:
    evaluator = item.example.region.evaluator
    return isinstance(evaluator, Skipper) or getattr(evaluator, "__qualname__", "").startswith(
        "AbstractClearNamespaceParser"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if not isinstance(item, SybilItem):
        if rep.when == "call":
            doc_report.take()  # what example-file checks recorded is not a block's
        return
    page = Path(item.example.path)
    with contextlib.suppress(ValueError):
        page = page.relative_to(Path(__file__).parent.parent)
    location = f"{page}:{item.example.line}"
    if rep.when == "call":
        kinds = doc_report.take()
        rep.user_properties.append(("doc_kinds", kinds))
        rep.user_properties.append(("doc_where", location))
        if rep.passed and not kinds and not _is_directive(item):
            rep.outcome = "failed"
            rep.longrepr = f'{location}: this block was skipped without a reason; write % skip: next "why"'
    if rep.skipped and isinstance(rep.longrepr, tuple):
        reason = str(rep.longrepr[2]).removeprefix("Skipped: ")
        rep.longrepr = (str(page), item.example.line, f"Skipped: {reason}")
        rep.user_properties.append(("doc_where", location))


_CONFIG: list[pytest.Config] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG.append(session.config)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each test once (on the controller under xdist): its call, or the phase that skipped or failed it."""
    if not _CONFIG or hasattr(_CONFIG[0], "workerinput"):
        return
    rep = report
    if not (rep.when == "call" or rep.skipped or rep.failed):
        return
    props = dict(rep.user_properties)
    tally: doc_report.Tally = _CONFIG[0]._doc_tally  # type: ignore[attr-defined]
    location = str(props.get("doc_where", rep.nodeid))
    is_block = "doc_where" in props or "::line:" in rep.nodeid
    if rep.skipped:
        reason = str(rep.longrepr[2]) if isinstance(rep.longrepr, tuple) else ""
        tally.add(
            is_block=is_block,
            outcome="skipped",
            kinds=[],
            where=location,
            reason=reason.removeprefix("Skipped: "),
        )
    else:
        tally.add(
            is_block=is_block, outcome=rep.outcome, kinds=list(props.get("doc_kinds", [])), where=location
        )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if hasattr(config, "workerinput"):
        return
    tally: doc_report.Tally = config._doc_tally  # type: ignore[attr-defined]
    terminalreporter.section("documentation blocks")
    for line in tally.lines():
        terminalreporter.write_line(line)
