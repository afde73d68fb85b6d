"""The Python examples in flyte_iap's docstrings (rendered into the API reference) and in README.md.

pytest-examples collects them; each must be formatted as ``ruff format`` would (line length 110, as the
code), pass ``ruff check``, and, where it can run here, run: against the local fakes, in a private HOME
and working directory, with what the prose around it assumes (``audience``, ``text`` ...) predefined.
An example that cannot run here (it needs a real sign-in, a live deployment or files a reader has) is
listed in :data:`NOT_RUN` with the reason, and only formatted and linted.

Docstring examples are reST literal blocks (``Example::`` and an indented block), since the API
reference renders docstrings as reST; README's are fenced ```` ```python ```` blocks. Shell transcripts
(``$ ...``) and doctests (``>>>``) are left to the harness and to doctest.
"""

from __future__ import annotations

import ast
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _harness import REPO
from pytest_examples import CodeExample, EvalExample, find_examples
from ruff.__main__ import find_ruff_bin

PACKAGE = REPO / "flyte_iap"

AUD = "123456789012-flyteiapiap0fake0client000000.apps.googleusercontent.com"

#: examples that are formatted and linted but not run here, and why (path relative to the repo: line)
NOT_RUN = {
    "flyte_iap/__init__.py": "mints a token for a real IAP client: needs a Google sign-in",
    "flyte_iap/browser_login.py": "opens a real browser and waits for a person",
    "flyte_iap/cache.py": "a fragment of flyte_iap.user_tokens' refresh: new_token comes from Google",
    "flyte_iap/client_secrets.py": "reads a Secret Manager secret of a real project",
    "flyte_iap/doctor.py": "walks a live deployment at flyte.example.com",
    "flyte_iap/discovery.py": "asks a live deployment at flyte.example.com for IAP's sign-in redirect",
    "flyte_iap/signed_jwt.py": "signs through IAM Credentials for a service account of a real project",
    "flyte_iap/requests_auth.py": "calls a live deployment at flyte.example.com",
    "flyte_iap/service_account.py": "impersonates a service account of a real project",
    "flyte_iap/manifest_check/__init__.py": "checks the reader's rendered.yaml and gke/ directory",
    "flyte_iap/manifest_check/check.py": "checks the reader's rendered.yaml and gke/ directory",
    "flyte_iap/manifest_check/flyte.py": "a fragment inside a rule: service and index come from the checker",
    "flyte_iap/manifest_check/gce.py": "a fragment inside a rule: ingress comes from the checker",
    "flyte_iap/manifest_check/index.py": "a fragment inside a rule: text is a rendered chart",
    "flyte_iap/manifest_check/report.py": "a fragment: findings come from a check run",
    "flyte_iap/manifest_check/rules_frontend.py": "checks the reader's ingress.yaml and certificate.yaml",
    "flyte_iap/manifest_check/rules_gateway.py": "checks the reader's gateway/ directory",
    "flyte_iap/manifest_check/rules_grpc.py": "a fragment: rendering is the reader's helm template output",
    "flyte_iap/manifest_check/rules_ingress.py": "checks the reader's service.yaml",
    "flyte_iap/manifest_check/topology.py": "a fragment inside a rule: manifests come from the checker",
    "flyte_iap/testing/browser.py": "a fragment: authorization_url comes from a login flow",
    "flyte_iap/testing/fake_flyteadmin.py": "a sketch of a test: ... stands for the test's own calls",
    "flyte_iap/testing/fake_google.py": "a sketch of a test: ... stands for the test's own calls",
    "flyte_iap/testing/iap_proxy.py": "a sketch of a test: ... stands for the test's own calls",
    "flyte_iap/transport.py": "a fragment of a caller: the refresh token, client and URL are the caller's",
    "flyte_iap/user_tokens.py": "signs in with a real browser and a Secret Manager secret of a real project",
}

#: names the prose around an example assumes, for examples that run
GIVEN = {"audience": AUD, "text": "admin: {}\n"}


def _docstring_examples(path: Path) -> Iterator[CodeExample]:
    """The reST literal blocks (``...::`` + indented block) of every docstring in ``path``."""
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc:
            continue
        first_line = node.body[0].lineno  # the line of the opening quotes
        for match in re.finditer(r"::\n\n((?:[ \t]+\S.*\n|[ \t]*\n)+)", doc + "\n"):
            block = textwrap.dedent(match.group(1)).strip("\n") + "\n"
            if block.lstrip().startswith(("$ ", ">>>")):
                continue
            line = first_line + doc[: match.start(1)].count("\n")
            yield CodeExample.create(block, path=path, start_line=line, prefix="py")


def _examples() -> list[CodeExample]:
    found = [e for p in sorted(PACKAGE.rglob("*.py")) for e in _docstring_examples(p)]
    found += [e for e in find_examples(REPO / "README.md")]
    return found


EXAMPLES = _examples()


def _id(example: CodeExample) -> str:
    return f"{example.path.relative_to(REPO)}:{example.start_line}"


def test_examples_are_found_in_docstrings() -> None:
    assert len(EXAMPLES) >= 25
    assert any(e.path.name == "client_config.py" for e in EXAMPLES)


def test_every_example_not_run_says_why_and_exists() -> None:
    paths = {str(e.path.relative_to(REPO)) for e in EXAMPLES}
    assert set(NOT_RUN) <= paths
    assert all(reason.strip() for reason in NOT_RUN.values())


@pytest.mark.parametrize("example", EXAMPLES, ids=_id)
def test_example_is_ruff_formatted(example: CodeExample) -> None:
    result = subprocess.run(
        [find_ruff_bin(), "format", "--diff", "--line-length", "110", "--stdin-filename", "example.py", "-"],
        input=example.source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{_id(example)}: not formatted as ruff format would:\n{result.stdout}"


@pytest.mark.parametrize("example", EXAMPLES, ids=_id)
def test_example_passes_ruff_check(example: CodeExample, eval_example: EvalExample) -> None:
    # F821: examples use names their prose defines (those that run get them from GIVEN, and running
    # catches any other); B007/B018: a fragment may show a value or loop without using it
    eval_example.set_config(
        line_length=110,
        target_version="py310",
        ruff_line_length=110,
        ruff_select=["E", "F", "W", "I", "UP", "B", "SIM"],
        ruff_ignore=["F821", "B007", "B018"],
    )
    eval_example.lint_ruff(example)


RUNNABLE = [e for e in EXAMPLES if str(e.path.relative_to(REPO)) not in NOT_RUN]


@pytest.mark.parametrize("example", RUNNABLE, ids=_id)
def test_example_runs(
    example: CodeExample, eval_example: EvalExample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flyte_iap.testing import FakeGoogle

    home = tmp_path / "home"
    (home / ".flyte").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FLYTE_IAP_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "examples").symlink_to(REPO / "examples")  # examples name examples/gke
    monkeypatch.chdir(tmp_path / "work")
    with FakeGoogle() as google:
        for name, value in google.env.items():
            monkeypatch.setenv(name, value)
        try:
            eval_example.run(example, module_globals=dict(GIVEN))
        except Exception as exc:  # pytest-examples' own traceback rewriting expects markdown files
            raise AssertionError(f"{_id(example)}: {type(exc).__name__}: {exc}") from None
